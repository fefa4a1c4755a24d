"""What every stage job shares: its identity (:class:`Job`), threads, device and
precision, the task's data, evaluation on every dev split, the environment record, and
the skeleton of the three training stages (:class:`TrainingStage`).

A training stage (finetune, prune, recover) is the same sequence each time: settings
-> device, threads and precision -> data -> train with an in-training evaluation ->
evaluate every split -> save -> ``metrics.json`` (written last) -> clear the
checkpoint. :class:`TrainingStage` holds that sequence, so a stage module states only
what differs: the model it starts from, its hooks, what it saves and its own metrics.

Every output is written atomically (temporary name, then rename) and ``metrics.json``
last, so a killed job leaves either nothing or the checkpoint from which a rerun
resumes (``<run dir>/checkpoint``, never a declared output).
"""

from __future__ import annotations

import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers

from lpaf.data import collator, load_task, subsample, tokenize
from lpaf.evaluate.evaluation import evaluate_split
from lpaf.hooks import TrainHook
from lpaf.io import write_json
from lpaf.precision import PrecisionChoice, resolve
from lpaf.tasks import TaskSpec, get_task
from lpaf.train import (
    RunSettings,
    TrainResult,
    TrainSettings,
    clear_checkpoint,
    configure_threads,
    resolve_device,
    train,
)


@dataclass(frozen=True)
class TrainingOutputs:
    """What a training stage's run directory holds besides its own files: the saved
    model, ``metrics.json`` (written last), the per-step ``train_log.csv`` and the
    first dev split's ``predictions.tsv`` (predictions and logits)."""

    model: str
    metrics: str
    train_log: str
    predictions: str


@dataclass(frozen=True)
class Job:
    """Which run a stage job is: the task, the seed, and the CPU threads it may use
    (``None``: the config's ``threads``)."""

    task: str
    seed: int = 0
    threads: int | None = None


def job_threads(config: dict[str, Any], job: Job) -> int | None:
    return job.threads or config.get("threads")


def resolve_precision(config: dict[str, Any], device: torch.device, model=None) -> PrecisionChoice:
    """The :class:`lpaf.precision.PrecisionChoice` of a job on ``device`` for the
    config's ``precision`` (``auto`` probes this machine with the model's shapes; call
    after :func:`lpaf.train.configure_threads`, the probe runs at the job's threads)."""
    return resolve(config["precision"], device, getattr(model, "config", None))


def start_job(config: dict[str, Any], job: Job) -> torch.device:
    """Threads configured, then the device of a job that does not train (factorize,
    evaluate); resolve its precision with :func:`resolve_precision` once the model is
    loaded."""
    configure_threads(job_threads(config, job))
    return resolve_device(config["device"])


def run_settings(config: dict[str, Any], seed: int, threads: int | None = None, model=None):
    """``(RunSettings, PrecisionChoice)`` of a training job: threads configured now,
    precision resolved for ``model`` on the configured device."""
    threads = threads or config.get("threads")
    configure_threads(threads)
    choice = resolve_precision(config, resolve_device(config["device"]), model)
    run = RunSettings(
        seed=int(seed), device=config["device"], precision=choice.precision, threads=threads
    )
    return run, choice


def environment_info(device: torch.device) -> dict[str, Any]:
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
    task = get_task(task_name)
    data = load_task(task, source=config["data"]["source"], local_dir=config["data"]["local_dir"])
    train_set = subsample(data["train"], stage_settings.max_train_examples, seed)
    train_set = tokenize(train_set, tokenizer, task, config["max_seq_length"])
    evals = {
        split: tokenize(data[split], tokenizer, task, config["max_seq_length"])
        for split in task.eval_splits
        if split in data
    }
    return task, train_set, evals, collator(tokenizer)


def evaluate_all(model, evals, data_collator, task, batch_size, device, precision):
    """Metrics on every evaluation split, and the prediction table of each."""
    per_split, tables = {}, {}
    for split, dataset in evals.items():
        per_split[split], tables[split] = evaluate_split(
            model, dataset, data_collator, task, batch_size, device, precision
        )
    return per_split, tables


class TrainingStage:
    """One training job of finetune, prune or recover (see the module docstring).

    Built with the model the stage starts from and its tokenizer; then
    :meth:`train` (hooks and a description), :meth:`evaluate`, the stage's own saving,
    and :meth:`finish` with the stage's metrics merged into :meth:`common_metrics`.
    """

    def __init__(
        self,
        config: dict[str, Any],
        job: Job,
        settings: TrainSettings,
        model: torch.nn.Module,
        tokenizer,
        started: float | None = None,
    ) -> None:
        self.started = time.perf_counter() if started is None else started
        self.config, self.job, self.settings = config, job, settings
        self.model, self.tokenizer = model, tokenizer
        self.device = resolve_device(config["device"])
        self.run, self.precision = run_settings(config, job.seed, job.threads, model)
        self.task: TaskSpec
        self.task, self.train_set, self.evals, self.collator = prepare_task(
            config, job.task, tokenizer, int(job.seed), settings
        )
        self.primary = self.task.eval_splits[0]
        self.result: TrainResult | None = None

    def evaluate(self, splits: Sequence[str] | None = None):
        """``(metrics, prediction tables)`` of the current model on ``splits`` (all)."""
        evals = self.evals if splits is None else {s: self.evals[s] for s in splits}
        return evaluate_all(
            self.model,
            evals,
            self.collator,
            self.task,
            self.settings.eval_batch_size,
            self.device,
            self.run.precision,
        )

    def train(self, work_dir: str | Path, hooks: Sequence[TrainHook], description: str):
        """Train with the in-training evaluation of the first dev split; the trained
        model replaces :attr:`model`."""

        def eval_fn(model):
            return evaluate_all(
                model,
                {self.primary: self.evals[self.primary]},
                self.collator,
                self.task,
                self.settings.eval_batch_size,
                self.device,
                self.run.precision,
            )[0][self.primary]

        self.work_dir = Path(work_dir)
        self.result = train(
            self.model,
            self.train_set,
            self.collator,
            self.settings,
            self.run,
            self.work_dir,
            eval_fn=eval_fn,
            hooks=hooks,
            description=description,
        )
        self.model = self.result.model
        return self.result

    def common_metrics(self, per_split: dict[str, dict]) -> dict[str, Any]:
        """The keys every training stage's ``metrics.json`` has."""
        result = self.result
        return {
            "main_metric": self.task.main_metric,
            "main": per_split[self.primary]["main"],
            "metrics": per_split,
            "train_examples": len(self.train_set),
            "steps": result.steps,
            "resumed_from_step": result.resumed_from_step,
            "train_seconds": round(result.train_seconds, 2),
            "wall_seconds": round(time.perf_counter() - self.started, 2),
            "precision": self.run.precision,
            "precision_choice": self.precision.record(),
            "settings": vars(self.settings),
        }

    def finish(self, metrics_path: str | Path, metrics: dict[str, Any]) -> dict[str, Any]:
        """Write ``metrics.json`` (with the environment) last, then drop the checkpoint."""
        metrics = {**metrics, "environment": environment_info(self.device)}
        write_json(metrics_path, metrics)
        clear_checkpoint(self.work_dir)
        return metrics
