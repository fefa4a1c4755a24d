"""Which model a stage starts from, as written in the config and in results paths.

A *source* in the config (``factorize.sources``) names a model the workflow writes:

* ``finetune``: the dense fine-tuned teacher,
  ``results/{model}/{task}/finetune/seed{seed}/``;
* ``prune/{method}/density{d}``: a pruned model,
  ``results/{model}/{task}/prune/{method}/density{d}/seed{seed}/``, e.g.
  ``prune/movement/density0.3``.

Results paths must hold it in one path segment, so the *segment* encoding replaces
``/`` by ``-``: ``finetune`` and ``prune-movement-density0.3``. This is unambiguous
because pruning method names contain no ``-`` (they are ``[a-z_]`` words such as
``first_order_taylor``) and the density is a plain decimal number.
"""

from __future__ import annotations

import re
from pathlib import Path

FINETUNE = "finetune"
_SOURCE = re.compile(r"^prune/(?P<method>[a-z][a-z_]*)/density(?P<density>[0-9]*\.?[0-9]+)$")
_SEGMENT = re.compile(r"^prune-(?P<method>[a-z][a-z_]*)-density(?P<density>[0-9]*\.?[0-9]+)$")
# for Snakemake's wildcard_constraints
SEGMENT_PATTERN = r"finetune|prune-[a-z][a-z_]*-density[0-9]*\.?[0-9]+"


def label(value: float | str) -> str:
    """A number as it appears in results paths: ``0.3`` -> ``"0.3"`` (``rho0.3``,
    ``density0.3``), ``0.05`` -> ``"0.05"``."""
    return f"{float(value):g}"


def _convert(value: str, pattern: re.Pattern, what: str, sep: str) -> str:
    if value == FINETUNE:
        return value
    match = pattern.match(value)
    if match is None:
        raise ValueError(
            f"{what} {value!r} is neither 'finetune' nor 'prune{sep}<method>{sep}density<d>'"
        )
    return sep.join(("prune", match["method"], f"density{match['density']}"))


def to_segment(source: str) -> str:
    """``prune/movement/density0.3`` -> ``prune-movement-density0.3``; ``finetune`` as is."""
    return _convert(source, _SOURCE, "source", "/").replace("/", "-")


def from_segment(segment: str) -> str:
    """Inverse of :func:`to_segment`."""
    return _convert(segment, _SEGMENT, "source segment", "-").replace("-", "/")


def is_pruned(source: str) -> bool:
    """True for a pruned source (either encoding)."""
    return source != FINETUNE


def run_dir(results: str | Path, model: str, task: str, source: str, seed: int | str) -> str:
    """The run directory of ``source`` (either encoding) for ``model``, ``task``, ``seed``."""
    source = source if "/" in source or source == FINETUNE else from_segment(source)
    return str(Path(results, model, task, source, f"seed{seed}"))
