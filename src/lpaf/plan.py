"""``lpaf plan``: the jobs a run will start and how long they will take on this machine,
before any of them starts.

1. ``snakemake --dry-run`` with the user's arguments lists the jobs still to run
   (rule and wildcards) and, through ``LPAF_PLAN_CONFIG`` (``workflow/rules/common.smk``),
   writes the validated config the workflow sees.
2. A few real steps of the configured model on real training batches, in the
   precision ``auto`` resolves to, through the same :func:`lpaf.train.train` the
   stages call: fine-tuning, pruning (each method, with the configured
   distillation) and recovery (each schedule, on an SVD-factorized copy), plus one
   forward pass of a dev batch, the latency shapes, one SVD of every target and one
   solver iteration of ``sparsity_aware``, and the start-up cost of a job's process.
3. Every job's time is a sum of these costs (:func:`estimate_job`); jobs run one at a
   time unless ``--cores`` fits several of ``threads`` each.

The costs take seconds to measure (tens of seconds on a slow CPU): the timed steps
are few, so the estimate is only as good as the steps are typical (a first step,
warm-up of the kernels, is never timed).
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# per job, what Snakemake itself adds (job submission, output checks, metadata)
SNAKEMAKE_JOB_OVERHEAD_S = 1.0
# the bench rule's one-off costs per model, not timed by the probe (measured for MiniLM
# on 2 cores, 2026-12-04): torch.onnx.export + onnxruntime session, and torch.compile
# of one input shape
ONNX_EXPORT_S = 15.0
COMPILE_PER_SHAPE_S = 20.0
TRAINING_RULES = ("finetune", "prune", "recover")
TIMED_STEPS = 3  # per training kind; the first is warm-up, the rest are timed


@dataclass(frozen=True)
class Job:
    rule: str
    wildcards: dict[str, str]


_RULE = re.compile(r"^(?:local)?rule (\S+):\s*$")
_WILDCARDS = re.compile(r"^\s+wildcards: (.*)$")


def parse_dry_run(text: str) -> list[Job]:
    """The jobs of a ``snakemake --dry-run`` listing (its ``rule NAME:`` blocks and their
    ``wildcards:`` lines), in the order printed."""
    jobs: list[Job] = []
    rule: str | None = None
    wildcards: dict[str, str] = {}
    for line in text.splitlines():
        match = _RULE.match(line)
        if match:
            if rule is not None:
                jobs.append(Job(rule, wildcards))
            rule, wildcards = match.group(1), {}
            continue
        if rule is None:
            continue
        match = _WILDCARDS.match(line)
        if match:
            for item in match.group(1).split(", "):
                key, _, value = item.partition("=")
                wildcards[key.strip()] = value.strip()
        elif not line.strip() or line.startswith(("Job stats", "Reasons", "This was a dry-run")):
            jobs.append(Job(rule, wildcards))
            rule, wildcards = None, {}
    if rule is not None:
        jobs.append(Job(rule, wildcards))
    return jobs


class PlanError(RuntimeError):
    """The workflow could not be planned (its dry run failed): the message holds why."""


def dry_run(snakemake_args: Sequence[str], cwd: str | os.PathLike | None = None):
    """``(jobs, config, seconds)`` of ``snakemake --dry-run`` with these arguments."""
    with tempfile.TemporaryDirectory(prefix="lpaf-plan-") as tmp:
        config_path = Path(tmp) / "config.json"
        env = {**os.environ, "LPAF_PLAN_CONFIG": str(config_path)}
        start = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-m", "snakemake", "--dry-run", *snakemake_args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - start
        if out.returncode != 0:
            # Snakemake prints some errors (an invalid config) on stdout, others on stderr
            raise PlanError(
                f"snakemake --dry-run {' '.join(snakemake_args)} failed:\n"
                + (out.stdout + out.stderr).strip()[-4000:]
            )
        config = json.loads(config_path.read_text()) if config_path.exists() else None
    if config is None:
        raise PlanError("the workflow did not write its config (LPAF_PLAN_CONFIG)")
    return parse_dry_run(out.stdout + "\n" + out.stderr), config, seconds


# --------------------------------------------------------------------------- costs
@dataclass
class Costs:
    """Measured on this machine (seconds)."""

    precision: str = "fp32"
    precision_reason: str = ""
    threads: int = 1
    process_start: float = 0.0  # a job's python with torch/transformers/lpaf imported
    script_start: float = 0.0  # a table/figure job's python with pandas/matplotlib
    model_load: float = 0.0
    data: dict[str, float] = field(default_factory=dict)  # per task: load + tokenize
    train_examples: dict[str, dict[str, int]] = field(default_factory=dict)  # task -> stage
    eval_examples: dict[str, int] = field(default_factory=dict)
    finetune_step: float = 0.0
    prune_step: dict[str, float] = field(default_factory=dict)  # per method
    recover_step: dict[str, float] = field(default_factory=dict)  # per schedule
    eval_per_example: float = 0.0
    gradient_batch: float = 0.0  # one forward+backward of factorize.batch_size examples
    # per task, per batch size: one forward pass at the length the task is timed at
    # (evaluate.latency_seq_length, or qa.max_seq_length for extractive QA)
    latency_pass: dict[str, dict[str, float]] = field(default_factory=dict)
    svd_all: float = 0.0  # one float64 SVD of every target
    als_iteration_all: float = 0.0  # one sparsity_aware iteration over every target
    measure_seconds: float = 0.0


def _steps(settings: dict[str, Any], n_examples: int) -> int:
    if settings.get("max_steps"):
        return int(settings["max_steps"])
    per_epoch = math.ceil(n_examples / settings["batch_size"])
    return max(1, math.ceil(settings["epochs"] * per_epoch))


def _n_evals(settings: dict[str, Any], steps: int) -> int:
    """Dev passes of a training job: the trainer's periodic ones, its final one and
    the stage's own evaluation of every split."""
    every = settings.get("eval_every_steps")
    periodic = (steps - 1) // every if every else 0
    return periodic + 2


def _recover_schedule(config: dict[str, Any], pipeline: str) -> str:
    return config["pipelines"][pipeline]["recover"]


def job_steps(config: dict[str, Any], job: Job, costs: Costs) -> int:
    """Optimizer steps of a training job (0 for the others)."""
    if job.rule not in TRAINING_RULES:
        return 0
    n = costs.train_examples[job.wildcards["task"]][job.rule]
    return _steps(config[job.rule], n)


def estimate_job(config: dict[str, Any], job: Job, costs: Costs) -> float:
    """Seconds one job takes, from the measured costs."""
    w = job.wildcards
    task = w.get("task")
    dev = costs.eval_examples.get(task, 0) * costs.eval_per_example if task else 0.0
    start = costs.process_start + SNAKEMAKE_JOB_OVERHEAD_S
    data = costs.data.get(task, 0.0) if task else 0.0
    if job.rule == "finetune":
        steps = job_steps(config, job, costs)
        work = steps * costs.finetune_step + _n_evals(config["finetune"], steps) * dev
        return start + costs.model_load + data + work
    if job.rule == "prune":
        steps = job_steps(config, job, costs)
        step = costs.prune_step.get(w["method"], max(costs.prune_step.values(), default=0.0))
        work = steps * step + _n_evals(config["prune"], steps) * dev
        return start + 2 * costs.model_load + data + work
    if job.rule == "recover":
        steps = job_steps(config, job, costs)
        schedule = _recover_schedule(config, w["pipeline"])
        step = costs.recover_step.get(schedule, max(costs.recover_step.values(), default=0.0))
        work = steps * step + _n_evals(config["recover"], steps) * dev
        return start + 3 * costs.model_load + data + work
    if job.rule == "factorize_gradients":
        return (
            start
            + costs.model_load
            + data
            + config["factorize"]["fisher_batches"] * costs.gradient_batch
        )
    if job.rule == "factorize":
        method = w["method"]
        solve = costs.svd_all
        if method == "sparsity_aware":
            solve += config["factorize"]["n_iter"] * costs.als_iteration_all
        # source and reloaded model scored; one plain SVD timed for the record
        return start + 2 * costs.model_load + data + 2 * dev + costs.svd_all + solve
    if job.rule == "evaluate":
        e = config["evaluate"]
        passes = e["latency_warmup"] + e["latency_repeats"]
        latency = passes * sum(costs.latency_pass.get(task, {}).values())
        return start + costs.model_load + data + dev + latency
    if job.rule == "rank_analysis":
        return start + costs.model_load + costs.svd_all
    if job.rule == "bench":
        return start + sum(
            bench_models(config, task) * bench_seconds_per_model(config, costs, task)
            for task in config["tasks"]
        )
    if job.rule == "all":
        return 0.0
    return costs.script_start + SNAKEMAKE_JOB_OVERHEAD_S  # tables and figures


def bench_models(config: dict[str, Any], task: str | None = None) -> int:
    """Models the ``bench`` rule times: the main table's rows of one seed, for
    ``task`` (or for every task)."""
    from lpaf import pipelines

    rows = config["study"]["main_table"]
    per_task = sum(1 if r == pipelines.REFERENCE else len(config["study"]["rhos"]) for r in rows)
    return per_task * (1 if task else len(config["tasks"]))


def bench_seconds_per_model(config: dict[str, Any], costs: Costs, task: str) -> float:
    """One model in the ``bench`` rule: loading it, then per backend the untimed and
    timed passes of every shape (onnxruntime and compiled passes counted at the eager
    cost) and the backend's setup."""
    e = config["evaluate"]
    one_round = sum(costs.latency_pass.get(task, {}).values())
    passes = (e["latency_warmup"] + e["latency_repeats"] + 1) * one_round
    seconds = costs.model_load
    for backend in e["latency_backends"]:
        seconds += passes
        if backend == "onnxruntime":
            seconds += ONNX_EXPORT_S
        if backend == "compile":
            seconds += COMPILE_PER_SHAPE_S * len(e["latency_batch_sizes"])
    return seconds


@dataclass
class Plan:
    jobs: list[dict[str, Any]]
    per_rule: list[dict[str, Any]]
    serial_seconds: float
    parallel_jobs: int
    total_seconds: float
    dag_seconds: float
    costs: Costs

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "costs": asdict(self.costs)}


def build_plan(
    config: dict[str, Any], jobs: Iterable[Job], costs: Costs, cores: int, dag_seconds: float
) -> Plan:
    """Per-job estimates, per-rule sums and the total wall time: serial time spread
    over ``cores // threads`` job slots, never less than the longest job, plus the
    workflow's start (building the DAG, measured by the dry run)."""
    rows = []
    for job in jobs:
        rows.append(
            {
                "rule": job.rule,
                "wildcards": job.wildcards,
                "steps": job_steps(config, job, costs),
                "seconds": estimate_job(config, job, costs),
            }
        )
    per_rule: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"jobs": 0, "steps": 0, "seconds": 0.0}
    )
    for row in rows:
        entry = per_rule[row["rule"]]
        entry["jobs"] += 1
        entry["steps"] += row["steps"]
        entry["seconds"] += row["seconds"]
    serial = sum(r["seconds"] for r in rows)
    threads = max(1, min(int(config.get("threads") or 1), cores))
    slots = max(1, cores // threads)
    longest = max((r["seconds"] for r in rows), default=0.0)
    total = dag_seconds + max(serial / slots, longest)
    return Plan(
        jobs=rows,
        per_rule=[{"rule": k, **v} for k, v in per_rule.items()],
        serial_seconds=serial,
        parallel_jobs=slots,
        total_seconds=total,
        dag_seconds=dag_seconds,
        costs=costs,
    )


def _minutes(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, s = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {s:02d} s"
    hours, m = divmod(minutes, 60)
    return f"{hours} h {m:02d} min"


def format_plan(plan: Plan) -> str:
    c = plan.costs
    lines = [
        f"precision: {c.precision} ({c.precision_reason}); {c.threads} thread(s) per job, "
        f"{plan.parallel_jobs} job(s) at a time",
        f"measured per step: fine-tune {c.finetune_step:.2f} s"
        + "".join(f", prune/{m} {s:.2f} s" for m, s in c.prune_step.items())
        + "".join(f", recover/{m} {s:.2f} s" for m, s in c.recover_step.items())
        + f"; dev forward {1000 * c.eval_per_example:.1f} ms/example; job start "
        f"{c.process_start:.1f} s (measuring took {c.measure_seconds:.0f} s)",
        "",
        f"{'stage (rule)':<22} {'jobs':>5} {'steps':>7} {'estimate':>14}",
    ]
    for row in sorted(plan.per_rule, key=lambda r: -r["seconds"]):
        steps = str(row["steps"]) if row["steps"] else "-"
        lines.append(
            f"{row['rule']:<22} {row['jobs']:>5} {steps:>7} {_minutes(row['seconds']):>14}"
        )
    n_jobs = sum(r["jobs"] for r in plan.per_rule)
    lines += [
        f"{'total':<22} {n_jobs:>5} {sum(r['steps'] for r in plan.per_rule):>7} "
        f"{_minutes(plan.serial_seconds):>14}",
        "",
        f"estimated wall time: {_minutes(plan.total_seconds)} "
        f"(jobs {_minutes(plan.serial_seconds)} over {plan.parallel_jobs} slot(s), "
        f"workflow start {_minutes(plan.dag_seconds)})",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------- measuring
def _subprocess_seconds(code: str, repeats: int = 2) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return min(times)


def _timed_steps(model, train_set, collator, settings, run, hooks=()) -> float:
    """Seconds per step of :func:`lpaf.train.train` (steps after the first)."""
    from lpaf.train import TrainSettings, train

    steps = TIMED_STEPS
    train_settings = TrainSettings(
        max_steps=steps,
        batch_size=settings["batch_size"],
        learning_rate=settings["learning_rate"],
        warmup_ratio=0.0,
        checkpoint_every_steps=None,
    )
    with tempfile.TemporaryDirectory(prefix="lpaf-plan-train-") as work_dir:
        result = train(model, train_set, collator, train_settings, run, work_dir, hooks=hooks)
    elapsed = result.log["elapsed_s"].tolist()
    return (elapsed[-1] - elapsed[0]) / (len(elapsed) - 1)


def _time(fn, repeats: int = 1) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@dataclass
class _Probe:
    """What the measurements share: the config and jobs, the model (fresh head on the
    first task), its tokenizer and collator, the run settings, one training batch and
    the target weights."""

    config: dict[str, Any]
    jobs: Sequence[Job]
    rules: Counter
    device: Any
    model: Any
    collate: Any
    run: Any
    sample: Any = None
    weights: dict = field(default_factory=dict)
    rhos: list[float] = field(default_factory=list)


def measure(config: dict[str, Any], jobs: Sequence[Job], cores: int) -> Costs:
    """Measure what the jobs in ``jobs`` will cost on this machine."""
    from lpaf.data import collator as make_collator
    from lpaf.modeling import load_for_task
    from lpaf.runtime import resolve_precision
    from lpaf.targets import find_targets
    from lpaf.tasks import get_task
    from lpaf.train import RunSettings, configure_threads, resolve_device

    started = time.perf_counter()
    threads = max(1, min(int(config.get("threads") or 1), cores))
    configure_threads(threads)
    device = resolve_device(config["device"])
    costs = Costs(threads=threads)
    tasks = sorted({job.wildcards["task"] for job in jobs if "task" in job.wildcards})
    if not tasks:
        costs.measure_seconds = time.perf_counter() - started
        return costs

    costs.process_start = _subprocess_seconds(
        "import torch, transformers, datasets, lpaf.runtime, lpaf.train, lpaf.evaluate", 1
    )
    costs.script_start = _subprocess_seconds("import pandas, matplotlib.pyplot, lpaf.tables", 1)
    load_start = time.perf_counter()
    model, tokenizer = load_for_task(config["model"], get_task(tasks[0]), seed=0)
    costs.model_load = time.perf_counter() - load_start
    choice = resolve_precision(config, device, model)
    costs.precision, costs.precision_reason = choice.precision, choice.reason
    run = RunSettings(seed=0, device=config["device"], precision=choice.precision, threads=threads)
    probe = _Probe(
        config,
        jobs,
        Counter(job.rule for job in jobs),
        device,
        model,
        make_collator(tokenizer),
        run,
    )
    samples = _measure_data(probe, tasks, tokenizer, costs)
    _measure_dev(probe, samples[tasks[0]], tokenizer, costs)
    patterns = config["target_modules"]
    probe.weights = {n: m.weight.detach().clone() for n, m in find_targets(model, patterns).items()}
    probe.rhos = sorted({float(j.wildcards["rho"]) for j in jobs if "rho" in j.wildcards}) or [0.3]
    _measure_training(probe, costs)
    _measure_factorize(probe, costs)
    _measure_latency(probe, tasks, costs)
    costs.measure_seconds = time.perf_counter() - started
    return costs


def _tokenized(config, task, data, tokenizer, train: bool = False):
    """A split as the stages feed it: tokenized rows, or for extractive QA its windows
    (training windows with the span targets, or the evaluation windows)."""
    from lpaf.data import tokenize

    if task.kind != "extractive_qa":
        return tokenize(data, tokenizer, task, config["max_seq_length"])
    from lpaf.qa.task import QASettings, QAWindows, train_windows

    qa = QASettings.from_config(config)
    return train_windows(data, tokenizer, qa) if train else QAWindows(data, tokenizer, qa)


def _measure_data(probe: _Probe, tasks, tokenizer, costs: Costs) -> dict:
    """Loading and tokenizing every task; ``{task: (train split, dev sets, spec)}``.
    Training examples are rows, or for extractive QA windows (the windows per
    question measured on a sample)."""
    from lpaf.data import subsample
    from lpaf.runtime import load_data

    config = probe.config
    samples = {}
    for name in tasks:
        start = time.perf_counter()
        task, train, raw_evals = load_data(config, name)
        evals = {
            split: _tokenized(config, task, data, tokenizer)
            for split, data in raw_evals.items()
            if split in task.eval_splits
        }
        costs.data[name] = time.perf_counter() - start
        costs.eval_examples[name] = sum(len(d) for d in evals.values())
        # the whole train split is tokenized in a job; time that share from a sample
        n_train = len(train)
        part = subsample(train, min(n_train, 512), 0)
        t0 = time.perf_counter()
        rows_per_example = len(_tokenized(config, task, part, tokenizer, train=True)) / max(
            1, len(part)
        )
        costs.data[name] += (time.perf_counter() - t0) * n_train / max(1, len(part))
        costs.train_examples[name] = {
            stage: round(
                rows_per_example * len(subsample(train, config[stage].get("max_train_examples"), 0))
            )
            for stage in TRAINING_RULES
            if stage in config
        }
        samples[name] = (train, evals, task)
    return samples


def _measure_dev(probe: _Probe, first, tokenizer, costs: Costs) -> None:
    """The training batch every step is timed on, and the dev pass per example."""
    from torch.utils.data import Subset

    from lpaf.data import subsample
    from lpaf.evaluate import predict

    config, model, collate = probe.config, probe.model, probe.collate
    train_split, evals, task = first
    # One random batch, trained on TIMED_STEPS times: its padded length is a typical
    # one, and repeating it keeps the shapes fixed, as they recur in a long run (a new
    # shape in every timed step would time oneDNN's kernel set-up, not the step).
    batch = max(config[s]["batch_size"] for s in TRAINING_RULES if s in config)
    sample = _tokenized(
        config, task, subsample(train_split, min(len(train_split), batch), 1), tokenizer, True
    )
    probe.sample = sample.select(range(min(len(sample), batch)))
    primary = next(iter(evals.values()))
    eval_bs = config["evaluate"]["batch_size"]
    dev_batch = Subset(primary, range(min(len(primary), eval_bs)))
    precision = probe.run.precision
    predict(model, dev_batch, collate, eval_bs, probe.device, precision)  # warm-up
    costs.eval_per_example = _time(
        lambda: predict(model, dev_batch, collate, eval_bs, probe.device, precision), 2
    ) / max(1, len(dev_batch))


def _distillation(block: dict[str, Any], teacher) -> list:
    from lpaf.distill import DistillationHook

    d = block["distillation"]
    return [DistillationHook.from_config(teacher, d)] if d["enabled"] else []


def _measure_training(probe: _Probe, costs: Costs) -> None:
    """Real steps of fine-tuning, of each pruning method (at a density of its own
    jobs) and of each recovery schedule (on an SVD-factorized copy)."""
    from lpaf.factorize import factorize_model
    from lpaf.prune import PruningHook
    from lpaf.prune.stage import prune_config_from
    from lpaf.recover import RecoverConfig, RecoveryHook

    config, jobs, model, run = probe.config, probe.jobs, probe.model, probe.run
    teacher = copy.deepcopy(model)
    if probe.rules["finetune"]:
        costs.finetune_step = _timed_steps(
            copy.deepcopy(model), probe.sample, probe.collate, config["finetune"], run
        )
    for method in sorted({j.wildcards["method"] for j in jobs if j.rule == "prune"}):
        density = float(
            next(
                j.wildcards["density"]
                for j in jobs
                if j.rule == "prune" and j.wildcards["method"] == method
            )
        )
        hooks = [PruningHook(prune_config_from(config, method, density))]
        hooks += _distillation(config["prune"], teacher)
        costs.prune_step[method] = _timed_steps(
            copy.deepcopy(model), probe.sample, probe.collate, config["prune"], run, hooks
        )
    schedules = sorted(
        {_recover_schedule(config, j.wildcards["pipeline"]) for j in jobs if j.rule == "recover"}
    )
    if not schedules:
        return
    factorized, _ = factorize_model(
        copy.deepcopy(model),
        method="svd",
        rho=probe.rhos[0],
        target_patterns=config["target_modules"],
    )
    for schedule in schedules:
        sparse = probe.weights if schedule == "mixed_rank" else None
        hooks = [RecoveryHook(RecoverConfig.from_config(config, schedule), sparse)]
        hooks += _distillation(config["recover"], teacher)
        costs.recover_step[schedule] = _timed_steps(
            copy.deepcopy(factorized), probe.sample, probe.collate, config["recover"], run, hooks
        )


def _measure_factorize(probe: _Probe, costs: Costs) -> None:
    """A gradient batch, one SVD of every target and one sparsity_aware iteration."""
    import torch
    from torch.utils.data import DataLoader

    from lpaf.accounting import uniform_rank
    from lpaf.factorize import gradient_importance, sparsity_aware
    from lpaf.factorize.solvers import COMPUTE_DTYPE

    config, rules, weights = probe.config, probe.rules, probe.weights
    if rules["factorize_gradients"]:
        f = config["factorize"]
        loader = DataLoader(probe.sample, batch_size=f["batch_size"], collate_fn=probe.collate)
        n = min(2, len(loader))
        patterns = config["target_modules"]
        seconds = _time(
            lambda: gradient_importance(copy.deepcopy(probe.model), loader, patterns, n)
        )
        costs.gradient_batch = seconds / n
    if rules["factorize"] or rules["rank_analysis"]:

        def svd_all():
            for w in weights.values():
                torch.linalg.svd(w.to(COMPUTE_DTYPE), full_matrices=False)

        costs.svd_all = _time(svd_all)
    jobs = probe.jobs
    if not any(j.rule == "factorize" and j.wildcards["method"] == "sparsity_aware" for j in jobs):
        return
    total = 0.0
    for shape, count in Counter(tuple(w.shape) for w in weights.values()).items():
        w = next(w for w in weights.values() if tuple(w.shape) == shape)
        rank = uniform_rank(shape[0], shape[1], probe.rhos[0])
        importance = w.abs().float()
        one = _time(lambda w=w, r=rank, i=importance: sparsity_aware(w, i, r, n_iter=1))
        zero = _time(lambda w=w, r=rank, i=importance: sparsity_aware(w, i, r, n_iter=0))
        total += count * max(0.0, one - zero)
    costs.als_iteration_all = total


def _measure_latency(probe: _Probe, tasks, costs: Costs) -> None:
    """One forward pass of each latency shape, at each task's latency length (the
    first task's model stands in for all: the heads are a negligible part)."""
    from lpaf.evaluate import measure_latency
    from lpaf.evaluate.config import EvaluateConfig
    from lpaf.evaluate.stage import latency_seq_length
    from lpaf.tasks import get_task

    if not (probe.rules["evaluate"] or probe.rules["bench"]):
        return
    settings = EvaluateConfig.from_config(probe.config)
    by_length: dict[int, dict[str, float]] = {}
    for name in tasks:
        length = latency_seq_length(probe.config, get_task(name), settings)
        if length not in by_length:
            by_length[length] = {}
            for bs in settings.latency_batch_sizes:
                latency = measure_latency(
                    probe.model,
                    batch_sizes=[bs],
                    seq_length=length,
                    warmup=1,
                    repeats=1,
                    device=probe.device,
                    precision=probe.run.precision,
                )
                by_length[length][str(bs)] = latency[f"latency_ms_bs{bs}"] / 1000.0
        costs.latency_pass[name] = by_length[length]


def plan(snakemake_args: Sequence[str], cores: int) -> Plan:
    jobs, config, dag_seconds = dry_run(["--cores", str(cores), *snakemake_args])
    costs = measure(config, jobs, cores)
    return build_plan(config, jobs, costs, cores, dag_seconds)
