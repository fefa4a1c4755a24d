"""SQuAD v1.1 EM/F1 on cases computed by hand from the official script's rules."""

from __future__ import annotations

import pytest

from lpaf.qa.metrics import exact_match, f1, normalize_answer, squad_metrics


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("The  Denver Broncos!", "denver broncos"),
        ("an apple, a pear", "apple pear"),
        ("Theory", "theory"),  # "the" only as a word
        ("U.S.", "us"),
        ("  ", ""),
    ],
)
def test_normalisation(text, normal):
    assert normalize_answer(text) == normal


def test_f1_by_hand():
    # pred {denver, broncos, team}, truth {denver, broncos}: P 2/3, R 1, F1 0.8
    assert f1("the Denver Broncos team", "Denver Broncos") == pytest.approx(0.8)
    # repeated tokens count with multiplicity: pred [a1 a1] vs [a1]: P 1/2 R 1 -> 2/3
    assert f1("paris paris", "Paris") == pytest.approx(2 / 3)
    assert f1("", "Denver") == 0.0  # empty prediction
    assert f1("Broncos", "Panthers") == 0.0
    assert exact_match("the Denver Broncos.", "Denver Broncos") == 1.0
    # an empty normalised pair is an exact match with F1 0 (the script's num_same == 0)
    assert exact_match("the", "a") == 1.0 and f1("the", "a") == 0.0


def test_max_over_ground_truths_and_mean_over_questions():
    references = {
        "q1": ["Denver Broncos", "the Broncos"],
        "q2": ["Carolina Panthers"],
        "q3": ["1966"],
    }
    predictions = {
        "q1": "Broncos",  # EM and F1 1 against "the Broncos" (both normalise to "broncos")
        "q2": "Panthers of Carolina",  # P 2/3 (of not in truth), R 1: 0.8
        # q3 missing: 0 and 0
        "q9": "ignored",
    }
    result = squad_metrics(predictions, references)
    assert result["exact_match"] == pytest.approx(100 * 1 / 3)  # q1 matches "the Broncos"
    assert result["f1"] == pytest.approx(100 * (1.0 + 0.8 + 0.0) / 3)
    assert result["main"] == result["f1"]


def test_empty_inputs_are_errors():
    with pytest.raises(ValueError, match="at least one question"):
        squad_metrics({}, {})
    with pytest.raises(ValueError, match="'q1' has no ground-truth"):
        squad_metrics({"q1": "x"}, {"q1": []})
