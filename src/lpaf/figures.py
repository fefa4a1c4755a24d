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
