"""Stage 5 of METHOD.md: recovery fine-tuning of the factorized model (plain,
mixed-rank, rank sampling), and the comparison's tables.

``config`` (:class:`RecoverConfig`), ``layer`` (:class:`MixedRankLinear`), ``hook``
(:class:`RecoveryHook`), ``stage`` (the rule's job), ``results`` (main and ablation
tables, score-vs-rho figure).
"""

from lpaf.lazy import exports

# The public API, imported on first use (lpaf.lazy).
_EXPORTS = {
    "SCHEDULES": "config",
    "RecoverConfig": "config",
    "RecoveryHook": "hook",
    "MixedRankLinear": "layer",
    "annealed_probability": "layer",
}
__all__ = sorted(_EXPORTS)

__getattr__ = exports(__name__, _EXPORTS)
