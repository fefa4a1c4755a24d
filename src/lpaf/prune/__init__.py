"""Stage 2 of METHOD.md: unstructured pruning during training (movement, first-order
Taylor, magnitude) on a cubic density schedule.

``config`` (:class:`PruneConfig`), ``layer`` (schedule, top-k masks,
:class:`MaskedLinear`), ``hook`` (:class:`PruningHook`), ``stage`` (the rule's job),
``results`` (its table).
"""

from lpaf.lazy import exports

# The public API, imported on first use (lpaf.lazy).
_EXPORTS = {
    "SCORE_INITS": "config",
    "THRESHOLD_MODES": "config",
    "PruneConfig": "config",
    "PruningHook": "hook",
    "GlobalTopKBinarizer": "layer",
    "MaskedLinear": "layer",
    "TopKBinarizer": "layer",
    "cubic_density": "layer",
    "global_topk_masks": "layer",
    "initial_scores": "layer",
    "keep_count": "layer",
    "per_matrix_topk_masks": "layer",
    "topk_mask": "layer",
}
__all__ = sorted(_EXPORTS)

__getattr__ = exports(__name__, _EXPORTS)
