"""Inference latency of every model directory under a results tree, in torch eager,
torch.compile and onnxruntime, against the dense fine-tuned model of the same task,
with the whole-model multiply-accumulate ratio beside it (lpaf.bench).

    python scripts/bench/latency.py results/minilm-l6/SST-2 [--seed 1]
        [--backends eager compile onnxruntime] [--precisions fp32 bf16]
        [--batch-sizes 1 32] [--seq-length 128] [--repeats 10] [--threads 2]
        [--device cpu] [--optimize on|off|both] [--allocator tuned|default]
        [--include recover/svd ...]
        [--out x.csv] [--figure x.png]

All in this one process, on one device. Ratios are against the dense model in the same
backend, precision and batch size; ``pct_of_arithmetic_speedup`` is
``100 * mac_ratio / latency_ratio``; ``speedup_vs_dense_onnxruntime`` compares with the
dense model in onnxruntime, the runtime peer. bf16 is timed in eager only, and only
where ``precision: auto`` would choose it on this device.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from lpaf.bench import BACKENDS, benchmark, plot_latency_vs_macs  # noqa: E402
from lpaf.io import write_dataframe  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root", help="results/<model>/<task>: searched for */model dirs")
    parser.add_argument("--seed", default=None, help="only the models of this seed")
    parser.add_argument(
        "--include",
        nargs="+",
        default=None,
        help="only runs whose path under root starts with one of these (e.g. recover/svd);"
        " the finetune reference is always kept",
    )
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS))
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--seq-length", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--optimize",
        choices=["on", "off", "both"],
        default="both",
        help="lpaf.deploy's inference rewrites (dense fallback, fused q/k/v downs)",
    )
    parser.add_argument(
        "--allocator",
        choices=["tuned", "default"],
        default="tuned",
        help="lpaf.deploy.tune_cpu_allocator first (CPU), or glibc's default malloc",
    )
    parser.add_argument("--out", default=None, help="CSV to write (also printed)")
    parser.add_argument("--figure", default=None, help="PNG: latency vs MAC ratio")
    args = parser.parse_args()
    root = Path(args.root)
    dirs = sorted(
        p
        for p in root.rglob("model")
        if (p / "config.json").is_file()
        and (args.seed is None or p.parent.name == f"seed{args.seed}")
    )
    if args.include:
        dirs = [
            d
            for d in dirs
            if d.relative_to(root).parts[0] == "finetune"
            or any(str(d.relative_to(root)).startswith(p) for p in args.include)
        ]
    dense = [d for d in dirs if d.relative_to(root).parts[0] == "finetune"]
    if not dense:
        raise SystemExit(f"no dense reference (finetune/*/model) under {root}")
    dirs = dense[:1] + [d for d in dirs if d not in dense]  # the reference first
    labels = [str(d.parent.relative_to(root)) for d in dirs]
    table = benchmark(
        dirs,
        labels,
        backends=args.backends,
        precisions=args.precisions,
        batch_sizes=args.batch_sizes,
        seq_len=args.seq_length,
        warmup=args.warmup,
        repeats=args.repeats,
        device=args.device,
        threads=args.threads,
        optimize={"on": (True,), "off": (False,), "both": (False, True)}[args.optimize],
        tune_allocator=args.allocator == "tuned",
    )
    columns = [
        "model",
        "optimized",
        "backend",
        "precision",
        "batch_size",
        "latency_ms",
        "mac_ratio",
        "latency_ratio",
        "pct_of_arithmetic_speedup",
        "speedup_vs_dense_onnxruntime",
        "allocator",
    ]
    print(table[[c for c in columns if c in table]].to_markdown(index=False, floatfmt=".3g"))
    if args.out:
        write_dataframe(args.out, table)
    if args.figure:
        plot_latency_vs_macs(table, args.figure)


if __name__ == "__main__":
    main()
