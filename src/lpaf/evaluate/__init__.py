"""Stage 6 of METHOD.md: dev metrics, parameter counts and latency of any saved model.

``evaluation`` (prediction, metrics, latency), ``stage`` (the rule's job,
:class:`EvaluateConfig`).
"""

from lpaf.lazy import exports

# The public API, imported on first use (lpaf.lazy).
_EXPORTS = {
    "evaluate_split": "evaluation",
    "measure_latency": "evaluation",
    "predict": "evaluation",
}
__all__ = sorted(_EXPORTS)

__getattr__ = exports(__name__, _EXPORTS)
