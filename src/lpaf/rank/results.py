"""Stage 3's summaries and figures (rank against retained weights, singular-value
spectra), built from result files on disk."""

from __future__ import annotations

import re
from collections.abc import Iterable

import matplotlib.pyplot as plt
import pandas as pd

from lpaf.figures import save_figure
from lpaf.tables import (
    stage_keys,
)


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


FINETUNED = "fine-tuned"


def per_seed(table: pd.DataFrame) -> pd.DataFrame:
    """The per-seed rows of a table with mean/std summary rows."""
    return table[~table["seed"].astype(str).isin(["mean", "std"])]


def rank_vs_retained(table: pd.DataFrame, png_path, pdf_path=None) -> None:
    """The paper's preliminary figure from :func:`lpaf.tables.prune_table`'s rows: per
    task (column), dev score on top and average rank of the target matrices below
    (exact rank solid, 95 %-energy rank dotted), against the % of target weights
    retained; one curve per pruning method (mean over seeds, bars = std), dashed
    horizontal lines for the fine-tuned model."""
    runs = per_seed(table)
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
            for axis, column, name in ((top, "score", method), (bottom, "rank", f"{method} rank")):
                axis.errorbar(
                    stats["x"],
                    stats[column],
                    yerr=stats[f"{column}_std"].fillna(0.0),
                    marker="o",
                    color=colour,
                    capsize=2,
                    label=name,
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
