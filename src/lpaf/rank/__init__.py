"""Stage 3 of METHOD.md: rank statistics of the target matrices.

``analysis`` (exact and energy ranks), ``stage`` (the rule's job), ``results``
(rank-vs-retained and spectra figures).
"""

from lpaf.lazy import exports

# The public API, imported on first use (lpaf.lazy).
_EXPORTS = {
    "ENERGY_FRACTIONS": "analysis",
    "energy_key": "analysis",
    "energy_rank": "analysis",
    "matrix_rank_stats": "analysis",
    "model_rank_table": "analysis",
}
__all__ = sorted(_EXPORTS)

__getattr__ = exports(__name__, _EXPORTS)
