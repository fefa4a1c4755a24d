"""Stage 3 of METHOD.md: rank statistics of the target matrices.

``analysis`` (exact and energy ranks), ``stage`` (the rule's job), ``results``
(rank-vs-retained and spectra figures).
"""

from lpaf.lazy import exports

# The public API (submodule: names), imported on first use (lpaf.lazy).
__getattr__, __all__ = exports(
    __name__,
    analysis="ENERGY_FRACTIONS energy_key energy_rank matrix_rank_stats model_rank_table",
)
