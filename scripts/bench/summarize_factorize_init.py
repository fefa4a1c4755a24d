"""Summarise a finished stage-4 sweep (factorize, scored before training) for
docs/measurements/.

Reads every ``metrics_init.json`` and ``reconstruction.csv`` under
``results/<model>/<task>/factorize/`` for one seed and writes

* ``<out>.csv`` / ``<out>.md``: the ``factorize_init`` table of the workflow
  (:mod:`lpaf.factorize.results`) for these runs;
* ``<out>_vs_svd.csv``: per source x rho, every method's score, dev loss and KL to the
  source minus plain SVD's from the same source (positive score / negative loss = better
  than SVD);
* ``<out>_reconstruction.csv``: per source x method x rho, the mean relative error
  (plain, in the method's weighted norm, on the kept entries) and the solver's mean
  relative objective decrease;
* ``<out>_timing.csv``: per run, the stage's time against one plain SVD of every target
  matrix, both measured in the same job.

    python scripts/bench/summarize_factorize_init.py --results results --model minilm-l6 \
        --task MRPC --seed 42 --out docs/measurements/<date>-factorize-init-minilm-mrpc
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

import pandas as pd  # noqa: E402

from lpaf.factorize.results import (  # noqa: E402
    factorize_init_rows,
    write_factorize_init_table,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", default="results")
    parser.add_argument("--model", required=True)
    parser.add_argument("--task", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    root = Path(args.results) / args.model / args.task / "factorize"
    paths = sorted(root.glob(f"*/*/rho*/seed{args.seed}/metrics_init.json"))
    if not paths:
        raise SystemExit(f"no metrics_init.json under {root}")
    out = Path(args.out)
    write_factorize_init_table(paths, out.with_suffix(".csv"), out.with_suffix(".md"))

    rows = factorize_init_rows(paths)
    keys = ["source", "rho"]
    svd = rows[rows["method"] == "svd"].set_index(keys)
    deltas = []
    for _, row in rows.iterrows():
        key = (row["source"], row["rho"])
        if key not in svd.index:
            continue
        ref = svd.loc[key]
        delta = {"source": row["source"], "rho": row["rho"], "method": row["method"]}
        for column in ("score", "accuracy", "dev_loss", "kl_from_source", "agreement"):
            if column in row and pd.notna(row[column]):
                delta[column] = row[column]
                delta[f"{column}_minus_svd"] = row[column] - ref[column]
        deltas.append(delta)
    pd.DataFrame(deltas).to_csv(f"{out}_vs_svd.csv", index=False)

    recon, timing = [], []
    for path in paths:
        metrics = json.loads(path.read_text())
        table = pd.read_csv(path.parent / "reconstruction.csv")
        decrease = None
        if table["objective_start"].notna().all():
            decrease = float((1 - table["objective_end"] / table["objective_start"]).mean())
        recon.append(
            {
                "source": metrics["source"],
                "method": metrics["method"],
                "rho": f"{metrics['rho_target']:g}",
                "rho_achieved": metrics["rho_achieved"],
                "mean_error": table["error"].mean(),
                "mean_weighted_error": table["weighted_error"].mean(),
                "mean_kept_error": table["kept_error"].mean(),
                "mean_objective_decrease": decrease,
                "iterations": int(table["iterations"].max()),
            }
        )
        timing.append(
            {
                "source": metrics["source"],
                "method": metrics["method"],
                "rho": f"{metrics['rho_target']:g}",
                **metrics["timing"],
                "threads": metrics["environment"]["threads"],
                "device": metrics["environment"]["device"],
            }
        )
    pd.DataFrame(recon).to_csv(f"{out}_reconstruction.csv", index=False)
    pd.DataFrame(timing).to_csv(f"{out}_timing.csv", index=False)
    print(f"{len(paths)} runs -> {out}.*")


if __name__ == "__main__":
    main()
