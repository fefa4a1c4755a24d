"""Dev-set evaluation, predictions, parameter counts and measured latency."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from scipy.special import log_softmax
from torch import nn
from torch.utils.data import DataLoader

from lpaf.evaluate.constant import top_class_share
from lpaf.metrics import compute_metrics
from lpaf.train import autocast, move_batch


@torch.no_grad()
def predict(
    model: nn.Module,
    dataset,
    collator,
    batch_size: int = 128,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
) -> np.ndarray:
    """Logits (float32 numpy, N x C; N x 1 for regression) in dataset order. A
    question-answering head gives ``N x L x 2`` (start, end logits of each window's
    ``L`` token positions, ``L`` the longest window; positions past a window's end,
    and its padding, at :data:`QA_MASKED`, so that their probability is 0)."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collator)
    chunks = []
    for batch in loader:
        batch = move_batch(batch, device)
        batch.pop("labels", None)
        with autocast(device, precision):
            out = model(**batch)
        if getattr(out, "start_logits", None) is not None:
            logits = torch.stack([out.start_logits, out.end_logits], -1).float()
            mask = batch.get("attention_mask")
            if mask is not None:
                logits = logits.masked_fill(~mask.bool()[..., None], QA_MASKED)
        else:
            logits = out.logits
        chunks.append(logits.float().cpu())
    model.train(was_training)
    if chunks and chunks[0].ndim == 3:
        width = max(c.shape[1] for c in chunks)
        chunks = [
            torch.nn.functional.pad(c, (0, 0, 0, width - c.shape[1]), value=QA_MASKED)
            for c in chunks
        ]
    return torch.cat(chunks).numpy()


# the logit of a padded or out-of-window token position in predict's QA output
QA_MASKED = -1.0e4


def output_fidelity(task, logits, labels, reference=None) -> dict[str, float]:
    """Finer measures of a model's dev outputs than the task metric (which can sit at
    the constant predictor's value for many different models): ``dev_loss``
    (cross-entropy, or MSE for regression) and, against ``reference`` outputs (e.g. the
    teacher's), ``agreement`` (same argmax) and ``kl_from_reference`` (mean
    ``KL(softmax reference || softmax model)`` in nats), or ``mse_to_reference``.
    Extractive QA (logits ``N x L x 2``, labels ``N x 2``): the same over the token
    positions of the start and of the end distribution, averaged over both;
    ``agreement`` counts windows whose start and end argmaxes both agree."""
    labels = np.asarray(labels)
    ours = np.asarray(logits, dtype=np.float64)
    ref = None if reference is None else np.asarray(reference, dtype=np.float64)
    if ours.ndim == 3:
        return _span_fidelity(ours, labels, ref)
    if task.kind == "regression":
        ours = ours.reshape(-1)
        result = {"dev_loss": float(np.mean((ours - labels) ** 2))}
        if ref is not None:
            result["mse_to_reference"] = float(np.mean((ours - ref.reshape(-1)) ** 2))
        return result
    log_q = log_softmax(ours, axis=1)
    rows = np.arange(len(labels))
    result = {"dev_loss": float(-np.mean(log_q[rows, labels.astype(np.int64)]))}
    if ref is not None:
        log_p = log_softmax(ref, axis=1)
        result["agreement"] = float(np.mean(ref.argmax(1) == ours.argmax(1)))
        result["kl_from_reference"] = float(np.mean((np.exp(log_p) * (log_p - log_q)).sum(axis=1)))
    return result


def _span_fidelity(ours, labels, ref) -> dict[str, float]:
    log_q = log_softmax(ours, axis=1)  # over token positions
    rows = np.arange(len(labels))[:, None]
    which = np.arange(2)[None, :]
    picked = log_q[rows, labels.astype(np.int64), which]  # N x 2
    result = {"dev_loss": float(-np.mean(picked))}
    if ref is not None:
        log_p = log_softmax(ref, axis=1)
        same = ref.argmax(1) == ours.argmax(1)  # N x 2
        result["agreement"] = float(np.mean(same.all(axis=1)))
        kl = (np.exp(log_p) * (log_p - log_q)).sum(axis=1)  # N x 2
        result["kl_from_reference"] = float(np.mean(kl))
    return result


def split_metrics(task, split, logits) -> dict[str, float]:
    """Metrics of ``task`` of ``logits`` (:func:`predict`) on a tokenized split with
    labels (with, for classification, ``top_class_share``: the share of predictions in
    the most frequent class); for extractive QA, EM/F1 of the answers the window
    logits give (:func:`lpaf.qa.task.split_metrics`)."""
    if task.kind == "extractive_qa":
        from lpaf.qa.task import split_metrics as qa_metrics

        return qa_metrics(split, logits)
    metrics = compute_metrics(task, logits, np.asarray(split["labels"]))
    share = top_class_share(task, logits)
    if share is not None:
        metrics["top_class_share"] = share
    return metrics


def evaluate_split(
    model, dataset, collator, task, batch_size=128, device="cpu", precision="fp32"
) -> tuple[dict[str, float], pd.DataFrame]:
    """:func:`split_metrics` of a tokenized split with labels, and a predictions table
    (``idx``, ``label``, ``prediction``, and the logits; for extractive QA one row per
    question: ``id``, ``prediction``, ``answers``)."""
    logits = predict(model, dataset, collator, batch_size, device, precision)
    return score_logits(task, dataset, logits)


def score_logits(task, dataset, logits) -> tuple[dict[str, float], pd.DataFrame]:
    """:func:`evaluate_split` of logits already predicted for ``dataset``."""
    if task.kind == "extractive_qa":
        from lpaf.qa.task import evaluate_split as qa_evaluate

        return qa_evaluate(dataset, logits)
    metrics = split_metrics(task, dataset, logits)
    labels = np.asarray(dataset["labels"])
    table = pd.DataFrame({"idx": np.asarray(dataset["idx"]), "label": labels})
    if task.kind == "regression":
        table["prediction"] = logits.reshape(-1)
    else:
        pred = logits.argmax(-1)
        table["prediction"] = pred
        table["predicted_label"] = [task.label_names[i] for i in pred]
        for j, name in enumerate(task.label_names):
            table[f"logit_{name}"] = logits[:, j]
    return metrics, table


@torch.no_grad()
def measure_latency(
    model: nn.Module,
    batch_sizes: Sequence[int] = (1, 32),
    seq_length: int = 128,
    warmup: int = 3,
    repeats: int = 10,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
    vocab_size: int | None = None,
) -> dict[str, float]:
    """Median wall time (ms) of one forward pass on random token ids, per batch size,
    after ``warmup`` untimed passes. CUDA timings synchronise before reading the clock.
    On the CPU the allocator is tuned first (:func:`lpaf.deploy.tune_cpu_allocator`),
    as :mod:`lpaf.bench` and :func:`lpaf.load_for_inference` do."""
    from lpaf.deploy import allocator_tuned, tune_cpu_allocator

    device = torch.device(device)
    if device.type == "cpu":
        tune_cpu_allocator()
    model.eval().to(device)
    vocab = vocab_size or getattr(model.config, "vocab_size", 1000)
    generator = torch.Generator().manual_seed(0)
    result: dict[str, float] = {}
    for bs in batch_sizes:
        ids = torch.randint(0, vocab, (bs, seq_length), generator=generator).to(device)
        mask = torch.ones_like(ids)
        times = []
        for i in range(warmup + repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            with autocast(device, precision):
                model(input_ids=ids, attention_mask=mask)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= warmup:
                times.append(time.perf_counter() - t0)
        result[f"latency_ms_bs{bs}"] = 1000 * statistics.median(times)
    result["latency_seq_length"] = seq_length
    result["latency_threads"] = torch.get_num_threads()
    result["latency_allocator"] = "tuned" if allocator_tuned() else "default"
    return result
