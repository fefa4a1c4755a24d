"""The benchmark tasks LPAF is evaluated on: what each one is and where its data lives.

A :class:`TaskSpec` holds everything the rest of the package needs to know about one
task: its kind (classification, regression, extractive QA), the canonical text columns
and label names (both identical to the Hugging Face hub dataset ``nyu-mll/glue``), the
metrics reported for it, its evaluation splits, the layout of the original GLUE TSV
files written by ``download_glue_data.py``, and where the same data sits on the hub.

:data:`TASKS` maps each canonical name to its spec; :func:`get_task` looks a task up by
canonical name (any case) or by a common alias such as ``"sst2"`` or ``"sts-b"``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

TaskKind = Literal["classification", "regression", "extractive_qa"]

GLUE_HUB_PATH = "nyu-mll/glue"


@dataclass(frozen=True)
class TaskSpec:
    """One benchmark task.

    Attributes:
        name: canonical name, e.g. ``"SST-2"``.
        kind: ``"classification"``, ``"regression"`` (STS-B) or ``"extractive_qa"`` (SQuAD).
        text_fields: names of the input text columns, in the order they are fed to the
            tokenizer; identical to the column names of the hub dataset.
        label_names: class names in label-id order (the hub's ``ClassLabel`` order);
            ``None`` for regression and extractive QA.
        metrics: names of the metrics reported for the task (keys of
            :func:`lpaf.metrics.compute_metrics`'s result).
        main_metric: the metric used for model selection and summary tables.
        eval_splits: evaluation split names; the first is the primary one.
        local_dir: directory of the task under the local GLUE root (e.g. ``"SST-2"``).
        local_files: ``(split, file name)`` pairs of the local files in that directory.
        tsv_header: whether the local TSV files start with a header line.
        tsv_text_columns: for each entry of ``text_fields``, the TSV column holding it:
            a header name when ``tsv_header`` is true, else a 0-based column position.
        tsv_label_column: the TSV column holding the label (header name or position).
        tsv_label_map: ``(raw value, label id)`` pairs turning the raw label string into
            an id in ``label_names`` order; ``None`` for regression (the raw value is a
            float score).
        hub_path: the hub dataset repository.
        hub_config: the hub configuration (subset) name, ``None`` for the default one.
        hub_splits: ``(split, hub split name)`` pairs.
        aliases: extra names accepted by :func:`get_task` (compared after lower-casing and
            dropping everything but letters and digits).
    """

    name: str
    kind: TaskKind
    text_fields: tuple[str, ...]
    label_names: tuple[str, ...] | None
    metrics: tuple[str, ...]
    main_metric: str
    eval_splits: tuple[str, ...]
    local_dir: str
    local_files: tuple[tuple[str, str], ...]
    tsv_header: bool
    tsv_text_columns: tuple[str | int, ...]
    tsv_label_column: str | int | None
    tsv_label_map: tuple[tuple[str, int], ...] | None
    hub_path: str
    hub_config: str | None
    hub_splits: tuple[tuple[str, str], ...]
    aliases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.main_metric not in self.metrics:
            raise ValueError(f"{self.name}: main metric {self.main_metric!r} not in metrics")
        if self.kind == "classification" and not self.label_names:
            raise ValueError(f"{self.name}: a classification task needs label_names")
        if self.kind != "extractive_qa" and len(self.tsv_text_columns) != len(self.text_fields):
            raise ValueError(f"{self.name}: one TSV column is needed per text field")
        if self.tsv_label_map is not None and self.label_names is not None:
            ids = sorted({i for _, i in self.tsv_label_map})
            if ids != list(range(len(self.label_names))):
                raise ValueError(f"{self.name}: tsv_label_map must cover every label id")

    @property
    def num_labels(self) -> int:
        """Number of model outputs: the number of classes, or 1 for regression."""
        if self.kind == "regression":
            return 1
        if self.label_names is None:
            raise ValueError(f"{self.name} ({self.kind}) has no label count")
        return len(self.label_names)

    @property
    def is_regression(self) -> bool:
        """Whether the label is a real-valued score (STS-B)."""
        return self.kind == "regression"

    @property
    def splits(self) -> tuple[str, ...]:
        """All labelled splits of the task: ``"train"`` followed by the eval splits."""
        return ("train", *self.eval_splits)

    @property
    def label_map(self) -> dict[str, int] | None:
        """``tsv_label_map`` as a dict (raw TSV label string -> label id)."""
        return None if self.tsv_label_map is None else dict(self.tsv_label_map)

    def local_file(self, split: str) -> str:
        """Path of ``split``'s file relative to the local data root, e.g. ``"RTE/dev.tsv"``."""
        files = dict(self.local_files)
        if split not in files:
            raise ValueError(f"{self.name} has no split {split!r}; known: {list(files)}")
        return f"{self.local_dir}/{files[split]}"

    def hub_split(self, split: str) -> str:
        """Name of ``split`` on the hub (e.g. MNLI ``"validation_matched"``)."""
        splits = dict(self.hub_splits)
        if split not in splits:
            raise ValueError(f"{self.name} has no split {split!r}; known: {list(splits)}")
        return splits[split]


_BINARY_01 = (("0", 0), ("1", 1))
_NLI_2 = (("entailment", 0), ("not_entailment", 1))
_STANDARD_FILES = (("train", "train.tsv"), ("validation", "dev.tsv"))
_STANDARD_HUB = (("train", "train"), ("validation", "validation"))


def _glue(
    name: str,
    config: str,
    kind: TaskKind,
    text_fields: tuple[str, ...],
    label_names: tuple[str, ...] | None,
    metrics: tuple[str, ...],
    tsv_text_columns: tuple[str | int, ...],
    tsv_label_column: str | int,
    tsv_label_map: tuple[tuple[str, int], ...] | None,
    tsv_header: bool = True,
    eval_splits: tuple[str, ...] = ("validation",),
    local_files: tuple[tuple[str, str], ...] = _STANDARD_FILES,
    hub_splits: tuple[tuple[str, str], ...] = _STANDARD_HUB,
    aliases: tuple[str, ...] = (),
) -> TaskSpec:
    return TaskSpec(
        name=name,
        kind=kind,
        text_fields=text_fields,
        label_names=label_names,
        metrics=metrics,
        main_metric=metrics[0],
        eval_splits=eval_splits,
        local_dir=name,
        local_files=local_files,
        tsv_header=tsv_header,
        tsv_text_columns=tsv_text_columns,
        tsv_label_column=tsv_label_column,
        tsv_label_map=tsv_label_map,
        hub_path=GLUE_HUB_PATH,
        hub_config=config,
        hub_splits=hub_splits,
        aliases=(config, *aliases),
    )


# The GLUE tasks whose TSVs have a header row and the standard splits, one row each:
# hub config, text fields, label names (None: regression), metrics (main first), TSV
# text columns, TSV label column, TSV label map. Their TSV headers: MRPC Quality, #1 ID,
# #2 ID, #1 String, #2 String (train/dev start with a BOM); QQP id, qid1, qid2,
# question1, question2, is_duplicate; STS-B index, genre, filename, year, old_index,
# source1, source2, sentence1, sentence2, score; QNLI / RTE / WNLI index, <text 1>,
# <text 2>, label (WNLI's label is 1 for entailment, as the hub's id order
# [not_entailment, entailment]).
# fmt: off
_STANDARD = {
    "SST-2": ("sst2", ("sentence",), ("negative", "positive"), ("accuracy",), ("sentence",), "label", _BINARY_01),
    "MRPC": ("mrpc", ("sentence1", "sentence2"), ("not_equivalent", "equivalent"), ("f1", "accuracy"), ("#1 String", "#2 String"), "Quality", _BINARY_01),
    "QQP": ("qqp", ("question1", "question2"), ("not_duplicate", "duplicate"), ("f1", "accuracy"), ("question1", "question2"), "is_duplicate", _BINARY_01),
    "STS-B": ("stsb", ("sentence1", "sentence2"), None, ("pearson", "spearmanr"), ("sentence1", "sentence2"), "score", None),
    "QNLI": ("qnli", ("question", "sentence"), ("entailment", "not_entailment"), ("accuracy",), ("question", "sentence"), "label", _NLI_2),
    "RTE": ("rte", ("sentence1", "sentence2"), ("entailment", "not_entailment"), ("accuracy",), ("sentence1", "sentence2"), "label", _NLI_2),
    "WNLI": ("wnli", ("sentence1", "sentence2"), ("not_entailment", "entailment"), ("accuracy",), ("sentence1", "sentence2"), "label", _BINARY_01),
}
# fmt: on
_ALIASES = {"STS-B": ("sts",)}


def _standard(name: str) -> TaskSpec:
    config, texts, labels, metrics, columns, label_column, label_map = _STANDARD[name]
    kind = "regression" if labels is None else "classification"
    return _glue(
        name,
        config,
        kind,
        texts,
        labels,
        metrics,
        tsv_text_columns=columns,
        tsv_label_column=label_column,
        tsv_label_map=label_map,
        aliases=_ALIASES.get(name, ()),
    )


_ALL: tuple[TaskSpec, ...] = (
    # CoLA train/dev have no header: source, label, original judgement mark, sentence.
    _glue(
        "CoLA",
        "cola",
        "classification",
        ("sentence",),
        ("unacceptable", "acceptable"),
        ("matthews_correlation",),
        tsv_text_columns=(3,),
        tsv_label_column=1,
        tsv_label_map=_BINARY_01,
        tsv_header=False,
    ),
    *(_standard(name) for name in ("SST-2", "MRPC", "QQP", "STS-B")),
    # MNLI: train has 12 columns (label1, gold_label), dev 16 (label1..label5, gold_label);
    # both name the texts sentence1/sentence2 in the header.
    _glue(
        "MNLI",
        "mnli",
        "classification",
        ("premise", "hypothesis"),
        ("entailment", "neutral", "contradiction"),
        ("accuracy",),
        tsv_text_columns=("sentence1", "sentence2"),
        tsv_label_column="gold_label",
        tsv_label_map=(("entailment", 0), ("neutral", 1), ("contradiction", 2)),
        eval_splits=("validation_matched", "validation_mismatched"),
        local_files=(
            ("train", "train.tsv"),
            ("validation_matched", "dev_matched.tsv"),
            ("validation_mismatched", "dev_mismatched.tsv"),
        ),
        hub_splits=(
            ("train", "train"),
            ("validation_matched", "validation_matched"),
            ("validation_mismatched", "validation_mismatched"),
        ),
        aliases=("multinli",),
    ),
    *(_standard(name) for name in ("QNLI", "RTE", "WNLI")),
    # SQuAD v1.1 is registered so names resolve; loading and metrics come with the later
    # extractive-QA work (see lpaf.data.load_task / lpaf.metrics.compute_metrics).
    TaskSpec(
        name="SQuAD",
        kind="extractive_qa",
        text_fields=("question", "context"),
        label_names=None,
        metrics=("exact_match", "f1"),
        main_metric="f1",
        eval_splits=("validation",),
        local_dir="squad",
        local_files=(("train", "train-v1.1.json"), ("validation", "dev-v1.1.json")),
        tsv_header=False,
        tsv_text_columns=(),
        tsv_label_column=None,
        tsv_label_map=None,
        hub_path="rajpurkar/squad",
        hub_config=None,
        hub_splits=_STANDARD_HUB,
        aliases=("squad1", "squadv1", "squad11", "squadv11"),
    ),
)

#: Every registered task, keyed by canonical name.
TASKS: dict[str, TaskSpec] = {t.name: t for t in _ALL}


def _key(name: str) -> str:
    """Normalised lookup key: lower case, letters and digits only."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


_LOOKUP: dict[str, TaskSpec] = {}
for _t in _ALL:
    for _n in (_t.name, *_t.aliases):
        _LOOKUP.setdefault(_key(_n), _t)


def get_task(name: str | TaskSpec) -> TaskSpec:
    """Return the task registered under ``name``.

    ``name`` is a canonical name in any case (``"SST-2"``, ``"sst-2"``) or an alias
    (``"sst2"``, ``"stsb"``, ``"mnli"``); punctuation is ignored. A :class:`TaskSpec` is
    returned unchanged. Raises ``ValueError`` naming the unknown task and the known ones.
    """
    if isinstance(name, TaskSpec):
        return name
    task = _LOOKUP.get(_key(str(name)))
    if task is None:
        raise ValueError(f"Unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return task
