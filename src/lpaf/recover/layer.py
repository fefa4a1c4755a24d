"""Stage 5 of LPAF: fine-tuning the factorized model (``recover.schedule``).

* ``plain``: ordinary training of the low-rank factors (distillation is a separate
  hook, :class:`lpaf.prune.DistillationHook`).
* ``mixed_rank`` (LPAF's default): during the first ``anneal_fraction`` of the steps,
  each target module computes, at every forward pass in training mode, with its
  sparse full-rank weight ``W_s`` (the pruned weight the factors were computed from)
  with probability ``p(t)`` and with its factors otherwise. ``p(t)`` falls linearly
  from ``p0`` to 0 over those steps; after that training is purely low-rank.
  Evaluation and the saved model use only the factors.
* ``rank_sampling``: during the first ``anneal_fraction`` of the steps each target
  module uses a random leading sub-rank ``r' in [ceil(min_rank_fraction * r), r]``
  (nested-dropout style: the first ``r'`` rows of ``down`` and columns of ``up``),
  then the full rank ``r``.

Choices the paper leaves open (METHOD.md), and what is done here: the sparse
full-rank weight is frozen (``train_sparse: false``) so that only the factors — what
is kept — learn; the draw is made per module and per forward pass from the global
torch generator, so a resumed run repeats it (the training loop restores RNG state).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from lpaf.factorize.layer import LowRankLinear


def annealed_probability(step: int, total_steps: int, p0: float, anneal_fraction: float) -> float:
    """``p(t) = p0 * (1 - t / (anneal_fraction * T))`` clipped at 0; ``p0`` at ``t = 0``
    and 0 from ``t = anneal_fraction * T`` on (0 throughout if the fraction is 0)."""
    anneal_steps = anneal_fraction * total_steps
    if anneal_steps <= 0:
        return 0.0
    return p0 * max(0.0, 1.0 - step / anneal_steps)


class MixedRankLinear(nn.Module):
    """A low-rank module that, while training, takes its sparse full-rank path with
    probability :attr:`p` at each forward pass (and its factors otherwise), or uses a
    leading sub-rank :attr:`active_rank` of its factors."""

    def __init__(
        self, lowrank: LowRankLinear, sparse_weight: torch.Tensor | None, train_sparse=False
    ):
        super().__init__()
        self.lowrank = lowrank
        self.in_features = lowrank.in_features
        self.out_features = lowrank.out_features
        if sparse_weight is not None:
            expected = (lowrank.out_features, lowrank.in_features)
            if tuple(sparse_weight.shape) != expected:
                raise ValueError(
                    f"sparse weight has shape {tuple(sparse_weight.shape)}, expected {expected}"
                )
            weight = sparse_weight.detach().clone().to(lowrank.down.weight)
            self.sparse_weight = nn.Parameter(weight, requires_grad=train_sparse)
        else:
            self.sparse_weight = None
        self.p = 0.0
        self.active_rank: int | None = None  # None = full rank
        self.used_sparse_last = False

    rank = property(lambda self: self.lowrank.rank, doc="the factors' rank")
    bias = property(lambda self: self.lowrank.bias, doc="the factors' (the up linear's) bias")

    def effective_weight(self) -> torch.Tensor:
        """The factors' product: what the module computes with in eval mode, and what
        is saved (:class:`lpaf.layers.CompressedLinear`)."""
        return self.lowrank.weight

    def stored_cost(self) -> int:
        """``r * (in + out)``: only the factors are saved."""
        return self.lowrank.stored_cost()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.used_sparse_last = False
        if self.training and self.sparse_weight is not None and self.p > 0.0:
            # one draw per forward pass; p == 1 always takes the sparse path
            if self.p >= 1.0 or torch.rand(()) < self.p:
                self.used_sparse_last = True
                return F.linear(x, self.sparse_weight, self.lowrank.bias)
        if self.training and self.active_rank is not None and self.active_rank < self.rank:
            r = self.active_rank
            hidden = F.linear(x, self.lowrank.down.weight[:r])
            return F.linear(hidden, self.lowrank.up.weight[:, :r], self.lowrank.bias)
        return self.lowrank(x)
