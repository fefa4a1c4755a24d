"""QA windows and labels on a hand-made example (the answer in a later window, an
answer cut by a window edge), and the span search on fixed logits."""

from __future__ import annotations

import numpy as np
import pytest

from lpaf.qa.features import QuestionTooLongError, best_answers, windows

WORDS = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike "
    "november oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu"
).split()
CONTEXT = " ".join(WORDS + [w + "s" for w in WORDS])
QUESTION = "which word comes after papa?"
ANSWER = "romeos sierras tangos"


@pytest.fixture
def windowed(minilm_tokenizer):
    answers = [{"text": [ANSWER], "answer_start": [CONTEXT.index(ANSWER)]}]
    return windows(minilm_tokenizer, [QUESTION], [CONTEXT], 32, 10, answers)


def _span(out, w, s, e):
    return CONTEXT[out["offset_mapping"][w][s][0] : out["offset_mapping"][w][e][1]]


def test_labels_point_at_the_answer_only_where_it_fits(windowed):
    out = windowed
    assert len(out["input_ids"]) > 2 and set(out["example_index"]) == {0}
    assert all(len(ids) <= 32 for ids in out["input_ids"])
    labelled = [w for w, s in enumerate(out["start_positions"]) if s != 0]
    assert len(labelled) == 1 and labelled[0] >= 1  # not in the first window
    w = labelled[0]
    assert _span(out, w, out["start_positions"][w], out["end_positions"][w]) == ANSWER
    # the next window holds part of the answer ("... sierras tangos") but not its
    # start: it is cut by the window edge, so it is labelled with the CLS position
    cut = w + 1
    kept = [o for o in out["offset_mapping"][cut] if o is not None]
    start, end = CONTEXT.index(ANSWER), CONTEXT.index(ANSWER) + len(ANSWER)
    assert kept[0][0] > start and kept[0][0] < end
    assert out["start_positions"][cut] == out["end_positions"][cut] == 0
    # question and special tokens carry no offsets
    first = out["offset_mapping"][w]
    assert first[0] is None and first[1] is None and first[-1] is None


def test_best_answer_on_fixed_logits(windowed):
    out = windowed
    n = len(out["input_ids"])
    length = max(len(ids) for ids in out["input_ids"])
    start_logits = np.full((n, length), -100.0)
    end_logits = np.full((n, length), -100.0)
    w = next(i for i, s in enumerate(out["start_positions"]) if s != 0)
    s, e = out["start_positions"][w], out["end_positions"][w]
    start_logits[w, s], end_logits[w, e] = 5.0, 4.0
    # higher but invalid: the question tokens (no offsets), an end before the start
    # (paired with anything else they score below 5 + 4)
    start_logits[0, 1] = end_logits[0, 1] = 50.0
    start_logits[1, 20], end_logits[1, 12] = 40.0, 40.0
    args = (out["example_index"], out["offset_mapping"], start_logits, end_logits)
    assert best_answers([CONTEXT], *args, n_best=3) == [ANSWER]
    assert best_answers([CONTEXT], *args, n_best=3, max_answer_length=e - s) != [ANSWER]


def test_no_valid_span_is_an_empty_answer(windowed):
    out = windowed
    length = max(len(ids) for ids in out["input_ids"])
    logits = np.full((len(out["input_ids"]), length), -1.0)
    logits[:, 0] = 9.0  # only CLS, n_best 1
    args = (out["example_index"], out["offset_mapping"], logits, logits)
    assert best_answers([CONTEXT], *args, n_best=1) == [""]


def test_a_question_that_fills_the_window_is_named(minilm_tokenizer):
    with pytest.raises(QuestionTooLongError, match="question 1 has"):
        windows(minilm_tokenizer, ["short?", "why " * 40], [CONTEXT, CONTEXT], 32, 10)
