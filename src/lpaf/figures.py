"""What every stage's figures share: the non-interactive backend and an atomic
PNG (+ PDF) writer. Each stage's figures live in its package's ``results`` module."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lpaf.io import atomic_path  # noqa: E402


def save_figure(fig, png_path: str | Path, pdf_path: str | Path | None = None) -> None:
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=150, bbox_inches="tight")
    if pdf_path is not None:
        with atomic_path(pdf_path) as tmp:
            fig.savefig(tmp, format="pdf", bbox_inches="tight")
    plt.close(fig)
