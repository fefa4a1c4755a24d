"""Parameter and compute accounting, the same for dense, pruned and low-rank models.

Definitions (METHOD.md, "Accounting"):

* A *target* is a module matched by the target patterns (:func:`lpaf.targets.find_targets`).
* Its dense cost is ``m * n`` (its ``out_features * in_features``).
* Its compressed cost is ``r * (m + n)`` when it is a :class:`~lpaf.factorize.layer.LowRankLinear`
  of rank ``r``, and otherwise the number of non-zeros of its *effective weight*
  (a dense, fine-tuned weight therefore costs ``m * n`` as it has no exact zeros).
* The retained fraction ``rho = targets_compressed / targets_dense``.
* Biases are not part of ``rho`` (they are ``m`` numbers next to ``m * n`` and stay
  dense in every method); they are counted in the model totals.

The effective weight of a target (:func:`effective_weight`) is, in this order: the
product of the factors for a ``LowRankLinear``; the module's ``effective_weight``
(attribute, property or zero-argument method) for masked pruning modules that expose
it; ``weight * mask`` for a module holding a ``mask`` tensor; else ``weight``.

Model totals count what the model costs, not what happens to be stored: the parameters
of every non-target module, plus for each target its weight cost and its bias. Extra
parameters a target module carries only for training (e.g. movement-pruning scores) are
not model parameters and are not counted. ``total`` counts target weights as stored
(``m * n`` for a dense or masked weight, ``r * (m + n)`` for factors);
``total_compressed`` counts them at their compressed cost (non-zeros for a sparse
weight). ``non_embedding*`` subtract every ``nn.Embedding`` weight (word, position and
token-type embeddings).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from lpaf.factorize.layer import LowRankLinear
from lpaf.layers import CompressedLinear
from lpaf.targets import DEFAULT_TARGET_PATTERNS, find_targets


@torch.no_grad()
def effective_weight(module: nn.Module) -> torch.Tensor:
    """The ``out x in`` weight a target module computes with (see module docstring),
    computed without autograd (so a masked module registers no gradient hooks)."""
    if isinstance(module, CompressedLinear):
        return module.effective_weight()
    attr = getattr(module, "effective_weight", None)
    if attr is not None:
        value = attr() if callable(attr) else attr
        if isinstance(value, torch.Tensor):
            return value
    mask = getattr(module, "mask", None)
    if isinstance(mask, torch.Tensor):
        return module.weight * mask.to(module.weight.dtype)
    return module.weight


def target_compressed_cost(module: nn.Module) -> int:
    """Weight parameters the target costs now: ``r(m+n)`` for low-rank, non-zeros
    of the effective weight otherwise."""
    if isinstance(module, LowRankLinear):
        return module.rank * (module.in_features + module.out_features)
    with torch.no_grad():
        return int(torch.count_nonzero(effective_weight(module)).item())


def _target_stored_cost(module: nn.Module) -> int:
    if isinstance(module, CompressedLinear):
        return module.stored_cost()
    return module.in_features * module.out_features


def _target_nonzero(module: nn.Module) -> int:
    with torch.no_grad():
        if isinstance(module, LowRankLinear):
            return int(
                torch.count_nonzero(module.up.weight).item()
                + torch.count_nonzero(module.down.weight).item()
            )
        return int(torch.count_nonzero(effective_weight(module)).item())


def _bias_numel(module: nn.Module) -> int:
    bias = getattr(module, "bias", None)
    return bias.numel() if isinstance(bias, torch.Tensor) else 0


def count_parameters(
    model: nn.Module, target_patterns: Sequence[str] = DEFAULT_TARGET_PATTERNS
) -> dict[str, Any]:
    """Parameter counts of ``model`` (definitions in the module docstring).

    Keys: ``total``, ``total_compressed``, ``non_embedding``,
    ``non_embedding_compressed``, ``embedding``, ``targets_dense``,
    ``targets_compressed``, ``targets_nonzero`` (non-zeros of the effective weight; of
    the two factors for a low-rank target), ``targets_bias``, ``retained_fraction``
    (rho), ``num_targets``, ``stored`` (numel of every parameter tensor, including
    training-only ones) and ``per_target`` (``{name: {shape, rank or None, dense,
    compressed}}``).
    """
    targets = find_targets(model, target_patterns)
    target_param_ids: set[int] = set()
    for module in targets.values():
        target_param_ids.update(id(p) for p in module.parameters())

    non_target = 0
    embedding = 0
    seen: set[int] = set()
    for module in model.modules():
        for param in module.parameters(recurse=False):
            if id(param) in seen or id(param) in target_param_ids:
                continue
            seen.add(id(param))
            non_target += param.numel()
            if isinstance(module, nn.Embedding):
                embedding += param.numel()

    per_target: dict[str, dict[str, Any]] = {}
    targets_dense = targets_compressed = targets_stored = targets_nonzero = targets_bias = 0
    for name, module in targets.items():
        dense = module.in_features * module.out_features
        compressed = target_compressed_cost(module)
        targets_dense += dense
        targets_compressed += compressed
        targets_stored += _target_stored_cost(module)
        targets_nonzero += _target_nonzero(module)
        targets_bias += _bias_numel(module)
        per_target[name] = {
            "shape": [module.out_features, module.in_features],
            "rank": module.rank if isinstance(module, LowRankLinear) else None,
            "dense": dense,
            "compressed": compressed,
        }

    total = non_target + targets_stored + targets_bias
    total_compressed = non_target + targets_compressed + targets_bias
    return {
        "total": total,
        "total_compressed": total_compressed,
        "non_embedding": total - embedding,
        "non_embedding_compressed": total_compressed - embedding,
        "embedding": embedding,
        "targets_dense": targets_dense,
        "targets_compressed": targets_compressed,
        "targets_nonzero": targets_nonzero,
        "targets_bias": targets_bias,
        "retained_fraction": targets_compressed / targets_dense,
        "num_targets": len(targets),
        "stored": sum(p.numel() for p in model.parameters()),
        "per_target": per_target,
    }


def _is_linear_like(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear | LowRankLinear) or (
        hasattr(module, "in_features") and hasattr(module, "out_features")
    )


def macs_per_token(
    model: nn.Module,
    target_patterns: Sequence[str] = DEFAULT_TARGET_PATTERNS,
    encoder_pattern: str = "encoder.",
) -> dict[str, int]:
    """Multiply-accumulates per token of the linear layers.

    A dense linear costs ``m * n``, a sparse one (zeros in its effective weight) its
    non-zeros (assuming a sparse kernel), a low-rank one ``r * (m + n)``. Keys:
    ``targets`` and ``targets_dense`` (the target matrices now and as if dense),
    ``encoder_linear`` and ``encoder_linear_dense`` (every linear-like module whose name
    contains ``encoder_pattern``; for BERT these are exactly the targets). Biases,
    LayerNorm, activations, the pooler and classifier (once per sequence) and the
    attention score/context products (``Q K^T`` and ``softmax @ V``, which depend on the
    sequence length, see :func:`attention_score_macs_per_token`) are excluded.
    """
    targets = find_targets(model, target_patterns)
    result = {"targets": 0, "targets_dense": 0, "encoder_linear": 0, "encoder_linear_dense": 0}
    for module in targets.values():
        result["targets"] += target_compressed_cost(module)
        result["targets_dense"] += module.in_features * module.out_features
    inside_linear: set[str] = set()
    for name, module in model.named_modules():
        if not name or encoder_pattern not in name or not _is_linear_like(module):
            continue
        if any(name.startswith(parent + ".") for parent in inside_linear):
            continue  # the down/up halves of a counted LowRankLinear
        inside_linear.add(name)
        result["encoder_linear"] += target_compressed_cost(module)
        result["encoder_linear_dense"] += module.in_features * module.out_features
    return result


def attention_score_macs_per_token(num_layers: int, hidden_size: int, seq_len: int) -> int:
    """MACs per token of the attention products ``Q K^T`` and ``P V`` (each
    ``seq_len * hidden_size`` per token and layer, summed over heads); reported apart
    from :func:`macs_per_token` because it grows with the sequence length."""
    return 2 * num_layers * seq_len * hidden_size


PER_SEQUENCE_PATTERNS: tuple[str, ...] = ("pooler", "classifier")


def _linear_cost(module: nn.Module, sparse_kernel: bool) -> int:
    if isinstance(module, LowRankLinear) or sparse_kernel:
        return target_compressed_cost(module)
    return module.in_features * module.out_features


def whole_model_macs(
    model: nn.Module,
    seq_len: int,
    target_patterns: Sequence[str] = DEFAULT_TARGET_PATTERNS,
    *,
    sparse_kernel: bool = True,
    per_sequence_patterns: Sequence[str] = PER_SEQUENCE_PATTERNS,
) -> dict[str, float]:
    """Multiply-accumulates per token of a whole forward pass at ``seq_len`` tokens.

    Everything a transformers encoder multiplies, split in three parts:

    * ``targets``: the target matrices at their cost now (``r(m+n)`` low-rank; the
      non-zeros of a sparse weight when ``sparse_kernel``, else ``m*n``, which is what
      a dense kernel does with a pruned weight);
    * ``attention``: ``Q K^T`` and ``P V`` (:func:`attention_score_macs_per_token`,
      from ``config.num_hidden_layers`` and ``config.hidden_size``), unchanged by
      compression;
    * ``other``: every other linear-like module (a pooler, a classification head, a
      QA head), at its cost now; a module whose name contains one of
      ``per_sequence_patterns`` runs once per sequence (BERT's pooler and classifier
      read the first token only) and is counted as its cost over ``seq_len``.

    ``total`` is their sum and ``*_dense`` the same as if every target were a dense
    matrix. Embedding lookups, biases, LayerNorm, softmax and activations are not
    multiply-accumulates and are not counted. The dense counts equal half the FLOPs
    torch's ``FlopCounterMode`` records for one eager forward pass, per token (tested).
    """
    if seq_len < 1:
        raise ValueError(f"seq_len must be >= 1, got {seq_len}")
    config = getattr(model, "config", None)
    layers = getattr(config, "num_hidden_layers", None)
    hidden = getattr(config, "hidden_size", None)
    if not isinstance(layers, int) or not isinstance(hidden, int):
        raise ValueError(
            "whole_model_macs needs a transformers model whose config has "
            "num_hidden_layers and hidden_size"
        )
    targets = find_targets(model, target_patterns)
    target_names = set(targets)
    result = {"targets": 0.0, "targets_dense": 0.0, "other": 0.0, "other_dense": 0.0}
    for module in targets.values():
        result["targets"] += _linear_cost(module, sparse_kernel)
        result["targets_dense"] += module.in_features * module.out_features
    counted: set[str] = set()
    for name, module in model.named_modules():
        if not name or name in target_names or not _is_linear_like(module):
            continue
        if any(name.startswith(parent + ".") for parent in counted | target_names):
            continue  # the halves of a counted LowRankLinear
        counted.add(name)
        scale = 1.0 / seq_len if any(p in name for p in per_sequence_patterns) else 1.0
        result["other"] += _linear_cost(module, sparse_kernel) * scale
        result["other_dense"] += module.in_features * module.out_features * scale
    attention = float(attention_score_macs_per_token(layers, hidden, seq_len))
    result["attention"] = attention
    result["total"] = result["targets"] + attention + result["other"]
    result["total_dense"] = result["targets_dense"] + attention + result["other_dense"]
    return result


def uniform_rank(m: int, n: int, rho: float) -> int:
    """``floor(rho * m * n / (m + n))``: the rank whose factors cost ``rho`` of the
    dense ``m x n`` matrix, clamped to ``[1, min(m, n)]``. A relative tolerance of
    1e-9 absorbs float error (``rho=0.58, m=n=100`` gives ``28.999999999999996``, must be 29)."""
    if not 0 < rho:
        raise ValueError(f"rho must be positive, got {rho}")
    exact = rho * m * n / (m + n)
    rank = math.floor(exact * (1 + 1e-9))
    return max(1, min(rank, min(m, n)))
