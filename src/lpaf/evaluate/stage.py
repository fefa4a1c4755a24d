"""Stage 6 (rule ``evaluate``) for any saved model directory, dense or compressed:
dev metrics, parameter counts, MACs per token and latency on the job's device."""

from __future__ import annotations

from typing import Any

from lpaf import runtime
from lpaf.accounting import count_parameters, macs_per_token
from lpaf.evaluate.config import EvaluateConfig
from lpaf.evaluate.constant import collapse_fields
from lpaf.evaluate.evaluation import measure_latency
from lpaf.io import write_json
from lpaf.modeling import load_model, load_tokenizer
from lpaf.runtime import Job
from lpaf.train import TrainSettings


def latency_seq_length(config: dict[str, Any], task, settings: EvaluateConfig) -> int:
    """The sequence length latency is timed at: ``evaluate.latency_seq_length``, or
    for extractive QA the window length ``qa.max_seq_length`` (what it runs at)."""
    if task.kind == "extractive_qa":
        from lpaf.qa.task import QASettings

        return QASettings.from_config(config).max_seq_length
    return settings.latency_seq_length


def run(config: dict[str, Any], job: Job, model_dir: str, output: str) -> dict[str, Any]:
    """Evaluate the model in ``model_dir`` on ``job.task``; writes ``output``
    (``evaluation.json``)."""
    device = runtime.start_job(config, job)
    model = load_model(model_dir, device=device)
    precision = runtime.resolve_precision(config, device, model)
    tokenizer = load_tokenizer(str(model_dir))
    settings = EvaluateConfig.from_config(config)
    task, _, evals, data_collator = runtime.prepare_task(
        config, job.task, tokenizer, 0, TrainSettings(max_train_examples=1)
    )
    per_split, _ = runtime.evaluate_all(
        model, evals, data_collator, task, settings.batch_size, device, precision.precision
    )
    latency = measure_latency(
        model,
        batch_sizes=settings.latency_batch_sizes,
        seq_length=latency_seq_length(config, task, settings),
        warmup=settings.latency_warmup,
        repeats=settings.latency_repeats,
        device=device,
        precision=precision.precision,
    )
    constant = runtime.constant_baseline_of(config, job.task)
    result = {
        "task": task.name,
        "model_dir": str(model_dir),
        "main_metric": task.main_metric,
        "main": per_split[task.eval_splits[0]]["main"],
        "metrics": per_split,
        "constant": constant,
        **collapse_fields(per_split, constant),
        "parameters": count_parameters(model, config["target_modules"]),
        "macs_per_token": macs_per_token(model, config["target_modules"]),
        "latency": latency,
        "precision": precision.precision,
        "precision_choice": precision.record(),
        "environment": runtime.environment_info(device),
    }
    write_json(output, result)
    return result
