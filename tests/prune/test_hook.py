"""Tests of lpaf.prune: schedule, top-k masks, masked layers, the pruning hook run
by a hand-written loop on a tiny BERT, and the distillation loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn
from transformers import BertConfig, BertForSequenceClassification

from lpaf.distill import DistillationHook, distillation_loss
from lpaf.hooks import TrainState
from lpaf.prune import (
    MaskedLinear,
    PruneConfig,
    PruningHook,
    cubic_density,
    global_topk_masks,
    keep_count,
    topk_mask,
)

# --------------------------------------------------------------------------- helpers


def tiny_bert(seed: int = 0, num_labels: int = 2) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        num_labels=num_labels,
    )
    return BertForSequenceClassification(config)


def batch_for(step: int, batch_size: int = 4, length: int = 8) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1000 + step)
    return {
        "input_ids": torch.randint(0, 100, (batch_size, length), generator=generator),
        "attention_mask": torch.ones(batch_size, length, dtype=torch.long),
        "labels": torch.randint(0, 2, (batch_size,), generator=generator),
    }


def build_optimizer(model: nn.Module, hook: PruningHook) -> torch.optim.Optimizer:
    extra = hook.param_groups(model)
    taken = {id(p) for group in extra for p in group["params"]}
    rest = [p for p in model.parameters() if id(p) not in taken]
    return torch.optim.AdamW([{"params": rest, "lr": 1e-3, "weight_decay": 0.0}, *extra])


def run_steps(
    model: nn.Module,
    hook: PruningHook,
    optimizer: torch.optim.Optimizer,
    state: TrainState,
    until_step: int,
) -> list[dict[str, float]]:
    """The documented hook order, as the training loop calls it."""
    logs = []
    model.train()
    while state.step < until_step:
        batch = batch_for(state.step)
        outputs = model(**batch)
        loss = hook.loss(batch, outputs, outputs.loss, state)
        loss.backward()
        hook.after_backward(model, state)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        state.step += 1
        hook.after_step(model, state)
        logs.append({"step": state.step, **hook.log_values()})
    return logs


def stable_topk_reference(values: np.ndarray, k: int) -> np.ndarray:
    """Second implementation: stable sort of -values (ties: lower index first)."""
    flat = values.reshape(-1)
    order = np.argsort(-flat, kind="stable")
    keep = np.zeros(flat.size, dtype=bool)
    keep[order[:k]] = True
    return keep.reshape(values.shape)


# -------------------------------------------------------------------------- schedule


def test_cubic_density_at_breakpoints_matches_formula():
    total, initial, final, d_final = 100, 10, 20, 0.1

    def density(step: int) -> float:
        return cubic_density(step, total, initial, final, d_final=d_final)

    assert density(0) == 1.0
    assert density(10) == 1.0  # end of the initial warm-up
    assert density(24) == pytest.approx(0.1 + 0.9 * 0.8**3)  # progress 14/70 = 0.2
    assert density(45) == pytest.approx(0.1 + 0.9 * 0.5**3)  # half way
    assert density(80) == d_final  # start of the final warm-up, exactly
    assert density(90) == d_final
    assert density(100) == d_final
    values = [density(t) for t in range(total + 1)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))
    assert cubic_density(3, 100, 0, 0, d_final=0.2, d_init=0.8) == pytest.approx(
        0.2 + 0.6 * (1 - 0.03) ** 3
    )


def test_cubic_density_without_room_jumps_at_initial_warmup():
    assert cubic_density(4, 10, 5, 5, d_final=0.3) == 1.0
    assert cubic_density(5, 10, 5, 5, d_final=0.3) == 0.3


# ----------------------------------------------------------------------------- top-k


@pytest.mark.parametrize("density", [0.0, 0.013, 0.25, 0.5, 0.77, 1.0])
def test_topk_mask_keeps_exactly_k_with_deterministic_ties(density: float):
    generator = torch.Generator().manual_seed(3)
    scores = torch.randint(0, 5, (17, 23), generator=generator).float()  # many ties
    k = keep_count(density, scores.numel())
    assert k == round(density * 17 * 23)
    mask = topk_mask(scores, k)
    assert int(mask.sum()) == k
    np.testing.assert_array_equal(mask.numpy(), stable_topk_reference(scores.numpy(), k))


def test_global_threshold_keeps_exact_overall_count():
    generator = torch.Generator().manual_seed(5)
    scores = {
        "a": torch.randn(10, 7, generator=generator) * 3,
        "b": torch.randn(5, 13, generator=generator),
        "c": torch.randint(0, 3, (4, 4), generator=generator).float(),
    }
    total = sum(s.numel() for s in scores.values())
    for density in (0.1, 0.33, 0.5, 0.9):
        masks = global_topk_masks(scores, density)
        assert sum(int(m.sum()) for m in masks.values()) == round(density * total)
        concatenated = np.concatenate([s.numpy().reshape(-1) for s in scores.values()])
        expected = stable_topk_reference(concatenated, round(density * total))
        got = np.concatenate([m.numpy().reshape(-1) for m in masks.values()])
        np.testing.assert_array_equal(got, expected)


def test_masked_linear_scores_gradient_is_weight_times_effective_gradient():
    torch.manual_seed(6)
    linear = nn.Linear(5, 4)
    layer = MaskedLinear(linear, with_scores=True, scores_init="magnitude")
    with torch.no_grad():
        layer.mask.copy_(topk_mask(torch.randn(4, 5), 9))
    x = torch.randn(3, 5)
    upstream = torch.randn(3, 4)
    (layer(x) * upstream).sum().backward()
    # closed form: y = x (W*M)^T + b, L = sum(y * r)  =>  dL/d(W*M) = r^T x
    effective_grad = upstream.T @ x
    torch.testing.assert_close(layer.scores.grad, linear.weight.detach() * effective_grad)
    torch.testing.assert_close(layer.weight.grad, layer.mask.float() * effective_grad)
    torch.testing.assert_close(layer.scores.detach(), linear.weight.detach().abs())
    with torch.no_grad():
        expected = x @ (linear.weight * layer.mask).T + linear.bias
        torch.testing.assert_close(layer(x), expected, rtol=0, atol=0)


def test_first_order_taylor_ema_matches_closed_form():
    torch.manual_seed(7)
    model = nn.Sequential(nn.Linear(5, 4))
    weight = model[0].weight.detach().clone()
    hook = PruningHook(PruneConfig(method="first_order_taylor", target_patterns=("0",)))
    model = hook.setup(model, TrainState(total_steps=10))
    with torch.no_grad():
        model[0].mask.copy_(topk_mask(weight.abs(), 10))  # pruned entries still scored
    beta = hook.config.ema_beta
    expected = torch.zeros_like(weight)
    for _ in range(2):
        x, upstream = torch.randn(3, 5), torch.randn(3, 4)
        (model(x) * upstream).sum().backward()
        hook.after_backward(model, TrainState(total_steps=10))
        model.zero_grad()
        expected = beta * expected + (1 - beta) * (weight * (upstream.T @ x)).abs()
    torch.testing.assert_close(hook.importance()["0"], expected)
    assert (hook.importance()["0"][~model[0].mask] > 0).all()


# --------------------------------------------------------------------- pruning hook


def test_magnitude_masks_keep_exactly_the_largest_weights():
    model = tiny_bert()
    hook = PruningHook(PruneConfig(method="magnitude", threshold="per_matrix"))
    model = hook.setup(model, TrainState(total_steps=10))
    assert len(hook.modules) == 12
    hook.update_masks(0.3)
    for name, module in hook.modules.items():
        magnitude = module.weight.detach().abs()
        k = round(0.3 * magnitude.numel())
        mask = hook.masks()[name]
        assert int(mask.sum()) == k
        assert magnitude[mask].min() >= magnitude[~mask].max()
        np.testing.assert_array_equal(mask.numpy(), stable_topk_reference(magnitude.numpy(), k))


@pytest.mark.parametrize(
    ("method", "threshold"),
    [
        ("movement", "per_matrix"),
        ("movement", "global"),
        ("magnitude", "global"),
        ("first_order_taylor", "per_matrix"),
    ],
)
def test_short_pruning_run_reaches_target_density_and_finalizes(method, threshold, tmp_path):
    total_steps, d_final = 20, 0.3
    config = PruneConfig(
        method=method,
        final_density=d_final,
        initial_warmup=0.1,  # 2 steps
        final_warmup=0.3,  # 6 steps: final density from step 14 on
        mask_update_interval=4,  # 14 is not a multiple: the schedule end forces it
        threshold=threshold,
    )
    model = tiny_bert()
    hook = PruningHook(config)
    state = TrainState(step=0, total_steps=total_steps)
    model = hook.setup(model, state)
    optimizer = build_optimizer(model, hook)
    if method == "movement":
        assert optimizer.param_groups[-1]["lr"] == config.scores_learning_rate
        assert len(optimizer.param_groups[-1]["params"]) == 12
    logs = run_steps(model, hook, optimizer, state, total_steps)

    sizes = [m.weight.numel() for m in hook.modules.values()]  # 8 x 1024 + 4 x 2048
    total = sum(sizes)
    if threshold == "global":
        expected_kept = round(d_final * total)
    else:
        expected_kept = sum(round(d_final * n) for n in sizes)
    assert expected_kept == (4915 if threshold == "global" else 4912)
    for row in logs:
        expected_target = cubic_density(row["step"], total_steps, 2, 6, d_final=d_final)
        assert row["prune_target_density"] == pytest.approx(expected_target)
        if row["step"] >= 14:
            assert row["prune_density"] == expected_kept / total
        if row["step"] < 4:
            assert row["prune_density"] == 1.0
    assert sum(int(m.sum()) for m in hook.masks().values()) == expected_kept
    if threshold == "per_matrix":
        for name, mask in hook.masks().items():
            assert int(mask.sum()) == round(d_final * mask.numel()), name
    if method == "movement":
        assert any(bool((m.scores != 0).any()) for m in hook.modules.values())

    model.eval()
    batch = {k: v for k, v in batch_for(99).items() if k != "labels"}
    with torch.no_grad():
        masked_logits = model(**batch).logits
    masks, importance = hook.masks(), hook.importance()
    model = hook.finalize(model)
    assert not any(isinstance(m, MaskedLinear) for m in model.modules())
    assert not any("scores" in n or n.endswith(".mask") for n in model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).logits, masked_logits, rtol=0, atol=0)
    for name, mask in masks.items():
        weight = model.get_submodule(name).weight.detach()
        assert torch.equal(weight != 0, mask & (weight != 0))
        assert int((weight[~mask] != 0).sum()) == 0
    assert set(hook.masks()) == set(masks) and set(hook.importance()) == set(importance)

    model.save_pretrained(tmp_path / "pruned")
    reloaded = BertForSequenceClassification.from_pretrained(tmp_path / "pruned").eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, masked_logits, rtol=0, atol=0)


@pytest.mark.parametrize("method", ["movement", "first_order_taylor"])
def test_resume_from_hook_state_gives_the_same_masks(method: str):
    config = PruneConfig(
        method=method,
        final_density=0.4,
        initial_warmup=0.0,
        final_warmup=0.25,
        mask_update_interval=2,
    )
    total_steps, interrupt = 12, 5

    model = tiny_bert()
    hook = PruningHook(config)
    state = TrainState(total_steps=total_steps)
    model = hook.setup(model, state)
    optimizer = build_optimizer(model, hook)
    run_steps(model, hook, optimizer, state, total_steps)
    straight_masks, straight_importance = hook.masks(), hook.importance()

    model = tiny_bert()
    hook = PruningHook(config)
    state = TrainState(total_steps=total_steps)
    model = hook.setup(model, state)
    optimizer = build_optimizer(model, hook)
    run_steps(model, hook, optimizer, state, interrupt)
    checkpoint = {
        "model": {k: v.clone() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "hook": hook.state_dict(),
    }

    model = tiny_bert(seed=123)  # different weights: everything must come from the checkpoint
    hook = PruningHook(config)
    state = TrainState(step=interrupt, total_steps=total_steps)
    hook.load_state_dict(checkpoint["hook"])  # before setup: applied by setup
    model = hook.setup(model, state)
    optimizer = build_optimizer(model, hook)
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    hook.load_state_dict(checkpoint["hook"])  # after setup, as the loop does
    run_steps(model, hook, optimizer, state, total_steps)

    for name, mask in straight_masks.items():
        assert torch.equal(hook.masks()[name], mask), name
        torch.testing.assert_close(hook.importance()[name], straight_importance[name])


def test_prune_config_rejects_bad_settings():
    with pytest.raises(ValueError, match="method"):
        PruneConfig(method="random")
    with pytest.raises(ValueError, match="threshold"):
        PruneConfig(threshold="layer")
    with pytest.raises(ValueError, match="warm"):
        PruneConfig(initial_warmup=0.6, final_warmup=0.5)
    with pytest.raises(ValueError, match="final_density"):
        PruneConfig(final_density=1.5)
    assert PruneConfig(target_patterns=["a", "b"]).target_patterns == ("a", "b")


# ---------------------------------------------------------------------- distillation


def test_distillation_with_identical_teacher_has_zero_kd():
    student = tiny_bert(seed=1).eval()
    teacher = tiny_bert(seed=1)
    hook = DistillationHook(teacher, temperature=2.0, alpha=0.7)
    state = TrainState(total_steps=1)
    student = hook.setup(student, state)
    batch = batch_for(0)
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


def test_distillation_hook_mixes_losses_with_a_different_teacher():
    student, teacher = tiny_bert(seed=1), tiny_bert(seed=2)
    student.eval()
    hook = DistillationHook(teacher, temperature=2.0, alpha=0.25)
    state = TrainState(total_steps=1)
    hook.setup(student, state)
    batch = batch_for(1)
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
