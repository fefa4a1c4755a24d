"""Stage 5 of METHOD.md: recovery fine-tuning of the factorized model (plain,
mixed-rank, rank sampling), and the comparison's tables.

``config`` (:class:`RecoverConfig`), ``layer`` (:class:`MixedRankLinear`), ``hook``
(:class:`RecoveryHook`), ``stage`` (the rule's job), ``results`` (main and ablation
tables, score-vs-rho figure).
"""

from lpaf.lazy import exports

# The public API (submodule: names), imported on first use (lpaf.lazy).
__getattr__, __all__ = exports(
    __name__,
    config="SCHEDULES RecoverConfig",
    hook="RecoveryHook",
    layer="MixedRankLinear annealed_probability",
)
