"""Stage 4 (rules ``factorize_gradients`` and ``factorize``): factorize every target of
a fine-tuned or pruned model at a budget ``rho`` with one method and score it before
any training.

The importance a method needs (:data:`lpaf.methods.FACTORIZE_METHODS`): fwsvd takes
Fisher rows from the gradient pass; the sparsity-aware methods take stage 2's
``importance.safetensors`` for a pruned source, and for the dense fine-tuned source
(no pruning, hence no importance) ``factorize.dense_importance`` decides: ``taylor``
(default) = ``|W * dL/dW|`` from the gradient pass, ``uniform`` = all ones (then
sparsity_aware and sparsity_aware_rows reduce to plain SVD). The gradient pass runs
once per source x task x seed in ``factorize_gradients`` and is shared by every rho
and method.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from safetensors import safe_open
from torch.utils.data import DataLoader

from lpaf.accounting import count_parameters, effective_weight, macs_per_token
from lpaf.compressed import is_compressed, save_compressed
from lpaf.evaluate.constant import collapse_fields
from lpaf.evaluate.evaluation import output_fidelity, predict, split_metrics
from lpaf.factorize.config import FactorizeConfig
from lpaf.factorize.importance import gradient_importance
from lpaf.factorize.solvers import COMPUTE_DTYPE, factorize_model
from lpaf.io import load_target_tensors, save_tensors, write_dataframe, write_json
from lpaf.methods import FACTORIZE_METHODS
from lpaf.modeling import load_model, load_tokenizer, model_tag
from lpaf.runtime import (
    Job,
    constant_baseline_of,
    environment_info,
    prepare_task,
    resolve_precision,
    score_splits,
    start_job,
)
from lpaf.targets import find_targets
from lpaf.train import TrainSettings


@dataclass(frozen=True)
class GradientOutputs:
    """``factorize/{source}/gradients/seed{seed}/{fisher,taylor}.safetensors``."""

    fisher: str
    taylor: str


@dataclass(frozen=True)
class Inputs:
    """The source model; for a pruned source stage 2's masks and importance; the
    gradient statistics the method needs (computed in the job when not given)."""

    model: str
    masks: str | None = None
    importance: str | None = None
    fisher: str | None = None
    taylor: str | None = None


@dataclass(frozen=True)
class Outputs:
    """``results/{model}/{task}/factorize/{source}/{method}/{rank_rule}/rho{rho}/seed{seed}/``."""

    model: str
    reconstruction: str
    predictions: str
    metrics: str


@dataclass(frozen=True)
class Spec:
    """What to factorize: ``source`` as the config names it (``finetune`` or
    ``prune/<method>/density<d>``, :mod:`lpaf.sources`), the method, the budget and
    the rank rule (``None``: ``factorize.rank_rule``)."""

    source: str
    method: str
    rho: float
    rank_rule: str | None = None


def gradient_statistics(settings: FactorizeConfig, model, train_set, data_collator, seed, patterns):
    """Fisher row importance and ``|W * dL/dW|`` of every target from one pass over
    ``fisher_batches`` training batches of ``batch_size`` examples, shuffled with
    ``seed`` (:func:`lpaf.factorize.importance.gradient_importance`)."""
    loader = DataLoader(
        train_set,
        batch_size=settings.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(int(seed)),
        collate_fn=data_collator,
    )
    return gradient_importance(model, loader, patterns, settings.fisher_batches)


def run_gradients(
    config: dict[str, Any], job: Job, source_dir: str, out: GradientOutputs
) -> dict[str, Any]:
    """The gradient statistics of a source model: ``out.fisher`` (Fisher row importance,
    for fwsvd) and ``out.taylor`` (``|W * dL/dW|``), safetensors keyed by target module
    name, with ``seconds`` (the pass's wall time), ``batches`` and ``batch_size`` as
    metadata."""
    device = start_job(config, job)
    settings = FactorizeConfig.from_config(config)
    model = load_model(source_dir, device=device)
    tokenizer = load_tokenizer(str(source_dir))
    _, train_set, _, data_collator = prepare_task(
        config, job.task, tokenizer, int(job.seed), TrainSettings.from_dict(config["finetune"])
    )
    patterns = config["target_modules"]
    find_targets(model, patterns)  # fails here, naming the patterns, if none match
    started = time.perf_counter()
    fisher, taylor = gradient_statistics(
        settings, model, train_set, data_collator, int(job.seed), patterns
    )
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    metadata = {
        "seconds": f"{seconds:.3f}",
        "batches": str(settings.fisher_batches),
        "batch_size": str(settings.batch_size),
        "source_model": str(source_dir),
        "seed": str(int(job.seed)),
    }
    save_tensors(out.fisher, fisher, metadata)
    save_tensors(out.taylor, taylor, metadata)
    return {"seconds": seconds, **metadata}


def fidelity(task, source_logits, logits, split) -> dict[str, Any]:
    """How close the factorized model's dev outputs (``logits`` on ``split``) are to the
    source model's, and both models' dev loss
    (:func:`lpaf.evaluate.evaluation.output_fidelity`): finer measures of an
    initialization than the task metric, which can sit at a constant predictor's value
    for many different models.

    Classification: ``agreement`` (same argmax), ``kl_from_source`` (mean
    ``KL(softmax source || softmax factorized)`` in nats) and cross-entropy ``dev_loss``
    / ``source_dev_loss``. Regression: ``mse_to_source`` and the MSE ``dev_loss`` /
    ``source_dev_loss``. Extractive QA: the same over the start and end distributions of
    each window. ``source_main`` is the source model's main dev metric.
    """
    labels = split["labels"]
    measured = output_fidelity(task, logits, labels, reference=source_logits)
    renamed = {"kl_from_reference": "kl_from_source", "mse_to_reference": "mse_to_source"}
    result: dict[str, Any] = {"source_main": split_metrics(task, split, source_logits)["main"]}
    result.update({renamed.get(k, k): v for k, v in measured.items()})
    result["source_dev_loss"] = output_fidelity(task, source_logits, labels)["dev_loss"]
    return result


def plain_svd_seconds(weights: dict[str, torch.Tensor], device: torch.device) -> float:
    """Wall time of one full ``torch.linalg.svd`` (float64, ``full_matrices=False``, the
    solvers' compute dtype and their starting point) of every target weight."""
    total = 0.0
    for weight in weights.values():
        matrix = weight.detach().to(device=device, dtype=COMPUTE_DTYPE)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        torch.linalg.svd(matrix, full_matrices=False)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        total += time.perf_counter() - start
    return total


@dataclass
class Importance:
    """The statistic a method weights its fit with: ``kind`` is ``none``, ``fisher``,
    ``stage2``, ``taylor`` or ``uniform``; ``passed_in`` where the gradient pass ran."""

    kind: str = "none"
    importance: dict[str, torch.Tensor] | None = None
    fisher: dict[str, torch.Tensor] | None = None
    seconds: float = 0.0
    passed_in: str | None = None


def load_masks(inputs: Inputs, method: str, targets) -> tuple[dict | None, dict | None]:
    """Stage 2's masks and (for a sparsity-aware method) importance of a pruned
    source, checked against the targets' shapes; ``(None, None)`` for a dense one."""
    masks = importance = None
    if inputs.masks is not None:
        masks = load_target_tensors(inputs.masks, targets, "the mask file")
    if inputs.importance is not None and FACTORIZE_METHODS[method].weighted:
        importance = load_target_tensors(inputs.importance, targets, "the importance file")
    for name, module in targets.items():
        for kind, tensors in (("mask", masks), ("importance", importance)):
            if tensors is not None and tuple(tensors[name].shape) != tuple(module.weight.shape):
                raise ValueError(
                    f"{kind} of {name} has shape {tuple(tensors[name].shape)}, "
                    f"the weight {tuple(module.weight.shape)}"
                )
    return masks, importance


def choose_importance(method, settings, inputs, stage2, targets, compute) -> Importance:
    """The :class:`Importance` of ``method``: stage 2's (``stage2``) for a pruned
    source, else from the gradient rule's file or ``compute(kind)`` in this job."""

    def gradients(kind: str, path) -> tuple[dict[str, torch.Tensor], float]:
        if path is not None:
            with safe_open(str(path), framework="pt") as handle:
                seconds = float((handle.metadata() or {}).get("seconds", "nan"))
            return load_target_tensors(path, targets, f"the {kind} file"), seconds
        started = time.perf_counter()
        statistic = compute(kind)
        return statistic, time.perf_counter() - started

    needs = FACTORIZE_METHODS[method].needs
    if needs == "fisher":
        fisher, seconds = gradients("fisher", inputs.fisher)
        passed = "factorize_gradients" if inputs.fisher else "this job"
        return Importance("fisher", fisher=fisher, seconds=seconds, passed_in=passed)
    if needs != "importance":
        return Importance()
    if stage2 is not None:
        return Importance("stage2", importance=stage2)
    if settings.dense_importance == "taylor":
        taylor, seconds = gradients("taylor", inputs.taylor)
        passed = "factorize_gradients" if inputs.taylor else "this job"
        return Importance("taylor", importance=taylor, seconds=seconds, passed_in=passed)
    ones = {n: torch.ones(tuple(m.weight.shape)) for n, m in targets.items()}
    return Importance("uniform", importance=ones)


def reconstruction_rows(report, kept, importance) -> pd.DataFrame:
    """One row per target: shape, rank, parameters, kept fraction and the errors and
    objective of the fit."""
    rows = []
    for name, info in report["modules"].items():
        row = {
            "module": name,
            "out_features": info["shape"][0],
            "in_features": info["shape"][1],
            "rank": info["rank"],
            "dense_params": info["shape"][0] * info["shape"][1],
            "factor_params": info["rank"] * sum(info["shape"]),
            "kept_fraction": float(kept[name].float().mean()),
            "error": info["error"],
            "weighted_error": info["weighted_error"],
            "kept_error": info["kept_error"],
            "objective_start": info["objective"][0] if info["objective"] else None,
            "objective_end": info["objective"][-1] if info["objective"] else None,
            "iterations": max(0, len(info["objective"]) - 1),
            "seconds": info["seconds"],
        }
        if importance is not None:
            row["importance_positive_kept"] = float(
                (importance[name].to("cpu")[kept[name]] > 0).float().mean()
            )
        rows.append(row)
    return pd.DataFrame(rows)


@dataclass
class Source:
    """The model a factorize job starts from, with its job's device, precision and
    data, its targets, stage 2's masks and importance (pruned source), and its dev
    outputs (the reference the factorized model is compared with)."""

    device: torch.device
    precision: Any
    model: torch.nn.Module
    tokenizer: Any
    task: Any
    train_set: Any
    evals: dict
    collator: Any
    targets: dict
    masks: dict | None
    stage2: dict | None
    logits: Any = None


def load_source(config: dict[str, Any], job: Job, inputs: Inputs, method: str) -> Source:
    device = start_job(config, job)
    if is_compressed(inputs.model):
        raise ValueError(
            f"source {inputs.model} is already a low-rank model; factorize a dense one"
        )
    torch.manual_seed(int(job.seed))
    model = load_model(inputs.model, device=device)
    precision = resolve_precision(config, device, model)
    tokenizer = load_tokenizer(str(inputs.model))
    task, train_set, evals, data_collator = prepare_task(
        config, job.task, tokenizer, int(job.seed), TrainSettings.from_dict(config["finetune"])
    )
    targets = find_targets(model, config["target_modules"])
    masks, stage2 = load_masks(inputs, method, targets)
    source = Source(
        device,
        precision,
        model,
        tokenizer,
        task,
        train_set,
        evals,
        data_collator,
        targets,
        masks,
        stage2,
    )
    primary = task.eval_splits[0]
    source.logits = predict(
        model,
        evals[primary],
        data_collator,
        config["evaluate"]["batch_size"],
        device,
        precision.precision,
    )
    return source


def run(config: dict[str, Any], job: Job, spec: Spec, inputs: Inputs, out: Outputs):
    """Factorize the model in ``inputs.model`` as ``spec`` says. Writes ``out.model``
    (:func:`lpaf.compressed.save_compressed`), ``out.reconstruction`` (one row per
    target), ``out.predictions`` (dev predictions and logits of the saved model) and,
    last, ``out.metrics`` (``metrics_init.json``)."""
    start = time.perf_counter()
    overrides = {"rank_rule": spec.rank_rule} if spec.rank_rule else {}
    settings = FactorizeConfig.from_config(config, **overrides)
    patterns = config["target_modules"]
    source = load_source(config, job, inputs, spec.method)
    targets, masks = source.targets, source.masks

    def compute(kind):
        fisher, taylor = gradient_statistics(
            settings, source.model, source.train_set, source.collator, int(job.seed), patterns
        )
        return {"fisher": fisher, "taylor": taylor}[kind]

    chosen = choose_importance(spec.method, settings, inputs, source.stage2, targets, compute)
    with torch.no_grad():
        weights = {name: effective_weight(m).detach().clone() for name, m in targets.items()}
    if masks is not None:
        weights = {n: w * masks[n].to(w) for n, w in weights.items()}
    svd_seconds = plain_svd_seconds(weights, source.device)
    kept = {
        n: (masks[n].bool() if masks is not None else (w != 0)).to("cpu")
        for n, w in weights.items()
    }

    factorize_start = time.perf_counter()
    model, report = factorize_model(
        source.model,
        method=spec.method,
        rho=float(spec.rho),
        rank_rule=settings.rank_rule,
        importance=chosen.importance,
        fisher=chosen.fisher,
        masks=masks,
        target_patterns=patterns,
        n_iter=settings.n_iter,
        epsilon=settings.epsilon,
        solver=settings.solver,
        ridge=settings.ridge,
    )
    factorize_seconds = time.perf_counter() - factorize_start
    if source.device.type == "cuda":
        torch.cuda.synchronize(source.device)
    source.model = None  # factorized in place; the saved model is scored reloaded
    record = save_compressed(
        model,
        source.tokenizer,
        out.model,
        metadata=factorized_metadata(spec, settings, report, inputs, source, job, chosen),
        target_patterns=patterns,
    )
    del model
    errors = reconstruction_rows(report, kept, chosen.importance)
    write_dataframe(out.reconstruction, errors)
    dense = sum(w.numel() for w in weights.values())
    fitted = Fitted(
        source=source,
        report=report,
        record=record,
        errors=errors,
        importance=chosen,
        timing={
            "importance_seconds": chosen.seconds,
            "importance_pass": chosen.passed_in,
            "factorize_seconds": factorize_seconds,
            "plain_svd_seconds": svd_seconds,
            "start": start,
        },
        rank_step=sum(sum(w.shape) for w in weights.values()) / dense,
    )
    return score_saved(config, job, spec, settings, inputs, out, fitted)


def factorized_metadata(spec, settings, report, inputs, source, job, chosen) -> dict[str, Any]:
    """The record saved with the factorized model (``lpaf.json``)."""
    return {
        "stage": "factorize",
        "method": spec.method,
        "rank_rule": settings.rank_rule,
        "rho_target": float(spec.rho),
        "rho_achieved": report["rho_achieved"],
        "source": spec.source,
        "source_model": str(inputs.model),
        "task": source.task.name,
        "seed": int(job.seed),
        "importance": chosen.kind,
        "solver": report["solver"],
        "n_iter": report["n_iter"],
        "epsilon": report["epsilon"],
        "ridge": report["ridge"],
    }


@dataclass
class Fitted:
    """What :func:`run` hands to :func:`score_saved`: the source (its job's data and
    device), the solver's report, the saved model's record, the per-target errors and
    the timings."""

    source: Source
    report: dict
    record: dict
    errors: pd.DataFrame
    importance: Importance
    timing: dict
    rank_step: float


def score_saved(config, job, spec, settings, inputs, out, fitted: Fitted) -> dict[str, Any]:
    """Score the model as saved (reloaded), with the evaluate rule's batch size, so the
    score is the one ``evaluate`` reports for the same directory; write
    ``out.predictions`` and, last, ``out.metrics``."""
    source = fitted.source
    task, evals, device, precision = source.task, source.evals, source.device, source.precision
    report, record, errors, chosen, timing = (
        fitted.report,
        fitted.record,
        fitted.errors,
        fitted.importance,
        fitted.timing,
    )
    patterns = config["target_modules"]
    primary = task.eval_splits[0]
    batch_size = config["evaluate"]["batch_size"]
    saved = load_model(out.model, device=device)
    per_split, tables, logits = score_splits(
        saved, evals, source.collator, task, batch_size, device, precision.precision
    )
    write_dataframe(out.predictions, tables[primary])
    parameters = count_parameters(saved, patterns)
    parameters.pop("per_target")
    stage_seconds = timing["importance_seconds"] + timing["factorize_seconds"]
    constant = constant_baseline_of(config, job.task)
    metrics = {
        "stage": "factorize",
        "task": task.name,
        "model": config["model"],
        "model_tag": config.get("model_tag") or model_tag(config["model"]),
        "seed": int(job.seed),
        "source": spec.source,
        "source_dir": str(inputs.model),
        "method": spec.method,
        "rank_rule": settings.rank_rule,
        "rho_target": float(spec.rho),
        "rho_achieved": record["rho_achieved"],
        "rank_step": fitted.rank_step,
        "ranks": record["ranks"],
        "main_metric": task.main_metric,
        "main": per_split[primary]["main"],
        "metrics": per_split,
        "constant": constant,
        **collapse_fields(per_split, constant),
        "eval_batch_size": batch_size,
        "parameters": parameters,
        "macs_per_token": macs_per_token(saved, patterns),
        "fidelity": fidelity(task, source.logits, logits[primary], evals[primary]),
        "reconstruction": {
            "mean_error": float(errors["error"].mean()),
            "mean_weighted_error": float(errors["weighted_error"].mean()),
            "mean_kept_error": float(errors["kept_error"].mean()),
        },
        "importance": chosen.kind,
        "settings": {
            "fisher_batches": settings.fisher_batches,
            "batch_size": settings.batch_size,
            "n_iter": report["n_iter"],
            "epsilon": report["epsilon"],
            "ridge": report["ridge"],
            "solver": report["solver"],
            "dense_importance": settings.dense_importance,
        },
        "timing": {
            "importance_seconds": round(timing["importance_seconds"], 3),
            # the gradient pass ran in the factorize_gradients job (shared by every rho
            # and method of this source) or in this job
            "importance_pass": timing["importance_pass"],
            "factorize_seconds": round(timing["factorize_seconds"], 3),
            "stage_seconds": round(stage_seconds, 3),
            "plain_svd_seconds": round(timing["plain_svd_seconds"], 3),
            "stage_over_plain_svd": stage_seconds / max(timing["plain_svd_seconds"], 1e-9),
            "wall_seconds": round(time.perf_counter() - timing["start"], 2),
        },
        "precision": precision.precision,
        "precision_choice": precision.record(),
        "environment": environment_info(device),
    }
    write_json(out.metrics, metrics)
    return metrics
