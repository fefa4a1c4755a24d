"""Stage 1 (rule ``finetune``): dense fine-tuning of ``config['model']`` on the task;
the result is the teacher every later stage starts from or distils from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lpaf.io import atomic_dir, write_dataframe
from lpaf.modeling import load_for_task
from lpaf.runtime import Job, TrainingOutputs, TrainingStage
from lpaf.tasks import get_task
from lpaf.train import TrainSettings

# ``results/{model}/{task}/finetune/seed{seed}/``
Outputs = TrainingOutputs


def run(config: dict[str, Any], job: Job, out: Outputs) -> dict[str, Any]:
    """Fine-tune, evaluate every dev split, save the model, its training log, the first
    split's predictions and, last, ``metrics.json``."""
    settings = TrainSettings.from_dict(config["finetune"])
    model, tokenizer = load_for_task(config["model"], get_task(job.task), seed=int(job.seed))
    stage = TrainingStage(config, job, settings, model, tokenizer)
    result = stage.train(
        work_dir=Path(out.metrics).parent,
        hooks=(),
        description=f"finetune {job.task} seed {job.seed}",
    )
    per_split, tables = stage.evaluate()
    with atomic_dir(out.model) as tmp:
        stage.model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    write_dataframe(out.train_log, result.log)
    write_dataframe(out.predictions, tables[stage.primary])
    head = {
        "stage": "finetune",
        "task": stage.task.name,
        "model": config["model"],
        "seed": int(job.seed),
    }
    return stage.finish(out.metrics, {**head, **stage.common_metrics(per_split)})
