"""The compressed-model format: a directory that rebuilds a low-rank model exactly.

Layout::

    <dir>/config.json          the base model's transformers config
    <dir>/model.safetensors    state dict of the low-rank model (safetensors)
    <dir>/lpaf.json            see below
    <dir>/tokenizer files      whatever ``tokenizer.save_pretrained`` writes

``lpaf.json`` holds ``format_version`` (:data:`FORMAT_VERSION`), ``model_class`` (the
transformers class to rebuild), ``ranks`` and ``shapes`` (``[out, in]``) of every
:class:`~lpaf.factorize.layer.LowRankLinear` by module name, ``target_patterns``,
``retained_fraction`` (rho achieved) and ``parameters`` (the counts of
:func:`lpaf.accounting.count_parameters` without the per-target table), plus the
caller's metadata (e.g. ``method``, ``source_model``, ``stage``).

Loading rebuilds the architecture from ``config.json``, swaps in low-rank modules of the
recorded ranks, checks every factor's shape against its recorded rank and loads the
state dict strictly, so the loaded model computes bit-identical outputs. Every problem
raises :class:`CompressedFormatError` naming the file and the problem.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import transformers
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from lpaf.accounting import count_parameters
from lpaf.factorize.layer import lowrank_modules, swap_to_lowrank
from lpaf.io import atomic_dir
from lpaf.targets import DEFAULT_TARGET_PATTERNS

FORMAT_VERSION = 1
METADATA_FILE = "lpaf.json"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
_RESERVED_KEYS = frozenset(
    {
        "format_version",
        "model_class",
        "ranks",
        "shapes",
        "target_patterns",
        "retained_fraction",
        "parameters",
    }
)


class CompressedFormatError(Exception):
    """A compressed-model directory is missing, incomplete, corrupt or inconsistent."""


def is_compressed(path: str | os.PathLike) -> bool:
    """True when ``path`` is a directory holding ``lpaf.json`` and the weights file
    (a cheap check for dispatch; :func:`load_compressed` validates)."""
    path = Path(path)
    return (path / METADATA_FILE).is_file() and (path / WEIGHTS_FILE).is_file()


def save_compressed(
    model: nn.Module,
    tokenizer: Any,
    path: str | os.PathLike,
    metadata: Mapping[str, Any] | None = None,
    target_patterns: Sequence[str] = DEFAULT_TARGET_PATTERNS,
) -> dict[str, Any]:
    """Write ``model`` (a transformers model, possibly with low-rank modules) and
    ``tokenizer`` (may be None) to the directory ``path``, atomically (a temporary
    directory renamed into place). Returns the ``lpaf.json`` content written."""
    overlap = _RESERVED_KEYS & set(metadata or {})
    if overlap:
        raise ValueError(f"metadata keys {sorted(overlap)} are written by save_compressed")
    config = getattr(model, "config", None)
    if config is None:
        raise ValueError("model has no transformers config; cannot save in the lpaf format")
    lowrank = lowrank_modules(model)
    parameters = count_parameters(model, target_patterns)
    parameters.pop("per_target")
    record: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "model_class": type(model).__name__,
        "ranks": {name: module.rank for name, module in lowrank.items()},
        "shapes": {
            name: [module.out_features, module.in_features] for name, module in lowrank.items()
        },
        "target_patterns": list(target_patterns),
        "retained_fraction": parameters["retained_fraction"],
        "parameters": parameters,
        **dict(metadata or {}),
    }
    # clone: safetensors refuses tensors that share storage
    state = {
        key: value.detach().cpu().contiguous().clone() for key, value in model.state_dict().items()
    }
    with atomic_dir(path) as tmp:
        config.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        (tmp / METADATA_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return record


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The validated content of ``<path>/lpaf.json``."""
    path = Path(path)
    if not path.is_dir():
        raise CompressedFormatError(f"{path}: not a directory (compressed model expected)")
    file = path / METADATA_FILE
    if not file.is_file():
        raise CompressedFormatError(f"{file}: missing (not an lpaf compressed model)")
    try:
        record = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CompressedFormatError(f"{file}: corrupt JSON ({error})") from error
    if not isinstance(record, dict):
        raise CompressedFormatError(f"{file}: expected a JSON object")
    version = record.get("format_version")
    if version != FORMAT_VERSION:
        raise CompressedFormatError(
            f"{file}: unknown format_version {version!r} (this lpaf reads {FORMAT_VERSION})"
        )
    ranks = record.get("ranks")
    if not isinstance(ranks, dict) or not all(
        isinstance(r, int) and r >= 1 for r in ranks.values()
    ):
        raise CompressedFormatError(f"{file}: 'ranks' must map module names to ranks >= 1")
    return record


def _build_model(path: Path, record: Mapping[str, Any]) -> nn.Module:
    config_file = path / CONFIG_FILE
    if not config_file.is_file():
        raise CompressedFormatError(f"{config_file}: missing")
    try:
        config = transformers.AutoConfig.from_pretrained(str(path))
    except Exception as error:  # transformers raises many kinds
        raise CompressedFormatError(f"{config_file}: cannot read config ({error})") from error
    model_class = getattr(transformers, str(record.get("model_class", "")), None)
    if isinstance(model_class, type) and issubclass(model_class, transformers.PreTrainedModel):
        return model_class(config)
    return transformers.AutoModelForSequenceClassification.from_config(config)


def _read_weights(file: Path) -> dict[str, torch.Tensor]:
    if not file.is_file():
        raise CompressedFormatError(f"{file}: missing")
    try:
        with safe_open(str(file), framework="pt", device="cpu") as handle:
            return {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as error:  # safetensors raises its own error types
        raise CompressedFormatError(f"{file}: corrupt safetensors file ({error})") from error


def load_compressed(path: str | os.PathLike, device: torch.device | str = "cpu") -> nn.Module:
    """Rebuild the model saved by :func:`save_compressed`, in eval mode on ``device``."""
    path = Path(path)
    record = read_metadata(path)
    weights_file = path / WEIGHTS_FILE
    if not weights_file.is_file():
        raise CompressedFormatError(f"{weights_file}: missing")
    model = _build_model(path, record)
    ranks: dict[str, int] = record["ranks"]
    for name in ranks:
        try:
            module = model.get_submodule(name)
        except AttributeError as error:
            raise CompressedFormatError(
                f"{path / METADATA_FILE}: module {name!r} (in 'ranks') does not exist in "
                f"{type(model).__name__}"
            ) from error
        if not (hasattr(module, "in_features") and hasattr(module, "out_features")):
            raise CompressedFormatError(
                f"{path / METADATA_FILE}: module {name!r} (in 'ranks') is not a linear layer"
            )
    swap_to_lowrank(model, ranks)
    state = _read_weights(weights_file)
    expected = model.state_dict()
    for name, rank in ranks.items():
        module = model.get_submodule(name)
        for key, shape in (
            (f"{name}.down.weight", (rank, module.in_features)),
            (f"{name}.up.weight", (module.out_features, rank)),
        ):
            if key in state and tuple(state[key].shape) != shape:
                raise CompressedFormatError(
                    f"{weights_file}: tensor {key} has shape {tuple(state[key].shape)}, "
                    f"expected {shape} for the rank {rank} recorded in {METADATA_FILE}"
                )
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CompressedFormatError(
            f"{weights_file}: state dict does not match the architecture "
            f"(missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''})"
        )
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise CompressedFormatError(
                f"{weights_file}: tensor {key} has shape {tuple(tensor.shape)}, "
                f"the architecture expects {tuple(expected[key].shape)}"
            )
    float_dtypes = {t.dtype for t in state.values() if t.is_floating_point()}
    if len(float_dtypes) == 1:
        model = model.to(float_dtypes.pop())
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()
