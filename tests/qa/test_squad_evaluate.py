"""The QA scoring path end to end on a stub model whose logits are known: an oracle
that points at the gold span of each window scores EM 100, one that points at CLS
answers nothing; the constant baselines by hand."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from lpaf.qa.evaluate import constant_baselines, first_sentence, predict_answers
from lpaf.qa.features import windows

WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima".split()
CONTEXT = " ".join(WORDS + [w + "s" for w in WORDS]) + ". Then more words follow here."
RECORDS = [
    {
        "id": f"q{i}",
        "question": question,
        "context": CONTEXT,
        "answers": {"text": [answer], "answer_start": [CONTEXT.index(answer)]},
    }
    for i, (question, answer) in enumerate(
        [("what follows kilo?", "limas"), ("which three come first?", "alpha bravo charlie")]
    )
]


class _Oracle(torch.nn.Module):
    """Start/end logits 10 at the window's labelled span (from lpaf.qa.features with
    the gold answers), 0 elsewhere: the windows are recomputed from the input ids."""

    def __init__(self, tokenizer, cls_only=False):
        super().__init__()
        feats = windows(
            tokenizer,
            [r["question"] for r in RECORDS],
            [r["context"] for r in RECORDS],
            32,
            8,
            [r["answers"] for r in RECORDS],
        )
        self.labels = {
            tuple(ids): (s, e)
            for ids, s, e in zip(
                feats["input_ids"], feats["start_positions"], feats["end_positions"], strict=True
            )
        }
        self.cls_only = cls_only

    def forward(self, input_ids, attention_mask=None, token_type_ids=None):
        start = torch.zeros(input_ids.shape)
        end = torch.zeros(input_ids.shape)
        for row, ids in enumerate(input_ids.tolist()):
            n = int(attention_mask[row].sum())
            s, e = (0, 0) if self.cls_only else self.labels[tuple(ids[:n])]
            start[row, s] = end[row, e] = 10.0
        return SimpleNamespace(start_logits=start, end_logits=end)


def test_oracle_logits_give_the_gold_answers(minilm_tokenizer):
    answers = predict_answers(
        _Oracle(minilm_tokenizer), minilm_tokenizer, RECORDS, 32, 8, batch_size=3
    )
    assert answers == {"q0": "limas", "q1": "alpha bravo charlie"}


def test_cls_logits_fall_back_to_the_best_valid_span(minilm_tokenizer):
    answers = predict_answers(
        _Oracle(minilm_tokenizer, cls_only=True), minilm_tokenizer, RECORDS, 32, 8, n_best=1
    )
    assert answers == {"q0": "", "q1": ""}  # n_best 1: only CLS, not a context span


def test_constant_baselines_by_hand():
    assert first_sentence("One two. Three.") == "One two."
    assert first_sentence("no end") == "no end"
    base = constant_baselines(RECORDS)
    assert base["empty answer"]["exact_match"] == 0.0 and base["empty answer"]["f1"] == 0.0
    # the first sentence holds 24 words (+ nothing of "then more..."): q0 F1 = 2/(24+1),
    # q1: 3 of 24 predicted, 3 of 3 true -> 2 * (3/24) / (3/24 + 1)
    first = base["first sentence"]
    q0 = 2 * (1 / 24) * 1 / (1 / 24 + 1)
    q1 = 2 * (3 / 24) * 1 / (3 / 24 + 1)
    assert first["f1"] == pytest.approx(100 * (q0 + q1) / 2)
    assert first["exact_match"] == 0.0
