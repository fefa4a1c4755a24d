"""The paper's comparison tables: methods x tasks at one retained fraction rho.

Input is a flat list of per-run records (one per pipeline x task x rho x seed), as
read from the result files; output is a tidy summary (mean, std, n over seeds) and
its renderings as CSV, Markdown and LaTeX with the best compressed method of each
task in bold. The fine-tuned reference row is shown but never bolded (it is not
compressed).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import pandas as pd

REFERENCE = "fine-tuned"


def summarize(
    records: Iterable[dict], by: Sequence[str] = ("pipeline", "task", "rho")
) -> pd.DataFrame:
    """Mean, sample std (ddof=1, NaN for one seed) and count of ``score`` and the
    mean of every other numeric column, per group."""
    frame = pd.DataFrame(list(records))
    if frame.empty:
        return frame
    numeric = [
        c
        for c in frame.columns
        if c not in by and c != "seed" and pd.api.types.is_numeric_dtype(frame[c])
    ]
    grouped = frame.groupby(list(by), sort=False, dropna=False)
    out = grouped["score"].agg(score_mean="mean", score_std="std", seeds="count")
    others = [c for c in numeric if c != "score"]
    if others:
        out = out.join(grouped[others].mean())
    return out.reset_index()


def _cell(mean: float, std: float, n: int, digits: int = 1) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    text = f"{mean:.{digits}f}"
    if n > 1 and std == std:  # not NaN
        text += f" ± {std:.{digits}f}"
    return text


def best_per_task(summary: pd.DataFrame, reference: str = REFERENCE) -> dict[str, str]:
    """The compressed pipeline with the highest mean score of each task."""
    compressed = summary[summary["pipeline"] != reference]
    best = {}
    for task, group in compressed.groupby("task", sort=False):
        group = group.dropna(subset=["score_mean"])
        if len(group):
            best[task] = group.loc[group["score_mean"].idxmax(), "pipeline"]
    return best


def comparison_table(
    summary: pd.DataFrame,
    pipelines: Sequence[str],
    tasks: Sequence[str],
    extra_columns: Sequence[str] = (),
    reference: str = REFERENCE,
    bold: str = "**{}**",
    digits: int = 1,
) -> pd.DataFrame:
    """Wide table: one row per pipeline (in ``pipelines`` order), one column per task
    with ``mean ± std`` (best compressed pipeline of the task in ``bold``), then the
    mean over seeds and tasks of each of ``extra_columns`` (e.g. ``rho_achieved``)."""
    best = best_per_task(summary, reference)
    rows = []
    for pipeline in pipelines:
        sub = summary[summary["pipeline"] == pipeline]
        if sub.empty:
            continue
        row = {"method": pipeline}
        for task in tasks:
            cell = sub[sub["task"] == task]
            if cell.empty:
                row[task] = "–"
                continue
            c = cell.iloc[0]
            text = _cell(c["score_mean"], c["score_std"], int(c["seeds"]), digits)
            row[task] = bold.format(text) if best.get(task) == pipeline else text
        for column in extra_columns:
            row[column] = sub[column].mean() if column in sub else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def to_markdown(table: pd.DataFrame) -> str:
    return table.to_markdown(index=False, floatfmt=".4g") + "\n"


def to_latex(table: pd.DataFrame, caption: str = "", label: str = "") -> str:
    """A booktabs tabular; ``**x**`` cells become ``\\textbf{x}``, ``±`` becomes ``$\\pm$``."""

    def cell(value) -> str:
        if isinstance(value, float):
            return "–" if math.isnan(value) else f"{value:.4g}"
        text = str(value).replace("±", r"$\pm$").replace("_", r"\_").replace("%", r"\%")
        if text.startswith("**") and text.endswith("**"):
            text = r"\textbf{" + text[2:-2] + "}"
        return text

    columns = list(table.columns)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\begin{tabular}{l" + "r" * (len(columns) - 1) + "}",
        r"\toprule",
        " & ".join(cell(c) for c in columns) + r" \\",
        r"\midrule",
    ]
    for _, row in table.iterrows():
        lines.append(" & ".join(cell(row[c]) for c in columns) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    if caption:
        lines.append(r"\caption{" + caption + "}")
    if label:
        lines.append(r"\label{" + label + "}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"
