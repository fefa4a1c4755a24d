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


def resolve_precision(config: dict[str, Any], device: torch.device, model=None):
    """The :class:`lpaf.precision.PrecisionChoice` of a job on ``device`` for the
    config's ``precision`` (``auto`` probes this machine with the model's shapes;
    call after :func:`lpaf.train.configure_threads`, the probe runs at the job's
    threads)."""
    from lpaf.precision import resolve

    return resolve(config["precision"], device, getattr(model, "config", None))


def run_settings(config: dict[str, Any], seed: int, threads: int | None = None, model=None):
    """``(RunSettings, PrecisionChoice)`` of a training job: threads configured now,
    precision resolved for ``model`` on the configured device."""
    from lpaf.train import RunSettings, configure_threads, resolve_device

    threads = threads or config.get("threads")
    configure_threads(threads)
    choice = resolve_precision(config, resolve_device(config["device"]), model)
    run = RunSettings(
        seed=int(seed), device=config["device"], precision=choice.precision, threads=threads
    )
    return run, choice


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


def primary_eval_fn(evals, primary, data_collator, task, batch_size, device, precision):
    """The in-training evaluation the trainer calls: metrics of split ``primary`` only."""

    def eval_fn(model):
        metrics, _ = evaluate_all(
            model, {primary: evals[primary]}, data_collator, task, batch_size, device, precision
        )
        return metrics[primary]

    return eval_fn


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
    device = resolve_device(config["device"])
    from lpaf.tasks import get_task

    model, tokenizer = load_for_task(config["model"], get_task(task_name), seed=int(seed))
    run, precision = run_settings(config, seed, threads, model)
    task, train_set, evals, data_collator = prepare_task(
        config, task_name, tokenizer, int(seed), settings
    )
    primary = task.eval_splits[0]

    eval_fn = primary_eval_fn(
        evals, primary, data_collator, task, settings.eval_batch_size, device, run.precision
    )

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
        "precision_choice": precision.record(),
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
    from lpaf.accounting import count_parameters, macs_per_token
    from lpaf.evaluate import measure_latency
    from lpaf.modeling import load_model, load_tokenizer
    from lpaf.train import configure_threads, resolve_device

    configure_threads(threads or config.get("threads"))
    device = resolve_device(config["device"])
    model = load_model(model_dir, device=device)
    precision = resolve_precision(config, device, model)
    tokenizer = load_tokenizer(str(model_dir))
    eval_cfg = config["evaluate"]
    from lpaf.train import TrainSettings

    task, _, evals, data_collator = prepare_task(
        config, task_name, tokenizer, 0, TrainSettings(max_train_examples=1)
    )
    per_split, _ = evaluate_all(
        model, evals, data_collator, task, eval_cfg["batch_size"], device, precision.precision
    )
    primary = task.eval_splits[0]
    latency = measure_latency(
        model,
        batch_sizes=eval_cfg["latency_batch_sizes"],
        seq_length=eval_cfg["latency_seq_length"],
        warmup=eval_cfg["latency_warmup"],
        repeats=eval_cfg["latency_repeats"],
        device=device,
        precision=precision.precision,
    )
    result = {
        "task": task.name,
        "model_dir": str(model_dir),
        "main_metric": task.main_metric,
        "main": per_split[primary]["main"],
        "metrics": per_split,
        "parameters": count_parameters(model, config["target_modules"]),
        "macs_per_token": macs_per_token(model, config["target_modules"]),
        "latency": latency,
        "precision": precision.precision,
        "precision_choice": precision.record(),
        "environment": environment_info(device),
    }
    write_json(output_path, result)
    return result


# ============================================================ stage 4: factorize (begin)
# Rule `factorize` (workflow/rules/factorize.smk). Sparsity-aware methods take stage 2's
# importance.safetensors for a pruned source; for the dense fine-tuned source (no
# pruning, hence no importance) `factorize.dense_importance` decides: `taylor` (default)
# = |W * dL/dW| summed over `fisher_batches` training batches
# (lpaf.factorize.first_order_importance), `uniform` = all ones (then sparsity_aware
# and sparsity_aware_rows reduce to plain SVD).


def _load_target_tensors(path: str | Path, target_names, what: str) -> dict[str, torch.Tensor]:
    """``{target name: tensor}`` from a safetensors file of stage 2, checked against the
    model's targets (keys = target module names)."""
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    names = list(target_names)
    missing = [n for n in names if n not in tensors]
    if missing:
        raise ValueError(
            f"{path}: {what} has no entry for target module(s) {missing[:4]}"
            f"{'...' if len(missing) > 4 else ''} (its keys: {sorted(tensors)[:4]}...); "
            "keys must be the full target module names of the model"
        )
    return {n: tensors[n] for n in names}


def _plain_svd_seconds(weights: dict[str, torch.Tensor], device: torch.device) -> float:
    """Wall time of one full ``torch.linalg.svd`` (float64, ``full_matrices=False``, the
    solvers' compute dtype and their starting point) of every target weight."""
    from lpaf.factorize import COMPUTE_DTYPE

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


def _gradient_statistics(config, model, train_set, data_collator, seed: int, patterns):
    """Fisher row importance and ``|W * dL/dW|`` of every target from one pass over
    ``factorize.fisher_batches`` training batches of ``factorize.batch_size`` examples,
    shuffled with ``seed`` (lpaf.factorize.gradient_importance)."""
    from torch.utils.data import DataLoader

    from lpaf.factorize import gradient_importance

    settings = config["factorize"]
    loader = DataLoader(
        train_set,
        batch_size=settings["batch_size"],
        shuffle=True,
        generator=torch.Generator().manual_seed(int(seed)),
        collate_fn=data_collator,
    )
    return gradient_importance(model, loader, patterns, settings["fisher_batches"])


def factorize_gradients(
    config: dict[str, Any],
    task_name: str,
    seed: int,
    source_dir: str | Path,
    fisher_path: str | Path,
    taylor_path: str | Path,
    threads: int | None = None,
) -> dict[str, Any]:
    """The gradient statistics stage 4 needs from a source model, once per source x
    task x seed for every rho and method: ``fisher_path`` (Fisher row importance, for
    fwsvd) and ``taylor_path`` (``|W * dL/dW|``, the sparsity-aware methods' importance
    for a source without pruning importance), safetensors keyed by target module name,
    with ``seconds`` (the pass's wall time), ``batches`` and ``batch_size`` as metadata."""
    from lpaf.modeling import load_model, load_tokenizer
    from lpaf.targets import find_targets
    from lpaf.train import TrainSettings, configure_threads, resolve_device

    configure_threads(threads or config.get("threads"))
    device = resolve_device(config["device"])
    model = load_model(source_dir, device=device)
    tokenizer = load_tokenizer(str(source_dir))
    _, train_set, _, data_collator = prepare_task(
        config, task_name, tokenizer, int(seed), TrainSettings.from_dict(config["finetune"])
    )
    patterns = config["target_modules"]
    find_targets(model, patterns)  # fails here, naming the patterns, if none match
    started = time.perf_counter()
    fisher, taylor = _gradient_statistics(
        config, model, train_set, data_collator, int(seed), patterns
    )
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    settings = config["factorize"]
    metadata = {
        "seconds": f"{seconds:.3f}",
        "batches": str(settings["fisher_batches"]),
        "batch_size": str(settings["batch_size"]),
        "source_model": str(source_dir),
        "seed": str(int(seed)),
    }
    save_tensors(fisher_path, fisher, metadata)
    save_tensors(taylor_path, taylor, metadata)
    return {"seconds": seconds, **metadata}


def _fidelity(task, source_logits, table, labels) -> dict[str, Any]:
    """How close the factorized model's dev outputs are to the source model's, and both
    models' dev loss: finer measures of an initialization than the task metric, which
    can sit at a constant predictor's value for many different models.

    Classification: ``agreement`` (same argmax), ``kl_from_source`` (mean
    ``KL(softmax source || softmax factorized)`` in nats) and cross-entropy ``dev_loss``
    / ``source_dev_loss``. Regression: ``mse_to_source`` and the MSE ``dev_loss`` /
    ``source_dev_loss``. ``source_main`` is the source model's main dev metric.
    """
    import numpy as np
    from scipy.special import log_softmax

    from lpaf.metrics import compute_metrics

    labels = np.asarray(labels)
    source = np.asarray(source_logits, dtype=np.float64)
    result: dict[str, Any] = {"source_main": compute_metrics(task, source_logits, labels)["main"]}
    if task.kind == "regression":
        ours = table["prediction"].to_numpy(dtype=np.float64)
        source = source.reshape(-1)
        result.update(
            mse_to_source=float(np.mean((ours - source) ** 2)),
            dev_loss=float(np.mean((ours - labels) ** 2)),
            source_dev_loss=float(np.mean((source - labels) ** 2)),
        )
        return result
    ours = table[[f"logit_{name}" for name in task.label_names]].to_numpy(dtype=np.float64)
    log_p, log_q = log_softmax(source, axis=1), log_softmax(ours, axis=1)
    rows = np.arange(len(labels))
    result.update(
        agreement=float(np.mean(source.argmax(1) == ours.argmax(1))),
        kl_from_source=float(np.mean((np.exp(log_p) * (log_p - log_q)).sum(axis=1))),
        dev_loss=float(-np.mean(log_q[rows, labels])),
        source_dev_loss=float(-np.mean(log_p[rows, labels])),
    )
    return result


def factorize(
    config: dict[str, Any],
    task_name: str,
    seed: int,
    source: str,
    method: str,
    rho: float,
    source_dir: str | Path,
    model_dir: str | Path,
    reconstruction_path: str | Path,
    predictions_path: str | Path,
    metrics_path: str | Path,
    masks_path: str | Path | None = None,
    importance_path: str | Path | None = None,
    threads: int | None = None,
    rank_rule: str | None = None,
    fisher_path: str | Path | None = None,
    taylor_path: str | Path | None = None,
) -> dict[str, Any]:
    """Stage 4: factorize every target of the model in ``source_dir`` at budget ``rho``
    with ``method`` and record its dev score before any training.

    ``source`` is the config's name of the source model (``finetune`` or
    ``prune/<method>/density<d>``, :mod:`lpaf.sources`). For a pruned source,
    ``masks_path`` and ``importance_path`` are stage 2's ``masks.safetensors`` and
    ``importance.safetensors``. Writes ``model_dir`` (:func:`lpaf.compressed.save_compressed`),
    ``reconstruction_path`` (one row per target), ``predictions_path`` (dev predictions
    and logits of the saved model) and, last, ``metrics_path`` (``metrics_init.json``).

    ``fisher_path`` / ``taylor_path``: the source's gradient statistics written by
    :func:`factorize_gradients` (one pass shared by every rho and method); when not
    given and the method needs them, they are computed here the same way.
    """

    from lpaf.accounting import count_parameters, effective_weight, macs_per_token
    from lpaf.compressed import is_compressed, save_compressed
    from lpaf.factorize import factorize_model
    from lpaf.modeling import load_model, load_tokenizer, model_tag
    from lpaf.targets import find_targets
    from lpaf.train import TrainSettings, configure_threads, resolve_device

    start = time.perf_counter()
    settings = dict(config["factorize"])
    if rank_rule is not None:  # a pipeline's own rank rule (path suffix, see rules)
        settings["rank_rule"] = rank_rule
    patterns = config["target_modules"]
    configure_threads(threads or config.get("threads"))
    device = resolve_device(config["device"])
    if is_compressed(source_dir):
        raise ValueError(f"source {source_dir} is already a low-rank model; factorize a dense one")
    torch.manual_seed(int(seed))
    model = load_model(source_dir, device=device)
    precision = resolve_precision(config, device, model)
    tokenizer = load_tokenizer(str(source_dir))
    task, train_set, evals, data_collator = prepare_task(
        config, task_name, tokenizer, int(seed), TrainSettings.from_dict(config["finetune"])
    )
    targets = find_targets(model, patterns)

    masks = importance = fisher = None
    if masks_path is not None:
        masks = _load_target_tensors(masks_path, targets, "the mask file")
    if importance_path is not None and method in ("sparsity_aware", "sparsity_aware_rows"):
        importance = _load_target_tensors(importance_path, targets, "the importance file")
    for name, module in targets.items():
        for kind, tensors in (("mask", masks), ("importance", importance)):
            if tensors is not None and tuple(tensors[name].shape) != tuple(module.weight.shape):
                raise ValueError(
                    f"{kind} of {name} has shape {tuple(tensors[name].shape)}, "
                    f"the weight {tuple(module.weight.shape)}"
                )

    # The source model's dev outputs: the reference the factorized model starts from.
    from lpaf.evaluate import predict

    primary = task.eval_splits[0]
    batch_size = config["evaluate"]["batch_size"]
    source_logits = predict(
        model, evals[primary], data_collator, batch_size, device, precision.precision
    )

    def gradients(kind: str, path, source_model) -> tuple[dict[str, torch.Tensor], float]:
        """(statistic, seconds of the pass): from the gradients rule's file or here."""
        if path is not None:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                seconds = float((handle.metadata() or {}).get("seconds", "nan"))
            return _load_target_tensors(path, targets, f"the {kind} file"), seconds
        started = time.perf_counter()
        fisher, taylor = _gradient_statistics(
            config, source_model, train_set, data_collator, int(seed), patterns
        )
        return {"fisher": fisher, "taylor": taylor}[kind], time.perf_counter() - started

    importance_kind = "none"
    importance_seconds = 0.0
    if method == "fwsvd":
        fisher, importance_seconds = gradients("fisher", fisher_path, model)
        importance_kind = "fisher"
    elif method in ("sparsity_aware", "sparsity_aware_rows"):
        if importance is not None:
            importance_kind = "stage2"
        elif settings["dense_importance"] == "taylor":
            importance, importance_seconds = gradients("taylor", taylor_path, model)
            importance_kind = "taylor"
        else:
            importance = {n: torch.ones(tuple(m.weight.shape)) for n, m in targets.items()}
            importance_kind = "uniform"
    # where the gradient pass ran: the factorize_gradients job (shared by every rho and
    # method of this source), this job, or nowhere (no gradient statistic needed)
    importance_pass = None
    if importance_kind in ("fisher", "taylor"):
        given = fisher_path if importance_kind == "fisher" else taylor_path
        importance_pass = "factorize_gradients" if given else "this job"

    with torch.no_grad():
        weights = {name: effective_weight(m).detach().clone() for name, m in targets.items()}
    if masks is not None:
        weights = {n: w * masks[n].to(w) for n, w in weights.items()}
    plain_svd_seconds = _plain_svd_seconds(weights, device)
    kept = {
        n: (masks[n].bool() if masks is not None else (w != 0)).to("cpu")
        for n, w in weights.items()
    }

    factorize_start = time.perf_counter()
    model, report = factorize_model(
        model,
        method=method,
        rho=float(rho),
        rank_rule=settings["rank_rule"],
        importance=importance,
        fisher=fisher,
        masks=masks,
        target_patterns=patterns,
        n_iter=settings["n_iter"],
        epsilon=settings["epsilon"],
        solver=settings["solver"],
    )
    factorize_seconds = time.perf_counter() - factorize_start
    if device.type == "cuda":
        torch.cuda.synchronize(device)

    dense = sum(w.numel() for w in weights.values())
    rank_step = sum(sum(w.shape) for w in weights.values()) / dense
    record = save_compressed(
        model,
        tokenizer,
        model_dir,
        metadata={
            "stage": "factorize",
            "method": method,
            "rank_rule": settings["rank_rule"],
            "rho_target": float(rho),
            "rho_achieved": report["rho_achieved"],
            "source": source,
            "source_model": str(source_dir),
            "task": task.name,
            "seed": int(seed),
            "importance": importance_kind,
            "solver": report["solver"],
            "n_iter": report["n_iter"],
            "epsilon": report["epsilon"],
        },
        target_patterns=patterns,
    )

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
    import pandas as pd

    write_dataframe(reconstruction_path, pd.DataFrame(rows))

    # Score the model as saved (reloaded), with the evaluate rule's batch size, so the
    # score is the one `evaluate` reports for the same directory.
    del model
    saved = load_model(model_dir, device=device)
    per_split, tables = evaluate_all(
        saved, evals, data_collator, task, batch_size, device, precision.precision
    )
    write_dataframe(predictions_path, tables[primary])
    fidelity = _fidelity(task, source_logits, tables[primary], evals[primary]["labels"])
    parameters = count_parameters(saved, patterns)
    parameters.pop("per_target")
    errors = pd.DataFrame(rows)
    metrics = {
        "stage": "factorize",
        "task": task.name,
        "model": config["model"],
        "model_tag": config.get("model_tag") or model_tag(config["model"]),
        "seed": int(seed),
        "source": source,
        "source_dir": str(source_dir),
        "method": method,
        "rank_rule": settings["rank_rule"],
        "rho_target": float(rho),
        "rho_achieved": record["rho_achieved"],
        "rank_step": rank_step,
        "ranks": record["ranks"],
        "main_metric": task.main_metric,
        "main": per_split[primary]["main"],
        "metrics": per_split,
        "eval_batch_size": batch_size,
        "parameters": parameters,
        "macs_per_token": macs_per_token(saved, patterns),
        "fidelity": fidelity,
        "reconstruction": {
            "mean_error": float(errors["error"].mean()),
            "mean_weighted_error": float(errors["weighted_error"].mean()),
            "mean_kept_error": float(errors["kept_error"].mean()),
        },
        "importance": importance_kind,
        "settings": {
            "fisher_batches": settings["fisher_batches"],
            "batch_size": settings["batch_size"],
            "n_iter": report["n_iter"],
            "epsilon": report["epsilon"],
            "solver": report["solver"],
            "dense_importance": settings["dense_importance"],
        },
        "timing": {
            "importance_seconds": round(importance_seconds, 3),
            # the gradient pass ran in the factorize_gradients job (shared by every rho
            # and method of this source) or in this job
            "importance_pass": importance_pass,
            "factorize_seconds": round(factorize_seconds, 3),
            "stage_seconds": round(importance_seconds + factorize_seconds, 3),
            "plain_svd_seconds": round(plain_svd_seconds, 3),
            "stage_over_plain_svd": (importance_seconds + factorize_seconds)
            / max(plain_svd_seconds, 1e-9),
            "wall_seconds": round(time.perf_counter() - start, 2),
        },
        "precision": precision.precision,
        "precision_choice": precision.record(),
        "environment": environment_info(device),
    }
    write_json(metrics_path, metrics)
    return metrics


# ============================================================ stage 4: factorize (end)


# ================================================ stages 2-3: prune, rank analysis (begin)
# Rule `prune` (workflow/rules/prune.smk) and rule `rank_analysis`
# (workflow/rules/rank_analysis.smk). Stage 4 reads `masks.safetensors` and
# `importance.safetensors` of a pruned run; their keys are the target module names.


def density_label(density: float | str) -> str:
    """How a density appears in results paths: ``0.3`` -> ``"0.3"`` (``density0.3``)."""
    return f"{float(density):g}"


def prune_config_from(config: dict[str, Any], method: str, density: float):
    """The :class:`lpaf.prune.PruneConfig` of one run of the config's ``prune`` block."""
    from lpaf.prune import PruneConfig

    settings = config["prune"]
    return PruneConfig(
        method=method,
        final_density=float(density),
        initial_warmup=settings["initial_warmup"],
        final_warmup=settings["final_warmup"],
        mask_update_interval=settings["mask_update_interval"],
        threshold=settings["threshold"],
        scores_learning_rate=settings["scores_learning_rate"],
        scores_init=settings["scores_init"],
        ema_beta=settings["ema_beta"],
        target_patterns=tuple(config["target_modules"]),
    )


def expected_kept(shapes: dict[str, tuple[int, int]], density: float, threshold: str) -> int:
    """Target weights a finished pruning run keeps: ``round(density * numel)`` per
    matrix (``per_matrix``) or over all targets at once (``global``)."""
    from lpaf.prune import keep_count

    sizes = [rows * cols for rows, cols in shapes.values()]
    if threshold == "global":
        return keep_count(density, sum(sizes))
    return sum(keep_count(density, n) for n in sizes)


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata=None) -> None:
    """``safetensors`` file written atomically (contiguous CPU copies)."""
    from safetensors.torch import save_file

    from lpaf.io import atomic_path

    data = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(data, str(tmp), metadata=metadata)


def prune(
    config: dict[str, Any],
    task_name: str,
    method: str,
    density: float,
    seed: int,
    teacher_dir: str | Path,
    model_dir: str | Path,
    masks_path: str | Path,
    importance_path: str | Path,
    metrics_path: str | Path,
    train_log_path: str | Path,
    densities_path: str | Path,
    threads: int | None = None,
) -> dict[str, Any]:
    """Stage 2: unstructured pruning of the target matrices to ``density`` with
    ``method`` during training (cubic schedule, :class:`lpaf.prune.PruningHook`),
    optionally distilling from the fine-tuned teacher in ``teacher_dir``.

    Starts from the teacher (``prune.init: finetuned``) or from ``config['model']``
    with a fresh head (``pretrained``). Writes ``model_dir`` (a plain Hugging Face model
    with the masks baked into its weights), ``masks_path`` (boolean, 1 = kept) and
    ``importance_path`` (float32: movement scores, EMA of ``|W*G|`` or ``|W|``), both
    keyed by target module name, ``train_log_path`` (per step), ``densities_path``
    (achieved density of every target) and, last, ``metrics_path``. Fails if the
    achieved density is not the target to the nearest weight.
    """
    import pandas as pd

    from lpaf.modeling import load_for_task, load_model, load_tokenizer
    from lpaf.prune import DistillationHook, PruningHook
    from lpaf.tasks import get_task
    from lpaf.train import TrainSettings, clear_checkpoint, resolve_device, train

    start = time.perf_counter()
    density = float(density)
    prune_settings = config["prune"]
    settings = TrainSettings.from_dict(prune_settings)
    device = resolve_device(config["device"])
    task = get_task(task_name)
    tokenizer = load_tokenizer(str(teacher_dir))
    distill = prune_settings["distillation"]
    if prune_settings["init"] == "finetuned":
        model = load_model(teacher_dir)
    else:
        model, _ = load_for_task(config["model"], task, seed=int(seed))
    run, precision = run_settings(config, seed, threads, model)
    task, train_set, evals, data_collator = prepare_task(
        config, task_name, tokenizer, int(seed), settings
    )
    primary = task.eval_splits[0]

    prune_config = prune_config_from(config, method, density)
    pruning = PruningHook(prune_config)
    hooks: list = [pruning]
    if distill["enabled"]:
        teacher = load_model(teacher_dir)
        hooks.append(DistillationHook(teacher, distill["temperature"], distill["alpha"]))

    eval_fn = primary_eval_fn(
        evals, primary, data_collator, task, settings.eval_batch_size, device, run.precision
    )

    work_dir = Path(metrics_path).parent
    result = train(
        model,
        train_set,
        data_collator,
        settings,
        run,
        work_dir,
        eval_fn=eval_fn,
        hooks=hooks,
        description=f"prune {method} density {density:g} {task.name} seed {seed}",
    )
    model = result.model
    masks = pruning.masks()
    importance = pruning.importance()

    # The achieved density must be the target to the nearest weight.
    from lpaf.targets import find_targets

    targets = find_targets(model, config["target_modules"])
    shapes = {name: tuple(m.weight.shape) for name, m in targets.items()}
    if set(masks) != set(shapes):
        raise RuntimeError(f"masks name {sorted(masks)[:3]}..., targets {sorted(shapes)[:3]}...")
    total = sum(r * c for r, c in shapes.values())
    kept = sum(int(mask.sum()) for mask in masks.values())
    want = expected_kept(shapes, density, prune_config.threshold)
    if kept != want:
        raise RuntimeError(
            f"pruning kept {kept} of {total} target weights, the target density {density} "
            f"asks for {want}: the schedule did not end at the final density"
        )
    rows = []
    for name, module in targets.items():
        weight = module.weight.detach().cpu()
        mask = masks[name]
        if int((weight[~mask] != 0).sum()) != 0:
            raise RuntimeError(f"{name}: pruned weights are not zero in the saved model")
        rows.append(
            {
                "name": name,
                "rows": weight.shape[0],
                "cols": weight.shape[1],
                "numel": weight.numel(),
                "kept": int(mask.sum()),
                "density": int(mask.sum()) / weight.numel(),
                "nonzeros": int((weight != 0).sum()),
            }
        )
    per_target = pd.DataFrame(rows)

    per_split, _ = evaluate_all(
        model, evals, data_collator, task, settings.eval_batch_size, device, run.precision
    )
    with atomic_dir(model_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    meta = {"method": method, "density": f"{density:g}", "threshold": prune_config.threshold}
    save_tensors(masks_path, {n: m.bool() for n, m in masks.items()}, {**meta, "kind": "mask"})
    save_tensors(
        importance_path,
        {n: t.float() for n, t in importance.items()},
        {**meta, "kind": "importance"},
    )
    write_dataframe(train_log_path, result.log)
    write_dataframe(densities_path, per_target)
    metrics = {
        "stage": "prune",
        "task": task.name,
        "model": config["model"],
        "teacher": str(teacher_dir),
        "seed": int(seed),
        "method": method,
        "target_density": density,
        "achieved_density": kept / total,
        "kept_weights": kept,
        "target_weights": total,
        "nonzero_weights": int(per_target["nonzeros"].sum()),
        "main_metric": task.main_metric,
        "main": per_split[primary]["main"],
        "metrics": per_split,
        "train_examples": len(train_set),
        "steps": result.steps,
        "resumed_from_step": result.resumed_from_step,
        "train_seconds": round(result.train_seconds, 2),
        "wall_seconds": round(time.perf_counter() - start, 2),
        "precision": run.precision,
        "precision_choice": precision.record(),
        "settings": vars(settings),
        "prune": {
            **{k: v for k, v in vars(prune_config).items() if k != "target_patterns"},
            "target_patterns": list(prune_config.target_patterns),
            "init": prune_settings["init"],
            "distillation": dict(distill),
            "warmup_steps": list(pruning.warmup_steps(result.steps)),
        },
        "environment": environment_info(device),
    }
    write_json(metrics_path, metrics)
    clear_checkpoint(work_dir)
    return metrics


def rank_analysis(
    config: dict[str, Any],
    model_dir: str | Path,
    stats_path: str | Path,
    spectra_path: str | Path,
    threads: int | None = None,
) -> Any:
    """Stage 3: rank statistics of every target matrix of the model in ``model_dir``
    (:func:`lpaf.rank.model_rank_table`): ``spectra_path`` holds the singular values
    (float64, keyed by target name), ``stats_path`` (written last) one row per target
    with ``name``, ``shape``, non-zeros, exact rank, 90/95/99 % energy ranks and the
    all-zero rows and columns."""
    import json

    from lpaf.modeling import load_model
    from lpaf.rank import model_rank_table
    from lpaf.train import configure_threads

    configure_threads(threads or config.get("threads"))
    model = load_model(model_dir)
    table, spectra = model_rank_table(model, config["target_modules"])
    shapes = [f"{r}x{c}" for r, c in zip(table["rows"], table["cols"], strict=True)]
    table.insert(1, "shape", shapes)
    # safetensors sorts its keys; the metadata keeps the model's module order
    save_tensors(
        spectra_path,
        {n: torch.from_numpy(s.copy()) for n, s in spectra.items()},
        {"order": json.dumps(list(spectra))},
    )
    write_dataframe(stats_path, table)
    return table


# ================================================== stages 2-3: prune, rank analysis (end)


def recover(
    config: dict[str, Any],
    task_name: str,
    seed: int,
    pipeline: str,
    factorized_dir: str | Path,
    sparse_dir: str | Path,
    teacher_dir: str | Path,
    model_dir: str | Path,
    metrics_path: str | Path,
    train_log_path: str | Path,
    predictions_path: str | Path,
    threads: int | None = None,
) -> dict[str, Any]:
    """Stage 5: fine-tune the factorized model in ``factorized_dir`` with the pipeline's
    recovery schedule (:mod:`lpaf.recover`), distilling from the teacher in
    ``teacher_dir`` if ``recover.distillation.enabled``.

    ``sparse_dir`` is the model the factors were computed from (the pruned model, or
    the fine-tuned one for unpruned pipelines); ``mixed_rank`` takes its target weights
    as the sparse full-rank path. Writes ``model_dir`` in the compressed format (only
    the factors), ``train_log_path``, ``predictions_path`` and, last, ``metrics_path``.
    """
    from lpaf.accounting import count_parameters
    from lpaf.compressed import load_compressed, read_metadata, save_compressed
    from lpaf.modeling import load_model, load_tokenizer
    from lpaf.prune import DistillationHook
    from lpaf.recover import RecoverConfig, RecoveryHook
    from lpaf.targets import find_targets
    from lpaf.train import TrainSettings, clear_checkpoint, resolve_device, train

    start = time.perf_counter()
    spec = config["pipelines"][pipeline]
    recover_settings = config["recover"]
    settings = TrainSettings.from_dict(recover_settings)
    device = resolve_device(config["device"])
    patterns = config["target_modules"]

    model = load_compressed(factorized_dir)
    run, precision = run_settings(config, seed, threads, model)
    factorized_record = read_metadata(factorized_dir)
    tokenizer = load_tokenizer(str(factorized_dir))
    task, train_set, evals, data_collator = prepare_task(
        config, task_name, tokenizer, int(seed), settings
    )
    primary = task.eval_splits[0]

    recover_config = RecoverConfig(
        schedule=spec["recover"],
        p0=recover_settings["p0"],
        anneal_fraction=recover_settings["anneal_fraction"],
        min_rank_fraction=recover_settings["min_rank_fraction"],
        train_sparse=recover_settings["train_sparse"],
    )
    sparse_weights = None
    if recover_config.schedule == "mixed_rank":
        sparse_model = load_model(sparse_dir)
        sparse_weights = {
            name: module.weight.detach().clone()
            for name, module in find_targets(sparse_model, patterns).items()
        }
        del sparse_model
    hooks: list = [RecoveryHook(recover_config, sparse_weights)]
    distill = recover_settings["distillation"]
    if distill["enabled"]:
        hooks.append(
            DistillationHook(load_model(teacher_dir), distill["temperature"], distill["alpha"])
        )

    eval_fn = primary_eval_fn(
        evals, primary, data_collator, task, settings.eval_batch_size, device, run.precision
    )

    work_dir = Path(metrics_path).parent
    result = train(
        model,
        train_set,
        data_collator,
        settings,
        run,
        work_dir,
        eval_fn=eval_fn,
        hooks=hooks,
        description=f"recover {pipeline} {task.name} seed {seed}",
    )
    model = result.model
    per_split, tables = evaluate_all(
        model, evals, data_collator, task, settings.eval_batch_size, device, run.precision
    )
    parameters = count_parameters(model, patterns)
    metadata = {
        "stage": "recover",
        "pipeline": pipeline,
        "schedule": recover_config.schedule,
        "method": factorized_record.get("method"),
        "rank_rule": factorized_record.get("rank_rule"),
        "rho_target": factorized_record.get("rho_target"),
        "rho_achieved": parameters["retained_fraction"],
        "source": factorized_record.get("source"),
        "source_model": str(factorized_dir),
        "task": task.name,
        "seed": int(seed),
    }
    save_compressed(model, tokenizer, model_dir, metadata=metadata, target_patterns=patterns)
    write_dataframe(train_log_path, result.log)
    write_dataframe(predictions_path, tables[primary])
    metrics = {
        **metadata,
        "main_metric": task.main_metric,
        "main": per_split[primary]["main"],
        "metrics": per_split,
        "parameters": parameters,
        "train_examples": len(train_set),
        "steps": result.steps,
        "resumed_from_step": result.resumed_from_step,
        "train_seconds": round(result.train_seconds, 2),
        "wall_seconds": round(time.perf_counter() - start, 2),
        "precision": run.precision,
        "precision_choice": precision.record(),
        "settings": vars(settings),
        "recover_settings": {k: v for k, v in recover_settings.items() if k not in vars(settings)},
        "environment": environment_info(device),
    }
    write_json(metrics_path, metrics)
    clear_checkpoint(work_dir)
    return metrics
