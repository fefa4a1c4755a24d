"""Inference latency of every model directory under a results tree, against the dense
fine-tuned model of the same task, with the multiply-accumulate ratio beside it.

    python scripts/bench/latency.py results/minilm-l6/MRPC [--batch-sizes 1 32]
        [--seq-length 128] [--repeats 20] [--device cpu] [--out docs/measurements/x.csv]

Each model: warm-up passes, then the median of ``--repeats`` timed forward passes on
random token ids (lpaf.evaluate.measure_latency), all in this one process and on one
device, so the ratios compare like with like. ``mac_ratio`` is the whole model's
multiply-accumulates per token at ``--seq-length`` relative to the dense model
(lpaf.accounting.whole_model_macs: targets, attention products, pooler and head; a
sparse model counts its non-zeros, which dense kernels do not skip);
``encoder_linear_mac_ratio`` counts the encoder's linear layers only.
``pct_of_arithmetic_speedup_bs*`` is ``100 * mac_ratio / latency_ratio``: the speedup a
model reached as a percentage of the speedup its arithmetic allows (100 = latency fell
as much as the multiply-accumulates did).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from lpaf.accounting import count_parameters, macs_per_token, whole_model_macs  # noqa: E402
from lpaf.evaluate.evaluation import measure_latency  # noqa: E402
from lpaf.modeling import load_model  # noqa: E402
from lpaf.targets import DEFAULT_TARGET_PATTERNS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root", help="results/<model>/<task>: searched for */model dirs")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--seq-length", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=None, help="CSV to write (also printed)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    root = Path(args.root)
    dirs = sorted(p for p in root.rglob("model") if (p / "config.json").is_file())
    if not dirs:
        raise SystemExit(f"no model directories (*/model/config.json) under {root}")
    dense = [d for d in dirs if d.relative_to(root).parts[0] == "finetune"]
    dirs = dense[:1] + [d for d in dirs if d not in dense[:1]]  # the reference first
    rows = []
    for path in dirs:
        model = load_model(path, device=args.device)
        macs = macs_per_token(model, DEFAULT_TARGET_PATTERNS)
        whole = whole_model_macs(model, args.seq_length, DEFAULT_TARGET_PATTERNS)
        params = count_parameters(model, DEFAULT_TARGET_PATTERNS)
        latency = measure_latency(
            model, args.batch_sizes, args.seq_length, args.warmup, args.repeats, args.device
        )
        rows.append(
            {
                "model": str(path.parent.relative_to(root)),
                "rho": params["retained_fraction"],
                "mac_ratio": whole["total"] / whole["total_dense"],
                "encoder_linear_mac_ratio": macs["encoder_linear"] / macs["encoder_linear_dense"],
                **{k: v for k, v in latency.items() if k.startswith("latency_ms")},
            }
        )
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    for bs in args.batch_sizes:
        col = f"latency_ms_bs{bs}"
        table[f"latency_ratio_bs{bs}"] = table[col] / table[col].iloc[0]
        table[f"pct_of_arithmetic_speedup_bs{bs}"] = (
            100 * table["mac_ratio"] / table[f"latency_ratio_bs{bs}"]
        )
    print(table.to_markdown(index=False, floatfmt=".3g"))
    if args.out:
        table.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
