"""The pruning hook (lpaf.prune.PruningHook) run by a hand-written loop on a tiny
BERT: importance, masks, the schedule's densities, finalize and resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from transformers import BertForSequenceClassification

from lpaf.hooks import TrainState
from lpaf.prune import MaskedLinear, PruneConfig, PruningHook, cubic_density, topk_mask


@pytest.fixture
def bert(tiny_bert):
    """The tiny BERT of these tests: no dropout."""
    return lambda seed=0: tiny_bert(seed, dropout=0.0)


@pytest.fixture
def batch_for(random_batch):
    """The batch of a training step: 4 sequences of 8 tokens, seeded by the step."""
    return lambda step: random_batch(1000 + step, size=4, length=8)


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
    batch_for,
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


def test_magnitude_masks_keep_exactly_the_largest_weights(bert, stable_topk_reference):
    model = bert()
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
def test_short_pruning_run_reaches_target_density_and_finalizes(
    method, threshold, tmp_path, bert, batch_for
):
    total_steps, d_final = 20, 0.3
    config = PruneConfig(
        method=method,
        final_density=d_final,
        initial_warmup=0.1,  # 2 steps
        final_warmup=0.3,  # 6 steps: final density from step 14 on
        mask_update_interval=4,  # 14 is not a multiple: the schedule end forces it
        threshold=threshold,
    )
    model = bert()
    hook = PruningHook(config)
    state = TrainState(step=0, total_steps=total_steps)
    model = hook.setup(model, state)
    optimizer = build_optimizer(model, hook)
    if method == "movement":
        assert optimizer.param_groups[-1]["lr"] == config.scores_learning_rate
        assert len(optimizer.param_groups[-1]["params"]) == 12
    logs = run_steps(model, hook, optimizer, state, total_steps, batch_for)

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
def test_resume_from_hook_state_gives_the_same_masks(method: str, bert, batch_for):
    config = PruneConfig(
        method=method,
        final_density=0.4,
        initial_warmup=0.0,
        final_warmup=0.25,
        mask_update_interval=2,
    )
    total_steps, interrupt = 12, 5

    model = bert()
    hook = PruningHook(config)
    state = TrainState(total_steps=total_steps)
    model = hook.setup(model, state)
    optimizer = build_optimizer(model, hook)
    run_steps(model, hook, optimizer, state, total_steps, batch_for)
    straight_masks, straight_importance = hook.masks(), hook.importance()

    model = bert()
    hook = PruningHook(config)
    state = TrainState(total_steps=total_steps)
    model = hook.setup(model, state)
    optimizer = build_optimizer(model, hook)
    run_steps(model, hook, optimizer, state, interrupt, batch_for)
    checkpoint = {
        "model": {k: v.clone() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "hook": hook.state_dict(),
    }

    model = bert(seed=123)  # different weights: everything must come from the checkpoint
    hook = PruningHook(config)
    state = TrainState(step=interrupt, total_steps=total_steps)
    hook.load_state_dict(checkpoint["hook"])  # before setup: applied by setup
    model = hook.setup(model, state)
    optimizer = build_optimizer(model, hook)
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    hook.load_state_dict(checkpoint["hook"])  # after setup, as the loop does
    run_steps(model, hook, optimizer, state, total_steps, batch_for)

    for name, mask in straight_masks.items():
        assert torch.equal(hook.masks()[name], mask), name
        torch.testing.assert_close(hook.importance()[name], straight_importance[name])
