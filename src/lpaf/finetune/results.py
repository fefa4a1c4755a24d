"""Stage 1's table and figure (fine-tuned teachers), built from result files on disk."""

from __future__ import annotations

from collections.abc import Iterable

import matplotlib.pyplot as plt
import pandas as pd

from lpaf.figures import save_figure
from lpaf.io import read_json
from lpaf.tables import (
    SCORE_SCALE,
    add_seed_summary,
    constant_fields,
    run_keys,
)


def finetune_table(evaluation_paths: Iterable[str], metrics_paths: Iterable[str]) -> pd.DataFrame:
    """One row per model x task x seed, from ``evaluation.json`` (scores, parameters,
    latency of the saved model) and ``metrics.json`` (training time)."""
    train = {tuple(run_keys(p).values()): read_json(p) for p in metrics_paths}
    rows = []
    for path in evaluation_paths:
        keys = run_keys(path)
        ev = read_json(path)
        tr = train.get(tuple(keys.values()), {})
        row = dict(keys)
        row["metric"] = ev["main_metric"]
        row["score"] = SCORE_SCALE * ev["main"]
        row.update(constant_fields(ev))
        primary = next(iter(ev["metrics"].values()))
        for name, value in primary.items():
            if name != "main" and name != ev["main_metric"]:
                row[name] = SCORE_SCALE * value
        for split, values in list(ev["metrics"].items())[1:]:
            row[f"score_{split}"] = SCORE_SCALE * values["main"]
        row["params_total"] = ev["parameters"]["total"]
        row["params_non_embedding"] = ev["parameters"]["non_embedding"]
        for key, value in ev["latency"].items():
            if key.startswith("latency_ms"):
                row[key] = value
        row["train_seconds"] = tr.get("train_seconds")
        row["train_examples"] = tr.get("train_examples")
        row["device"] = ev["environment"]["device"]
        # training precision (metrics.json); evaluation.json's where there is none
        row["precision"] = tr.get("precision", ev.get("precision"))
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["seed"] = table["seed"].astype(str)
    return add_seed_summary(table.sort_values(["model", "task", "seed"], kind="stable"))


def finetune_curves(log_paths: Iterable[str], png_path, pdf_path=None, smooth: int = 10) -> None:
    """Training loss (running mean over ``smooth`` steps) against step, one panel per
    task, one line per seed."""
    runs = [(run_keys(p), pd.read_csv(p)) for p in log_paths]
    tasks = sorted({k["task"] for k, _ in runs})
    fig, axes = plt.subplots(1, len(tasks), figsize=(4 * len(tasks), 3), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for keys, log in runs:
            if keys["task"] != task:
                continue
            loss = log["loss"].rolling(smooth, min_periods=1).mean()
            ax.plot(log["step"], loss, label=f"{keys['model']} seed {keys['seed']}")
        ax.set_title(task)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("training loss")
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, png_path, pdf_path)
