# Config validation, the run's model, tasks and seeds, wildcard constraints and resource
# helpers shared by all rules. Each stage's paths, input functions and targets live in
# its own rules file.
import os
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "src"))

from lpaf.config import ConfigError, validate_config  # noqa: E402
import lpaf.methods  # noqa: E402
import lpaf.pipelines  # noqa: E402
from lpaf.factorize import paths as factorize_paths  # noqa: E402
from lpaf.finetune import paths as finetune_paths  # noqa: E402
from lpaf.prune import paths as prune_paths  # noqa: E402
from lpaf.recover import paths as recover_paths  # noqa: E402
from lpaf.sources import label  # noqa: E402
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
for _block in (config["data"], config["qa"]):
    if not os.path.isabs(_block["local_dir"]):
        _block["local_dir"] = str(Path(workflow.basedir) / _block["local_dir"])

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
# Every table and figure of the paper (the `paper` target); each rules file adds its own.
PAPER = []


wildcard_constraints:
    model=re.escape(MODEL),
    task="|".join(re.escape(t) for t in TASKS),
    seed=r"\d+",
    rho=r"[0-9]*\.?[0-9]+",
    density=r"[0-9]*\.?[0-9]+",


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
