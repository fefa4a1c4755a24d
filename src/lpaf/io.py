"""Writing results so that they are complete or absent.

Every file or directory a rule produces goes through these helpers: the content is
written under a temporary name in the same directory and renamed into place (an
atomic operation on POSIX file systems), so a job killed half-way never leaves a
file that a rerun would take for a finished result.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _tmp_sibling(path: Path, suffix: str = "") -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + suffix, dir=path.parent)
    os.close(fd)
    return Path(name)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary file path; on success it is renamed to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary directory; on success it replaces ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / "x")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def _finite(obj: Any) -> Any:
    """JSON has no NaN: write ``null`` for non-finite floats."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def write_json(path: str | os.PathLike, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_finite(data), indent=2, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_dataframe(path: str | os.PathLike, df, **kwargs) -> None:
    """Write a pandas DataFrame as CSV (``.csv``) or TSV (``.tsv``) atomically."""
    path = Path(path)
    sep = "\t" if path.suffix == ".tsv" else ","
    with atomic_path(path) as tmp:
        df.to_csv(tmp, sep=sep, index=False, **kwargs)


def save_tensors(path: str | os.PathLike, tensors: dict, metadata=None) -> None:
    """``safetensors`` file written atomically (contiguous CPU copies)."""
    from safetensors.torch import save_file

    data = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(data, str(tmp), metadata=metadata)


def load_target_tensors(path: str | os.PathLike, target_names, what: str) -> dict:
    """``{target name: tensor}`` from a safetensors file keyed by target module name
    (stage 2's masks and importance, stage 4's gradient statistics), checked against the
    model's targets."""
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    names = list(target_names)
    missing = [n for n in names if n not in tensors]
    if missing:
        raise ValueError(
            f"{path}: {what} has no entry for target module(s) {missing[:4]}"
            f"{'...' if len(missing) > 4 else ''} (its keys: {sorted(tensors)[:4]}...); "
            "keys must be the full target module names of the model"
        )
    return {n: tensors[n] for n in names}
