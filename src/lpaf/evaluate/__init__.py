"""Stage 6 of METHOD.md: dev metrics, parameter counts and latency of any saved model.

``evaluation`` (prediction, metrics, latency), ``stage`` (the rule's job,
:class:`EvaluateConfig`).
"""

from lpaf.lazy import exports

# The public API (submodule: names), imported on first use (lpaf.lazy).
__getattr__, __all__ = exports(
    __name__,
    evaluation="evaluate_split measure_latency predict",
)
