"""Gradient statistics for stage 4: Fisher row importance (fwsvd) and first-order
importance ``|W * dL/dW|`` (the sparsity-aware methods on a dense source)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from lpaf.targets import DEFAULT_TARGET_PATTERNS, find_targets


def _target_gradient_sums(
    model: nn.Module,
    dataloader: Iterable[Mapping[str, Any]],
    target_patterns: Sequence[str],
    num_batches: int | None,
    loss_fn: Callable[[Any, Mapping[str, Any]], torch.Tensor] | None,
    statistics: Mapping[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]],
) -> dict[str, dict[str, torch.Tensor]]:
    """``{statistic: {target: sum over batches of statistic(weight, dL/dweight)}}`` for
    every target weight (float32, on CPU), all statistics from the same backward passes.
    Shared by :func:`fisher_row_importance`, :func:`first_order_importance` and
    :func:`gradient_importance`; see the first for the conventions. A target that got no
    gradient gets zeros."""
    targets = find_targets(model, target_patterns)
    target_weights = {name: module.weight for name, module in targets.items()}
    device = next(model.parameters()).device
    flags = {param: param.requires_grad for param in model.parameters()}
    was_training = model.training
    sums: dict[str, dict[str, torch.Tensor]] = {key: {} for key in statistics}
    try:
        for param in model.parameters():
            param.requires_grad_(False)
        for weight in target_weights.values():
            weight.requires_grad_(True)
        model.eval()
        for index, batch in enumerate(dataloader):
            if num_batches is not None and index >= num_batches:
                break
            inputs = {
                key: value.to(device) if isinstance(value, torch.Tensor) else value
                for key, value in batch.items()
            }
            model.zero_grad(set_to_none=True)
            with torch.enable_grad():
                outputs = model(**inputs)
                loss = loss_fn(outputs, inputs) if loss_fn is not None else outputs.loss
                loss.backward()
            for name, weight in target_weights.items():
                if weight.grad is None:
                    continue
                w, g = weight.detach().float(), weight.grad.detach().float()
                for key, statistic in statistics.items():
                    value = statistic(w, g)
                    sums[key][name] = value if name not in sums[key] else sums[key][name] + value
    finally:
        model.zero_grad(set_to_none=True)
        for param, flag in flags.items():
            param.requires_grad_(flag)
        model.train(was_training)
    result: dict[str, dict[str, torch.Tensor]] = {}
    for key, statistic in statistics.items():
        result[key] = {}
        for name, weight in target_weights.items():
            if name in sums[key]:
                result[key][name] = sums[key][name].cpu()
            else:
                zeros = torch.zeros(tuple(weight.shape))
                result[key][name] = torch.zeros(statistic(zeros, zeros).shape)
    return result


def _fisher_rows(weight: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    return grad.square().sum(dim=1)


def _taylor(weight: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    return (weight * grad).abs()


def fisher_row_importance(model: nn.Module, dataloader, **options: Any) -> dict[str, torch.Tensor]:
    """Row importance for :func:`fwsvd`: for every target, the squared gradient of its
    ``weight`` summed over the input dimension and over batches, ``d_i = sum_batches
    sum_j (dL/dW_ij)^2`` (the batch-gradient empirical Fisher of Hsu et al.).

    Runs on the model's device in eval mode (no dropout) over ``num_batches`` batches
    (all when None). ``loss_fn(outputs, batch)`` defaults to ``outputs.loss`` (the batch
    must then hold the labels). Only target weights get gradients; ``requires_grad``
    flags, gradients and the train/eval mode are restored. Returns CPU float32 tensors
    of ``out_features`` entries (zeros for a target that got no gradient).
    ``options``: ``target_patterns``, ``num_batches``, ``loss_fn`` as in
    :func:`gradient_importance`.
    """
    return _gradient_sums(model, dataloader, {"fisher": _fisher_rows}, **options)["fisher"]


def first_order_importance(model: nn.Module, dataloader, **options: Any) -> dict[str, torch.Tensor]:
    """Element-wise first-order (Taylor) importance ``I_ij = sum_batches |W_ij dL/dW_ij|``
    of every target weight: the sensitivity PLATON and ``first_order_taylor`` pruning
    use, without the EMA. It stands in for stage 2's importance when a sparsity-aware
    method factorizes a model that was never pruned (the dense fine-tuned one).
    Same conventions as :func:`fisher_row_importance`; returns CPU float32 tensors of
    the weights' shape."""
    return _gradient_sums(model, dataloader, {"taylor": _taylor}, **options)["taylor"]


def gradient_importance(
    model: nn.Module,
    dataloader: Iterable[Mapping[str, Any]],
    target_patterns: Sequence[str] = DEFAULT_TARGET_PATTERNS,
    num_batches: int | None = None,
    loss_fn: Callable[[Any, Mapping[str, Any]], torch.Tensor] | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``(fisher_row_importance, first_order_importance)`` from one set of backward
    passes (same batches, same result as the two calls)."""
    statistics = {"fisher": _fisher_rows, "taylor": _taylor}
    sums = _target_gradient_sums(
        model, dataloader, target_patterns, num_batches, loss_fn, statistics
    )
    return sums["fisher"], sums["taylor"]


def _gradient_sums(model, dataloader, statistics, **options: Any):
    """:func:`_target_gradient_sums` with :func:`gradient_importance`'s options
    (``target_patterns``, ``num_batches``, ``loss_fn``) and their defaults."""
    options.setdefault("target_patterns", DEFAULT_TARGET_PATTERNS)
    options.setdefault("num_batches", None)
    options.setdefault("loss_fn", None)
    return _target_gradient_sums(model, dataloader, statistics=statistics, **options)
