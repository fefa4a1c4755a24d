"""Stage 5's results layout and the input functions of ``workflow/rules/recover.smk``.

A pipeline at a rho is a chain of the stage rules' runs (:func:`lpaf.pipelines.runs`
gives the wildcards of each); the path templates are the stages' own
(``lpaf.<stage>.paths.RUN``), so the links of the comparison's DAG are visible here.
"""

from __future__ import annotations

from typing import Any

from lpaf import pipelines
from lpaf.factorize import paths as factorize_paths
from lpaf.finetune import paths as finetune_paths
from lpaf.prune import paths as prune_paths

RUN = "results/{model}/{task}/recover/{pipeline}/rho{rho}/seed{seed}"
TEMPLATES = {
    "finetune": finetune_paths.RUN,
    "prune": prune_paths.RUN,
    "factorize": factorize_paths.RUN,
    "recover": RUN,
}


def pipeline_run(chain: pipelines.PipelineRuns, stage: str, model, task, seed) -> str:
    """The run directory of ``stage`` in a pipeline's chain."""
    keys = getattr(chain, stage) if stage != "finetune" else {}
    return TEMPLATES[stage].format(model=model, task=task, seed=seed, **keys)


def inputs(config: dict[str, Any], wildcards) -> dict[str, str]:
    """The factorized model to train, the model its factors came from (mixed_rank's
    sparse weights) and the teacher."""
    chain = pipelines.runs(config, wildcards.pipeline, wildcards.rho)
    run = {"model": wildcards.model, "task": wildcards.task, "seed": wildcards.seed}
    return {
        "factorized": pipeline_run(chain, "factorize", **run) + "/model",
        "sparse": pipeline_run(chain, chain.sparse, **run) + "/model",
        "teacher": pipeline_run(chain, "finetune", **run) + "/model",
    }


def study_records(config: dict[str, Any], model: str, filename: str, rows) -> list[dict]:
    """``(pipeline, rho, task, seed, path, init)`` of ``filename`` in the final run of
    every row x rho x task x seed; ``init``: the factorized model's
    ``metrics_init.json`` (``None`` without a factorize step)."""
    records = []
    for name in rows:
        rhos = [1.0] if name == pipelines.REFERENCE else config["study"]["rhos"]
        for rho in rhos:
            chain = pipelines.runs(config, name, rho)
            for task in config["tasks"]:
                for seed in config["seeds"]:
                    run = {"model": model, "task": task, "seed": int(seed)}
                    init = None
                    if chain.factorize:
                        init = pipeline_run(chain, "factorize", **run) + "/metrics_init.json"
                    records.append(
                        dict(
                            pipeline=name,
                            rho=float(rho),
                            task=task,
                            seed=int(seed),
                            path=f"{pipeline_run(chain, chain.final, **run)}/{filename}",
                            init=init,
                        )
                    )
    return records


def curve_records(config: dict[str, Any], model: str) -> list[dict]:
    """:func:`study_records` of ``train_log.csv`` for every study row that ends in a
    recovery run (main table and ablations): the recovery curves."""
    rows = pipelines.study_rows(config)
    return [
        r for r in study_records(config, model, "train_log.csv", rows) if "/recover/" in r["path"]
    ]
