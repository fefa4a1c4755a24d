"""Stage 2's building blocks: the cubic density schedule, deterministic top-k masks and
:class:`MaskedLinear`, the masked module that replaces a target ``nn.Linear``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from lpaf.prune.config import SCORE_INITS

# --------------------------------------------------------------------------- schedule


def cubic_density(
    step: int,
    total_steps: int,
    initial_warmup: int,
    final_warmup: int,
    *,
    d_final: float,
    d_init: float = 1.0,
) -> float:
    """Density of the cubic sparsity schedule of movement pruning (Sanh et al. 2020).

    ``density(t) = d_final + (d_init - d_final) * (1 - progress)^3`` with
    ``progress = (t - initial_warmup) / (total_steps - initial_warmup - final_warmup)``
    clipped to ``[0, 1]``: ``d_init`` up to the end of the initial warm-up, ``d_final``
    from the start of the final warm-up (step ``total_steps - final_warmup``) on.
    Warm-ups are in optimizer steps. When the two warm-ups leave no room for the
    schedule, the density jumps from ``d_init`` to ``d_final`` at ``initial_warmup``.
    """
    if initial_warmup < 0 or final_warmup < 0:
        raise ValueError("warm-ups must be non-negative")
    schedule_steps = total_steps - initial_warmup - final_warmup
    if schedule_steps <= 0:
        return d_init if step < initial_warmup else d_final
    progress = min(max((step - initial_warmup) / schedule_steps, 0.0), 1.0)
    return d_final + (d_init - d_final) * (1.0 - progress) ** 3


def keep_count(density: float, numel: int) -> int:
    """How many of ``numel`` weights a mask of ``density`` keeps: ``round(density * numel)``
    (Python's ``round``), clipped to ``[0, numel]``."""
    if not 0.0 <= density <= 1.0:
        raise ValueError(f"density must be in [0, 1], got {density}")
    return min(max(int(round(density * numel)), 0), numel)


# ------------------------------------------------------------------------------ top-k


def topk_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of ``scores``' shape keeping exactly the ``k`` largest entries.

    Ties at the threshold are broken by flat (row-major) index, lower first. Uses one
    ``kthvalue`` and a cumulative sum rather than a full sort, so it stays cheap on the
    concatenated scores of a whole model.
    """
    flat = scores.detach().reshape(-1).float()
    n = flat.numel()
    if not 0 <= k <= n:
        raise ValueError(f"cannot keep {k} of {n} entries")
    if k == 0:
        return torch.zeros_like(scores, dtype=torch.bool)
    if k == n:
        return torch.ones_like(scores, dtype=torch.bool)
    if torch.isnan(flat).any():
        raise ValueError("importance scores contain NaN")
    threshold = torch.kthvalue(flat, n - k + 1).values  # the k-th largest value
    above = flat > threshold
    at_threshold = flat == threshold
    missing = k - int(above.sum())
    keep = above | (at_threshold & (torch.cumsum(at_threshold, 0) <= missing))
    return keep.reshape(scores.shape)


def global_topk_masks(
    scores: Mapping[str, torch.Tensor], density: float
) -> dict[str, torch.Tensor]:
    """Masks from one threshold over the concatenated scores of all matrices, keeping
    exactly ``round(density * total)`` weights overall (ties: earlier matrix in the
    mapping's order, then lower flat index)."""
    names = list(scores)
    flat = torch.cat([scores[name].detach().reshape(-1).float() for name in names])
    keep = topk_mask(flat, keep_count(density, flat.numel()))
    sizes = [scores[name].numel() for name in names]
    return {
        name: part.reshape(scores[name].shape)
        for name, part in zip(names, torch.split(keep, sizes), strict=True)
    }


def per_matrix_topk_masks(
    scores: Mapping[str, torch.Tensor], density: float
) -> dict[str, torch.Tensor]:
    """Masks keeping ``round(density * numel)`` weights of every matrix separately."""
    return {name: topk_mask(s, keep_count(density, s.numel())) for name, s in scores.items()}


class _ScoredMaskProduct(torch.autograd.Function):
    """``weight * mask`` whose gradient reaches the scores straight through the mask:
    ``dL/dweight = mask * g``, ``dL/dscores = weight * g`` with ``g = dL/d(weight*mask)``."""

    @staticmethod
    def forward(
        ctx: Any, weight: torch.Tensor, scores: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        ctx.save_for_backward(weight, mask)
        return weight * mask

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        weight, mask = ctx.saved_tensors
        grad_weight = grad_output * mask if ctx.needs_input_grad[0] else None
        grad_scores = grad_output * weight if ctx.needs_input_grad[1] else None
        return grad_weight, grad_scores, None


# ------------------------------------------------------------------------ the module


class MaskedLinear(nn.Module):
    """An ``nn.Linear`` whose forward uses ``weight * mask``.

    Holds the wrapped layer's own ``weight`` and ``bias`` parameters, a boolean ``mask``
    buffer (all ones at first) set by :class:`PruningHook`, and for movement pruning a
    ``scores`` parameter that receives the straight-through gradient ``W * dL/d(W*M)``.
    With ``track_effective_grad`` the gradient on the effective weight ``W*M`` is summed
    into ``effective_weight_grad`` (for first-order Taylor importance).
    """

    def __init__(
        self,
        linear: nn.Linear,
        with_scores: bool = False,
        scores_init: Literal["constant", "magnitude"] = "constant",
        track_effective_grad: bool = False,
    ) -> None:
        super().__init__()
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.weight = linear.weight
        if linear.bias is not None:
            self.bias = linear.bias
        else:
            self.register_parameter("bias", None)
        if with_scores:
            self.scores = nn.Parameter(initial_scores(linear.weight, scores_init))
        else:
            self.register_parameter("scores", None)
        self.register_buffer("mask", torch.ones_like(linear.weight, dtype=torch.bool))
        self.track_effective_grad = track_effective_grad
        self.effective_weight_grad: torch.Tensor | None = None

    def _accumulate_effective_grad(self, grad: torch.Tensor) -> None:
        grad = grad.detach()
        if self.effective_weight_grad is None:
            self.effective_weight_grad = grad.clone()
        else:
            self.effective_weight_grad += grad

    def effective_weight(self) -> torch.Tensor:
        """The weight the forward pass uses, ``weight * mask`` (differentiable; with
        scores, its gradient also flows to them straight through the mask)."""
        mask = self.mask.to(self.weight.dtype)
        if self.scores is not None and torch.is_grad_enabled() and self.scores.requires_grad:
            weight = _ScoredMaskProduct.apply(self.weight, self.scores, mask)
        else:
            weight = self.weight * mask
        if self.track_effective_grad and weight.requires_grad:
            weight.register_hook(self._accumulate_effective_grad)
        return weight

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return F.linear(inputs, self.effective_weight(), self.bias)

    def stored_cost(self) -> int:
        """``in * out``: the masked weight is stored dense
        (:class:`lpaf.layers.CompressedLinear`)."""
        return self.in_features * self.out_features

    def to_linear(self) -> nn.Linear:
        """A plain ``nn.Linear`` with the mask baked into its weight (exact zeros)."""
        linear = nn.Linear(
            self.in_features,
            self.out_features,
            bias=self.bias is not None,
            device=self.weight.device,
            dtype=self.weight.dtype,
        )
        with torch.no_grad():
            linear.weight.copy_(self.weight * self.mask.to(self.weight.dtype))
            if self.bias is not None:
                linear.bias.copy_(self.bias)
        linear.weight.requires_grad_(self.weight.requires_grad)
        if self.bias is not None:
            linear.bias.requires_grad_(self.bias.requires_grad)
        return linear

    def extra_repr(self) -> str:
        density = float(self.mask.float().mean())
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, scores={self.scores is not None}, "
            f"density={density:.4f}"
        )


def initial_scores(weight: torch.Tensor, scores_init: str) -> torch.Tensor:
    """Initial movement scores. ``constant``: all zero (the default of Sanh et al.);
    ``magnitude``: ``|W|``, so movement starts from the magnitude ranking. Either way
    the initial mask keeps everything, since the density starts at 1 and the mask is
    only recomputed by the schedule."""
    if scores_init == "constant":
        return torch.zeros_like(weight.detach())
    if scores_init == "magnitude":
        return weight.detach().abs().clone()
    raise ValueError(f"scores_init must be one of {SCORE_INITS}, got {scores_init!r}")
