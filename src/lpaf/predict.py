"""Predictions of a saved model for a TSV file: ``lpaf predict DIR FILE``.

The file is read as the task's GLUE TSV is (a header line naming the columns): each of
the task's text fields is taken from the column of that name (``sentence``,
``sentence1``/``sentence2``, ...) or, failing that, from the column the GLUE file uses
for it (MRPC's ``#1 String``/``#2 String``), so a GLUE dev file works as it is, and so
does a file with only the text columns. For a task whose GLUE files have no header
(CoLA) the columns are the GLUE file's positions. When the file also holds the label
column, the task's metrics are computed as well.

The output is one row per input row: ``index`` (0-based row of the file), the
``prediction`` (class name, or the score for regression) and, for classification,
``prob_<class>`` for every class.

For SQuAD (a question-answering model) the file is SQuAD v1.1 JSON: one row per
question, ``id`` and the ``prediction`` (answer text), with EM/F1 against the file's
answers (windows of ``max_seq_length`` with a stride of ``qa.doc_stride``'s default,
at most half a window).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

#: files of a saved tokenizer, one of which a model directory must hold
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json")


class PredictError(ValueError):
    """The input cannot be predicted (unknown task, a missing column, no tokenizer)."""


def recorded_task(path: str | os.PathLike) -> str | None:
    """The task the model directory's stage recorded (``lpaf inspect``'s provenance)."""
    from lpaf.describe import _recorded

    return _recorded(Path(path))[1].get("task")


def read_inputs(file: str | os.PathLike, task: Any) -> tuple[dict[str, list[str]], list | None]:
    """The task's text columns of ``file`` and its labels (``None`` when the file has
    no label column); errors name the file, the line and the column."""
    from lpaf.data import read_glue_tsv

    file = Path(file)
    if not file.is_file():
        raise PredictError(f"{file}: no such file")
    if not task.tsv_header:
        try:
            columns = read_glue_tsv(file, task)
        except ValueError as error:
            raise PredictError(str(error)) from None
        return {f: columns[f] for f in task.text_fields}, columns["label"]
    lines = file.read_bytes().decode("utf-8-sig").split("\n")
    lines = [line.removesuffix("\r") for line in lines]
    while lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise PredictError(f"{file}: empty file, expected a header line")
    header = lines[0].split("\t")
    positions = []
    for field, glue_column in zip(task.text_fields, task.tsv_text_columns, strict=True):
        name = field if field in header else glue_column
        if name not in header:
            raise PredictError(
                f"{file}: {task.name} needs a column {field!r}"
                + (f" (or {glue_column!r})" if glue_column != field else "")
                + f"; the header is {header}"
            )
        positions.append(header.index(name))
    label_at = header.index(task.tsv_label_column) if task.tsv_label_column in header else None
    texts: dict[str, list[str]] = {f: [] for f in task.text_fields}
    labels: list | None = [] if label_at is not None else None
    label_map = task.label_map
    for lineno, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != len(header):
            raise PredictError(
                f"{file}:{lineno}: {len(fields)} tab-separated fields, the header has {len(header)}"
            )
        for field, position in zip(task.text_fields, positions, strict=True):
            texts[field].append(fields[position])
        if labels is not None:
            raw = fields[label_at]
            try:
                labels.append(float(raw) if label_map is None else label_map[raw])
            except (KeyError, ValueError):
                raise PredictError(
                    f"{file}:{lineno}: label {raw!r} is not a {task.name} label"
                ) from None
    return texts, labels


def predict(
    model_dir: str | os.PathLike,
    file: str | os.PathLike,
    task: str | None = None,
    *,
    tokenizer: str | None = None,
    max_seq_length: int = 128,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
) -> tuple[pd.DataFrame, dict[str, float] | None]:
    """(predictions table of the module docstring, the task's metrics or ``None``).

    ``task`` defaults to the one the model's stage recorded; ``tokenizer`` (a directory
    or model id) to the model directory's own. Everything is checked (task, columns,
    labels, tokenizer) before the model runs; a directory that is not a model raises
    :class:`lpaf.describe.NotAModelError`."""
    from transformers import AutoTokenizer

    from lpaf.data import collator
    from lpaf.describe import load_saved
    from lpaf.metrics import compute_metrics
    from lpaf.tasks import get_task

    model = load_saved(model_dir).float().eval().to(device)
    name = task or recorded_task(model_dir)
    if name is None:
        raise PredictError(f"{model_dir}: no task recorded beside the model; pass --task")
    try:
        spec = get_task(name)
    except (KeyError, ValueError) as error:
        raise PredictError(str(error)) from None
    if _is_qa(model) != (spec.kind == "extractive_qa"):
        raise PredictError(
            f"{model_dir}: a question-answering model; pass --task SQuAD"
            if _is_qa(model)
            else f"{spec.name} needs a question-answering model (start and end logits)"
        )
    if spec.kind == "extractive_qa":
        records = _read_squad(file)
    else:
        texts, labels = read_inputs(file, spec)
    if tokenizer is None and not any((Path(model_dir) / f).is_file() for f in TOKENIZER_FILES):
        # transformers would build an empty tokenizer from config.json alone
        raise PredictError(
            f"{model_dir}: no tokenizer could be loaded (none of {list(TOKENIZER_FILES)}); "
            "pass --tokenizer"
        )
    try:
        tok = AutoTokenizer.from_pretrained(str(tokenizer or model_dir))
    except (OSError, ValueError) as error:
        raise PredictError(
            f"{tokenizer or model_dir}: no tokenizer could be loaded ({error}); pass --tokenizer"
        ) from None
    vocab = getattr(model.config, "vocab_size", None)
    if vocab is not None and len(tok) > int(vocab):
        raise PredictError(
            f"the tokenizer has {len(tok)} tokens, the model's embedding {vocab}: not the "
            "model's tokenizer"
        )
    if spec.kind == "extractive_qa":
        return _predict_squad(model, tok, records, max_seq_length, batch_size, device)
    n_out = int(model.config.num_labels)
    if n_out != spec.num_labels:
        raise PredictError(
            f"{model_dir}: the model has {n_out} outputs, {spec.name} needs {spec.num_labels}"
        )
    encoded = tok(*[texts[f] for f in spec.text_fields], truncation=True, max_length=max_seq_length)
    rows = [
        dict(zip(encoded.keys(), values, strict=True))
        for values in zip(*encoded.values(), strict=True)
    ]
    collate = collator(tok)
    logits = []
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            batch = {k: v.to(device) for k, v in collate(rows[start : start + batch_size]).items()}
            logits.append(model(**batch).logits.float().cpu())
    out = torch.cat(logits).numpy() if logits else np.zeros((0, n_out), dtype=np.float32)
    table = pd.DataFrame({"index": np.arange(len(out))})
    if spec.is_regression:
        table["prediction"] = out[:, 0]
    else:
        table["prediction"] = [spec.label_names[i] for i in out.argmax(axis=1)]
        probs = torch.softmax(torch.from_numpy(out), dim=1).numpy()
        for i, label in enumerate(spec.label_names):
            table[f"prob_{label}"] = probs[:, i]
    metrics = compute_metrics(spec, out, labels) if labels is not None and len(out) else None
    return table, metrics


def _read_squad(file) -> list[dict[str, Any]]:
    from lpaf.qa.data import SquadFormatError, read_squad_json

    if not Path(file).is_file():
        raise PredictError(f"{file}: no such file")
    try:
        return read_squad_json(file)[0]
    except SquadFormatError as error:
        raise PredictError(str(error)) from None


def _predict_squad(model, tok, records, max_seq_length, batch_size, device):
    """Extractive QA: one row per question (``id``, ``prediction``) and EM/F1 (percent,
    the official v1.1 metrics) against the file's answers."""
    from lpaf.qa.evaluate import predict_answers, references
    from lpaf.qa.features import QuestionTooLongError
    from lpaf.qa.metrics import squad_metrics
    from lpaf.qa.task import QASettings

    stride = min(QASettings.doc_stride, max_seq_length // 2)
    try:
        answers = predict_answers(
            model, tok, records, max_seq_length, stride, batch_size=batch_size, device=device
        )
    except QuestionTooLongError as error:
        raise PredictError(f"{error}; pass a larger --max-seq-length") from None
    table = pd.DataFrame({"id": list(answers), "prediction": list(answers.values())})
    return table, squad_metrics(answers, references(records))


def _is_qa(model) -> bool:
    return type(model).__name__.endswith("ForQuestionAnswering")
