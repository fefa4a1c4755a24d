"""Figures built from result files on disk."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from lpaf.io import atomic_path  # noqa: E402
from lpaf.tables import _run_keys  # noqa: E402


def save_figure(fig, png_path: str | Path, pdf_path: str | Path | None = None) -> None:
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=150, bbox_inches="tight")
    if pdf_path is not None:
        with atomic_path(pdf_path) as tmp:
            fig.savefig(tmp, format="pdf", bbox_inches="tight")
    plt.close(fig)


def finetune_curves(log_paths: Iterable[str], png_path, pdf_path=None, smooth: int = 10) -> None:
    """Training loss (running mean over ``smooth`` steps) against step, one panel per
    task, one line per seed."""
    runs = [(_run_keys(p), pd.read_csv(p)) for p in log_paths]
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


# ================================================ stages 2-3: prune, rank analysis (begin)

import re  # noqa: E402

FINETUNED = "fine-tuned"


def _per_seed(table: pd.DataFrame) -> pd.DataFrame:
    return table[~table["seed"].astype(str).isin(["mean", "std"])]


def rank_vs_retained(table: pd.DataFrame, png_path, pdf_path=None) -> None:
    """The paper's preliminary figure from :func:`lpaf.tables.prune_table`'s rows: per
    task (column), dev score on top and average rank of the target matrices below
    (exact rank solid, 95 %-energy rank dotted), against the % of target weights
    retained; one curve per pruning method (mean over seeds, bars = std), dashed
    horizontal lines for the fine-tuned model."""
    runs = _per_seed(table)
    tasks = list(dict.fromkeys(runs["task"]))
    methods = [m for m in dict.fromkeys(runs["method"]) if m != FINETUNED]
    fig, axes = plt.subplots(
        2, len(tasks), figsize=(4.2 * len(tasks), 6.2), squeeze=False, sharex="col"
    )
    colours = {m: f"C{i}" for i, m in enumerate(methods)}
    for col, task in enumerate(tasks):
        top, bottom = axes[0, col], axes[1, col]
        rows = runs[runs["task"] == task]
        reference = rows[rows["method"] == FINETUNED]
        if not reference.empty:
            top.axhline(reference["score"].mean(), color="k", ls="--", lw=1, label=FINETUNED)
            bottom.axhline(
                reference["avg_rank"].mean(), color="k", ls="--", lw=1, label=f"{FINETUNED} rank"
            )
            bottom.axhline(
                reference["avg_energy_rank_95"].mean(),
                color="0.5",
                ls="--",
                lw=1,
                label=f"{FINETUNED} 95% energy",
            )
        for method in methods:
            group = rows[rows["method"] == method]
            stats = group.groupby("density", sort=False).agg(
                x=("retained_pct", "mean"),
                score=("score", "mean"),
                score_std=("score", "std"),
                rank=("avg_rank", "mean"),
                rank_std=("avg_rank", "std"),
                energy=("avg_energy_rank_95", "mean"),
            )
            stats = stats.sort_values("x")
            colour = colours[method]
            top.errorbar(
                stats["x"],
                stats["score"],
                yerr=stats["score_std"].fillna(0.0),
                marker="o",
                color=colour,
                capsize=2,
                label=method,
            )
            bottom.errorbar(
                stats["x"],
                stats["rank"],
                yerr=stats["rank_std"].fillna(0.0),
                marker="o",
                color=colour,
                capsize=2,
                label=f"{method} rank",
            )
            bottom.plot(
                stats["x"],
                stats["energy"],
                marker="s",
                ls=":",
                color=colour,
                label=f"{method} 95% energy",
            )
        metric = rows["metric"].iloc[0] if not rows.empty else "score"
        top.set_title(task)
        top.set_ylabel(f"dev {metric} (%)")
        bottom.set_ylabel("average rank of target matrices")
        bottom.set_xlabel("% of target parameters retained")
        top.legend(fontsize=7)
        bottom.legend(fontsize=6)
        bottom.set_ylim(bottom=0)
    fig.tight_layout()
    save_figure(fig, png_path, pdf_path)


_LAYER = re.compile(r"(?:^|\.)layers?\.(\d+)\.")


def _layer_of(name: str) -> int | None:
    match = _LAYER.search(name)
    return int(match.group(1)) if match else None


def _within_layer(name: str) -> str:
    match = _LAYER.search(name)
    return name[match.end() :] if match else name


def spectra(spectra_paths: Iterable[str], png_path, pdf_path=None, layer: int | None = None):
    """Normalised singular values (``sigma_i / sigma_1`` against ``i / min(m, n)``, log
    scale) of the target matrices of one encoder layer (default: the middle one), one
    row per task, one panel per matrix, one curve per model (fine-tuned and each
    pruning method), from the ``singular_values.safetensors`` of each run."""
    import numpy as np

    from lpaf.tables import stage_keys

    runs = [(stage_keys(path), load_spectra(path)) for path in spectra_paths]
    if not runs:
        raise ValueError("no spectra to plot")
    names = list(runs[0][1])
    layers = sorted({n for n in map(_layer_of, names) if n is not None})
    if not layers:
        raise ValueError(f"no layer index in target names such as {names[:2]}")
    chosen = layers[len(layers) // 2] if layer is None else int(layer)
    if chosen not in layers:
        raise ValueError(f"rank_analysis.spectra_layer {chosen} not among layers {layers}")
    matrices = [n for n in names if _layer_of(n) == chosen]
    tasks = list(dict.fromkeys(k["task"] for k, _ in runs))
    fig, axes = plt.subplots(
        len(tasks),
        len(matrices),
        figsize=(2.8 * len(matrices), 2.6 * len(tasks)),
        squeeze=False,
        sharey=True,
    )
    labels = list(dict.fromkeys(_spectrum_label(k) for k, _ in runs))
    colours = {label: ("k" if label == FINETUNED else f"C{i}") for i, label in enumerate(labels)}
    for row, task in enumerate(tasks):
        for col, name in enumerate(matrices):
            ax = axes[row, col]
            for keys, values in runs:
                if keys["task"] != task:
                    continue
                sigma = np.asarray(values[name], dtype=np.float64)
                if sigma.size == 0 or sigma[0] == 0:
                    continue
                label = _spectrum_label(keys)
                ax.semilogy(
                    np.arange(1, sigma.size + 1) / sigma.size,
                    np.maximum(sigma / sigma[0], 1e-12),
                    color=colours[label],
                    ls="--" if label == FINETUNED else "-",
                    lw=1,
                    label=label,
                )
            ax.set_title(f"{task}: {_within_layer(name)}", fontsize=8)
            ax.set_ylim(1e-4, 1.5)
            if row == len(tasks) - 1:
                ax.set_xlabel("i / min(m, n)")
            if col == 0:
                ax.set_ylabel("sigma_i / sigma_1")
    axes[0, 0].legend(fontsize=6)
    fig.suptitle(f"singular values of layer {chosen}", fontsize=9)
    fig.tight_layout()
    save_figure(fig, png_path, pdf_path)


def load_spectra(path) -> dict:
    """``{target name: singular values}`` of a ``singular_values.safetensors`` file, in
    the model's module order (kept in the file's metadata; safetensors sorts keys)."""
    import json

    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as fh:
        order = json.loads((fh.metadata() or {}).get("order", "[]")) or sorted(fh.keys())
        return {name: fh.get_tensor(name) for name in order}


def _spectrum_label(keys: dict[str, str]) -> str:
    if keys["method"] == FINETUNED:
        return FINETUNED
    return f"{keys['method']} d={keys['density']}"


# ================================================== stages 2-3: prune, rank analysis (end)


def score_vs_rho(records, rows, png_path, pdf_path=None) -> None:
    """Score against rho, one line per method, one panel per task; the fine-tuned
    model as a dashed horizontal line."""
    from lpaf.paper_tables import REFERENCE, read_records, summarize

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
        ax.set_title(task)
        ax.set_xlabel("retained fraction ρ of target parameters")
        ax.set_ylabel(f"dev {part['metric'].iloc[0] if 'metric' in part else 'score'} (%)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, png_path, pdf_path)
