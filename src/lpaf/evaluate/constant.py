"""The constant predictor of a task and the collapse flag of a model.

A compressed model that has lost the task often still scores well on a skewed dev set:
on MRPC, always answering "paraphrase" gives F1 81.2. Every score is therefore shown
beside the **constant predictor**: the training set's majority class for classification
(ties: the lowest class id), its mean label for regression. A constant has no
correlation with anything, so its Pearson, Spearman and Matthews correlations are 0
(scipy would return NaN for Pearson and Spearman).

A model is **collapsed** on a split when its main score is within
:data:`COLLAPSE_MARGIN` (2 points) of the constant predictor's, or when
:data:`COLLAPSE_SHARE` (95 %) or more of its dev predictions are one class.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from lpaf.metrics import compute_metrics
from lpaf.tasks import TaskSpec, get_task

CONSTANT = "constant"  # the row name in tables
COLLAPSE_MARGIN = 0.02  # main-metric units (fractions): 2 points
COLLAPSE_SHARE = 0.95  # share of dev predictions in one class
COLLAPSED_MARK = "†"
COLLAPSE_NOTE = (
    f"{COLLAPSED_MARK} collapsed: within {100 * COLLAPSE_MARGIN:g} points of the constant "
    f"predictor, or ≥ {100 * COLLAPSE_SHARE:g} % of dev predictions in one class."
)
_CORRELATIONS = ("pearson", "spearmanr", "matthews_correlation")


def constant_prediction(task: str | TaskSpec, train_labels: Any) -> float:
    """The constant a predictor that knows only the training labels outputs: the most
    frequent class id (ties: the lowest) or the mean score."""
    spec = get_task(task)
    labels = np.asarray(train_labels)
    if labels.size == 0:
        raise ValueError(f"{spec.name}: no training labels for the constant predictor")
    if spec.is_regression:
        return float(labels.astype(np.float64).mean())
    counts = np.bincount(labels.astype(np.int64), minlength=spec.num_labels)
    return int(counts.argmax())


def constant_metrics(task: str | TaskSpec, train_labels: Any, labels: Any) -> dict[str, float]:
    """The task's metrics (as :func:`lpaf.metrics.compute_metrics`) of predicting
    :func:`constant_prediction` for every example of ``labels``; correlations are 0."""
    spec = get_task(task)
    value = constant_prediction(spec, train_labels)
    n = len(np.asarray(labels))
    if spec.is_regression:
        # correlations of a constant are 0 by definition; only non-correlation metrics
        # would need computing, and the GLUE regression task has none
        out = {name: 0.0 for name in spec.metrics}
        out["main"] = out[spec.main_metric]
        return out
    out = compute_metrics(spec, np.full(n, value, dtype=np.int64), labels)
    for name in _CORRELATIONS:
        if name in out:
            out[name] = 0.0
    out["main"] = out[spec.main_metric]
    return out


def top_class_share(task: str | TaskSpec, predictions: Any) -> float | None:
    """Share of the predictions in the most frequent class (logits ``N x C`` or ids
    ``N``); ``None`` for regression and extractive QA."""
    spec = get_task(task)
    if spec.is_regression or spec.kind == "extractive_qa":
        return None
    preds = np.asarray(predictions)
    ids = preds.argmax(-1) if preds.ndim == 2 else preds.astype(np.int64)
    if ids.size == 0:
        raise ValueError("no predictions")
    return float(np.bincount(ids, minlength=spec.num_labels).max() / ids.size)


def is_collapsed(main: float, constant_main: float, share: float | None = None) -> bool:
    """Whether a score ``main`` (fraction) is within :data:`COLLAPSE_MARGIN` of (or
    below) the constant predictor's, or ``share`` of the predictions is one class."""
    if main != main:  # NaN: nothing learned that can be scored
        return True
    if main <= constant_main + COLLAPSE_MARGIN:
        return True
    return share is not None and share >= COLLAPSE_SHARE


def collapse_fields(per_split: Mapping[str, Mapping[str, float]], constant: Mapping) -> dict:
    """``{"collapsed": bool, "collapsed_splits": [...]}`` of a run from its per-split
    metrics (with ``top_class_share``) and the constant predictor's per-split metrics."""
    splits = [
        split
        for split, metrics in per_split.items()
        if split in constant
        and is_collapsed(metrics["main"], constant[split]["main"], metrics.get("top_class_share"))
    ]
    first = next(iter(per_split), None)
    return {"collapsed": first in splits, "collapsed_splits": splits}


def flag(text: str, collapsed: bool) -> str:
    """``text`` with :data:`COLLAPSED_MARK` appended when ``collapsed``."""
    return f"{text} {COLLAPSED_MARK}" if collapsed else text
