"""Stage 5 (rule ``recover``): fine-tune a factorized model with its pipeline's
recovery schedule (:mod:`lpaf.recover`), distilling from the teacher when
``recover.distillation.enabled``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lpaf.accounting import count_parameters
from lpaf.compressed import load_compressed, read_metadata, save_compressed
from lpaf.distill import DistillationHook
from lpaf.io import write_dataframe
from lpaf.modeling import load_model, load_tokenizer
from lpaf.recover.config import RecoverConfig
from lpaf.recover.hook import RecoveryHook
from lpaf.runtime import Job, TrainingOutputs, TrainingStage
from lpaf.targets import find_targets
from lpaf.train import TrainSettings


@dataclass(frozen=True)
class Inputs:
    """``factorized``: the stage 4 model to train; ``sparse``: the model its factors were
    computed from (the pruned model, or the fine-tuned one for unpruned pipelines;
    ``mixed_rank`` takes its target weights as the sparse full-rank path);
    ``teacher``: the fine-tuned model distilled from."""

    factorized: str
    sparse: str
    teacher: str


# ``results/{model}/{task}/recover/{pipeline}/rho{rho}/seed{seed}/``
Outputs = TrainingOutputs


def run(
    config: dict[str, Any], job: Job, pipeline: str, inputs: Inputs, out: Outputs
) -> dict[str, Any]:
    """Train, then write ``out.model`` in the compressed format (only the factors),
    ``out.train_log``, ``out.predictions`` and, last, ``out.metrics``."""
    block = config["recover"]
    settings = TrainSettings.from_dict(block)
    patterns = config["target_modules"]
    model = load_compressed(inputs.factorized)
    stage = TrainingStage(config, job, settings, model, load_tokenizer(str(inputs.factorized)))
    recover_config = RecoverConfig.from_config(config, config["pipelines"][pipeline]["recover"])
    sparse_weights = None
    if recover_config.schedule == "mixed_rank":
        sparse_model = load_model(inputs.sparse)
        sparse_weights = {
            name: module.weight.detach().clone()
            for name, module in find_targets(sparse_model, patterns).items()
        }
        del sparse_model
    hooks: list = [RecoveryHook(recover_config, sparse_weights)]
    distill = block["distillation"]
    teacher = load_model(inputs.teacher)  # distilled from, and the curves' reference
    if distill["enabled"]:
        hooks.append(DistillationHook.from_config(teacher, distill))
    result = stage.train(
        Path(out.metrics).parent,
        hooks,
        f"recover {pipeline} {stage.task.name} seed {job.seed}",
        teacher=teacher,
    )
    per_split, tables = stage.evaluate()
    parameters = count_parameters(stage.model, patterns)
    factorized = read_metadata(inputs.factorized)
    metadata = {
        "stage": "recover",
        "pipeline": pipeline,
        "schedule": recover_config.schedule,
        "method": factorized.get("method"),
        "rank_rule": factorized.get("rank_rule"),
        "rho_target": factorized.get("rho_target"),
        "rho_achieved": parameters["retained_fraction"],
        "source": factorized.get("source"),
        "source_model": str(inputs.factorized),
        "task": stage.task.name,
        "seed": int(job.seed),
    }
    save_compressed(
        stage.model, stage.tokenizer, out.model, metadata=metadata, target_patterns=patterns
    )
    write_dataframe(out.train_log, result.log)
    write_dataframe(out.predictions, tables[stage.primary])
    return stage.finish(
        out.metrics,
        {
            **metadata,
            **stage.common_metrics(per_split),
            "parameters": parameters,
            "recover_settings": {k: v for k, v in block.items() if k not in vars(settings)},
        },
    )
