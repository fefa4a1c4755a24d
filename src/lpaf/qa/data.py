"""SQuAD v1.1 from the official JSON files, checked, and the offline proxy split.

:func:`read_squad_json` turns ``{"version", "data": [{"title", "paragraphs": [{"context",
"qas": [{"id", "question", "answers": [{"answer_start", "text"}]}]}]}]}`` into one
record per question with the hub dataset's columns (``id``, ``title``, ``context``,
``question``, ``answers: {"text": [...], "answer_start": [...]}``). A file that is not
SQuAD-shaped is an error naming the file and the JSON location; an answer whose
``answer_start`` does not point at its ``text`` in the context is dropped and counted
(a question left without answers is dropped and counted too), never kept with a wrong
label.

Offline the only local file is the dev set; :func:`split_by_article` splits it by
article (seeded), so that no passage is in both parts.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


class SquadFormatError(ValueError):
    """The file is not in the SQuAD v1.1 JSON format."""


@dataclass
class ReadReport:
    """What :func:`read_squad_json` kept and skipped."""

    articles: int = 0
    questions: int = 0
    skipped_answers: int = 0  # answer_start does not point at the text
    skipped_questions: int = 0  # no answer left
    examples: list[str] = field(default_factory=list)  # a few skipped ids, for the log

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _need(value: Any, kind: type, where: str, path: Path) -> Any:
    if not isinstance(value, kind):
        raise SquadFormatError(
            f"{path}: {where} should be a {kind.__name__}, got {type(value).__name__} "
            "(not SQuAD v1.1 JSON)"
        )
    return value


def read_squad_json(path: str | os.PathLike) -> tuple[list[dict[str, Any]], ReadReport]:
    """(one record per question, what was kept and skipped); module docstring."""
    path = Path(path)
    try:
        root = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise SquadFormatError(f"{path}: not JSON ({error})") from None
    _need(root, dict, "the top level", path)
    articles = _need(root.get("data"), list, "'data'", path)
    records: list[dict[str, Any]] = []
    report = ReadReport(articles=len(articles))
    for a, article in enumerate(articles):
        where = f"data[{a}]"
        _need(article, dict, where, path)
        title = _need(article.get("title", ""), str, f"{where}.title", path)
        paragraphs = _need(article.get("paragraphs"), list, f"{where}.paragraphs", path)
        for p, paragraph in enumerate(paragraphs):
            pwhere = f"{where}.paragraphs[{p}]"
            _need(paragraph, dict, pwhere, path)
            context = _need(paragraph.get("context"), str, f"{pwhere}.context", path)
            for q, qa in enumerate(_need(paragraph.get("qas"), list, f"{pwhere}.qas", path)):
                qwhere = f"{pwhere}.qas[{q}]"
                _need(qa, dict, qwhere, path)
                qid = _need(qa.get("id"), str, f"{qwhere}.id", path)
                question = _need(qa.get("question"), str, f"{qwhere}.question", path)
                texts, starts = [], []
                for n, answer in enumerate(
                    _need(qa.get("answers"), list, f"{qwhere}.answers", path)
                ):
                    awhere = f"{qwhere}.answers[{n}]"
                    _need(answer, dict, awhere, path)
                    text = _need(answer.get("text"), str, f"{awhere}.text", path)
                    start = _need(answer.get("answer_start"), int, f"{awhere}.answer_start", path)
                    if context[start : start + len(text)] != text:
                        report.skipped_answers += 1
                        if len(report.examples) < 5:
                            report.examples.append(qid)
                        continue
                    texts.append(text)
                    starts.append(start)
                if not texts:
                    report.skipped_questions += 1
                    continue
                records.append(
                    {
                        "id": qid,
                        "title": title,
                        "context": context,
                        "question": question,
                        "answers": {"text": texts, "answer_start": starts},
                    }
                )
    report.questions = len(records)
    if not records:
        raise SquadFormatError(f"{path}: no question with a valid answer")
    return records, report


def split_by_article(
    records: Sequence[dict[str, Any]], dev_articles: int, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """(train records, dev records, the split's record): ``dev_articles`` articles,
    drawn with ``random.Random(seed)`` from the titles in file order, go to dev, the
    rest to train; every question of an article goes with it."""
    titles = list(dict.fromkeys(r["title"] for r in records))
    if not 0 < dev_articles < len(titles):
        raise ValueError(
            f"dev_articles must be between 1 and {len(titles) - 1} (the file has "
            f"{len(titles)} articles), got {dev_articles}"
        )
    dev_titles = set(random.Random(seed).sample(titles, dev_articles))
    train = [r for r in records if r["title"] not in dev_titles]
    dev = [r for r in records if r["title"] in dev_titles]
    record = {
        "seed": seed,
        "dev_articles": sorted(dev_titles),
        "train_articles": len(titles) - dev_articles,
        "train_questions": len(train),
        "dev_questions": len(dev),
    }
    return train, dev, record
