"""Stage 4: factorize target weights into two low-rank factors.

Every solver takes one ``out x in`` weight ``W`` and returns a :class:`Factorization`
with ``left`` (``out x r``, the ``up`` weight of :class:`~lpaf.factorize.layer.LowRankLinear`)
and ``right`` (``r x in``, the ``down`` weight), such that ``W ~ left @ right``:

* :func:`svd`: truncated SVD (Eckart-Young optimal in the Frobenius norm).
* :func:`fwsvd`: Fisher-weighted SVD (Hsu et al., ICLR 2022): SVD of
  ``diag(sqrt d) W`` with ``d_i`` the summed squared gradients of row ``i``, scaling
  undone on the left factor.
* :func:`sparsity_aware_rows`: the same closed form with first-order importance summed
  per row in place of the Fisher information.
* :func:`sparsity_aware`: element-wise weighted low-rank approximation
  ``min ||sqrt(w) o (W - L R)||_F`` with weights from first-order importance and pruned
  entries weighted by ``epsilon`` (see :func:`sparsity_weights`), solved from the
  plain SVD start by alternating weighted least squares (default) or EM, with an
  optional ridge term ``ridge * mean(w) * ||LR||_F^2``.

The singular values are split evenly between the factors (``left = U sqrt(S)``,
``right = sqrt(S) V^T``) so both start at the same scale for fine-tuning.

Computation runs in float64 (``COMPUTE_DTYPE``) on the weight's device (or the one
asked for); factors come back in the weight's dtype.

Rank rules (:func:`uniform_ranks`, :func:`global_energy_ranks`) turn a budget ``rho``
into a rank per matrix, and :func:`factorize_model` does it all for a model.
"""

from __future__ import annotations

import contextlib
import heapq
import math
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lpaf.accounting import count_parameters, effective_weight, uniform_rank
from lpaf.factorize.layer import replace_with_lowrank
from lpaf.methods import FACTORIZE_METHODS, RANK_RULES
from lpaf.targets import DEFAULT_TARGET_PATTERNS, find_targets

COMPUTE_DTYPE = torch.float64
DEFAULT_EPSILON = 1e-3  # weight of a pruned entry relative to the mean kept entry
DEFAULT_N_ITER = 10
DEFAULT_SOLVER = "als"
METHODS = tuple(FACTORIZE_METHODS)
# elements of one block of Gram upper triangles / pair products in the ALS solver
_ALS_CHUNK_ELEMENTS = 1 << 23


@dataclass
class Factorization:
    """``left @ right`` approximates the weight.

    ``error`` is ``||W - LR||_F / ||W||_F``; ``weighted_error`` the same in the
    method's weighted norm (``sqrt(sum w (W-LR)^2 / sum w W^2)``; equal to ``error`` for
    plain SVD); ``kept_error`` the relative error on the unpruned (non-zero or
    mask-kept) entries only, comparable across methods. ``objective`` is the weighted
    objective ``sum w (W-LR)^2`` at the start and after each iteration (iterative
    solvers only).
    """

    left: torch.Tensor
    right: torch.Tensor
    error: float
    weighted_error: float
    kept_error: float
    objective: list[float] = field(default_factory=list)

    @property
    def rank(self) -> int:
        return self.left.shape[1]


# ----------------------------------------------------------------------------- helpers


def _check_rank(weight: torch.Tensor, rank: int) -> None:
    if weight.ndim != 2:
        raise ValueError(f"weight must be 2-D, got shape {tuple(weight.shape)}")
    if not 1 <= rank <= min(weight.shape):
        raise ValueError(f"rank must be in [1, {min(weight.shape)}], got {rank}")


def _prepare(weight: torch.Tensor, device: torch.device | str | None) -> torch.Tensor:
    return weight.detach().to(device=device or weight.device, dtype=COMPUTE_DTYPE)


def _split_svd(
    u: torch.Tensor, s: torch.Tensor, vh: torch.Tensor, rank: int
) -> tuple[torch.Tensor, torch.Tensor]:
    root = s[:rank].sqrt()
    return u[:, :rank] * root, root[:, None] * vh[:rank]


def _balanced(left: torch.Tensor, right: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Re-split the product ``left @ right`` as ``U sqrt(S)``, ``sqrt(S) V^T``."""
    q_right, t_right = torch.linalg.qr(right.T)  # right = t_right^T q_right^T
    u, s, vh = torch.linalg.svd(left @ t_right.T, full_matrices=False)
    root = s.sqrt()
    return u * root, root[:, None] * (vh @ q_right.T)


def _kept_mask(weight: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is not None:
        return mask.to(device=weight.device).bool()
    return weight != 0


def _finish(
    weight: torch.Tensor,
    left: torch.Tensor,
    right: torch.Tensor,
    element_weights: torch.Tensor | None,
    kept: torch.Tensor,
    out_dtype: torch.dtype,
    objective: list[float] | None = None,
) -> Factorization:
    residual = weight - left @ right
    squared = residual.square()
    weight_norm = weight.square().sum().clamp_min(1e-300)
    error = math.sqrt(float(squared.sum() / weight_norm))
    if element_weights is None:
        weighted_error = error
    else:
        weighted_norm = (element_weights * weight.square()).sum().clamp_min(1e-300)
        weighted_error = math.sqrt(float((element_weights * squared).sum() / weighted_norm))
    kept_norm = weight.square()[kept].sum().clamp_min(1e-300)
    kept_error = math.sqrt(float(squared[kept].sum() / kept_norm))
    return Factorization(
        left=left.to(out_dtype),
        right=right.to(out_dtype),
        error=error,
        weighted_error=weighted_error,
        kept_error=kept_error,
        objective=objective or [],
    )


# ----------------------------------------------------------------------------- solvers


def svd(
    weight: torch.Tensor,
    rank: int,
    mask: torch.Tensor | None = None,
    device: torch.device | str | None = None,
) -> Factorization:
    """Truncated SVD of ``weight`` (``torch.linalg.svd``, ``full_matrices=False``).
    ``mask`` (1 = kept) only defines ``kept_error``; default: the non-zeros."""
    _check_rank(weight, rank)
    w = _prepare(weight, device)
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    left, right = _split_svd(u, s, vh, rank)
    return _finish(w, left, right, None, _kept_mask(w, mask), weight.dtype)


def _row_scaled_svd(
    weight: torch.Tensor,
    row_importance: torch.Tensor,
    rank: int,
    mask: torch.Tensor | None,
    device: torch.device | str | None,
    floor: float,
) -> Factorization:
    _check_rank(weight, rank)
    w = _prepare(weight, device)
    d = row_importance.detach().to(device=w.device, dtype=COMPUTE_DTYPE).flatten()
    if d.shape[0] != w.shape[0]:
        raise ValueError(f"row importance has {d.shape[0]} entries, weight has {w.shape[0]} rows")
    d = d.clamp_min(0)
    mean = d.mean()
    d = torch.ones_like(d) if mean <= 0 else d.clamp_min(floor * mean)
    scale = d.sqrt()
    u, s, vh = torch.linalg.svd(scale[:, None] * w, full_matrices=False)
    left, right = _split_svd(u, s, vh, rank)
    left = left / scale[:, None]
    element_weights = d[:, None].expand_as(w)
    return _finish(w, left, right, element_weights, _kept_mask(w, mask), weight.dtype)


def fwsvd(
    weight: torch.Tensor,
    row_importance: torch.Tensor,
    rank: int,
    mask: torch.Tensor | None = None,
    device: torch.device | str | None = None,
    floor: float = 1e-6,
) -> Factorization:
    """Fisher-weighted SVD. ``row_importance[i]`` = summed squared gradients of row
    ``i`` (``out`` entries, see :func:`fisher_row_importance`). Rows below
    ``floor * mean(d)`` (e.g. all-zero rows) are raised to it so the scaling can be
    undone; all-zero importance falls back to plain SVD."""
    return _row_scaled_svd(weight, row_importance, rank, mask, device, floor)


def sparsity_aware_rows(weight, importance, rank: int, **options: Any) -> Factorization:
    """Closed-form row-weighted variant: like :func:`fwsvd` (the same ``options``:
    ``mask``, ``device``, ``floor``) with the row weights ``d_i = sum_j importance_ij``
    (first-order importance of stage 2, clamped at 0); ``importance`` may also be given
    already summed (``out`` entries)."""
    row_importance = importance.clamp_min(0)
    if row_importance.ndim == 2:
        row_importance = row_importance.sum(dim=1)
    return fwsvd(weight, row_importance, rank, **options)


def sparsity_weights(
    weight: torch.Tensor,
    importance: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    epsilon: float = DEFAULT_EPSILON,
) -> torch.Tensor:
    """Element-wise weights of :func:`sparsity_aware`.

    Kept entries (``mask == 1``; default ``weight != 0``) get their importance (clamped
    at 0; 1 when ``importance`` is None) divided by its mean over the kept entries, and
    at least ``epsilon``; pruned entries get ``epsilon``. So ``epsilon`` is the weight of
    a pruned entry relative to an average kept one, and the result does not depend on
    the scale of the importance.
    """
    kept = _kept_mask(weight, mask)
    if importance is None:
        scores = torch.ones_like(weight)
    else:
        if importance.shape != weight.shape:
            raise ValueError(
                f"importance shape {tuple(importance.shape)} != weight shape {tuple(weight.shape)}"
            )
        scores = importance.detach().to(device=weight.device, dtype=weight.dtype).clamp_min(0)
    if not kept.any():
        return torch.ones_like(weight)
    mean_kept = scores[kept].mean()
    if mean_kept <= 0:
        scores, mean_kept = torch.ones_like(weight), torch.ones((), dtype=weight.dtype)
    normalised = (scores / mean_kept).clamp_min(epsilon)
    return torch.where(kept, normalised, torch.full_like(weight, epsilon))


def _weighted_objective(
    weight: torch.Tensor,
    element_weights: torch.Tensor,
    left: torch.Tensor,
    right: torch.Tensor,
    penalty: float = 0.0,
) -> float:
    """``sum w o (W - LR)^2 + penalty ||LR||_F^2``."""
    product = left @ right
    value = (element_weights * (weight - product).square()).sum()
    if penalty:
        value = value + penalty * product.square().sum()
    return float(value)


@contextlib.contextmanager
def _single_thread_on_cpu(device: torch.device) -> Iterator[None]:
    """Run batched small (r x r) factorizations single-threaded on CPU: with several
    threads MKL's per-matrix parallelism makes them 10-30x slower (measured: 3072
    Cholesky factorizations of 153 x 153, 0.6 s on one thread, 8-19 s on two)."""
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _solve_rows(
    target: torch.Tensor,
    element_weights: torch.Tensor,
    basis: torch.Tensor,
    ridge: float = 0.0,
) -> torch.Tensor:
    """Row-wise weighted least squares: for every row ``i`` return ``x_i`` minimising
    ``sum_j w_ij (target_ij - x_i . basis_:j)^2 + ridge ||x_i||^2``, i.e. solving the
    normal equations ``(basis diag(w_i) basis^T + ridge I) x_i = basis (w_i o target_i)``.

    The upper triangles of all ``r x r`` Gram matrices come from one matrix product
    ``w @ P^T`` with ``P[(k, l), j] = basis_kj basis_lj`` (``k <= l``), in chunks that
    bound memory; the systems are solved by batched Cholesky (``torch.linalg.solve``'s
    batched LU is avoided: it fails inside MKL on the project's CPU torch build).
    """
    rows, cols = target.shape
    rank = basis.shape[0]
    upper_k, upper_l = torch.triu_indices(rank, rank, device=basis.device)
    num_pairs = upper_k.numel()
    rhs = (element_weights * target) @ basis.T  # rows x r
    solution = torch.empty_like(rhs)
    row_chunk = max(1, _ALS_CHUNK_ELEMENTS // num_pairs)
    col_chunk = max(1, _ALS_CHUNK_ELEMENTS // num_pairs)
    products = basis[upper_k] * basis[upper_l] if cols <= col_chunk else None
    for row_start in range(0, rows, row_chunk):
        row_stop = min(rows, row_start + row_chunk)
        gram_upper = torch.zeros(
            row_stop - row_start, num_pairs, dtype=basis.dtype, device=basis.device
        )
        for col_start in range(0, cols, col_chunk):
            col_stop = min(cols, col_start + col_chunk)
            if products is not None:
                block = products[:, col_start:col_stop]
            else:
                block = basis[upper_k, col_start:col_stop] * basis[upper_l, col_start:col_stop]
            gram_upper += element_weights[row_start:row_stop, col_start:col_stop] @ block.T
        gram = torch.empty(row_stop - row_start, rank, rank, dtype=basis.dtype, device=basis.device)
        gram[:, upper_k, upper_l] = gram_upper
        gram[:, upper_l, upper_k] = gram_upper
        if ridge:
            gram.diagonal(dim1=-2, dim2=-1).add_(ridge)
        with _single_thread_on_cpu(basis.device):
            factor, info = torch.linalg.cholesky_ex(gram)
            if bool((info != 0).any()):  # only with weights ~0 or a degenerate basis
                diagonal = gram.diagonal(dim1=-2, dim2=-1)
                jitter = 1e-12 * diagonal.mean(dim=-1).clamp_min(1e-300)
                diagonal += jitter[:, None]
                factor, _ = torch.linalg.cholesky_ex(gram)
            solution[row_start:row_stop] = torch.cholesky_solve(
                rhs[row_start:row_stop, :, None], factor
            )[..., 0]
    return solution


def weighted_lowrank(
    weight: torch.Tensor,
    element_weights: torch.Tensor,
    rank: int,
    n_iter: int = DEFAULT_N_ITER,
    solver: str = DEFAULT_SOLVER,
    tol: float = 0.0,
    ridge: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """``min_{L,R} sum w o (W - L R)^2 + lambda ||L R||_F^2`` from the truncated-SVD
    start, with ``lambda = ridge * mean(w)`` (so ``ridge`` does not depend on the scale
    of the weights; default 0: no penalty).

    ``solver="als"``: alternating weighted least squares; before each half-step the
    fixed factor is orthonormalised (QR, product unchanged) so the ``r x r`` normal
    matrices have eigenvalues in ``[min w, max w]`` and stay well conditioned. With an
    orthonormal fixed factor ``Q``, ``||x Q||_F = ||x||_F``, so the ridge is exactly
    ``lambda I`` added to every normal matrix and each half-step stays an exact
    minimisation. With ``w = 1`` the minimiser is the truncated SVD with singular
    values ``s / (1 + lambda)``.
    ``solver="em"``: Srebro & Jaakkola (2003): ``X = w' o W + (1 - w') o LR`` with
    ``w' = w / max w`` in ``[0, 1]``, then the truncated SVD of ``X``.

    Both decrease the objective monotonically in exact arithmetic; a step that would
    increase it through rounding is rejected and the iteration stops. Stops early when
    the relative decrease falls below ``tol`` (default 0: always ``n_iter`` steps).
    Returns ``(left, right, objective history)`` with ``n_iter + 1`` entries at most.
    """
    if solver not in ("als", "em"):
        raise ValueError(f"solver must be 'als' or 'em', got {solver!r}")
    if (element_weights < 0).any():
        raise ValueError("element weights must be non-negative")
    if ridge < 0:
        raise ValueError(f"ridge must be >= 0, got {ridge}")
    if ridge and solver != "als":
        raise ValueError("the ridge term is implemented for solver 'als' only")
    penalty = float(ridge * element_weights.mean()) if ridge else 0.0
    u, s, vh = torch.linalg.svd(weight, full_matrices=False)
    left, right = u[:, :rank] * s[:rank], vh[:rank]
    history = [_weighted_objective(weight, element_weights, left, right, penalty)]
    em_weights = element_weights / element_weights.max().clamp_min(1e-300)
    for _ in range(n_iter):
        if solver == "als":
            q, _ = torch.linalg.qr(right.T)
            new_left = _solve_rows(weight, element_weights, q.T, penalty)
            q, _ = torch.linalg.qr(new_left)
            new_right = _solve_rows(weight.T, element_weights.T, q.T, penalty).T
            new_left = q
        else:
            filled = em_weights * weight + (1 - em_weights) * (left @ right)
            u, s, vh = torch.linalg.svd(filled, full_matrices=False)
            new_left, new_right = u[:, :rank] * s[:rank], vh[:rank]
        value = _weighted_objective(weight, element_weights, new_left, new_right, penalty)
        if not value <= history[-1]:  # rounding, or NaN
            break
        left, right = new_left, new_right
        previous = history[-1]
        history.append(value)
        if previous - value <= tol * previous:
            break
    left, right = _balanced(left, right)
    return left, right, history


def sparsity_aware(
    weight: torch.Tensor,
    importance: torch.Tensor | None,
    rank: int,
    n_iter: int = DEFAULT_N_ITER,
    epsilon: float = DEFAULT_EPSILON,
    mask: torch.Tensor | None = None,
    solver: str = DEFAULT_SOLVER,
    device: torch.device | str | None = None,
    tol: float = 0.0,
    ridge: float = 0.0,
) -> Factorization:
    """Sparsity-aware SVD: weighted low-rank approximation of the pruned ``weight``
    with the weights of :func:`sparsity_weights` (element-wise first-order importance,
    pruned entries ``epsilon``), solved by :func:`weighted_lowrank` (``ridge``: its
    optional penalty on ``||LR||_F^2``, relative to the mean weight). The result's
    ``objective`` is the per-iteration objective (non-increasing)."""
    _check_rank(weight, rank)
    w = _prepare(weight, device)
    imp = None if importance is None else importance.detach().to(w.device, COMPUTE_DTYPE)
    msk = None if mask is None else mask.to(w.device)
    element_weights = sparsity_weights(w, imp, msk, epsilon)
    left, right, history = weighted_lowrank(
        w, element_weights, rank, n_iter, solver, tol, ridge=ridge
    )
    return _finish(w, left, right, element_weights, _kept_mask(w, msk), weight.dtype, history)


# ----------------------------------------------------------------------------- ranks


def uniform_ranks(shapes: Mapping[str, tuple[int, int]], rho: float) -> dict[str, int]:
    """``{name: floor(rho m n / (m + n))}`` (:func:`lpaf.accounting.uniform_rank`)."""
    return {name: uniform_rank(m, n, rho) for name, (m, n) in shapes.items()}


Spectrum = torch.Tensor | tuple[torch.Tensor, tuple[int, int]]


def _spectrum(value: Spectrum) -> tuple[torch.Tensor, int, int]:
    if isinstance(value, tuple):
        singular_values, (m, n) = value
    elif value.ndim == 2:
        m, n = value.shape
        singular_values = torch.linalg.svdvals(value.detach().to(COMPUTE_DTYPE))
    else:
        raise ValueError("give a 2-D weight or (singular values, (m, n))")
    singular_values = singular_values.detach().to("cpu", torch.float64).flatten()
    singular_values = torch.sort(singular_values, descending=True).values
    return singular_values[: min(m, n)], int(m), int(n)


def global_energy_ranks(weights: Mapping[str, Spectrum], rho: float) -> dict[str, int]:
    """Spend the budget ``rho * sum(m n)`` on singular values across all matrices.

    Every matrix starts at rank 1; then, greedily, the next singular value with the
    largest energy per parameter ``sigma_k^2 / (m + n)`` is added if its ``m + n``
    parameters fit, until no matrix's next rank fits (or all are full rank). So the
    achieved rho is <= ``rho`` and no single further rank would fit. ``weights[name]``
    is a 2-D weight or ``(singular values, (m, n))``. Raises ``ValueError`` when rank 1
    everywhere already exceeds the budget.
    """
    spectra = {name: _spectrum(value) for name, value in weights.items()}
    dense = sum(m * n for _, m, n in spectra.values())
    budget = rho * dense
    ranks = {name: 1 for name in spectra}
    spent = sum(m + n for _, m, n in spectra.values())
    if spent > budget:
        raise ValueError(
            f"rho={rho} is below the cost of rank 1 in every matrix ({spent / dense:.4g})"
        )
    heap: list[tuple[float, int, str]] = []
    order = {name: i for i, name in enumerate(spectra)}
    for name, (sv, m, n) in spectra.items():
        if len(sv) > 1:
            heap.append((-(float(sv[1]) ** 2) / (m + n), order[name], name))
    heapq.heapify(heap)
    while heap:
        _, index, name = heapq.heappop(heap)
        sv, m, n = spectra[name]
        if spent + m + n > budget:
            continue  # this matrix's later ranks cost the same and fit even less
        spent += m + n
        ranks[name] += 1
        if ranks[name] < len(sv):
            heapq.heappush(heap, (-(float(sv[ranks[name]]) ** 2) / (m + n), index, name))
    return ranks


# ----------------------------------------------------------------------------- model


def factorize_weight(
    method: str,
    weight: torch.Tensor,
    rank: int,
    importance: torch.Tensor | None = None,
    fisher: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    n_iter: int = DEFAULT_N_ITER,
    epsilon: float = DEFAULT_EPSILON,
    solver: str = DEFAULT_SOLVER,
    device: torch.device | str | None = None,
    ridge: float = 0.0,
) -> Factorization:
    """Dispatch on ``method`` (one of :data:`METHODS`)."""
    if method == "svd":
        return svd(weight, rank, mask=mask, device=device)
    if method == "fwsvd":
        if fisher is None:
            raise ValueError("fwsvd needs Fisher row importance")
        return fwsvd(weight, fisher, rank, mask=mask, device=device)
    if method == "sparsity_aware":
        return sparsity_aware(
            weight,
            importance,
            rank,
            n_iter,
            epsilon,
            mask=mask,
            solver=solver,
            device=device,
            ridge=ridge,
        )
    if method == "sparsity_aware_rows":
        if importance is None:
            raise ValueError("sparsity_aware_rows needs first-order importance")
        return sparsity_aware_rows(weight, importance, rank, mask=mask, device=device)
    raise ValueError(f"unknown factorization method {method!r}; expected one of {METHODS}")


def _module_mask(module: nn.Module) -> torch.Tensor | None:
    mask = getattr(module, "mask", None)
    return mask.detach() if isinstance(mask, torch.Tensor) else None


def factorize_model(
    model: nn.Module,
    method: str = "svd",
    rho: float = 0.25,
    rank_rule: str = "uniform",
    importance: Mapping[str, torch.Tensor] | None = None,
    fisher: Mapping[str, torch.Tensor] | None = None,
    masks: Mapping[str, torch.Tensor] | None = None,
    target_patterns: Sequence[str] = DEFAULT_TARGET_PATTERNS,
    n_iter: int = DEFAULT_N_ITER,
    epsilon: float = DEFAULT_EPSILON,
    solver: str = DEFAULT_SOLVER,
    ranks: Mapping[str, int] | None = None,
    device: torch.device | str | None = None,
    ridge: float = 0.0,
) -> tuple[nn.Module, dict[str, Any]]:
    """Replace every target of ``model`` (in place) by a :class:`LowRankLinear`.

    Each target's effective weight (:func:`lpaf.accounting.effective_weight`; masks
    applied) is factorized by ``method`` at the rank given by ``ranks`` or by
    ``rank_rule`` at budget ``rho`` (``global_energy`` ranks the plain singular values
    of the effective weights). ``importance[name]`` (element-wise, ``out x in``) feeds
    the sparsity-aware methods, ``fisher[name]`` (``out``) feeds fwsvd, ``masks[name]``
    (1 = kept; default: a masked module's own ``mask``, else "non-zero = kept") says
    which entries are pruned. Work runs on ``device`` (default: each
    weight's device).

    Returns ``(model, report)``; ``report`` holds the settings, ``rho_achieved``, the
    parameter counts of the result and per module its rank, shape, ``error``,
    ``weighted_error``, ``kept_error``, objective history and seconds.
    """
    if rank_rule not in RANK_RULES and ranks is None:
        raise ValueError(f"unknown rank rule {rank_rule!r}; expected one of {RANK_RULES}")
    if method not in METHODS:
        raise ValueError(f"unknown factorization method {method!r}; expected one of {METHODS}")
    targets = find_targets(model, target_patterns)
    with torch.no_grad():
        weights = {name: effective_weight(module).detach() for name, module in targets.items()}
    if ranks is not None:
        chosen = {name: int(ranks[name]) for name in targets}
    elif rank_rule == "uniform":
        chosen = uniform_ranks({n: tuple(w.shape) for n, w in weights.items()}, rho)
    else:
        chosen = global_energy_ranks(
            {n: w.to(device) if device else w for n, w in weights.items()}, rho
        )

    modules: dict[str, dict[str, Any]] = {}
    total_start = time.perf_counter()
    for name, weight in weights.items():
        start = time.perf_counter()
        result = factorize_weight(
            method,
            weight,
            chosen[name],
            importance=None if importance is None else importance.get(name),
            fisher=None if fisher is None else fisher.get(name),
            mask=_module_mask(targets[name]) if masks is None else masks.get(name),
            n_iter=n_iter,
            epsilon=epsilon,
            solver=solver,
            device=device,
            ridge=ridge,
        )
        left = result.left.to(weight.device)
        right = result.right.to(weight.device)
        replace_with_lowrank(model, {name: (left, right)})
        modules[name] = {
            "rank": result.rank,
            "shape": list(weight.shape),
            "error": result.error,
            "weighted_error": result.weighted_error,
            "kept_error": result.kept_error,
            "objective": result.objective,
            "seconds": time.perf_counter() - start,
        }
    parameters = count_parameters(model, target_patterns)
    parameters.pop("per_target")
    report = {
        "method": method,
        "rank_rule": rank_rule if ranks is None else "given",
        "rho_target": rho,
        "rho_achieved": parameters["retained_fraction"],
        "solver": solver if method == "sparsity_aware" else None,
        "n_iter": n_iter if method == "sparsity_aware" else None,
        "epsilon": epsilon if method == "sparsity_aware" else None,
        "ridge": ridge if method == "sparsity_aware" else None,
        "parameters": parameters,
        "seconds": time.perf_counter() - total_start,
        "modules": modules,
    }
    return model, report
