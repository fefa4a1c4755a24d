"""Tests of lpaf.metrics against hand-computed values and closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lpaf.metrics import compute_metrics
from lpaf.tasks import TASKS

# A binary confusion matrix with tp=5, tn=3, fp=2, fn=1 (11 examples).
GOLD = [1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0]
PRED = [1, 1, 1, 1, 1, 0, 1, 1, 0, 0, 0]
TP, TN, FP, FN = 5, 3, 2, 1


def test_confusion_matrix_fixture_is_what_it_claims() -> None:
    pairs = list(zip(GOLD, PRED, strict=True))
    assert pairs.count((1, 1)) == TP
    assert pairs.count((0, 0)) == TN
    assert pairs.count((0, 1)) == FP
    assert pairs.count((1, 0)) == FN


def test_cola_mcc_closed_form() -> None:
    expected = (TP * TN - FP * FN) / math.sqrt((TP + FP) * (TP + FN) * (TN + FP) * (TN + FN))
    assert expected == pytest.approx(13 / math.sqrt(840))
    out = compute_metrics("CoLA", PRED, GOLD)
    assert set(out) == {"matthews_correlation", "main"}
    assert out["matthews_correlation"] == pytest.approx(expected)
    assert out["main"] == out["matthews_correlation"]


@pytest.mark.parametrize("task", ["MRPC", "QQP"])
def test_f1_and_accuracy_closed_form(task: str) -> None:
    p, r = TP / (TP + FP), TP / (TP + FN)
    f1 = 2 * p * r / (p + r)
    assert f1 == pytest.approx(10 / 13)
    out = compute_metrics(task, PRED, GOLD)
    assert set(out) == {"f1", "accuracy", "main"}
    assert out["f1"] == pytest.approx(f1)
    assert out["accuracy"] == pytest.approx(8 / 11)  # a fraction, not a percentage
    assert out["main"] == out["f1"]


def test_f1_positive_class_is_label_one() -> None:
    # Swapping classes changes F1: positive class = 1 (equivalent / duplicate).
    swapped = compute_metrics("MRPC", [1 - x for x in PRED], [1 - x for x in GOLD])
    p, r = TN / (TN + FN), TN / (TN + FP)
    assert swapped["f1"] == pytest.approx(2 * p * r / (p + r))
    assert swapped["accuracy"] == pytest.approx(8 / 11)


def test_stsb_pearson_spearman_known_pair() -> None:
    x = [1.0, 2.0, 3.0, 4.0, 5.0]
    y = [2.0, 4.0, 5.0, 4.0, 5.0]
    # Pearson: sum(dx*dy)=6, sum(dx^2)=10, sum(dy^2)=6.
    # Spearman: ranks of y are [1, 2.5, 4.5, 2.5, 4.5] -> 7 / sqrt(10 * 9).
    out = compute_metrics("STS-B", x, y)
    assert set(out) == {"pearson", "spearmanr", "main"}
    assert out["pearson"] == pytest.approx(6 / math.sqrt(60))
    assert out["spearmanr"] == pytest.approx(7 / math.sqrt(90))
    assert out["main"] == out["pearson"]
    # N x 1 outputs (a regression head) give the same values.
    col = compute_metrics("stsb", np.array(x)[:, None], y)
    assert col["pearson"] == pytest.approx(out["pearson"])


def test_argmax_of_logits_equals_ids() -> None:
    logits = np.array([[2.0, -1.0], [0.1, 0.3], [-5.0, 5.0], [1.0, 0.0]])
    gold = [0, 0, 1, 1]  # argmax = [0, 1, 1, 0] -> 2 of 4 right
    assert compute_metrics("SST-2", logits, gold)["accuracy"] == pytest.approx(0.5)
    assert compute_metrics("SST-2", [0, 1, 1, 0], gold)["accuracy"] == pytest.approx(0.5)
    # torch tensors are accepted too.
    assert compute_metrics("sst2", torch.tensor(logits), torch.tensor(gold))["main"] == 0.5


def test_mnli_three_classes() -> None:
    logits = np.eye(3)[[0, 1, 2, 2, 1, 0]] * 3.0  # predicts 0,1,2,2,1,0
    gold = [0, 1, 2, 0, 0, 0]
    out = compute_metrics("MNLI", logits, gold)
    assert out == {"accuracy": pytest.approx(4 / 6), "main": pytest.approx(4 / 6)}


@pytest.mark.parametrize("name", [n for n in TASKS if n != "SQuAD"])
def test_perfect_predictions_score_one(name: str) -> None:
    task = TASKS[name]
    if task.is_regression:
        gold = np.array([0.0, 1.2, 2.5, 3.0, 5.0])
        preds = gold.copy()
    else:
        gold = np.arange(12) % task.num_labels
        preds = np.eye(task.num_labels)[gold] * 4.0 - 2.0  # logits peaked on the gold class
    out = compute_metrics(task, preds, gold)
    assert set(out) == {*task.metrics, "main"}
    for value in out.values():
        assert value == pytest.approx(1.0)


def test_errors() -> None:
    with pytest.raises(NotImplementedError, match="SQuAD"):
        compute_metrics("squad", [0], [0])
    with pytest.raises(ValueError, match="3 predictions but 2 labels"):
        compute_metrics("rte", [0, 1, 1], [0, 1])
    with pytest.raises(ValueError, match="3 columns"):
        compute_metrics("rte", np.zeros((2, 3)), [0, 1])
    with pytest.raises(ValueError, match="class ids"):
        compute_metrics("rte", [0, 2], [0, 1])
