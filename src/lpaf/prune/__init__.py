"""Stage 2 of METHOD.md: unstructured pruning during training (movement, first-order
Taylor, magnitude) on a cubic density schedule.

``config`` (:class:`PruneConfig`), ``layer`` (schedule, top-k masks,
:class:`MaskedLinear`), ``hook`` (:class:`PruningHook`), ``stage`` (the rule's job),
``results`` (its table).
"""

from lpaf.lazy import exports

# The public API (submodule: names), imported on first use (lpaf.lazy).
__getattr__, __all__ = exports(
    __name__,
    config="SCORE_INITS THRESHOLD_MODES PruneConfig",
    hook="PruningHook",
    layer="MaskedLinear cubic_density global_topk_masks initial_scores keep_count per_matrix_topk_masks topk_mask",
)
