"""Stage 4's results layout and the input functions of ``workflow/rules/factorize.smk``.

``{source}`` is the config's source with ``/`` replaced by ``-`` (:mod:`lpaf.sources`):
``finetune``, or ``prune-<method>-density<d>`` for
``results/{model}/{task}/prune/<method>/density<d>/``.
"""

from __future__ import annotations

from typing import Any

from lpaf.methods import FACTORIZE_METHODS
from lpaf.sources import FINETUNE, run_dir

RUN = "results/{model}/{task}/factorize/{source}/{method}/{rank_rule}/rho{rho}/seed{seed}"
GRADIENTS = "results/{model}/{task}/factorize/{source}/gradients/seed{seed}/{kind}.safetensors"


def source_model(wildcards, results: str = "results") -> str:
    """The model directory a factorize or gradients job starts from."""
    source = run_dir(results, wildcards.model, wildcards.task, wildcards.source, wildcards.seed)
    return f"{source}/model"


def inputs(config: dict[str, Any], wildcards) -> dict[str, str]:
    """The source model of a factorize job; for a pruned source also stage 2's masks
    and importance; the source's gradient statistics (rule ``factorize_gradients``)
    where the method needs them (:data:`lpaf.methods.FACTORIZE_METHODS`)."""
    model_dir = source_model(wildcards)
    found = {"model": model_dir}
    pruned = wildcards.source != FINETUNE
    if pruned:
        source = model_dir.rpartition("/")[0]
        found["masks"] = f"{source}/masks.safetensors"
        found["importance"] = f"{source}/importance.safetensors"
    needs = FACTORIZE_METHODS[wildcards.method].needs
    keys = {key: wildcards[key] for key in ("model", "task", "source", "seed")}
    if needs == "fisher":
        found["fisher"] = GRADIENTS.format(**keys, kind="fisher")
    elif needs == "importance" and not pruned:
        if config["factorize"]["dense_importance"] == "taylor":
            found["taylor"] = GRADIENTS.format(**keys, kind="taylor")
    return found


def runtime_minutes(config: dict[str, Any], wildcards, cuda: bool) -> int:
    """A wall-time request; the sparsity_aware solver dominates (~0.5 s per iteration
    per MiniLM matrix on 2 CPU cores, ~10x that per BERT-base matrix)."""
    per_iteration = (1 if cuda else 8) if wildcards.method == "sparsity_aware" else 0
    return 30 + per_iteration * config["factorize"]["n_iter"]
