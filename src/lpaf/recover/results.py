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

import matplotlib.pyplot as plt
import pandas as pd

from lpaf.evaluate.constant import COLLAPSE_NOTE, CONSTANT, flag
from lpaf.figures import save_figure

REFERENCE = "fine-tuned"
# where and how the scores were computed: kept per group as the distinct values
PROVENANCE = ("precision", "device")


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
    provenance = [c for c in PROVENANCE if c in frame.columns]
    if provenance:
        out = out.join(grouped[provenance].agg(_distinct))
    return out.reset_index()


def _distinct(values: pd.Series) -> str:
    return "/".join(sorted({str(v) for v in values.dropna()}))


def _cell(mean: float, std: float, n: int, digits: int = 1) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    text = f"{mean:.{digits}f}"
    if n > 1 and std == std:  # not NaN
        text += f" ± {std:.{digits}f}"
    return text


def best_per_task(summary: pd.DataFrame, reference: str = REFERENCE) -> dict[str, str]:
    """The compressed pipeline with the highest mean score of each task, among those
    not collapsed in every seed (a collapsed model is never "best")."""
    compressed = summary[summary["pipeline"] != reference]
    if "collapsed" in compressed:
        compressed = compressed[~(compressed["collapsed"].fillna(0) >= 1.0)]
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
    with ``mean ± std`` (best compressed pipeline of the task in ``bold``; marked
    ``†`` when collapsed in any seed), then the mean over seeds and tasks of each of
    ``extra_columns`` (e.g. ``rho_achieved``). The constant predictor's row follows the
    reference row when the summary has ``constant_score``."""
    best = best_per_task(summary, reference)
    rows = []
    pipelines = list(pipelines)
    if "constant_score" in summary and summary["constant_score"].notna().any():
        at = pipelines.index(reference) + 1 if reference in pipelines else 0
        pipelines.insert(at, CONSTANT)
    for pipeline in pipelines:
        if pipeline == CONSTANT:
            rows.append(constant_row(summary, tasks, digits))
            continue
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
            text = bold.format(text) if best.get(task) == pipeline else text
            row[task] = flag(text, bool(c.get("collapsed", 0) > 0))
        for column in extra_columns:
            row[column] = sub[column].mean() if column in sub else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def constant_row(summary: pd.DataFrame, tasks: Sequence[str], digits: int = 1) -> dict:
    """The constant predictor's row: its score per task (the same for every seed and
    rho: it depends on the training labels only)."""
    row = {"method": CONSTANT}
    for task in tasks:
        values = summary.loc[summary["task"] == task, "constant_score"].dropna()
        row[task] = f"{values.iloc[0]:.{digits}f}" if len(values) else "–"
    return row


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


# ------------------------------------------------------------- from result files
def read_records(records: Iterable[dict]) -> list[dict]:
    """One flat row per record ``{pipeline, rho, task, seed, path[, init]}``: the score
    (percent) and costs from the final run's ``evaluation.json``; ``init_score`` from
    the factorize run's ``metrics_init.json`` when there is one."""
    from lpaf.io import read_json

    rows = []
    for record in records:
        ev = read_json(record["path"])
        params = ev["parameters"]
        macs = ev.get("macs_per_token", {})
        row = {
            "pipeline": record["pipeline"],
            "rho": record["rho"],
            "task": record["task"],
            "seed": record["seed"],
            "metric": ev["main_metric"],
            "score": 100.0 * ev["main"],
            "rho_achieved": params["retained_fraction"],
            "params_total": params.get("total_compressed", params["total"]),
            "params_non_embedding": params.get("non_embedding_compressed", params["non_embedding"]),
            "precision": ev.get("precision"),
            "device": (ev.get("environment") or {}).get("device"),
        }
        primary = next(iter(ev["metrics"]))
        if ev.get("constant"):
            row["constant_score"] = 100.0 * ev["constant"][primary]["main"]
            row["collapsed"] = float(bool(ev.get("collapsed")))
        if macs.get("encoder_linear_dense"):
            row["mac_ratio"] = macs["encoder_linear"] / macs["encoder_linear_dense"]
        for key, value in ev["latency"].items():
            if key.startswith("latency_ms"):
                row[key] = value
        init = read_json(record["init"]) if record.get("init") else None
        if init is not None:
            row["init_score"] = 100.0 * init["main"]
            if "collapsed" in init:
                row["init_collapsed"] = float(bool(init["collapsed"]))
        rows.extend(_span_rows(row, ev, init, primary))
    return rows


def _span_rows(row: dict, ev: dict, init: dict | None, primary: str) -> list[dict]:
    """``[row]``, or for extractive QA (F1 main, exact match beside it) two rows, the
    task named ``"<task> EM"`` and ``"<task> F1"``: the paper's two QA columns."""
    from lpaf.tasks import get_task

    if get_task(row["task"]).kind != "extractive_qa":
        return [row]
    metrics = ev["metrics"][primary]
    task = row["task"]
    em = {**row, "task": f"{task} EM", "metric": "exact_match"}
    em["score"] = 100.0 * metrics["exact_match"]
    if "constant_score" in row:
        em["constant_score"] = 100.0 * ev["constant"][primary]["exact_match"]
    if init is not None:
        em["init_score"] = 100.0 * init["metrics"][primary]["exact_match"]
    return [em, {**row, "task": f"{task} F1"}]


def table_columns(tasks: Sequence[str]) -> list[str]:
    """The task columns of the tables: each task, an extractive-QA one as two
    (``"<task> EM"``, ``"<task> F1"``; :func:`read_records`)."""
    from lpaf.tasks import get_task

    columns: list[str] = []
    for task in tasks:
        spec = get_task(task)
        if spec.kind == "extractive_qa":
            columns += [f"{spec.name} EM", f"{spec.name} F1"]
        else:
            columns.append(task)
    return columns


def _add_latency_ratio(summary: pd.DataFrame) -> pd.DataFrame:
    """Latency relative to the fine-tuned model of the same task (same device)."""
    for column in [c for c in summary.columns if c.startswith("latency_ms")]:
        ref = summary[summary["pipeline"] == REFERENCE].set_index("task")[column]
        summary[column.replace("latency_ms", "latency_ratio")] = summary.apply(
            lambda r, c=column, ref=ref: r[c] / ref.get(r["task"], float("nan")), axis=1
        )
    return summary


def write_main_table(records, rows, tasks, csv_path, md_path, tex_path) -> pd.DataFrame:
    """The main table: a tidy CSV over every rho, and per rho a wide Markdown/LaTeX
    table (methods x tasks, mean ± std, best in bold, with costs)."""
    from lpaf.io import write_dataframe, write_text

    flat = read_records(records)
    tasks = table_columns(tasks)
    summary = _add_latency_ratio(summarize(flat, by=("pipeline", "task", "rho")))
    write_dataframe(csv_path, summary)
    extra = [
        c
        for c in (
            "rho_achieved",
            "params_total",
            "mac_ratio",
            "latency_ratio_bs1",
            "latency_ratio_bs32",
        )
        if c in summary.columns
    ]
    md, tex = [], []
    rhos = sorted({r for r in summary["rho"] if r < 1.0}, reverse=True) or [1.0]
    for rho in rhos:
        part = summary[(summary["rho"] == rho) | (summary["pipeline"] == REFERENCE)]
        table = comparison_table(part, rows, tasks, extra_columns=extra)
        md.append(f"## rho = {rho:g}\n\n" + to_markdown(table))
        tex.append(to_latex(table, caption=f"Dev scores at retained fraction $\\rho = {rho:g}$."))
    notes = [
        f"{name} {_distinct(summary[name]).replace('/', ', ')}"
        for name in PROVENANCE
        if name in summary.columns and _distinct(summary[name])
    ]
    if notes:
        md.append("Evaluated with " + "; ".join(notes) + ".\n")
    if "constant_score" in summary:
        md.append(COLLAPSE_NOTE + "\n")
    write_text(md_path, "\n".join(md))
    write_text(tex_path, "\n".join(tex))
    return summary


def ablation_table(flat: pd.DataFrame, rows: Sequence[str], tasks: Sequence[str], digits: int = 1):
    """Score before recovery (``init_score``, the factorized model) and after
    (``score``) per variant, task and rho: a tidy summary (means, sample stds, seeds)
    and a wide table with ``mean ± std`` cells, rows in ``rows`` order, largest rho
    first."""
    group = flat.groupby(["pipeline", "task", "rho"], sort=False)
    summary = group[["init_score", "score"]].mean()
    stds = group[["init_score", "score"]].std()
    summary["init_score_std"] = stds["init_score"]
    summary["score_std"] = stds["score"]
    summary["seeds"] = group["score"].count()
    marks = [c for c in ("init_collapsed", "collapsed", "constant_score") if c in flat]
    if marks:
        summary = summary.join(group[marks].mean())
    summary = summary.reset_index()
    wide_rows = []
    for (pipeline, rho), part in summary.groupby(["pipeline", "rho"], sort=False):
        row = {"variant": pipeline, "rho": rho}
        for task in tasks:
            cell = part[part["task"] == task]
            if len(cell):
                c = cell.iloc[0]
                n = int(c["seeds"])
                init = _cell(c["init_score"], c["init_score_std"], n, digits)
                final = _cell(c["score"], c["score_std"], n, digits)
                row[f"{task} init"] = flag(init, bool(c.get("init_collapsed", 0) > 0))
                row[f"{task} final"] = flag(final, bool(c.get("collapsed", 0) > 0))
        wide_rows.append(row)
    wide = pd.DataFrame(wide_rows)
    order = {name: i for i, name in enumerate(rows)}
    wide = wide.sort_values(
        ["rho", "variant"], key=lambda s: s.map(order) if s.name == "variant" else -s
    )
    wide = wide.reset_index(drop=True)
    if "constant_score" in summary:
        constant = {"variant": CONSTANT, "rho": float("nan")}
        for task, value in constant_row(summary, tasks, digits).items():
            if task != "method":
                constant[f"{task} init"] = constant[f"{task} final"] = value
        wide = pd.concat([pd.DataFrame([constant]), wide], ignore_index=True)
    return summary, wide


def write_ablation_table(records, rows, tasks, csv_path, md_path, tex_path) -> pd.DataFrame:
    """Score before recovery (the factorized model, "init") and after, per variant."""
    from lpaf.io import write_dataframe, write_text

    flat = pd.DataFrame(read_records(records))
    if flat.empty:
        write_dataframe(csv_path, flat)
        write_text(md_path, "(no ablations configured: study.ablations is empty)\n")
        write_text(tex_path, "% no ablations configured\n")
        return flat
    summary, wide = ablation_table(flat, rows, table_columns(tasks))
    write_dataframe(csv_path, summary)
    note = "\n" + COLLAPSE_NOTE + "\n" if "constant_score" in summary else ""
    write_text(md_path, to_markdown(wide) + note)
    write_text(tex_path, to_latex(wide, caption="Ablations: score before and after recovery."))
    return summary


def score_vs_rho(records, rows, png_path, pdf_path=None) -> None:
    """Score against rho, one line per method, one panel per task; the fine-tuned
    model as a dashed and the constant predictor as a dotted horizontal line."""

    summary = summarize(read_records(records), by=("pipeline", "task", "rho"))
    tasks = list(dict.fromkeys(summary["task"]))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.4), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        part = summary[summary["task"] == task]
        for name in rows:
            line = part[part["pipeline"] == name].sort_values("rho")
            if line.empty:
                continue
            if name == REFERENCE:
                ax.axhline(line["score_mean"].iloc[0], ls="--", color="k", lw=1, label=name)
                continue
            ax.errorbar(
                line["rho"],
                line["score_mean"],
                yerr=line["score_std"].fillna(0),
                marker="o",
                capsize=2,
                label=name,
            )
        if "constant_score" in part and part["constant_score"].notna().any():
            constant = part["constant_score"].dropna().iloc[0]
            ax.axhline(constant, ls=":", color="grey", lw=1, label=CONSTANT)
        ax.set_title(task)
        ax.set_xlabel("retained fraction ρ of target parameters")
        ax.set_ylabel(f"dev {part['metric'].iloc[0] if 'metric' in part else 'score'} (%)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, png_path, pdf_path)


CURVES = (
    ("eval_main", "dev score (%)", 100.0),
    ("eval_dev_loss", "dev loss", 1.0),
    ("eval_kl_from_reference", "KL(teacher || model), nats", 1.0),
)


def recovery_curves(records, png_path, pdf_path=None) -> None:
    """The in-training evaluations of every recovery run (``eval_*`` columns of its
    ``train_log.csv``): score, loss and KL to the teacher against step, one row of
    panels per task and rho, one line per pipeline (mean over seeds); the score panel
    has the constant predictor's score as a dotted line when the run records it."""
    curves = []
    for record in records:
        log = pd.read_csv(record["path"])
        log = log.dropna(subset=["eval_main"]) if "eval_main" in log else log.iloc[0:0]
        curves.append((record, log))
    panels = sorted({(r["task"], r["rho"]) for r, _ in curves}, key=lambda k: (k[0], -k[1]))
    panels = panels or [("", 0.0)]
    fig, axes = plt.subplots(
        len(panels), len(CURVES), figsize=(4.2 * len(CURVES), 3.0 * len(panels)), squeeze=False
    )
    for (task, rho), row in zip(panels, axes, strict=True):
        runs = [(r, log) for r, log in curves if (r["task"], r["rho"]) == (task, rho)]
        for (column, name, scale), ax in zip(CURVES, row, strict=True):
            for pipeline in dict.fromkeys(r["pipeline"] for r, _ in runs):
                logs = [log for r, log in runs if r["pipeline"] == pipeline and column in log]
                if not logs:
                    continue
                mean = pd.concat(logs).groupby("step")[column].mean()
                ax.plot(mean.index, scale * mean.to_numpy(), marker=".", label=pipeline)
            if column == "eval_main":
                constant = _constant_of(runs)
                if constant is not None:
                    ax.axhline(100 * constant, ls=":", color="grey", lw=1, label=CONSTANT)
            ax.set_title(f"{task} ρ {rho:g}: {name}", fontsize=9)
            ax.set_xlabel("recovery step")
            if ax.has_data():
                ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, png_path, pdf_path)


def _constant_of(runs) -> float | None:
    """The constant predictor's main score on the split the curves evaluate (the
    held-out rows when the run has them, else the first dev split), from the run's
    ``metrics.json`` beside its log."""
    from pathlib import Path

    from lpaf.io import read_json

    for record, _ in runs:
        path = Path(record["path"]).with_name("metrics.json")
        if path.exists():
            constant = read_json(path).get("constant") or {}
            split = "heldout" if "heldout" in constant else next(iter(constant), None)
            if split:
                return constant[split]["main"]
    return None
