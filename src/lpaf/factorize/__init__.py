"""Stage 4 of METHOD.md: factorize target weights into two low-rank factors.

``solvers`` (svd, fwsvd, sparsity-aware SVD, rank rules, :func:`factorize_model`),
``importance`` (the gradient statistics), ``layer`` (:class:`LowRankLinear`),
``stage`` (the rules' jobs, :class:`FactorizeConfig`), ``results`` (table, figure).
"""

from lpaf.lazy import exports

# The public API, imported on first use (lpaf.lazy).
_EXPORTS = {
    "first_order_importance": "importance",
    "fisher_row_importance": "importance",
    "gradient_importance": "importance",
    "Factors": "layer",
    "LowRankLinear": "layer",
    "lowrank_modules": "layer",
    "replace_with_lowrank": "layer",
    "swap_to_lowrank": "layer",
    "COMPUTE_DTYPE": "solvers",
    "DEFAULT_EPSILON": "solvers",
    "DEFAULT_N_ITER": "solvers",
    "DEFAULT_SOLVER": "solvers",
    "METHODS": "solvers",
    "Factorization": "solvers",
    "Spectrum": "solvers",
    "factorize_model": "solvers",
    "factorize_weight": "solvers",
    "fwsvd": "solvers",
    "global_energy_ranks": "solvers",
    "sparsity_aware": "solvers",
    "sparsity_aware_rows": "solvers",
    "sparsity_weights": "solvers",
    "svd": "solvers",
    "uniform_ranks": "solvers",
    "weighted_lowrank": "solvers",
}
__all__ = sorted(_EXPORTS)

__getattr__ = exports(__name__, _EXPORTS)
