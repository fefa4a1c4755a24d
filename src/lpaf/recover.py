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

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from lpaf.hooks import TrainHook, TrainState
from lpaf.lowrank import LowRankLinear, lowrank_modules
from lpaf.targets import set_module

SCHEDULES = ("plain", "mixed_rank", "rank_sampling")


@dataclass
class RecoverConfig:
    schedule: str = "mixed_rank"
    p0: float = 0.5  # mixed_rank: initial probability of the sparse full-rank path
    anneal_fraction: float = 0.5  # share of the steps over which p (or sampling) runs
    min_rank_fraction: float = 0.25  # rank_sampling: smallest sub-rank, as a share of r
    train_sparse: bool = False  # mixed_rank: also train the sparse full-rank weights

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"recover.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if not 0.0 <= self.p0 <= 1.0:
            raise ValueError(f"recover.p0 must be in [0, 1], got {self.p0}")
        if not 0.0 <= self.anneal_fraction <= 1.0:
            raise ValueError(
                f"recover.anneal_fraction must be in [0, 1], got {self.anneal_fraction}"
            )
        if not 0.0 < self.min_rank_fraction <= 1.0:
            raise ValueError(
                f"recover.min_rank_fraction must be in (0, 1], got {self.min_rank_fraction}"
            )


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

    @property
    def rank(self) -> int:
        return self.lowrank.rank

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


class RecoveryHook(TrainHook):
    """Attach a recovery schedule to the training loop.

    ``sparse_weights`` maps target module names to the sparse full-rank weights
    (needed for ``mixed_rank`` only). ``setup`` wraps every :class:`LowRankLinear`
    of the model, ``after_step`` updates the schedule, ``finalize`` unwraps them so
    the saved model holds only the factors.
    """

    def __init__(
        self,
        config: RecoverConfig,
        sparse_weights: Mapping[str, torch.Tensor] | None = None,
    ) -> None:
        self.config = config
        self.sparse_weights = dict(sparse_weights or {})
        self.modules: dict[str, MixedRankLinear] = {}
        self.total_steps = 0
        self.current_p = 0.0
        self.sampling = False

    def setup(self, model: nn.Module, state: TrainState) -> nn.Module:
        self.total_steps = state.total_steps
        if self.config.schedule == "plain":
            return model
        found = lowrank_modules(model)
        if not found:
            raise ValueError("recovery needs a model with LowRankLinear modules (factorize first)")
        if self.config.schedule == "mixed_rank":
            missing = sorted(set(found) - set(self.sparse_weights))
            if missing:
                raise ValueError(f"mixed_rank needs the sparse weight of {missing[:4]} ...")
        for name, module in found.items():
            wrapped = MixedRankLinear(
                module,
                self.sparse_weights.get(name) if self.config.schedule == "mixed_rank" else None,
                train_sparse=self.config.train_sparse,
            )
            set_module(model, name, wrapped)
            self.modules[name] = wrapped
        self._apply(state.step)
        self.before_forward()
        return model

    def _apply(self, step: int) -> None:
        cfg = self.config
        if cfg.schedule == "mixed_rank":
            self.current_p = annealed_probability(
                step, self.total_steps, cfg.p0, cfg.anneal_fraction
            )
            for module in self.modules.values():
                module.p = self.current_p
        elif cfg.schedule == "rank_sampling":
            self.sampling = step < cfg.anneal_fraction * self.total_steps
            for module in self.modules.values():
                module.active_rank = None

    def before_forward(self) -> None:
        """Draw this step's sub-ranks (rank_sampling)."""
        if self.config.schedule != "rank_sampling" or not self.sampling:
            return
        for module in self.modules.values():
            low = max(1, math.ceil(self.config.min_rank_fraction * module.rank))
            module.active_rank = int(torch.randint(low, module.rank + 1, ()).item())

    def after_step(self, model: nn.Module, state: TrainState) -> None:
        self._apply(state.step)
        self.before_forward()

    def log_values(self) -> dict[str, float]:
        if self.config.schedule == "mixed_rank":
            used = [m.used_sparse_last for m in self.modules.values()]
            return {
                "mixed_rank_p": self.current_p,
                "sparse_path_share": sum(used) / max(1, len(used)),
            }
        if self.config.schedule == "rank_sampling":
            ranks = [m.active_rank or m.rank for m in self.modules.values()]
            full = [m.rank for m in self.modules.values()]
            return {"active_rank_share": sum(ranks) / max(1, sum(full))}
        return {}

    def finalize(self, model: nn.Module) -> nn.Module:
        for name, module in self.modules.items():
            set_module(model, name, module.lowrank)
        self.modules = {}
        return model

    def state_dict(self) -> dict[str, Any]:
        return {
            "current_p": self.current_p,
            "sampling": self.sampling,
            "active_ranks": {n: m.active_rank for n, m in self.modules.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # called after setup() when a run resumes: put the modules where they were
        self.current_p = state["current_p"]
        self.sampling = state["sampling"]
        for name, module in self.modules.items():
            module.p = self.current_p
            module.active_rank = state["active_ranks"].get(name)
