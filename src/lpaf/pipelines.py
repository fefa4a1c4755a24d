"""Named method chains of the comparison (METHOD.md's main table and ablations).

A pipeline is ``{prune, factorize, recover, rank_rule}`` (config ``pipelines:``); at a
budget ``rho`` it is a chain of the existing rules' run directories, all relative to
``results/{model}/{task}/`` and followed by ``/seed{seed}``:

* ``prune``: ``prune/{method}/density{rho}`` (pruned to density rho: the sparse model
  keeps rho of the target weights, the same parameter budget as rank-rho factors);
* ``factorize``: ``factorize/{source}/{method}[-{rank_rule}]/rho{rho}`` with source
  ``finetune`` or ``prune-{method}-density{rho}`` (:mod:`lpaf.sources`); the suffix is
  present only when the pipeline's rank rule differs from ``factorize.rank_rule``;
* ``recover``: ``recover/{pipeline}/rho{rho}``.

The row's final model is the last stage present; ``fine-tuned`` (the dense teacher,
``finetune``) is a built-in reference row. So a user adds a row by adding a pipeline.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from lpaf.sources import FINETUNE, to_segment

REFERENCE = "fine-tuned"


def label(value: float | str) -> str:
    """The number as it appears in paths: ``0.3``, ``0.05``."""
    return f"{float(value):g}"


@dataclass(frozen=True)
class PipelineRuns:
    prune: str | None
    factorize: str | None
    recover: str | None
    sparse: str  # the model the factors come from (mixed_rank's sparse weights)

    @property
    def final(self) -> str:
        return self.recover or self.factorize or self.prune or FINETUNE

    @property
    def init(self) -> str | None:
        """The run scored before any recovery training (the factorized model)."""
        return self.factorize


def runs(config: dict[str, Any], name: str, rho: float | str) -> PipelineRuns:
    """Run directories (relative to ``results/{model}/{task}``) of pipeline ``name`` at ``rho``."""
    if name == REFERENCE:
        return PipelineRuns(None, None, None, FINETUNE)
    spec = config["pipelines"][name]
    r = label(rho)
    prune = f"prune/{spec['prune']}/density{r}" if spec["prune"] else None
    source = prune or FINETUNE
    factorize = None
    if spec["factorize"]:
        method = spec["factorize"]
        rank_rule = spec.get("rank_rule", "uniform")
        if rank_rule != config["factorize"]["rank_rule"]:
            method = f"{method}-{rank_rule}"
        factorize = f"factorize/{to_segment(source)}/{method}/rho{r}"
    recover = f"recover/{name}/rho{r}" if spec["recover"] else None
    return PipelineRuns(prune, factorize, recover, source)


def check(config: dict[str, Any]) -> list[str]:
    """Problems with ``pipelines``/``study`` a schema cannot see (empty if none)."""
    problems = []
    for name, spec in config["pipelines"].items():
        if spec["recover"] and not spec["factorize"]:
            problems.append(f"pipelines.{name}: recover without factorize (nothing to recover)")
        if not spec["prune"] and not spec["factorize"]:
            problems.append(
                f"pipelines.{name}: neither prune nor factorize (that is the fine-tuned row)"
            )
        if spec["factorize"] in ("sparsity_aware", "sparsity_aware_rows") and not spec["prune"]:
            pass  # allowed: importance from |W*G| of the dense model (factorize.dense_importance)
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


def needed(config: dict[str, Any]) -> dict[str, set[str]]:
    """What the study needs from the stage rules: pruning methods and densities,
    factorize methods (path segments), recover pipelines and rhos."""
    out: dict[str, set[str]] = {
        k: set()
        for k in ("prune_methods", "prune_densities", "factorize_methods", "recover", "rhos")
    }
    for name in study_rows(config):
        if name == REFERENCE:
            continue
        spec = config["pipelines"][name]
        for rho in config["study"]["rhos"]:
            out["rhos"].add(label(rho))
            chain = runs(config, name, rho)
            if chain.prune:
                out["prune_methods"].add(spec["prune"])
                out["prune_densities"].add(label(rho))
            if chain.factorize:
                out["factorize_methods"].add(chain.factorize.split("/")[2])
            if chain.recover:
                out["recover"].add(name)
    return out


def final_paths(
    config: dict[str, Any],
    rows: Iterable[str],
    model: str,
    tasks,
    seeds,
    filename: str = "evaluation.json",
) -> list[str]:
    """``results/...`` paths of ``filename`` in the final run of every row x rho x task x seed."""
    paths = []
    for name in rows:
        rhos = [None] if name == REFERENCE else config["study"]["rhos"]
        for rho in rhos:
            chain = runs(config, name, rho if rho is not None else 1.0)
            for task in tasks:
                for seed in seeds:
                    paths.append(f"results/{model}/{task}/{chain.final}/seed{seed}/{filename}")
    return list(dict.fromkeys(paths))
