"""The pruning layer module (lpaf.prune.layer): the cubic density schedule, top-k
masks (per matrix and global) and MaskedLinear's straight-through gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lpaf.prune import MaskedLinear, cubic_density, global_topk_masks, keep_count, topk_mask


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


@pytest.mark.parametrize("density", [0.0, 0.013, 0.25, 0.5, 0.77, 1.0])
def test_topk_mask_keeps_exactly_k_with_deterministic_ties(density: float, stable_topk_reference):
    generator = torch.Generator().manual_seed(3)
    scores = torch.randint(0, 5, (17, 23), generator=generator).float()  # many ties
    k = keep_count(density, scores.numel())
    assert k == round(density * 17 * 23)
    mask = topk_mask(scores, k)
    assert int(mask.sum()) == k
    np.testing.assert_array_equal(mask.numpy(), stable_topk_reference(scores.numpy(), k))


def test_global_threshold_keeps_exact_overall_count(stable_topk_reference):
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
