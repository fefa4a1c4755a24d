"""Extension points of the one training loop (:func:`lpaf.train.train`).

Every later stage of LPAF is plain fine-tuning plus something attached here:

* pruning (stage 2) swaps target ``nn.Linear`` modules for masked ones
  (:meth:`TrainHook.setup`), gives its scores their own learning rate
  (:meth:`TrainHook.param_groups`) and updates masks after each optimizer step
  (:meth:`TrainHook.after_step`);
* distillation replaces the task loss by a mix with the teacher's logits
  (:meth:`TrainHook.loss`);
* mixed-rank recovery (stage 5) anneals a probability after each step.

A hook that keeps state across steps returns it from :meth:`state_dict` so that a
killed run resumes exactly where its last checkpoint was written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

Batch = dict[str, torch.Tensor]


@dataclass
class TrainState:
    """What the loop tells hooks about where it is."""

    step: int = 0  # optimizer steps completed
    total_steps: int = 0
    epoch: float = 0.0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def progress(self) -> float:
        return self.step / max(self.total_steps, 1)


class TrainHook:
    """Base class: every method is a no-op, override what the stage needs."""

    def setup(self, model: nn.Module, state: TrainState) -> nn.Module:
        """Called once before the optimizer is built; may swap modules and return
        the (possibly new) model."""
        return model

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        """Extra optimizer parameter groups (e.g. pruning scores with their own
        ``lr``). Parameters listed here are removed from the default groups."""
        return []

    def forward_kwargs(self) -> dict[str, Any]:
        """Extra keyword arguments of the training forward pass (e.g.
        ``output_hidden_states=True`` for hidden-state distillation)."""
        return {}

    def loss(self, batch: Batch, outputs: Any, loss: torch.Tensor, state: TrainState):
        """Return the loss to back-propagate, given the task loss so far."""
        return loss

    def after_backward(self, model: nn.Module, state: TrainState) -> None:
        """Called after ``backward`` and before the optimizer step (gradients are
        available, e.g. for first-order importance)."""

    def after_step(self, model: nn.Module, state: TrainState) -> None:
        """Called after each optimizer step (``state.step`` already counts it)."""

    def log_values(self) -> dict[str, float]:
        """Extra columns for the per-step CSV log (e.g. current density)."""
        return {}

    def finalize(self, model: nn.Module) -> nn.Module:
        """Called once after training, before the final evaluation and save
        (e.g. bake masks into the weights)."""
        return model

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass
