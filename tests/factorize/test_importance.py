"""Gradient importance of the targets (lpaf.factorize.importance) against gradients
computed by hand."""

from __future__ import annotations

import copy

import torch

from lpaf.factorize import first_order_importance, fisher_row_importance, gradient_importance


def test_fisher_row_importance_matches_manual_gradients(tiny_bert, random_batch) -> None:
    model = tiny_bert().eval()
    batches = [random_batch(seed) for seed in range(3)]
    name = "bert.encoder.layer.0.intermediate.dense"
    reference = copy.deepcopy(model)
    expected = torch.zeros(64)
    for inputs in batches[:2]:
        reference.zero_grad()
        reference(**inputs).loss.backward()
        expected += reference.get_submodule(name).weight.grad.square().sum(dim=1)
    model.train()
    flags = [p.requires_grad for p in model.parameters()]
    importance = fisher_row_importance(model, batches, num_batches=2)
    torch.testing.assert_close(importance[name], expected)
    assert len(importance) == 12
    assert model.training  # mode restored
    assert flags == [p.requires_grad for p in model.parameters()]
    assert all(p.grad is None for p in model.parameters())


def test_first_order_importance_is_summed_abs_weight_times_gradient(
    tiny_bert, random_batch
) -> None:
    model = tiny_bert().eval()
    batches = [random_batch(seed) for seed in range(3)]
    name = "bert.encoder.layer.1.attention.self.value"
    reference = copy.deepcopy(model)
    expected = torch.zeros(32, 32)
    for inputs in batches[:2]:
        reference.zero_grad()
        reference(**inputs).loss.backward()
        module = reference.get_submodule(name)
        expected += (module.weight * module.weight.grad).abs()
    flags = [p.requires_grad for p in model.parameters()]
    importance = first_order_importance(model, batches, num_batches=2)
    torch.testing.assert_close(importance[name], expected.detach())
    assert len(importance) == 12 and importance[name].shape == (32, 32)
    assert flags == [p.requires_grad for p in model.parameters()]
    assert all(p.grad is None for p in model.parameters())


def test_gradient_importance_is_both_from_one_pass(tiny_bert, random_batch) -> None:
    model = tiny_bert().eval()
    batches = [random_batch(seed) for seed in range(3)]
    fisher, taylor = gradient_importance(model, batches, num_batches=2)
    expected_fisher = fisher_row_importance(model, batches, num_batches=2)
    expected_taylor = first_order_importance(model, batches, num_batches=2)
    assert fisher.keys() == expected_fisher.keys() == taylor.keys()
    for name in fisher:
        torch.testing.assert_close(fisher[name], expected_fisher[name])
        torch.testing.assert_close(taylor[name], expected_taylor[name])
