"""Knowledge distillation (lpaf.distill): the loss against its closed form and the
hook that mixes it with the task loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lpaf.distill import DistillationHook, distillation_loss, hidden_state_loss
from lpaf.hooks import TrainState


def test_distillation_with_identical_teacher_has_zero_kd(tiny_bert, random_batch):
    student = tiny_bert(1, dropout=0.0).eval()
    teacher = tiny_bert(1, dropout=0.0)
    hook = DistillationHook(teacher, temperature=2.0, alpha=0.7)
    state = TrainState(total_steps=1)
    student = hook.setup(student, state)
    batch = random_batch(1000, size=4, length=8)
    outputs = student(**batch)
    assert float(distillation_loss(outputs.logits, outputs.logits, 2.0).detach()) == pytest.approx(
        0.0, abs=1e-7
    )
    mixed = hook.loss(batch, outputs, outputs.loss, state)
    assert hook.log_values()["kd_loss"] == pytest.approx(0.0, abs=1e-6)
    torch.testing.assert_close(mixed, 0.3 * outputs.loss, atol=1e-6, rtol=1e-6)
    assert not any(p.requires_grad for p in teacher.parameters())


def test_distillation_loss_matches_closed_form():
    generator = torch.Generator().manual_seed(8)
    student = torch.randn(5, 3, generator=generator)
    teacher = torch.randn(5, 3, generator=generator)
    temperature = 2.5

    def softmax(z: np.ndarray) -> np.ndarray:
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    p = softmax(teacher.double().numpy() / temperature)
    q = softmax(student.double().numpy() / temperature)
    expected = (p * np.log(p / q)).sum(axis=1).mean() * temperature**2
    got = float(distillation_loss(student, teacher, temperature))
    assert got == pytest.approx(expected, rel=1e-5)

    regression_student, regression_teacher = student[:, :1], teacher[:, :1]
    expected_mse = float(((regression_student - regression_teacher) ** 2).mean())
    got_mse = float(distillation_loss(regression_student, regression_teacher, temperature))
    assert got_mse == pytest.approx(expected_mse, rel=1e-6)


def test_distillation_hook_mixes_losses_with_a_different_teacher(tiny_bert, random_batch):
    student, teacher = tiny_bert(1, dropout=0.0), tiny_bert(2, dropout=0.0)
    student.eval()
    hook = DistillationHook(teacher, temperature=2.0, alpha=0.25)
    state = TrainState(total_steps=1)
    hook.setup(student, state)
    batch = random_batch(1001, size=4, length=8)
    outputs = student(**batch)
    with torch.no_grad():
        teacher_logits = teacher(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).logits
    kd = distillation_loss(outputs.logits, teacher_logits, 2.0)
    assert float(kd.detach()) > 0
    mixed = hook.loss(batch, outputs, outputs.loss, state)
    torch.testing.assert_close(mixed, 0.25 * kd + 0.75 * outputs.loss)
    mixed.backward()  # gradients reach the student only
    assert student.classifier.weight.grad is not None
    assert all(p.grad is None for p in teacher.parameters())
    assert math.isfinite(hook.log_values()["kd_loss"])


def test_hidden_state_loss_is_the_hand_computed_masked_layer_mean():
    generator = torch.Generator().manual_seed(3)
    # embeddings + 2 layers, batch 2, 3 tokens, hidden 4; the second example's last
    # token is padding
    student = [torch.randn(2, 3, 4, generator=generator) for _ in range(3)]
    teacher = [torch.randn(2, 3, 4, generator=generator) for _ in range(3)]
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    expected = []
    for s, t in zip(student[1:], teacher[1:], strict=True):  # embeddings skipped
        s, t = s.double().numpy(), t.double().numpy()
        tokens = [(b, j) for b in range(2) for j in range(3) if mask[b, j]]
        expected.append(np.mean([((s[b, j] - t[b, j]) ** 2).mean() for b, j in tokens]))
    got = float(hidden_state_loss(student, teacher, mask))
    assert got == pytest.approx(float(np.mean(expected)), rel=1e-6)
    # without a mask every token counts; identical states give 0
    unmasked = np.mean(
        [
            ((s.double() - t.double()) ** 2).mean().item()
            for s, t in zip(student[1:], teacher[1:], strict=True)
        ]
    )
    assert float(hidden_state_loss(student, teacher)) == pytest.approx(unmasked, rel=1e-6)
    assert float(hidden_state_loss(student, student, mask)) == 0.0
    with pytest.raises(ValueError, match="hidden states"):
        hidden_state_loss(student, teacher[:2])


def test_hook_adds_weighted_hidden_loss_and_asks_for_hidden_states(tiny_bert, random_batch):
    student, teacher = tiny_bert(1, dropout=0.0).eval(), tiny_bert(2, dropout=0.0)
    hook = DistillationHook.from_config(
        teacher, {"temperature": 2.0, "alpha": 0.25, "hidden_weight": 3.0}
    )
    assert hook.forward_kwargs() == {"output_hidden_states": True}
    assert DistillationHook(teacher).forward_kwargs() == {}  # logits only by default
    state = TrainState(total_steps=1)
    hook.setup(student, state)
    batch = random_batch(1002, size=4, length=8)
    outputs = student(**batch, **hook.forward_kwargs())
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        ref = teacher(**inputs, output_hidden_states=True)
    kd = distillation_loss(outputs.logits, ref.logits, 2.0)
    hidden = hidden_state_loss(outputs.hidden_states, ref.hidden_states, batch["attention_mask"])
    assert float(hidden.detach()) > 0
    mixed = hook.loss(batch, outputs, outputs.loss, state)
    torch.testing.assert_close(mixed, 0.25 * kd + 0.75 * outputs.loss + 3.0 * hidden)
    assert hook.log_values()["hidden_loss"] == pytest.approx(float(hidden))
    with pytest.raises(ValueError, match="hidden-state distillation weight"):
        DistillationHook(teacher, hidden_weight=-1.0)
