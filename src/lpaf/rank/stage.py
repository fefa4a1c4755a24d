"""Stage 3 (rule ``rank_analysis``): rank statistics of every target matrix of a
saved model (:func:`lpaf.rank.model_rank_table`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

from lpaf.io import save_tensors, write_dataframe
from lpaf.modeling import load_model
from lpaf.rank.analysis import model_rank_table
from lpaf.train import configure_threads


@dataclass(frozen=True)
class Outputs:
    stats: str
    spectra: str


def run(
    config: dict[str, Any], model_dir: str, out: Outputs, threads: int | None = None
) -> pd.DataFrame:
    """``out.spectra`` holds the singular values (float64, keyed by target name),
    ``out.stats`` (written last) one row per target with ``name``, ``shape``,
    non-zeros, exact rank, 90/95/99 % energy ranks and the all-zero rows and columns."""
    configure_threads(threads or config.get("threads"))
    model = load_model(model_dir)
    table, spectra = model_rank_table(model, config["target_modules"])
    shapes = [f"{r}x{c}" for r, c in zip(table["rows"], table["cols"], strict=True)]
    table.insert(1, "shape", shapes)
    # safetensors sorts its keys; the metadata keeps the model's module order
    save_tensors(
        out.spectra,
        {n: torch.from_numpy(s.copy()) for n, s in spectra.items()},
        {"order": json.dumps(list(spectra))},
    )
    write_dataframe(out.stats, table)
    return table
