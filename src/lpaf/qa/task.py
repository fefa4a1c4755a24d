"""Extractive QA inside the stages: what :mod:`lpaf.runtime` calls for a task of kind
``extractive_qa`` (SQuAD) where a GLUE task reads TSVs, tokenizes one row per example
and scores argmaxes.

* :func:`load_squad`: the training and dev questions, as ``datasets.Dataset`` with the
  hub's columns. Locally (``qa.local_dir``) the official ``train-v1.1.json`` and
  ``dev-v1.1.json`` when both exist; offline only the dev file exists, and it is split
  by article (``qa.dev_articles`` articles to dev, drawn with ``qa.split_seed``: no
  passage in both), the split recorded in the run's metrics. From the hub
  (``data.source: hub``) the real train/validation split.
* :func:`train_windows`: one training row per window (``qa.max_seq_length``,
  ``qa.doc_stride``) with ``start_positions`` / ``end_positions``, the labels the
  question-answering head's own loss takes.
* :class:`QAWindows`: an evaluation split, its windows (with ``labels`` = ``[start,
  end]`` for the dev loss and KL) and what maps window logits back to answer text.
* :func:`split_metrics`: EM/F1 (fractions, as every GLUE metric in the stages) of
  window logits ``N x L x 2`` (:func:`lpaf.evaluate.evaluation.predict`);
  :func:`evaluate_split`: the metrics and the prediction table;
  :func:`constant_baseline`: the first-sentence answer.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pandas as pd

from lpaf.qa.data import read_squad_json, split_by_article
from lpaf.qa.evaluate import constant_baselines, references
from lpaf.qa.features import best_answers, windows
from lpaf.qa.metrics import squad_metrics

log = logging.getLogger(__name__)

DEFAULTS: dict[str, Any] = {
    "local_dir": "resources/squad",
    "max_seq_length": 256,
    "doc_stride": 128,
    "n_best": 20,
    "max_answer_length": 30,
    "dev_articles": 10,
    "split_seed": 0,
}


@dataclass(frozen=True)
class QASettings:
    """The ``qa`` config block (:data:`DEFAULTS` for what it leaves out)."""

    local_dir: str = DEFAULTS["local_dir"]
    max_seq_length: int = DEFAULTS["max_seq_length"]
    doc_stride: int = DEFAULTS["doc_stride"]
    n_best: int = DEFAULTS["n_best"]
    max_answer_length: int = DEFAULTS["max_answer_length"]
    dev_articles: int = DEFAULTS["dev_articles"]
    split_seed: int = DEFAULTS["split_seed"]

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> QASettings:
        block = {**DEFAULTS, **(config.get("qa") or {})}
        return cls(**{k: block[k] for k in DEFAULTS})


def _dataset(records: list[dict[str, Any]]) -> datasets.Dataset:
    return datasets.Dataset.from_list(records)


def load_squad(task, source: str, settings: QASettings):
    """``(train, {"validation": dev}, split record)``; module docstring."""
    if source == "hub":
        raw = datasets.load_dataset(task.hub_path, task.hub_config)
        columns = ["id", "title", "context", "question", "answers"]
        split = {"source": f"hub:{task.hub_path}"}
        return (
            raw["train"].select_columns(columns),
            {"validation": raw["validation"].select_columns(columns)},
            split,
        )
    if source != "local":
        raise ValueError(f"Unknown data source {source!r}; use 'local' or 'hub'")
    root = Path(settings.local_dir)
    files = dict(task.local_files)
    train_file, dev_file = root / files["train"], root / files["validation"]
    if not dev_file.is_file():
        raise FileNotFoundError(f"No local data for task {task.name}: {dev_file} does not exist")
    dev, dev_report = read_squad_json(dev_file)
    if train_file.is_file():
        train, train_report = read_squad_json(train_file)
        split = {
            "source": f"local:{root}",
            "train_file": train_report.to_dict(),
            "dev_file": dev_report.to_dict(),
        }
    else:
        train, dev, record = split_by_article(dev, settings.dev_articles, settings.split_seed)
        split = {
            "source": f"local:{dev_file} split by article",
            **record,
            "dev_file": dev_report.to_dict(),
        }
    if dev_report.skipped_answers or dev_report.skipped_questions:
        log.warning(
            "%s: skipped %d answers and %d questions whose answer_start misses the text",
            dev_file,
            dev_report.skipped_answers,
            dev_report.skipped_questions,
        )
    return _dataset(train), {"validation": _dataset(dev)}, split


def _windows(data: datasets.Dataset, tokenizer, settings: QASettings):
    """(every column of :func:`lpaf.qa.features.windows` with labels, the model inputs
    among them) of the questions in ``data``."""
    feats = windows(
        tokenizer,
        list(data["question"]),
        list(data["context"]),
        settings.max_seq_length,
        settings.doc_stride,
        data["answers"],
    )
    inputs = {k: feats[k] for k in tokenizer.model_input_names if k in feats}
    return feats, inputs


def train_windows(data: datasets.Dataset, tokenizer, settings: QASettings) -> datasets.Dataset:
    """The training windows of ``data`` (module docstring)."""
    feats, inputs = _windows(data, tokenizer, settings)
    return datasets.Dataset.from_dict(
        {
            **inputs,
            "start_positions": feats["start_positions"],
            "end_positions": feats["end_positions"],
        }
    )


class QAWindows:
    """An evaluation split of extractive QA: its questions (``records``), their windows
    (``windows``: model inputs and ``labels`` = ``[start, end]`` token positions) and
    each window's question and offsets. Indexes like a ``datasets.Dataset`` (``len``,
    a row by position, a column by name), so loaders and ``split["labels"]`` work."""

    def __init__(self, data: datasets.Dataset, tokenizer, settings: QASettings) -> None:
        feats, inputs = _windows(data, tokenizer, settings)
        labels = [
            list(p) for p in zip(feats["start_positions"], feats["end_positions"], strict=True)
        ]
        self.windows = datasets.Dataset.from_dict({**inputs, "labels": labels})
        self.records = data.select_columns(["id", "question", "context", "answers"]).to_list()
        self.example_index = feats["example_index"]
        self.offset_mapping = feats["offset_mapping"]
        self.settings = settings

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, key):
        return self.windows[key]

    def answers(self, logits: np.ndarray) -> list[str]:
        """The best answer text of each question from window logits ``N x L x 2``."""
        logits = np.asarray(logits)
        return best_answers(
            [r["context"] for r in self.records],
            self.example_index,
            self.offset_mapping,
            logits[..., 0],
            logits[..., 1],
            n_best=self.settings.n_best,
            max_answer_length=self.settings.max_answer_length,
        )


def _fractions(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v / 100.0 for k, v in metrics.items()}


def _scored(split: QAWindows, logits: np.ndarray) -> tuple[list[str], dict[str, float]]:
    texts = split.answers(logits)
    predictions = {r["id"]: t for r, t in zip(split.records, texts, strict=True)}
    return texts, _fractions(squad_metrics(predictions, references(split.records)))


def split_metrics(split: QAWindows, logits: np.ndarray) -> dict[str, float]:
    """``{"exact_match", "f1", "main"}`` as fractions (the official v1.1 metrics / 100)."""
    return _scored(split, logits)[1]


def evaluate_split(split: QAWindows, logits: np.ndarray) -> tuple[dict[str, float], pd.DataFrame]:
    """(:func:`split_metrics`, one row per question: ``id``, ``prediction``, ``answers``
    (JSON list of the ground truths))."""
    texts, metrics = _scored(split, logits)
    table = pd.DataFrame(
        {
            "id": [r["id"] for r in split.records],
            "prediction": texts,
            "answers": [json.dumps(list(r["answers"]["text"])) for r in split.records],
        }
    )
    return metrics, table


def constant_baseline(data: datasets.Dataset) -> dict[str, float]:
    """EM/F1 (fractions) of always answering the passage's first sentence: the better
    of the two answers that read nothing of the question (the empty answer scores 0
    on SQuAD v1.1, where every question has an answer)."""
    records = [
        {"id": i, "context": c, "answers": a}
        for i, c, a in zip(data["id"], data["context"], data["answers"], strict=True)
    ]
    return _fractions(constant_baselines(records)["first sentence"])
