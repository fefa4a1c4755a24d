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
    """Logits (float32 numpy, N x C; N x 1 for regression) in dataset order."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collator)
    chunks = []
    for batch in loader:
        batch = move_batch(batch, device)
        batch.pop("labels", None)
        with autocast(device, precision):
            logits = model(**batch).logits
        chunks.append(logits.float().cpu())
    model.train(was_training)
    return torch.cat(chunks).numpy()


def output_fidelity(task, logits, labels, reference=None) -> dict[str, float]:
    """Finer measures of a model's dev outputs than the task metric (which can sit at
    the constant predictor's value for many different models): ``dev_loss``
    (cross-entropy, or MSE for regression) and, against ``reference`` outputs (e.g. the
    teacher's), ``agreement`` (same argmax) and ``kl_from_reference`` (mean
    ``KL(softmax reference || softmax model)`` in nats), or ``mse_to_reference``."""
    labels = np.asarray(labels)
    ours = np.asarray(logits, dtype=np.float64)
    ref = None if reference is None else np.asarray(reference, dtype=np.float64)
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


def evaluate_split(
    model, dataset, collator, task, batch_size=128, device="cpu", precision="fp32"
) -> tuple[dict[str, float], pd.DataFrame]:
    """Metrics of ``task`` on a tokenized split with labels (with, for classification,
    ``top_class_share``: the share of predictions in the most frequent class), and a
    predictions table (``idx``, ``label``, ``prediction``, and the logits)."""
    logits = predict(model, dataset, collator, batch_size, device, precision)
    labels = np.asarray(dataset["labels"])
    metrics = compute_metrics(task, logits, labels)
    share = top_class_share(task, logits)
    if share is not None:
        metrics["top_class_share"] = share
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
    after ``warmup`` untimed passes. CUDA timings synchronise before reading the clock."""
    device = torch.device(device)
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
    return result
