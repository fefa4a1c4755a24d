# Config validation, wildcard constraints and input functions shared by all rules.
import os
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from lpaf.config import ConfigError, validate_config  # noqa: E402
import lpaf.pipelines  # noqa: E402
from lpaf.modeling import model_tag  # noqa: E402

try:
    validate_config(config, base_dir=workflow.basedir)
except ConfigError as exc:
    raise WorkflowError(f"invalid configuration: {exc}") from None

if config["hub_offline"]:
    # Inherited by every job: a failed hub call would otherwise retry for ~20 s.
    for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ[_var] = "1"

# Relative data paths are relative to the repository, wherever snakemake runs from.
if not os.path.isabs(config["data"]["local_dir"]):
    config["data"]["local_dir"] = str(
        Path(workflow.basedir) / config["data"]["local_dir"]
    )

# `lpaf plan` (lpaf.plan) reads the validated config the workflow sees; an optional
# variable, set by it alone (so not an `envvars:` requirement).
PLAN_CONFIG = os.environ.get("LPAF_PLAN_CONFIG")
if PLAN_CONFIG:
    import json

    Path(PLAN_CONFIG).write_text(json.dumps(config, default=str))

MODEL = config["model_tag"] or model_tag(config["model"])
TASKS = list(config["tasks"])
SEEDS = [int(s) for s in config["seeds"]]
RESULTS = "results"
CUDA = config["device"] == "cuda"
# What the comparison's pipelines need from the stage rules (lpaf.pipelines).
STUDY_NEEDS = lpaf.pipelines.needed(config)


wildcard_constraints:
    model=re.escape(MODEL),
    task="|".join(re.escape(t) for t in TASKS),
    seed=r"\d+",


def train_runtime_minutes(stage):
    """A generous wall-time request for a training job, from the config (minutes)."""
    settings = config[stage]
    steps = settings["max_steps"] or 2000 * settings["epochs"]
    per_step_s = 0.2 if CUDA else 2.0
    return int(30 + steps * per_step_s / 60)


def train_resources(stage):
    resources = dict(
        mem_mb=8000 if CUDA else 6000, runtime=train_runtime_minutes(stage)
    )
    if CUDA:
        resources["gpu"] = 1
    return resources


# --- factorize (stage 4) -------------------------------------------------------------
from lpaf.sources import run_dir as source_run_dir  # noqa: E402

FACTORIZE_GRADIENTS = (
    "results/{model}/{task}/factorize/{source}/gradients/seed{seed}/{kind}.safetensors"
)


def factorize_source_model(wildcards):
    source = source_run_dir(
        RESULTS, wildcards.model, wildcards.task, wildcards.source, wildcards.seed
    )
    return f"{source}/model"


def factorize_inputs(wildcards):
    """The source model of a factorize job; for a pruned source (lpaf.sources) also
    stage 2's masks and importance; the source's gradient statistics (rule
    factorize_gradients) where the method needs them."""
    model_dir = factorize_source_model(wildcards)
    inputs = {"model": model_dir}
    pruned = wildcards.source != "finetune"
    if pruned:
        source = model_dir.rpartition("/")[0]
        inputs["masks"] = f"{source}/masks.safetensors"
        inputs["importance"] = f"{source}/importance.safetensors"
    method = wildcards.svd.partition("-")[0]
    gradients = {key: wildcards[key] for key in ("model", "task", "source", "seed")}
    if method == "fwsvd":
        inputs["fisher"] = FACTORIZE_GRADIENTS.format(**gradients, kind="fisher")
    elif method.startswith("sparsity_aware") and not pruned:
        if config["factorize"]["dense_importance"] == "taylor":
            inputs["taylor"] = FACTORIZE_GRADIENTS.format(**gradients, kind="taylor")
    return inputs


def factorize_runtime(wildcards):
    """Minutes; the sparsity_aware solver dominates (~0.5 s per iteration per MiniLM
    matrix on 2 CPU cores, ~10x that per BERT-base matrix)."""
    method = wildcards.svd.partition("-")[0]
    per_iteration = (1 if CUDA else 8) if method == "sparsity_aware" else 0
    return 30 + per_iteration * config["factorize"]["n_iter"]


# --- end factorize -------------------------------------------------------------------


# --- recover / comparison (stage 5) ---------------------------------------------
def recover_inputs(wildcards):
    chain = lpaf.pipelines.runs(config, wildcards.pipeline, wildcards.rho)
    base = f"{RESULTS}/{wildcards.model}/{wildcards.task}"
    return {
        "factorized": f"{base}/{chain.factorize}/seed{wildcards.seed}/model",
        "sparse": f"{base}/{chain.sparse}/seed{wildcards.seed}/model",
        "teacher": f"{base}/finetune/seed{wildcards.seed}/model",
    }


def study_records(filename, rows):
    """(pipeline, rho, task, seed, path) of `filename` in the final run of each row."""
    records = []
    for name in rows:
        rhos = [1.0] if name == lpaf.pipelines.REFERENCE else config["study"]["rhos"]
        for rho in rhos:
            chain = lpaf.pipelines.runs(config, name, rho)
            for task in TASKS:
                for seed in SEEDS:
                    path = f"results/{MODEL}/{task}/{chain.final}/seed{seed}/{filename}"
                    init = (
                        f"results/{MODEL}/{task}/{chain.init}/seed{seed}/metrics_init.json"
                        if chain.init
                        else None
                    )
                    records.append(
                        dict(
                            pipeline=name,
                            rho=float(rho),
                            task=task,
                            seed=seed,
                            path=path,
                            init=init,
                        )
                    )
    return records

# --- end recover / comparison ---------------------------------------------------
