"""Stage 2's table (pruned models: score, density and stage 3's rank summary), built
from result files on disk."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from lpaf.evaluate.constant import COLLAPSE_NOTE, flag
from lpaf.io import read_json, write_dataframe, write_text
from lpaf.rank.results import rank_summary
from lpaf.tables import (
    SCORE_SCALE,
    add_seed_summary,
    constant_fields,
    constant_line,
    stage_keys,
)

PRUNE_GROUPS = ("model", "task", "method", "density")


def prune_table(
    evaluation_paths: Iterable[str],
    rank_stats_paths: Iterable[str],
    metrics_paths: Iterable[str] = (),
) -> pd.DataFrame:
    """One row per fine-tuned or pruned run (model x task x method x density x seed):
    dev score (``evaluation.json``, percent), % of target weights retained and rank
    averages (``rank_stats.csv``), training steps and time (``metrics.json``); then
    ``seed = mean`` / ``std`` rows per model x task x method x density. The fine-tuned
    model is method ``fine-tuned``, density ``1``."""
    ranks = {tuple(stage_keys(p).values()): pd.read_csv(p) for p in rank_stats_paths}
    train = {tuple(stage_keys(p).values()): read_json(p) for p in metrics_paths}
    rows = []
    for path in evaluation_paths:
        keys = stage_keys(path)
        key = tuple(keys.values())
        ev = read_json(path)
        row: dict = dict(keys)
        row["metric"] = ev["main_metric"]
        row["score"] = SCORE_SCALE * ev["main"]
        row.update(constant_fields(ev))
        if key not in ranks:
            raise ValueError(f"no rank_stats.csv for the run of {path}")
        row.update(rank_summary(ranks[key]))
        tr = train.get(key, {})
        row["achieved_density"] = tr.get("achieved_density", row["retained_pct"] / 100.0)
        row["steps"] = tr.get("steps")
        row["train_seconds"] = tr.get("train_seconds")
        row["precision"] = tr.get("precision", ev.get("precision"))
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    order = {"fine-tuned": 0}
    table = table.assign(
        _m=table["method"].map(lambda m: order.get(m, 1)),
        _d=-table["density"].astype(float),
        _s=table["seed"].astype(int),
    )
    table = table.sort_values(["model", "task", "_m", "method", "_d", "_s"], kind="stable")
    table = table.drop(columns=["_m", "_d", "_s"])
    return add_seed_summary(table, group_by=PRUNE_GROUPS)


def prune_markdown(table: pd.DataFrame) -> str:
    """Markdown: one line per model x task x method x density (score ``mean ± std``
    over seeds, retained %, rank averages, zero rows/cols), then the per-seed rows."""
    per_seed = table[~table["seed"].isin(["mean", "std"])]
    summary = []
    for keys, group in per_seed.groupby(list(PRUNE_GROUPS), sort=False):
        n = len(group)
        mean = group["score"].mean()
        text = f"{mean:.2f}" + (f" ± {group['score'].std():.2f}" if n > 1 else "")
        if "collapsed" in group:
            text = flag(text, bool(group["collapsed"].fillna(0).max() > 0))
        summary.append(
            {
                **dict(zip(PRUNE_GROUPS, keys, strict=True)),
                "metric": group["metric"].iloc[0],
                "score": text,
                "seeds": n,
                "retained %": group["retained_pct"].mean(),
                "avg rank": group["avg_rank"].mean(),
                "avg rank (95% energy)": group["avg_energy_rank_95"].mean(),
                "zero rows": group["zero_rows"].mean(),
                "zero cols": group["zero_cols"].mean(),
            }
        )
    columns = [
        *PRUNE_GROUPS,
        "seed",
        "metric",
        "score",
        "retained_pct",
        "avg_rank",
        "avg_energy_rank_95",
        "zero_rows",
        "zero_cols",
        "steps",
        "train_seconds",
    ]
    notes = [constant_line(per_seed, per_seed["metric"].iloc[0]) if len(per_seed) else ""]
    if "collapsed" in per_seed:
        notes.append(COLLAPSE_NOTE)
    lines = [
        pd.DataFrame(summary).to_markdown(index=False, floatfmt=".2f"),
        "",
        *[note + "\n" for note in notes if note],
        per_seed[[c for c in columns if c in per_seed.columns]].to_markdown(
            index=False, floatfmt=".2f"
        ),
    ]
    return "\n".join(lines) + "\n"


def write_prune_table(table: pd.DataFrame, csv_path: str | Path, md_path: str | Path) -> None:
    write_dataframe(csv_path, table)
    write_text(md_path, prune_markdown(table))
