"""The recovery schedule as a training hook (:class:`RecoveryHook`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from lpaf.factorize.layer import lowrank_modules
from lpaf.hooks import TrainHook, TrainState
from lpaf.recover.config import RecoverConfig
from lpaf.recover.layer import MixedRankLinear, annealed_probability
from lpaf.targets import set_module


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
