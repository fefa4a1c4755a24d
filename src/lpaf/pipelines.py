"""Named method chains of the comparison (METHOD.md's main table and ablations).

A pipeline is ``{prune, factorize, recover, rank_rule}`` (config ``pipelines:``); at a
budget ``rho`` it is a chain of the existing rules' run directories (below relative to
``results/{model}/{task}/`` and followed by ``/seed{seed}``); :func:`runs` gives the
wildcards of each, which ``workflow/rules/recover.smk`` puts into the stage rules' path
templates:

* ``prune``: ``prune/{method}/density{d}`` with ``d`` the pipeline's ``density``, or
  rho when it has none (then the sparse model keeps rho of the target weights, the
  same parameter budget as rank-rho factors); a sparse-only row always prunes to rho;
* ``factorize``: ``factorize/{source}/{method}/{rank_rule}/rho{rho}`` with source
  ``finetune`` or ``prune-{method}-density{d}`` (:mod:`lpaf.sources`);
* ``recover``: ``recover/{pipeline}/rho{rho}``.

The row's final model is the last stage present; ``fine-tuned`` (the dense teacher,
``finetune``) is a built-in reference row. So a user adds a row by adding a pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lpaf.sources import FINETUNE, label, to_segment

REFERENCE = "fine-tuned"


@dataclass(frozen=True)
class PipelineRuns:
    """The runs of one pipeline at one rho: for each stage present, the wildcards of
    that stage's run directory besides ``model``, ``task`` and ``seed`` (the rules
    files' ``PRUNE_RUN``, ``FACTORIZE_RUN``, ``RECOVER_RUN`` templates take them)."""

    prune: dict[str, str] | None
    factorize: dict[str, str] | None
    recover: dict[str, str] | None

    @property
    def final(self) -> str:
        """The stage whose model is the row's result."""
        return next((s for s in ("recover", "factorize", "prune") if getattr(self, s)), FINETUNE)

    @property
    def sparse(self) -> str:
        """The stage whose model the factors come from (mixed_rank's sparse weights)."""
        return "prune" if self.prune else FINETUNE


def runs(config: dict[str, Any], name: str, rho: float | str) -> PipelineRuns:
    """The runs of pipeline ``name`` at ``rho`` (:class:`PipelineRuns`)."""
    if name == REFERENCE:
        return PipelineRuns(None, None, None)
    spec = config["pipelines"][name]
    r = label(rho)
    d = label(spec["density"]) if spec.get("density") is not None else r
    prune = {"method": spec["prune"], "density": d} if spec["prune"] else None
    source = f"prune/{spec['prune']}/density{d}" if spec["prune"] else FINETUNE
    factorize = None
    if spec["factorize"]:
        factorize = {
            "source": to_segment(source),
            "method": spec["factorize"],
            "rank_rule": spec.get("rank_rule", "uniform"),
            "rho": r,
        }
    recover = {"pipeline": name, "rho": r} if spec["recover"] else None
    return PipelineRuns(prune, factorize, recover)


def check(config: dict[str, Any]) -> list[str]:
    """Problems with ``pipelines``/``study`` a schema cannot see (empty if none)."""
    problems = []
    for name, spec in config["pipelines"].items():
        if spec["recover"] and not spec["factorize"]:
            problems.append(f"pipelines.{name}: recover without factorize (nothing to recover)")
        if spec.get("density") is not None and not (spec["prune"] and spec["factorize"]):
            problems.append(
                f"pipelines.{name}: density needs both prune and factorize (a sparse-only "
                "row is pruned to rho, and without prune there is nothing to prune)"
            )
        if not spec["prune"] and not spec["factorize"]:
            problems.append(
                f"pipelines.{name}: neither prune nor factorize (that is the fine-tuned row)"
            )
    known = set(config["pipelines"]) | {REFERENCE}
    for table in ("main_table", "ablations"):
        for row in config["study"][table]:
            if row not in known:
                problems.append(f"study.{table}: {row!r} is not a pipeline; known: {sorted(known)}")
    for row in config["study"]["ablations"]:
        if row in config["pipelines"] and not config["pipelines"][row]["factorize"]:
            problems.append(
                f"study.ablations: {row!r} has no factorize step to compare before/after"
            )
    return problems


def study_rows(config: dict[str, Any]) -> list[str]:
    """Every pipeline the study runs (main table and ablations, in order, no duplicates)."""
    rows = list(config["study"]["main_table"]) + list(config["study"]["ablations"])
    return list(dict.fromkeys(rows))
