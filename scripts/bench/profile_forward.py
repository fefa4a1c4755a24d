"""Where a forward pass spends its time: torch.profiler over eager forward passes of
saved models, the CPU time per operator group (target GEMMs, other GEMMs and
attention products, everything else), to choose what to optimise.

    python scripts/bench/profile_forward.py DENSE_DIR LOWRANK_DIR [...] [--batch-size 32]
        [--seq-length 128] [--repeats 5] [--threads 2] [--optimize] [--out x.csv]

Printed and saved: per model and operator, total self CPU ms over the repeats and its
share of the model's total.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

import pandas as pd  # noqa: E402
import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from lpaf.deploy import optimize_for_inference  # noqa: E402
from lpaf.describe import load_saved  # noqa: E402
from lpaf.export import input_names, random_inputs  # noqa: E402
from lpaf.io import write_dataframe  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("models", nargs="+")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seq-length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--optimize", action="store_true", help="lpaf.deploy rewrites")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for path in args.models:
        model = load_saved(path).float().eval()
        if args.optimize:
            optimize_for_inference(model)
        names = input_names(model, path)
        inputs = random_inputs(names, args.batch_size, args.seq_length, model.config.vocab_size)
        with torch.no_grad():
            model(**inputs)  # warm-up
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(args.repeats):
                    model(**inputs)
        events = prof.key_averages()
        total = sum(e.self_cpu_time_total for e in events)
        for e in events:
            if e.self_cpu_time_total <= 0:
                continue
            rows.append(
                {
                    "model": path,
                    "op": e.key,
                    "calls": e.count // args.repeats,
                    "self_ms_per_forward": e.self_cpu_time_total / 1000 / args.repeats,
                    "share": e.self_cpu_time_total / total,
                }
            )
    table = pd.DataFrame(rows).sort_values(["model", "share"], ascending=[True, False])
    for model, part in table.groupby("model", sort=False):
        print(f"\n{model}: {part['self_ms_per_forward'].sum():.1f} ms per forward")
        print(part.head(12).to_markdown(index=False, floatfmt=".3g"))
    if args.out:
        write_dataframe(args.out, table)


if __name__ == "__main__":
    main()
