"""Fine-tune and evaluate teachers on a machine without Snakemake (e.g. a lent GPU box
that has torch/transformers but no workflow tooling): the same library calls the
`finetune` and `evaluate` rules make, driven from a config already validated here.

    python scripts/device/teachers.py --config resolved.json --model DIR \
        --tasks MRPC RTE --out OUTDIR [--lr 5e-5 1e-4]

Writes OUTDIR/<task>/lr<lr>/{model,metrics.json,evaluation.json,...} and
OUTDIR/summary.csv.
"""

import argparse
import copy
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

import pandas as pd  # noqa: E402

from lpaf.evaluate import stage as evaluate  # noqa: E402
from lpaf.finetune import stage as finetune  # noqa: E402
from lpaf.runtime import Job  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True, help="JSON dump of a validated config")
    parser.add_argument("--model", required=True)
    parser.add_argument("--tasks", nargs="+", required=True)
    parser.add_argument("--lr", nargs="*", type=float, default=[])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    base = json.loads(Path(args.config).read_text())
    base["model"] = args.model
    rows = []
    for task in args.tasks:
        for lr in args.lr or [base["finetune"]["learning_rate"]]:
            config = copy.deepcopy(base)
            config["finetune"]["learning_rate"] = lr
            run = Path(args.out) / task / f"lr{lr:g}"
            start = time.perf_counter()
            out = finetune.Outputs(
                run / "model", run / "metrics.json", run / "train_log.csv", run / "predictions.tsv"
            )
            metrics = finetune.run(config, Job(task, args.seed), out)
            evaluation = evaluate.run(config, Job(task), run / "model", run / "evaluation.json")
            rows.append(
                {
                    "task": task,
                    "lr": lr,
                    "metric": metrics["main_metric"],
                    "score": 100 * metrics["main"],
                    "reloaded_score": 100 * evaluation["main"],
                    **{
                        f"{k}": 100 * v
                        for k, v in metrics["metrics"][next(iter(metrics["metrics"]))].items()
                        if k != "main"
                    },
                    "steps": metrics["steps"],
                    "train_seconds": metrics["train_seconds"],
                    "wall_seconds": round(time.perf_counter() - start, 1),
                    **evaluation["latency"],
                    "device": metrics["environment"].get("gpu", "cpu"),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    pd.DataFrame(rows).to_csv(Path(args.out) / "summary.csv", index=False)


if __name__ == "__main__":
    main()
