"""Distillation from a frozen teacher, shared by stage 2 (prune) and stage 5 (recover):
logits (:func:`distillation_loss`; for extractive QA the start and end logits, each a
distribution over the window's tokens, averaged: :func:`output_logits`), optionally every layer's hidden states
(:func:`hidden_state_loss`, as TinyBERT and LoSparse do), and :class:`DistillationHook`."""

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


def hidden_state_loss(
    student_hidden: Sequence[torch.Tensor],
    teacher_hidden: Sequence[torch.Tensor],
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Layer-wise distillation: the mean over layers of the mean squared error between
    each transformer layer's output (``hidden_states[1:]`` of a Hugging Face encoder:
    the embeddings are not a layer) of student and teacher, over the real tokens of
    ``attention_mask`` (all tokens without one) and the hidden dimension."""
    if len(student_hidden) != len(teacher_hidden):
        raise ValueError(
            f"student has {len(student_hidden)} hidden states, teacher {len(teacher_hidden)}"
        )
    losses = []
    for s, t in zip(student_hidden[1:], teacher_hidden[1:], strict=True):
        if s.shape != t.shape:
            raise ValueError(f"hidden state shapes differ: {tuple(s.shape)} vs {tuple(t.shape)}")
        err = (s.float() - t.detach().float()).pow(2).mean(-1)  # batch x tokens
        if attention_mask is None:
            losses.append(err.mean())
        else:
            weight = attention_mask.to(err.dtype)
            losses.append((err * weight).sum() / weight.sum().clamp_min(1.0))
    if not losses:
        raise ValueError("no transformer layer outputs to distil (only the embeddings)")
    return torch.stack(losses).mean()


def output_logits(outputs: Any) -> tuple[torch.Tensor, ...]:
    """The logits a model's outputs are scored by: ``(logits,)`` for a sequence
    classifier, ``(start_logits, end_logits)`` for a question-answering head."""
    if _has(outputs, "start_logits"):
        return _get(outputs, "start_logits"), _get(outputs, "end_logits")
    return (_get(outputs, "logits"),)


def logit_distillation(student_outputs: Any, teacher_outputs: Any, temperature: float):
    """:func:`distillation_loss` of every output of :func:`output_logits`, averaged (for
    QA: the mean of the start and the end distributions' losses, as DistilBERT's SQuAD
    recipe)."""
    pairs = zip(output_logits(student_outputs), output_logits(teacher_outputs), strict=True)
    losses = [distillation_loss(s, t, temperature) for s, t in pairs]
    return losses[0] if len(losses) == 1 else torch.stack(losses).mean()


# batch entries that are targets, not model inputs: never passed to the teacher
TARGET_KEYS = ("labels", "start_positions", "end_positions")


class DistillationHook(TrainHook):
    """``loss = alpha * KD + (1 - alpha) * task loss + hidden_weight * hidden`` from a
    frozen teacher (``hidden``: :func:`hidden_state_loss`, off at ``hidden_weight`` 0;
    KD: :func:`logit_distillation`).

    The teacher is run live (eval mode, ``no_grad``) on the same batch inside
    :meth:`loss`, with every batch entry except the targets (:data:`TARGET_KEYS`) as
    keyword arguments; it is
    moved to the training device in :meth:`setup`. Live logits need no bookkeeping of
    example order and stay right under resumption, at the price of one teacher
    forward per step. See :func:`distillation_loss` for KD.
    """

    def __init__(
        self,
        teacher: nn.Module,
        temperature: float = 2.0,
        alpha: float = 0.5,
        excluded_batch_keys: Sequence[str] = TARGET_KEYS,
        hidden_weight: float = 0.0,
    ) -> None:
        if hidden_weight < 0:
            raise ValueError(f"hidden-state distillation weight must be >= 0, got {hidden_weight}")
        if temperature <= 0:
            raise ValueError(f"distillation temperature must be positive, got {temperature}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"distillation alpha must be in [0, 1], got {alpha}")
        self.teacher = teacher
        self.temperature = temperature
        self.alpha = alpha
        self.excluded_batch_keys = frozenset(excluded_batch_keys)
        self.hidden_weight = hidden_weight
        self.teacher.eval().requires_grad_(False)
        self._last_kd_loss = float("nan")
        self._last_hidden_loss = float("nan")

    @classmethod
    def from_config(cls, teacher: nn.Module, block: dict[str, Any]) -> DistillationHook:
        """The hook of a stage's ``distillation`` config block."""
        return cls(
            teacher,
            block["temperature"],
            block["alpha"],
            hidden_weight=block.get("hidden_weight", 0.0),
        )

    def forward_kwargs(self) -> dict[str, Any]:
        return {"output_hidden_states": True} if self.hidden_weight else {}

    def setup(self, model: nn.Module, state: TrainState) -> nn.Module:
        self.teacher.to(state.device).eval().requires_grad_(False)
        return model

    def teacher_outputs(self, batch: dict[str, torch.Tensor]):
        if self.teacher.training:
            self.teacher.eval()
        inputs = {k: v for k, v in batch.items() if k not in self.excluded_batch_keys}
        with torch.no_grad():
            return self.teacher(**inputs, **self.forward_kwargs())

    def teacher_logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return _get(self.teacher_outputs(batch), "logits")

    def loss(self, batch: Batch, outputs: Any, loss: torch.Tensor, state: TrainState):
        if self.alpha == 0.0 and not self.hidden_weight:
            return loss
        teacher = self.teacher_outputs(batch)
        total = loss
        if self.alpha:
            kd = logit_distillation(outputs, teacher, self.temperature)
            self._last_kd_loss = float(kd.detach())
            total = kd if loss is None else self.alpha * kd + (1.0 - self.alpha) * loss
        if self.hidden_weight:
            hidden = hidden_state_loss(
                _get(outputs, "hidden_states"),
                _get(teacher, "hidden_states"),
                batch.get("attention_mask"),
            )
            self._last_hidden_loss = float(hidden.detach())
            total = self.hidden_weight * hidden + (0.0 if total is None else total)
        return total

    def log_values(self) -> dict[str, float]:
        values = {"kd_loss": self._last_kd_loss}
        if self.hidden_weight:
            values["hidden_loss"] = self._last_hidden_loss
        return values


def _has(outputs: Any, name: str) -> bool:
    if hasattr(outputs, name):
        return getattr(outputs, name) is not None
    return isinstance(outputs, dict) and outputs.get(name) is not None


def _get(outputs: Any, name: str):
    return getattr(outputs, name) if hasattr(outputs, name) else outputs[name]
