"""Tables built from the JSON files the stages write (never from memory), so that a
``paper`` rerun regenerates them from results on disk."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from lpaf.io import read_json, write_dataframe, write_text

SCORE_SCALE = 100.0  # tables show metrics in percent, JSON files keep fractions


def _run_keys(path: str | Path) -> dict[str, str]:
    """``results/{model}/{task}/{stage}/seed{seed}/file.json`` -> model, task, seed."""
    parts = Path(path).parts
    seed_part = next(p for p in reversed(parts) if p.startswith("seed"))
    i = parts.index(seed_part)
    return {"model": parts[i - 3], "task": parts[i - 2], "seed": seed_part[len("seed") :]}


def finetune_table(evaluation_paths: Iterable[str], metrics_paths: Iterable[str]) -> pd.DataFrame:
    """One row per model x task x seed, from ``evaluation.json`` (scores, parameters,
    latency of the saved model) and ``metrics.json`` (training time)."""
    train = {tuple(_run_keys(p).values()): read_json(p) for p in metrics_paths}
    rows = []
    for path in evaluation_paths:
        keys = _run_keys(path)
        ev = read_json(path)
        tr = train.get(tuple(keys.values()), {})
        row = dict(keys)
        row["metric"] = ev["main_metric"]
        row["score"] = SCORE_SCALE * ev["main"]
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


def add_seed_summary(table: pd.DataFrame, group_by=("model", "task")) -> pd.DataFrame:
    """Append ``seed = mean`` and ``seed = std`` rows (sample std, ddof=1; NaN for a
    single seed) for every numeric column within each group."""
    numeric = [c for c in table.columns if pd.api.types.is_numeric_dtype(table[c])]
    keep = [c for c in table.columns if c not in numeric and c not in (*group_by, "seed")]
    out = []
    for keys, group in table.groupby(list(group_by), sort=False):
        out.append(group)
        for stat in ("mean", "std"):
            summary = getattr(group[numeric], stat)()
            row = dict(zip(group_by, keys, strict=True), seed=stat, **summary.to_dict())
            for c in keep:
                values = group[c].dropna().unique()
                row[c] = values[0] if len(values) == 1 else None
            out.append(pd.DataFrame([row]))
    return pd.concat(out, ignore_index=True)[table.columns]


def markdown_summary(table: pd.DataFrame, value: str = "score") -> str:
    """Markdown: one line per model x task with ``mean ± std (n seeds)`` and the
    per-seed table below it."""
    lines = []
    per_seed = table[~table["seed"].isin(["mean", "std"])]
    summary = []
    for (model, task), group in per_seed.groupby(["model", "task"], sort=False):
        n = len(group)
        mean = group[value].mean()
        std = group[value].std() if n > 1 else float("nan")
        text = f"{mean:.2f}" + (f" ± {std:.2f}" if n > 1 else "")
        summary.append(
            {
                "model": model,
                "task": task,
                "metric": group["metric"].iloc[0],
                value: text,
                "seeds": n,
            }
        )
    lines.append(pd.DataFrame(summary).to_markdown(index=False))
    lines.append("")
    lines.append(per_seed.to_markdown(index=False, floatfmt=".2f"))
    return "\n".join(lines) + "\n"


def write_table(
    table: pd.DataFrame, csv_path: str | Path, md_path: str | Path | None = None
) -> None:
    write_dataframe(csv_path, table)
    if md_path is not None:
        write_text(md_path, markdown_summary(table))


# ================================================ stages 2-3: prune, rank analysis (begin)


def stage_keys(path: str | Path) -> dict[str, str]:
    """Keys of a fine-tuned or pruned run from a path inside its run directory:
    ``results/{model}/{task}/finetune/seed{s}/...`` -> method ``fine-tuned``, density
    ``1``; ``results/{model}/{task}/prune/{method}/density{d}/seed{s}/...`` -> method,
    density ``d``."""
    parts = Path(path).parts
    i = max(j for j, p in enumerate(parts) if p.startswith("seed") and p[4:].isdigit())
    seed = parts[i][len("seed") :]
    if parts[i - 1] == "finetune":
        return {
            "model": parts[i - 3],
            "task": parts[i - 2],
            "method": "fine-tuned",
            "density": "1",
            "seed": seed,
        }
    if parts[i - 3] == "prune" and parts[i - 1].startswith("density"):
        return {
            "model": parts[i - 5],
            "task": parts[i - 4],
            "method": parts[i - 2],
            "density": parts[i - 1][len("density") :],
            "seed": seed,
        }
    raise ValueError(f"{path}: not inside a finetune or prune run directory")


def rank_summary(stats: pd.DataFrame) -> dict[str, float]:
    """Averages of one model's ``rank_stats.csv`` over its target matrices."""
    return {
        "retained_pct": 100.0 * stats["nonzeros"].sum() / stats["numel"].sum(),
        "avg_rank": float(stats["rank"].mean()),
        "avg_rank_pct": 100.0 * float((stats["rank"] / stats["max_rank"]).mean()),
        "avg_energy_rank_90": float(stats["energy_rank_90"].mean()),
        "avg_energy_rank_95": float(stats["energy_rank_95"].mean()),
        "avg_energy_rank_99": float(stats["energy_rank_99"].mean()),
        "rank_deficient": int((stats["rank"] < stats["max_rank"]).sum()),
        "zero_rows": int(stats["zero_rows"].sum()),
        "zero_cols": int(stats["zero_cols"].sum()),
        "matrices": len(stats),
    }


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
    lines = [
        pd.DataFrame(summary).to_markdown(index=False, floatfmt=".2f"),
        "",
        per_seed[[c for c in columns if c in per_seed.columns]].to_markdown(
            index=False, floatfmt=".2f"
        ),
    ]
    return "\n".join(lines) + "\n"


def write_prune_table(table: pd.DataFrame, csv_path: str | Path, md_path: str | Path) -> None:
    write_dataframe(csv_path, table)
    write_text(md_path, prune_markdown(table))


# ================================================== stages 2-3: prune, rank analysis (end)
