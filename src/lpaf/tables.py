"""Tables built from the JSON files the stages write (never from memory), so that a
``paper`` rerun regenerates them from results on disk."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lpaf.io import write_dataframe, write_text

SCORE_SCALE = 100.0  # tables show metrics in percent, JSON files keep fractions


def run_keys(path: str | Path) -> dict[str, str]:
    """``results/{model}/{task}/{stage}/seed{seed}/file.json`` -> model, task, seed."""
    parts = Path(path).parts
    seed_part = next(p for p in reversed(parts) if p.startswith("seed"))
    i = parts.index(seed_part)
    return {"model": parts[i - 3], "task": parts[i - 2], "seed": seed_part[len("seed") :]}


def constant_fields(result: dict) -> dict:
    """``constant_score`` (percent, first split) and ``collapsed`` (0/1) of a result
    file that records the constant predictor (:mod:`lpaf.evaluate.constant`); nothing
    for older files."""
    constant = result.get("constant")
    if not constant:
        return {}
    primary = next(iter(result["metrics"]))
    return {
        "constant_score": SCORE_SCALE * constant[primary]["main"],
        "collapsed": float(bool(result.get("collapsed"))),
    }


def constant_line(table: pd.DataFrame, metric: str | None = None) -> str:
    """``"Constant predictor: X."`` for a table with ``constant_score`` ("" without)."""
    if "constant_score" not in table or table["constant_score"].isna().all():
        return ""
    value = table["constant_score"].dropna().iloc[0]
    return f"Constant predictor (training majority class or mean): {metric or 'score'} {value:.2f}."


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
