"""Stage 3 of LPAF: rank statistics of the target matrices.

For each weight matrix: its exact (numerical) rank, the ranks needed to keep 90/95/99%
of its spectral energy, its non-zeros and its all-zero rows and columns. A random
unstructured sparsity pattern leaves a matrix full rank; a rank drop needs whole rows
or columns to empty out (or a genuinely low-rank pattern), which the zero-row/column
counts make visible.

Numerics: singular values are computed in float64 from the matrix as stored. The
exact rank counts singular values above ``tol = sigma_max * max(m, n) * eps``, where
``eps`` is the machine epsilon of the matrix's *own* dtype (float32 for a float32
weight). This is the default tolerance of ``numpy.linalg.matrix_rank`` and of
``torch.linalg.matrix_rank`` applied to the matrix in its own dtype: differences at
the level of the stored precision do not count as rank. The result equals
``torch.linalg.matrix_rank(W.double(), atol=tol, rtol=0)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from lpaf.targets import DEFAULT_TARGET_PATTERNS, find_targets

ENERGY_FRACTIONS: tuple[float, ...] = (0.90, 0.95, 0.99)


def energy_key(fraction: float) -> str:
    """Column name of the energy rank for ``fraction``: 0.9 -> ``energy_rank_90``."""
    return f"energy_rank_{fraction * 100:g}"


def energy_rank(singular_values: np.ndarray, fraction: float) -> int:
    """Smallest ``r`` whose leading ``r`` singular values keep at least ``fraction`` of
    the spectral energy ``sum(sigma^2)`` (0 for an all-zero matrix)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"energy fraction must be in (0, 1], got {fraction}")
    energy = np.asarray(singular_values, dtype=np.float64) ** 2
    total = energy.sum()
    if total == 0.0:
        return 0
    cumulative = np.cumsum(energy)
    r = int(np.searchsorted(cumulative, fraction * total, side="left")) + 1
    return min(r, energy.size)


def _as_tensor(weight: torch.Tensor | np.ndarray) -> torch.Tensor:
    if isinstance(weight, np.ndarray):
        return torch.from_numpy(weight)
    return weight.detach()


def matrix_rank_stats(
    weight: torch.Tensor | np.ndarray, energy_fractions: Sequence[float] = ENERGY_FRACTIONS
) -> dict[str, Any]:
    """Rank statistics of one 2-D matrix (see the module docstring for the tolerance).

    Returns ``rows``, ``cols``, ``numel``, ``nonzeros``, ``density``, ``max_rank``
    (``min(rows, cols)``), ``rank``, ``rank_tolerance``, ``energy_rank_90`` /
    ``_95`` / ``_99`` (one per fraction), ``zero_rows``, ``zero_cols`` and
    ``singular_values`` (float64 numpy array, descending).
    """
    matrix = _as_tensor(weight)
    if matrix.ndim != 2:
        raise ValueError(f"expected a 2-D matrix, got shape {tuple(matrix.shape)}")
    rows, cols = matrix.shape
    source_eps = (
        torch.finfo(matrix.dtype).eps
        if matrix.is_floating_point()
        else torch.finfo(torch.float64).eps
    )
    matrix64 = matrix.to(device="cpu", dtype=torch.float64)
    singular_values = torch.linalg.svdvals(matrix64).numpy()
    sigma_max = float(singular_values[0]) if singular_values.size else 0.0
    tolerance = sigma_max * max(rows, cols) * source_eps
    nonzero = matrix64 != 0
    stats: dict[str, Any] = {
        "rows": rows,
        "cols": cols,
        "numel": rows * cols,
        "nonzeros": int(nonzero.sum()),
        "density": float(nonzero.sum()) / max(rows * cols, 1),
        "max_rank": min(rows, cols),
        "rank": int((singular_values > tolerance).sum()),
        "rank_tolerance": tolerance,
    }
    for fraction in energy_fractions:
        stats[energy_key(fraction)] = energy_rank(singular_values, fraction)
    stats["zero_rows"] = int((~nonzero.any(dim=1)).sum())
    stats["zero_cols"] = int((~nonzero.any(dim=0)).sum())
    stats["singular_values"] = singular_values
    return stats


def _module_weight(module: nn.Module) -> torch.Tensor:
    """The weight a module computes with: ``effective_weight()`` where it has one (a
    masked or factorized module), its ``weight`` otherwise."""
    if hasattr(module, "effective_weight"):
        return module.effective_weight()
    return module.weight


@torch.no_grad()
def model_rank_table(
    model: nn.Module,
    target_patterns: Sequence[str] = DEFAULT_TARGET_PATTERNS,
    energy_fractions: Sequence[float] = ENERGY_FRACTIONS,
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """One row of :func:`matrix_rank_stats` per target matrix (column ``name`` first,
    in module order) and ``{name: singular values}``."""
    rows: list[dict[str, Any]] = []
    spectra: dict[str, np.ndarray] = {}
    for name, module in find_targets(model, target_patterns).items():
        stats = matrix_rank_stats(_module_weight(module), energy_fractions)
        spectra[name] = stats.pop("singular_values")
        rows.append({"name": name, **stats})
    return pd.DataFrame(rows), spectra
