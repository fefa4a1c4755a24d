"""Logit distillation from a frozen teacher, shared by stage 2 (prune) and stage 5
(recover): :func:`distillation_loss` and :class:`DistillationHook`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lpaf.hooks import Batch, TrainHook, TrainState


def distillation_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Logit distillation loss.

    Classification (last dimension > 1): ``KL(softmax(t/T) || softmax(s/T)) * T^2``,
    averaged over examples (all leading dimensions flattened, so token-level logits
    average over tokens). Regression (last dimension 1): mean squared error between
    the logits; the temperature does not apply.
    """
    teacher_logits = teacher_logits.detach().to(student_logits.dtype)
    if student_logits.shape[-1] == 1:
        return F.mse_loss(student_logits.float(), teacher_logits.float())
    num_classes = student_logits.shape[-1]
    student_log_probs = F.log_softmax(
        student_logits.reshape(-1, num_classes).float() / temperature, -1
    )
    teacher_log_probs = F.log_softmax(
        teacher_logits.reshape(-1, num_classes).float() / temperature, -1
    )
    kl = F.kl_div(student_log_probs, teacher_log_probs, reduction="batchmean", log_target=True)
    return kl * temperature**2


class DistillationHook(TrainHook):
    """``loss = alpha * KD + (1 - alpha) * task loss`` from a frozen teacher.

    The teacher is run live (eval mode, ``no_grad``) on the same batch inside
    :meth:`loss`, with every batch entry except ``labels`` as keyword arguments; it is
    moved to the training device in :meth:`setup`. Live logits need no bookkeeping of
    example order and stay right under resumption, at the price of one teacher
    forward per step. See :func:`distillation_loss` for KD.
    """

    def __init__(
        self,
        teacher: nn.Module,
        temperature: float = 2.0,
        alpha: float = 0.5,
        excluded_batch_keys: Sequence[str] = ("labels",),
    ) -> None:
        if temperature <= 0:
            raise ValueError(f"distillation temperature must be positive, got {temperature}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"distillation alpha must be in [0, 1], got {alpha}")
        self.teacher = teacher
        self.temperature = temperature
        self.alpha = alpha
        self.excluded_batch_keys = frozenset(excluded_batch_keys)
        self.teacher.eval().requires_grad_(False)
        self._last_kd_loss = float("nan")

    def setup(self, model: nn.Module, state: TrainState) -> nn.Module:
        self.teacher.to(state.device).eval().requires_grad_(False)
        return model

    def teacher_logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.teacher.training:
            self.teacher.eval()
        inputs = {k: v for k, v in batch.items() if k not in self.excluded_batch_keys}
        with torch.no_grad():
            outputs = self.teacher(**inputs)
        return outputs.logits if hasattr(outputs, "logits") else outputs["logits"]

    def loss(self, batch: Batch, outputs: Any, loss: torch.Tensor, state: TrainState):
        if self.alpha == 0.0:
            return loss
        student_logits = outputs.logits if hasattr(outputs, "logits") else outputs["logits"]
        kd = distillation_loss(student_logits, self.teacher_logits(batch), self.temperature)
        self._last_kd_loss = float(kd.detach())
        if loss is None:
            return kd
        return self.alpha * kd + (1.0 - self.alpha) * loss

    def log_values(self) -> dict[str, float]:
        return {"kd_loss": self._last_kd_loss}
