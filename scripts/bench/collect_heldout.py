"""Held-out curves and final scores of every recovered model of tune_recovery.sh's
per-variant runs: one CSV row per (lr, recovery examples, pipeline, evaluation step),
plus a Markdown summary (final held-out score per variant and pipeline) on stdout.

    python scripts/bench/collect_heldout.py OUT.csv WORKDIR LR[:EXAMPLES] [...]

A variant without EXAMPLES ran at the default recovery budget; the `examples` and
`steps` columns come from each run's metrics.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd


def variant_dir(variant: str) -> str:
    """tune_recovery.sh's run directory for LR or LR:EXAMPLES."""
    lr, _, examples = variant.partition(":")
    return f"lr{lr}_n{examples}" if examples else f"lr{lr}"


def main(out: str, work: str, variants: list[str]) -> None:
    rows = []
    for variant in variants:
        lr = variant.partition(":")[0]
        for metrics_path in sorted(
            Path(work, variant_dir(variant)).glob("results/*/*/recover/*/*/seed*/metrics.json")
        ):
            run = metrics_path.parent
            metrics = json.loads(metrics_path.read_text())
            log = pd.read_csv(run / "train_log.csv")
            evals = log.dropna(subset=["eval_main"])
            held = metrics["metrics"]["heldout"]
            constant = metrics["constant"]["heldout"]["main"]
            examples = int(metrics["train_examples"])
            for r in evals.itertuples():
                rows.append(
                    {
                        "lr": float(lr),
                        "examples": examples,
                        "steps": int(metrics["steps"]),
                        "pipeline": metrics["pipeline"],
                        "task": metrics["task"],
                        "seed": metrics["seed"],
                        "step": int(r.step),
                        "heldout_score": 100 * r.eval_main,
                        "heldout_loss": getattr(r, "eval_dev_loss", float("nan")),
                        "kl_from_teacher": getattr(r, "eval_kl_from_reference", float("nan")),
                        "agreement": 100 * getattr(r, "eval_agreement", float("nan")),
                        "constant": 100 * constant,
                        "final_heldout": 100 * held["main"],
                    }
                )
    table = pd.DataFrame(rows)
    table.to_csv(out, index=False)
    final = table.sort_values("step").groupby(["lr", "examples", "pipeline"]).tail(1)
    wide = final.pivot_table(index=["lr", "examples"], columns="pipeline", values="final_heldout")
    wide["mean"] = wide.mean(axis=1)
    print(wide.round(2).to_markdown())
    print(f"\nconstant predictor on the held-out rows: {table['constant'].iloc[0]:.2f}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
