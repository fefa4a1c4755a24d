"""Evaluation metrics of the GLUE tasks.

:func:`compute_metrics` turns model outputs into the task's metrics (the names listed in
:attr:`lpaf.tasks.TaskSpec.metrics`) as fractions in ``[0, 1]`` (correlations in
``[-1, 1]``), not percentages, plus ``"main"``: the value of the task's main metric.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from lpaf.tasks import TaskSpec, get_task


def _class_ids(predictions: np.ndarray, num_labels: int) -> np.ndarray:
    """Class ids from logits (``N x C``, argmax over the last axis) or from ids (``N``)."""
    if predictions.ndim == 2:
        if predictions.shape[1] != num_labels:
            raise ValueError(
                f"logits have {predictions.shape[1]} columns, the task has {num_labels} labels"
            )
        return predictions.argmax(axis=-1)
    if predictions.ndim == 1:
        if not np.all(np.equal(np.mod(predictions, 1), 0)):
            raise ValueError("1-D classification predictions must be integer class ids")
        ids = predictions.astype(np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= num_labels):
            raise ValueError(
                f"class ids must lie in [0, {num_labels}), got {ids.min()}..{ids.max()}"
            )
        return ids
    raise ValueError(f"predictions must be N or N x C, got shape {predictions.shape}")


def _scores(predictions: np.ndarray) -> np.ndarray:
    """Regression outputs as a 1-D float array (``N`` or ``N x 1``)."""
    if predictions.ndim == 2 and predictions.shape[1] == 1:
        predictions = predictions[:, 0]
    if predictions.ndim != 1:
        raise ValueError(f"regression predictions must be N or N x 1, got {predictions.shape}")
    return predictions.astype(np.float64)


def compute_metrics(task: str | TaskSpec, predictions: Any, labels: Any) -> dict[str, float]:
    """Compute ``task``'s metrics.

    Args:
        task: task name, alias or spec.
        predictions: classification: logits ``N x C`` (argmax taken) or class ids ``N``;
            regression: scores ``N`` or ``N x 1``. Any array-like (numpy, list, tensor
            on CPU).
        labels: gold class ids or scores, length ``N``.

    Returns:
        ``{metric name: value, ..., "main": value of the main metric}`` with plain floats:
        ``accuracy`` and ``f1`` (binary, positive class = id 1) as fractions,
        ``matthews_correlation``, ``pearson`` and ``spearmanr`` as correlations. A
        correlation that is undefined (constant input) is NaN for Pearson/Spearman and
        0.0 for Matthews (scikit-learn's convention).

    Raises:
        NotImplementedError: for extractive QA (SQuAD), whose metrics are a later addition.
        ValueError: shapes or lengths that do not fit the task.
    """
    spec = get_task(task)
    if spec.kind == "extractive_qa":
        raise NotImplementedError(
            f"{spec.name} metrics (exact_match / f1 over answer spans) are not implemented "
            "yet; they come with the later SQuAD / extractive-QA issue."
        )
    preds = np.asarray(predictions)
    gold = np.asarray(labels)
    if gold.ndim == 2 and gold.shape[1] == 1:
        gold = gold[:, 0]
    if gold.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {gold.shape}")
    if preds.shape[0] != gold.shape[0]:
        raise ValueError(f"{preds.shape[0]} predictions but {gold.shape[0]} labels")
    if gold.shape[0] == 0:
        raise ValueError("no examples to score")

    if spec.is_regression:
        y_hat = _scores(preds)
        y = gold.astype(np.float64)
    else:
        y_hat = _class_ids(preds, spec.num_labels)
        y = gold.astype(np.int64)

    out: dict[str, float] = {}
    for name in spec.metrics:
        if name == "accuracy":
            out[name] = float(accuracy_score(y, y_hat))
        elif name == "f1":
            out[name] = float(f1_score(y, y_hat, pos_label=1, average="binary", zero_division=0))
        elif name == "matthews_correlation":
            out[name] = float(matthews_corrcoef(y, y_hat))
        elif name == "pearson":
            out[name] = float(pearsonr(y_hat, y)[0])
        elif name == "spearmanr":
            out[name] = float(spearmanr(y_hat, y)[0])
        else:  # a TaskSpec naming a metric this module does not know
            raise ValueError(f"{spec.name}: unknown metric {name!r}")
    out["main"] = out[spec.main_metric]
    return out
