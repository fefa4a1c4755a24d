"""SQuAD v1.1 exact match and F1, as the official evaluation script
(``evaluate-v1.1.py``) computes them: answers normalised (lower case, punctuation
removed, the articles a/an/the removed, white space collapsed), token-level F1 on
the normalised words, each prediction scored against its best ground truth, and the
mean over questions, in percent. A question without a prediction scores 0 (the
script warns and counts it); a prediction for an unknown question is ignored."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces (the script's order)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, ground_truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(ground_truth))


def f1(prediction: str, ground_truth: str) -> float:
    pred = normalize_answer(prediction).split()
    truth = normalize_answer(ground_truth).split()
    common = Counter(pred) & Counter(truth)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(truth)
    return 2 * precision * recall / (precision + recall)


def best_over_ground_truths(metric, prediction: str, ground_truths: Iterable[str]) -> float:
    return max(metric(prediction, truth) for truth in ground_truths)


def squad_metrics(
    predictions: Mapping[str, str], references: Mapping[str, Sequence[str]]
) -> dict[str, float]:
    """``{"exact_match", "f1", "main"}`` in percent over every question of
    ``references`` (id -> ground-truth answer texts); ``predictions``: id -> text."""
    if not references:
        raise ValueError("squad_metrics needs at least one question")
    em = total_f1 = 0.0
    for qid, truths in references.items():
        if not truths:
            raise ValueError(f"question {qid!r} has no ground-truth answer")
        if qid not in predictions:
            continue  # the official script scores a missing prediction 0
        em += best_over_ground_truths(exact_match, predictions[qid], truths)
        total_f1 += best_over_ground_truths(f1, predictions[qid], truths)
    n = len(references)
    result = {"exact_match": 100.0 * em / n, "f1": 100.0 * total_f1 / n}
    result["main"] = result["f1"]
    return result
