"""The workflow's stages as library functions; ``workflow/scripts/*.py`` only unpack
Snakemake's arguments and call these.

Each stage writes every output atomically (temporary name, then rename) and writes
its ``metrics.json`` last, so a killed job leaves either nothing or the checkpoint
from which a rerun resumes (``<run dir>/checkpoint``, never a declared output).
"""

from __future__ import annotations

import logging
import platform
import time
from pathlib import Path
from typing import Any

import torch

from lpaf.io import atomic_dir, write_dataframe, write_json

log = logging.getLogger(__name__)


def run_settings(config: dict[str, Any], seed: int, threads: int | None = None):
    from lpaf.train import RunSettings

    return RunSettings(
        seed=int(seed),
        device=config["device"],
        precision=config["precision"],
        threads=threads or config.get("threads"),
    )


def environment_info(device: torch.device) -> dict[str, Any]:
    import transformers

    info = {
        "device": str(device),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "host_cpu": platform.processor() or platform.machine(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def prepare_task(config: dict[str, Any], task_name: str, tokenizer, seed: int, stage_settings):
    """Load, subsample and tokenize the task's training and evaluation splits."""
    from lpaf.data import collator, load_task, subsample, tokenize
    from lpaf.tasks import get_task

    task = get_task(task_name)
    data = load_task(task, source=config["data"]["source"], local_dir=config["data"]["local_dir"])
    train = subsample(data["train"], stage_settings.max_train_examples, seed)
    train = tokenize(train, tokenizer, task, config["max_seq_length"])
    evals = {
        split: tokenize(data[split], tokenizer, task, config["max_seq_length"])
        for split in task.eval_splits
        if split in data
    }
    return task, train, evals, collator(tokenizer)


def evaluate_all(model, evals, data_collator, task, batch_size, device, precision):
    """Metrics on every evaluation split; the first split's metrics are also flat."""
    from lpaf.evaluate import evaluate_split

    per_split, tables = {}, {}
    for split, dataset in evals.items():
        per_split[split], tables[split] = evaluate_split(
            model, dataset, data_collator, task, batch_size, device, precision
        )
    return per_split, tables


def finetune(
    config: dict[str, Any],
    task_name: str,
    seed: int,
    model_dir: str | Path,
    metrics_path: str | Path,
    train_log_path: str | Path,
    predictions_path: str | Path,
    threads: int | None = None,
) -> dict[str, Any]:
    """Stage 1: dense fine-tuning of ``config['model']`` on ``task_name``."""
    from lpaf.modeling import load_for_task
    from lpaf.train import TrainSettings, clear_checkpoint, resolve_device, train

    start = time.perf_counter()
    settings = TrainSettings.from_dict(config["finetune"])
    run = run_settings(config, seed, threads)
    device = resolve_device(run.device)
    from lpaf.tasks import get_task

    model, tokenizer = load_for_task(config["model"], get_task(task_name), seed=int(seed))
    task, train_set, evals, data_collator = prepare_task(
        config, task_name, tokenizer, int(seed), settings
    )
    primary = task.eval_splits[0]

    def eval_fn(m):
        metrics, _ = evaluate_all(
            m,
            {primary: evals[primary]},
            data_collator,
            task,
            settings.eval_batch_size,
            device,
            run.precision,
        )
        return metrics[primary]

    work_dir = Path(metrics_path).parent
    result = train(
        model,
        train_set,
        data_collator,
        settings,
        run,
        work_dir,
        eval_fn=eval_fn,
        description=f"finetune {task.name} seed {seed}",
    )
    model = result.model
    per_split, tables = evaluate_all(
        model, evals, data_collator, task, settings.eval_batch_size, device, run.precision
    )

    with atomic_dir(model_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    write_dataframe(train_log_path, result.log)
    write_dataframe(predictions_path, tables[primary])
    metrics = {
        "stage": "finetune",
        "task": task.name,
        "model": config["model"],
        "seed": int(seed),
        "main_metric": task.main_metric,
        "main": per_split[primary]["main"],
        "metrics": per_split,
        "train_examples": len(train_set),
        "steps": result.steps,
        "resumed_from_step": result.resumed_from_step,
        "train_seconds": round(result.train_seconds, 2),
        "wall_seconds": round(time.perf_counter() - start, 2),
        "precision": run.precision,
        "settings": vars(settings),
        "environment": environment_info(device),
    }
    write_json(metrics_path, metrics)
    clear_checkpoint(work_dir)
    return metrics


def evaluate_model_dir(
    config: dict[str, Any],
    task_name: str,
    model_dir: str | Path,
    output_path: str | Path,
    threads: int | None = None,
) -> dict[str, Any]:
    """Evaluate any saved model directory: dev metrics, parameter counts, latency."""
    from lpaf.accounting import count_parameters
    from lpaf.evaluate import measure_latency
    from lpaf.modeling import load_model, load_tokenizer
    from lpaf.train import configure_threads, resolve_device

    configure_threads(threads or config.get("threads"))
    device = resolve_device(config["device"])
    model = load_model(model_dir, device=device)
    tokenizer = load_tokenizer(str(model_dir))
    eval_cfg = config["evaluate"]
    from lpaf.train import TrainSettings

    task, _, evals, data_collator = prepare_task(
        config, task_name, tokenizer, 0, TrainSettings(max_train_examples=1)
    )
    per_split, _ = evaluate_all(
        model, evals, data_collator, task, eval_cfg["batch_size"], device, config["precision"]
    )
    primary = task.eval_splits[0]
    latency = measure_latency(
        model,
        batch_sizes=eval_cfg["latency_batch_sizes"],
        seq_length=eval_cfg["latency_seq_length"],
        warmup=eval_cfg["latency_warmup"],
        repeats=eval_cfg["latency_repeats"],
        device=device,
        precision=config["precision"],
    )
    result = {
        "task": task.name,
        "model_dir": str(model_dir),
        "main_metric": task.main_metric,
        "main": per_split[primary]["main"],
        "metrics": per_split,
        "parameters": count_parameters(model, config["target_modules"]),
        "latency": latency,
        "precision": config["precision"],
        "environment": environment_info(device),
    }
    write_json(output_path, result)
    return result
