"""What a saved model directory holds: ``lpaf inspect DIR``.

Any directory the workflow writes as ``.../model`` works: a dense fine-tuned model, a
pruned one (a plain Hugging Face model with zeros in its weights) or a compressed one
(the :mod:`lpaf.compressed` format). The description comes from the model itself
(:func:`lpaf.accounting.count_parameters` on the loaded weights) plus what the stage
recorded: ``lpaf.json`` for a compressed model, the stage's ``metrics.json`` beside the
directory for the others.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from lpaf.accounting import count_parameters
from lpaf.targets import DEFAULT_TARGET_PATTERNS

#: recorded fields shown when present, in this order
_PROVENANCE = (
    "stage",
    "task",
    "seed",
    "pipeline",
    "method",
    "schedule",
    "rank_rule",
    "rho_target",
    "target_density",
    "achieved_density",
    "source",
    "source_model",
    "teacher",
)


class NotAModelError(Exception):
    """The path is not a model directory the workflow wrote (or is a broken one)."""


def _recorded(path: Path) -> tuple[str, dict[str, Any]]:
    """(kind of record, its content): ``lpaf.json`` or the sibling ``metrics.json``."""
    from lpaf.compressed import CompressedFormatError, read_metadata

    if (path / "lpaf.json").exists():
        try:
            return "lpaf.json", read_metadata(path)
        except CompressedFormatError as error:
            raise NotAModelError(str(error)) from error
    sibling = path.parent / "metrics.json"
    if sibling.is_file():
        try:
            record = json.loads(sibling.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            record = None
        if isinstance(record, dict):
            return str(sibling), record
    return "", {}


def load_saved(path: str | os.PathLike) -> Any:
    """:func:`lpaf.load_model` on ``path``, every failure as :class:`NotAModelError`
    naming the directory and the problem."""
    from lpaf.compressed import CompressedFormatError
    from lpaf.modeling import ModelNotFoundError, load_model

    path = Path(path)
    if not path.is_dir():
        raise NotAModelError(f"{path}: not a directory (a saved model directory expected)")
    if not (path / "config.json").is_file() and not (path / "lpaf.json").exists():
        raise NotAModelError(
            f"{path}: no config.json or lpaf.json: not a model directory (the workflow "
            "saves models as results/<model>/<task>/<stage>/.../model)"
        )
    try:
        return load_model(path)
    except (CompressedFormatError, ModelNotFoundError, OSError, ValueError) as error:
        raise NotAModelError(f"{path}: cannot load the model ({error})") from error


def describe(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON-ready description of the model directory ``path``: ``kind`` (``low-rank``,
    ``sparse`` or ``dense``), ``provenance`` (the recorded fields of ``_PROVENANCE``),
    ``parameters`` (counts without the per-module table) and ``modules`` (per target:
    shape, rank or ``None``, dense and compressed cost, density)."""
    path = Path(path)
    model = load_saved(path)
    record_file, record = _recorded(path)
    patterns = record.get("target_patterns") or list(DEFAULT_TARGET_PATTERNS)
    counts = count_parameters(model, patterns)
    per_target = counts.pop("per_target")
    modules = {
        name: {**entry, "density": entry["compressed"] / entry["dense"]}
        for name, entry in per_target.items()
    }
    if any(entry["rank"] is not None for entry in modules.values()):
        kind = "low-rank"
    elif counts["targets_compressed"] < counts["targets_dense"]:
        kind = "sparse"
    else:
        kind = "dense"
    return {
        "path": str(path),
        "kind": kind,
        "model_class": type(model).__name__,
        "record": record_file,
        "provenance": {key: record[key] for key in _PROVENANCE if key in record},
        "parameters": counts,
        "modules": modules,
    }


def format_description(description: dict[str, Any], per_module: bool = False) -> str:
    """The text ``lpaf inspect`` prints."""
    counts = description["parameters"]
    lines = [
        f"{description['path']}: {description['kind']} {description['model_class']}",
    ]
    provenance = description["provenance"]
    if provenance:
        lines.append(f"recorded in {description['record']}:")
        lines += [f"  {key}: {value}" for key, value in provenance.items()]
    lines += [
        f"retained fraction rho: {counts['retained_fraction']:.4f} "
        f"({counts['targets_compressed']:,} of {counts['targets_dense']:,} target weights, "
        f"{counts['num_targets']} targets)",
        f"parameters: {counts['total_compressed']:,} at compressed cost "
        f"({counts['non_embedding_compressed']:,} without embeddings); "
        f"{counts['total']:,} stored",
    ]
    modules = description["modules"]
    ranks = [m["rank"] for m in modules.values() if m["rank"] is not None]
    if ranks:
        lines.append(
            f"ranks: {len(ranks)} low-rank modules, rank min {min(ranks)}, "
            f"median {sorted(ranks)[len(ranks) // 2]}, max {max(ranks)}"
        )
    if per_module:
        width = max(len(name) for name in modules) if modules else 6
        lines.append(f"{'module':<{width}}  {'shape':>11}  {'rank':>5}  {'density':>7}")
        for name, m in modules.items():
            shape = f"{m['shape'][0]}x{m['shape'][1]}"
            rank = "-" if m["rank"] is None else str(m["rank"])
            lines.append(f"{name:<{width}}  {shape:>11}  {rank:>5}  {m['density']:>7.4f}")
    return "\n".join(lines)
