"""Loading, subsampling and tokenising the GLUE tasks.

Every loader returns the same schema, whatever the source: one column per entry of the
task's ``text_fields`` (strings), ``label`` (a ``ClassLabel`` id in the task's
``label_names`` order, or a ``float32`` score for regression) and ``idx`` (the row's
0-based position in its split). The local source reads the original GLUE TSV files
written by ``download_glue_data.py``; the hub source reads ``nyu-mll/glue``.

Local TSV files are split on tabs and newlines by hand, without any quote processing:
GLUE sentences contain unbalanced ``"`` characters, which a CSV reader with default
quoting would merge across rows.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from lpaf.tasks import TaskSpec, get_task

DEFAULT_GLUE_DIR = "resources/glue"


def features(task: str | TaskSpec) -> datasets.Features:
    """The canonical ``datasets.Features`` of a loaded split of ``task``."""
    task = _text_task(task)
    label = (
        datasets.Value("float32")
        if task.is_regression
        else datasets.ClassLabel(names=list(task.label_names or ()))
    )
    cols: dict[str, Any] = {f: datasets.Value("string") for f in task.text_fields}
    cols["label"] = label
    cols["idx"] = datasets.Value("int32")
    return datasets.Features(cols)


def _text_task(task: str | TaskSpec) -> TaskSpec:
    """Resolve ``task`` and refuse kinds this module cannot load yet."""
    task = get_task(task)
    if task.kind == "extractive_qa":
        raise NotImplementedError(
            f"{task.name} is an extractive-QA task; its loading, tokenisation and metrics "
            "are not implemented yet (planned for the later SQuAD / extractive-QA issue). "
            "lpaf.data handles only GLUE classification and regression tasks."
        )
    return task


def read_glue_tsv(path: str | os.PathLike, task: str | TaskSpec) -> dict[str, list]:
    """Parse one labelled GLUE TSV file of ``task`` into columns.

    Returns ``{text field: [str], "label": [int | float], "idx": [int]}``. A UTF-8 BOM
    and ``\\r`` line ends are removed; fields are taken verbatim (no quote handling, no
    whitespace stripping). Raises ``ValueError`` naming the file and line for a row with
    the wrong number of fields, a missing header column or an unknown label value.
    """
    task = _text_task(task)
    path = Path(path)
    text = path.read_bytes().decode("utf-8-sig")
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    while lines and lines[-1] == "":
        lines.pop()

    first_data_line = 1
    if task.tsv_header:
        if not lines:
            raise ValueError(f"{path}: empty file, expected a header line ({task.name})")
        header = lines[0].split("\t")
        first_data_line = 2
        wanted = [*task.tsv_text_columns, task.tsv_label_column]
        missing = [c for c in wanted if c not in header]
        if missing:
            raise ValueError(
                f"{path}: {task.name} TSV header lacks column(s) {missing}; header is {header}"
            )
        positions = [header.index(c) for c in wanted]  # type: ignore[arg-type]
        n_fields: int | None = len(header)
        body = lines[1:]
    else:
        positions = [int(c) for c in (*task.tsv_text_columns, task.tsv_label_column)]  # type: ignore[arg-type]
        n_fields = None
        body = lines

    label_map = task.label_map
    out: dict[str, list] = {f: [] for f in task.text_fields}
    labels: list[int | float] = []
    for i, line in enumerate(body):
        fields = line.split("\t")
        lineno = i + first_data_line
        if (n_fields is not None and len(fields) != n_fields) or len(fields) <= max(positions):
            raise ValueError(
                f"{path}:{lineno}: {len(fields)} tab-separated fields, expected "
                f"{n_fields if n_fields is not None else f'at least {max(positions) + 1}'}"
            )
        for field, pos in zip(task.text_fields, positions[:-1], strict=True):
            out[field].append(fields[pos])
        raw = fields[positions[-1]]
        if label_map is None:
            try:
                labels.append(float(raw))
            except ValueError:
                raise ValueError(f"{path}:{lineno}: score {raw!r} is not a number") from None
        else:
            if raw not in label_map:
                raise ValueError(
                    f"{path}:{lineno}: unknown {task.name} label {raw!r}; "
                    f"expected one of {sorted(label_map)}"
                )
            labels.append(label_map[raw])
    out["label"] = labels
    out["idx"] = list(range(len(labels)))
    return out


def _resolve_splits(task: TaskSpec, splits: str | Sequence[str] | None) -> list[str] | None:
    """Validate requested split names; ``None`` means all of the task's splits."""
    if splits is None:
        return None
    wanted = [splits] if isinstance(splits, str) else list(splits)
    unknown = [s for s in wanted if s not in task.splits]
    if unknown:
        raise ValueError(f"{task.name} has no split(s) {unknown}; known: {list(task.splits)}")
    return wanted


def _load_local(task: TaskSpec, root: Path, wanted: list[str] | None) -> datasets.DatasetDict:
    feats = features(task)
    splits = wanted if wanted is not None else list(task.splits)
    present = {s: root / task.local_file(s) for s in splits}
    if wanted is None:
        missing = [p for p in present.values() if not p.is_file()]
        present = {s: p for s, p in present.items() if p.is_file()}
        if not present:
            raise FileNotFoundError(
                f"No local data for task {task.name}: none of {[str(p) for p in missing]} exists"
            )
    else:
        for s, p in present.items():
            if not p.is_file():
                raise FileNotFoundError(
                    f"Local file for task {task.name}, split {s!r} not found: {p}"
                )
    return datasets.DatasetDict(
        {
            s: datasets.Dataset.from_dict(read_glue_tsv(p, task), features=feats)
            for s, p in present.items()
        }
    )


def _load_hub(task: TaskSpec, wanted: list[str] | None) -> datasets.DatasetDict:
    raw = datasets.load_dataset(task.hub_path, task.hub_config)
    feats = features(task)
    splits = wanted if wanted is not None else list(task.splits)
    out = {}
    for s in splits:
        hub_name = task.hub_split(s)
        if hub_name not in raw:
            raise KeyError(
                f"Hub dataset {task.hub_path}/{task.hub_config} has no split {hub_name!r} "
                f"(task {task.name}); it has {list(raw)}"
            )
        ds = raw[hub_name].select_columns(list(feats))
        out[s] = ds.cast(feats)
    return datasets.DatasetDict(out)


def load_task(
    task: str | TaskSpec,
    source: str = "local",
    local_dir: str | os.PathLike = DEFAULT_GLUE_DIR,
    splits: str | Sequence[str] | None = None,
) -> datasets.DatasetDict:
    """Load the labelled splits of a GLUE task as a ``DatasetDict``.

    Args:
        task: task name or alias (see :func:`lpaf.tasks.get_task`) or a spec.
        source: ``"local"`` (original GLUE TSVs under ``local_dir``) or ``"hub"``
            (``datasets.load_dataset(task.hub_path, task.hub_config)``).
        local_dir: root of the GLUE TSVs (``<local_dir>/<task dir>/<file>``).
        splits: split names to load (``"train"`` and/or the task's eval splits). ``None``
            loads every split: from the hub all of them; locally those whose file exists.

    Returns:
        ``DatasetDict`` keyed by split with columns ``text_fields + ["label", "idx"]`` and
        the features of :func:`features`.

    Raises:
        FileNotFoundError: a requested local file is missing (or, with ``splits=None``,
            all of the task's files are); the message names the file and the task.
        ValueError: unknown task, split or source.
        NotImplementedError: the task is extractive QA (SQuAD), a later addition.
    """
    spec = _text_task(task)
    wanted = _resolve_splits(spec, splits)
    if source == "local":
        return _load_local(spec, Path(local_dir), wanted)
    if source == "hub":
        return _load_hub(spec, wanted)
    raise ValueError(f"Unknown data source {source!r}; use 'local' or 'hub'")


def subsample(dataset: datasets.Dataset, n: int | None, seed: int) -> datasets.Dataset:
    """Return ``n`` rows of ``dataset`` drawn without replacement.

    The rows are the first ``n`` of a permutation drawn from ``numpy.random.default_rng
    (seed)``, so the same seed gives the same rows in the same order, and a smaller ``n``
    with the same seed gives a subset of a larger one. ``n=None`` or ``n >= len(dataset)``
    returns ``dataset`` unchanged.
    """
    if n is None or n >= len(dataset):
        return dataset
    if n < 0:
        raise ValueError(f"subsample size must be >= 0, got {n}")
    order = np.random.default_rng(seed).permutation(len(dataset))[:n]
    return dataset.select(order.tolist())


def tokenize(
    data: datasets.Dataset | datasets.DatasetDict,
    tokenizer: PreTrainedTokenizerBase,
    task: str | TaskSpec,
    max_seq_length: int,
) -> datasets.Dataset | datasets.DatasetDict:
    """Tokenise a loaded split (or all splits) of ``task``.

    Produces ``input_ids``, ``attention_mask``, ``token_type_ids`` (when the tokenizer
    makes them) and ``labels`` (``float32`` for regression, class id otherwise); keeps
    ``idx`` and removes the text and ``label`` columns. Sequences (pairs: longest first)
    are truncated to ``max_seq_length`` tokens and not padded: :func:`collator` pads each
    batch.
    """
    spec = _text_task(task)
    text_fields = list(spec.text_fields)

    def encode(batch: dict[str, list]) -> dict[str, list]:
        texts = [batch[f] for f in text_fields]
        return dict(tokenizer(*texts, truncation=True, max_length=max_seq_length))

    out = data.map(encode, batched=True, remove_columns=text_fields, desc=f"tokenize {spec.name}")
    return out.rename_column("label", "labels")


class _ModelInputCollator:
    """Keeps only model inputs and targets (``labels``; ``start_positions`` and
    ``end_positions`` of extractive QA) of each example, then pads the batch."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, **kwargs: Any) -> None:
        self.tokenizer = tokenizer
        self.keys = frozenset(
            [*tokenizer.model_input_names, "labels", "start_positions", "end_positions"]
        )
        self.pad = DataCollatorWithPadding(tokenizer, **kwargs)

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        return self.pad([{k: v for k, v in ex.items() if k in self.keys} for ex in examples])


def collator(tokenizer: PreTrainedTokenizerBase, **kwargs: Any) -> _ModelInputCollator:
    """Batch collator for :func:`tokenize`'s output.

    Drops every column the model does not take (``idx``), pads ``input_ids``,
    ``attention_mask`` and ``token_type_ids`` to the longest sequence in the batch with
    ``transformers.DataCollatorWithPadding`` (``kwargs`` go to it, e.g.
    ``pad_to_multiple_of``) and returns PyTorch tensors including ``labels``.
    """
    return _ModelInputCollator(tokenizer, **kwargs)
