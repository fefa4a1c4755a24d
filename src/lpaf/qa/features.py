"""Question + context windows for an extractive-QA encoder, and the answer search
back over them (the recipe of transformers' ``run_qa.py`` example).

:func:`windows` tokenises each (question, context) pair with the context truncated
into overlapping windows of ``max_seq_length`` tokens, ``doc_stride`` tokens of
overlap between neighbours (a fast tokenizer's ``return_overflowing_tokens``). Each
window carries ``example_index`` (its question), ``offset_mapping`` (character spans
of its context tokens, ``None`` elsewhere) and, with labels, ``start_positions`` /
``end_positions``: the token span of the first ground-truth answer, or the CLS
position (0) when the answer is not wholly inside the window.

:func:`best_answers` scores every (start, end) pair among the ``n_best`` largest
start and end logits of every window of a question, keeps spans inside the context,
ordered, at most ``max_answer_length`` tokens, and returns the text of the best one
(an empty string when no window has a valid span).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


class QuestionTooLongError(ValueError):
    """A question leaves no room for context in a window."""


def windows(
    tokenizer: Any,
    questions: Sequence[str],
    contexts: Sequence[str],
    max_seq_length: int,
    doc_stride: int,
    answers: Sequence[dict[str, list]] | None = None,
) -> dict[str, list]:
    """Columns of one row per window (module docstring). Raises
    :class:`QuestionTooLongError` naming the question when it alone fills a window."""
    if not getattr(tokenizer, "is_fast", False):
        raise TypeError("windows needs a fast tokenizer (offset mappings)")
    if doc_stride >= max_seq_length:
        raise ValueError(f"doc_stride ({doc_stride}) must be below max_seq_length")
    pad_right = tokenizer.padding_side == "right"
    for i, question in enumerate(questions):
        n = len(tokenizer(question, add_special_tokens=True)["input_ids"])
        if n + 2 >= max_seq_length:  # [CLS] q [SEP] ... [SEP]: no token left for context
            raise QuestionTooLongError(
                f"question {i} has {n} tokens, max_seq_length is {max_seq_length}: "
                f"{question[:80]!r}"
            )
        budget = max_seq_length - n - 1  # context tokens per window
        if budget <= doc_stride:  # the tokenizer would panic: windows could not advance
            raise QuestionTooLongError(
                f"question {i} has {n} tokens and leaves {budget} context tokens per "
                f"window, not more than doc_stride ({doc_stride}); raise max_seq_length "
                f"or lower doc_stride: {question[:80]!r}"
            )
    encoded = tokenizer(
        [q.lstrip() for q in questions] if pad_right else list(contexts),
        list(contexts) if pad_right else [q.lstrip() for q in questions],
        truncation="only_second" if pad_right else "only_first",
        max_length=max_seq_length,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )
    context_index = 1 if pad_right else 0
    mapping = encoded.pop("overflow_to_sample_mapping")
    out: dict[str, list] = {k: list(v) for k, v in encoded.items()}
    out["example_index"] = list(mapping)
    offsets_out, starts, ends = [], [], []
    for w, offsets in enumerate(encoded["offset_mapping"]):
        sequence_ids = encoded.sequence_ids(w)
        offsets_out.append(
            [o if s == context_index else None for o, s in zip(offsets, sequence_ids, strict=True)]
        )
        if answers is None:
            continue
        answer = answers[mapping[w]]
        start_char = answer["answer_start"][0]
        end_char = start_char + len(answer["text"][0])
        first = sequence_ids.index(context_index)
        last = len(sequence_ids) - 1 - sequence_ids[::-1].index(context_index)
        if not (offsets[first][0] <= start_char and offsets[last][1] >= end_char):
            starts.append(0)  # not wholly in this window: the CLS position
            ends.append(0)
            continue
        token = first
        while token <= last and offsets[token][0] <= start_char:
            token += 1
        starts.append(token - 1)
        token = last
        while token >= first and offsets[token][1] >= end_char:
            token -= 1
        ends.append(token + 1)
    out["offset_mapping"] = offsets_out
    if answers is not None:
        out["start_positions"] = starts
        out["end_positions"] = ends
    return out


def best_answers(
    contexts: Sequence[str],
    example_index: Sequence[int],
    offset_mapping: Sequence[Sequence[tuple[int, int] | None]],
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    n_best: int = 20,
    max_answer_length: int = 30,
) -> list[str]:
    """The best answer text of each context (module docstring); ``example_index``,
    ``offset_mapping`` and the logits are per window."""
    best: list[tuple[float, str]] = [(-np.inf, "") for _ in contexts]
    for w, example in enumerate(example_index):
        offsets = offset_mapping[w]
        starts = np.argsort(start_logits[w])[-1 : -n_best - 1 : -1]
        ends = np.argsort(end_logits[w])[-1 : -n_best - 1 : -1]
        for s in starts:
            for e in ends:
                if s >= len(offsets) or e >= len(offsets):
                    continue
                if offsets[s] is None or offsets[e] is None:
                    continue
                if e < s or e - s + 1 > max_answer_length:
                    continue
                score = float(start_logits[w][s] + end_logits[w][e])
                if score > best[example][0]:
                    text = contexts[example][offsets[s][0] : offsets[e][1]]
                    best[example] = (score, text)
    return [text for _, text in best]
