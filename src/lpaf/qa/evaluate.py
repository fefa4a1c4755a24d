"""Scoring an extractive-QA model on SQuAD records: windows, batched forward passes,
the n-best span search over every window of a question, and the official EM/F1;
and the constant baselines printed beside it (the empty answer, and the first
sentence of the passage)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from lpaf.qa.features import best_answers, windows
from lpaf.qa.metrics import squad_metrics


def references(records: Sequence[dict[str, Any]]) -> dict[str, list[str]]:
    return {r["id"]: list(r["answers"]["text"]) for r in records}


def predict_answers(
    model: torch.nn.Module,
    tokenizer: Any,
    records: Sequence[dict[str, Any]],
    max_seq_length: int = 384,
    doc_stride: int = 128,
    batch_size: int = 32,
    n_best: int = 20,
    max_answer_length: int = 30,
    device: str | torch.device = "cpu",
) -> dict[str, str]:
    """id -> answer text of every record (the best span over its windows)."""
    from transformers import DataCollatorWithPadding

    contexts = [r["context"] for r in records]
    feats = windows(
        tokenizer, [r["question"] for r in records], contexts, max_seq_length, doc_stride
    )
    inputs = [k for k in tokenizer.model_input_names if k in feats]
    pad = DataCollatorWithPadding(tokenizer)
    starts, ends = [], []
    model.eval()
    with torch.no_grad():
        for i in range(0, len(feats["input_ids"]), batch_size):
            rows = [
                {k: feats[k][j] for k in inputs}
                for j in range(i, min(i + batch_size, len(feats["input_ids"])))
            ]
            batch = {k: v.to(device) for k, v in pad(rows).items()}
            out = model(**batch)
            width = max_seq_length
            for logits, into in ((out.start_logits, starts), (out.end_logits, ends)):
                logits = logits.float().cpu().numpy()
                padded = np.full((len(rows), width), -np.inf, dtype=np.float32)
                padded[:, : logits.shape[1]] = logits
                into.append(padded)
    texts = best_answers(
        contexts,
        feats["example_index"],
        feats["offset_mapping"],
        np.concatenate(starts),
        np.concatenate(ends),
        n_best=n_best,
        max_answer_length=max_answer_length,
    )
    return {r["id"]: t for r, t in zip(records, texts, strict=True)}


def first_sentence(context: str) -> str:
    """The passage up to its first sentence end (``.``, ``!`` or ``?`` followed by
    white space), or the whole passage."""
    match = re.search(r"[.!?](\s|$)", context)
    return context[: match.start() + 1] if match else context


def constant_baselines(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """EM/F1 of the answers that read nothing of the question: always the empty
    answer, and always the passage's first sentence."""
    refs = references(records)
    return {
        "empty answer": squad_metrics({r["id"]: "" for r in records}, refs),
        "first sentence": squad_metrics(
            {r["id"]: first_sentence(r["context"]) for r in records}, refs
        ),
    }
