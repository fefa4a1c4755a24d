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
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers

from lpaf.data import collator, load_task, subsample, tokenize
from lpaf.evaluate.constant import collapse_fields, constant_metrics
from lpaf.evaluate.evaluation import output_fidelity, predict, score_logits, split_metrics
from lpaf.hooks import TrainHook
from lpaf.io import write_json
from lpaf.precision import PrecisionChoice, resolve
from lpaf.qa.task import QASettings, QAWindows, load_squad, train_windows
from lpaf.qa.task import constant_baseline as qa_constant
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


HOLDOUT_SPLIT = "heldout"  # the evaluation split held out of the training file
HOLDOUT_SEED = 0  # the same held-out rows for every seed and stage


def split_holdout(train, n: int | None):
    """``(rest, held_out)``: ``n`` rows of ``train`` drawn with :data:`HOLDOUT_SEED`
    (in file order) and the others; ``(train, None)`` for ``n`` 0 or ``None``."""
    if not n:
        return train, None
    if n >= len(train):
        raise ValueError(
            f"data.holdout = {n} leaves no training rows (the training file has {len(train)})"
        )
    order = np.random.default_rng(HOLDOUT_SEED).permutation(len(train))
    return train.select(np.sort(order[n:]).tolist()), train.select(np.sort(order[:n]).tolist())


def load_data(config: dict[str, Any], task_name: str):
    """``(task, train, evals)`` before tokenizing: the training rows (less the
    ``data.holdout`` rows) and every evaluation split, the held-out one
    (:data:`HOLDOUT_SPLIT`) last."""
    data = config["data"]
    qa = QASettings.from_config(config) if get_task(task_name).kind == "extractive_qa" else None
    task, train, evals = _load_data(
        task_name, data["source"], str(data["local_dir"]), data.get("holdout") or 0, qa
    )
    return task, train, dict(evals)


@lru_cache(maxsize=2)
def _load_squad(task: TaskSpec, source: str, settings: QASettings):
    return load_squad(task, source, settings)


@lru_cache(maxsize=4)
def _load_data(
    task_name: str, source: str, local_dir: str, holdout: int, qa: QASettings | None = None
):
    """:func:`load_data`, read once per process: a stage reads the task for its
    training and evaluation splits and again for the constant predictor. Extractive
    QA reads SQuAD (:func:`lpaf.qa.task.load_squad`, ``qa`` settings); GLUE tasks
    the TSVs under ``local_dir``."""
    task = get_task(task_name)
    if task.kind == "extractive_qa":
        train, data, _ = _load_squad(task, source, qa)
        data = {"train": train, **data}
    else:
        data = load_task(task, source=source, local_dir=local_dir)
    train, held_out = split_holdout(data["train"], holdout)
    evals = {split: data[split] for split in task.eval_splits if split in data}
    if held_out is not None:
        evals[HOLDOUT_SPLIT] = held_out
    return task, train, evals


def constant_baseline(task: TaskSpec, train, evals) -> dict[str, dict[str, float]]:
    """The constant predictor's metrics on every evaluation split
    (:mod:`lpaf.evaluate.constant`), from the training rows' labels; for extractive
    QA the first-sentence answer (:func:`lpaf.qa.task.constant_baseline`)."""
    if task.kind == "extractive_qa":
        return {split: qa_constant(dataset) for split, dataset in evals.items()}
    labels = np.asarray(train["label"])
    return {
        split: constant_metrics(task, labels, np.asarray(dataset["label"]))
        for split, dataset in evals.items()
    }


def constant_baseline_of(config: dict[str, Any], task_name: str) -> dict[str, dict[str, float]]:
    """:func:`constant_baseline` of the config's data for ``task_name``."""
    return constant_baseline(*load_data(config, task_name))


def prepare_task(config: dict[str, Any], task_name: str, tokenizer, seed: int, stage_settings):
    """Load, subsample and tokenize the task's training and evaluation splits (extractive
    QA: questions are subsampled, then cut into windows, :mod:`lpaf.qa.task`)."""
    task, train, evals = load_data(config, task_name)
    train_set = subsample(train, stage_settings.max_train_examples, seed)
    if task.kind == "extractive_qa":
        qa = QASettings.from_config(config)
        train_set = train_windows(train_set, tokenizer, qa)
        evals = {split: QAWindows(dataset, tokenizer, qa) for split, dataset in evals.items()}
        return task, train_set, evals, collator(tokenizer)
    train_set = tokenize(train_set, tokenizer, task, config["max_seq_length"])
    evals = {
        split: tokenize(dataset, tokenizer, task, config["max_seq_length"])
        for split, dataset in evals.items()
    }
    return task, train_set, evals, collator(tokenizer)


def evaluate_all(model, evals, data_collator, task, batch_size, device, precision):
    """Metrics on every evaluation split, and the prediction table of each."""
    return score_splits(model, evals, data_collator, task, batch_size, device, precision)[:2]


def score_splits(model, evals, data_collator, task, batch_size, device, precision):
    """:func:`evaluate_all` and the logits it scored (split -> array of
    :func:`lpaf.evaluate.evaluation.predict`), for measures beyond the metrics."""
    per_split, tables, logits = {}, {}, {}
    for split, dataset in evals.items():
        logits[split] = predict(model, dataset, data_collator, batch_size, device, precision)
        per_split[split], tables[split] = score_logits(task, dataset, logits[split])
    return per_split, tables, logits


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
        # the split evaluated during training: the held-out training rows when there are
        # some (tuning never looks at dev), else the first dev split
        self.monitor = HOLDOUT_SPLIT if HOLDOUT_SPLIT in self.evals else self.primary
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

    def train(
        self,
        work_dir: str | Path,
        hooks: Sequence[TrainHook],
        description: str,
        teacher: torch.nn.Module | None = None,
    ):
        """Train with the in-training evaluation of :attr:`monitor` (the metrics, the
        share of the top class, the dev loss and, with a ``teacher``, the agreement
        with it and KL from it: ``eval_*`` columns of ``train_log.csv``); the trained
        model replaces :attr:`model`."""
        split = self.evals[self.monitor]
        labels = np.asarray(split["labels"])
        predict_split = partial(
            predict,
            dataset=split,
            collator=self.collator,
            batch_size=self.settings.eval_batch_size,
            device=self.device,
            precision=self.run.precision,
        )
        reference = None if teacher is None else predict_split(teacher.to(self.device))

        def eval_fn(model):
            logits = predict_split(model)
            metrics = split_metrics(self.task, split, logits)
            return {**metrics, **output_fidelity(self.task, logits, labels, reference)}

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
        constant = constant_baseline_of(self.config, self.job.task)
        return {
            "main_metric": self.task.main_metric,
            "main": per_split[self.primary]["main"],
            "metrics": per_split,
            "constant": constant,
            **collapse_fields(per_split, constant),
            "train_examples": len(self.train_set),
            "steps": result.steps,
            "resumed_from_step": result.resumed_from_step,
            "train_seconds": round(result.train_seconds, 2),
            "wall_seconds": round(time.perf_counter() - self.started, 2),
            "precision": self.run.precision,
            "precision_choice": self.precision.record(),
            "settings": vars(self.settings),
            **_qa_fields(self.config, self.job.task),
        }

    def finish(self, metrics_path: str | Path, metrics: dict[str, Any]) -> dict[str, Any]:
        """Write ``metrics.json`` (with the environment) last, then drop the checkpoint."""
        metrics = {**metrics, "environment": environment_info(self.device)}
        write_json(metrics_path, metrics)
        clear_checkpoint(self.work_dir)
        return metrics


def _qa_fields(config: dict[str, Any], task_name: str) -> dict[str, Any]:
    """``{"qa_split": ...}`` for an extractive-QA task: where its training and dev
    questions came from (the offline split of the dev file by article: its seed and
    dev articles), for the run's metrics; nothing for other tasks."""
    task = get_task(task_name)
    if task.kind != "extractive_qa":
        return {}
    settings = QASettings.from_config(config)
    return {"qa_split": _load_squad(task, config["data"]["source"], settings)[2]}
