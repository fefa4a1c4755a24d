"""Stage 4 of METHOD.md: factorize target weights into two low-rank factors.

``solvers`` (svd, fwsvd, sparsity-aware SVD, rank rules, :func:`factorize_model`),
``importance`` (the gradient statistics), ``layer`` (:class:`LowRankLinear`),
``stage`` (the rules' jobs, :class:`FactorizeConfig`), ``results`` (table, figure).
"""

from lpaf.lazy import exports

# The public API (submodule: names), imported on first use (lpaf.lazy).
__getattr__, __all__ = exports(
    __name__,
    importance="first_order_importance fisher_row_importance gradient_importance",
    layer="Factors LowRankLinear lowrank_modules replace_with_lowrank swap_to_lowrank",
    solvers="COMPUTE_DTYPE DEFAULT_EPSILON DEFAULT_N_ITER DEFAULT_SOLVER METHODS Factorization Spectrum factorize_model factorize_weight fwsvd global_energy_ranks sparsity_aware sparsity_aware_rows sparsity_weights svd uniform_ranks weighted_lowrank",
)
