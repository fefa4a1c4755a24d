"""The low-rank module (lpaf.factorize.layer.LowRankLinear) and the swap of a target
for one."""

from __future__ import annotations

import torch

from lpaf.factorize import svd
from lpaf.factorize.layer import LowRankLinear, replace_with_lowrank


def test_lowrank_linear_forward_and_weight() -> None:
    generator = torch.Generator().manual_seed(8)
    left = torch.randn(5, 2, generator=generator)
    right = torch.randn(2, 7, generator=generator)
    bias = torch.randn(5, generator=generator)
    module = LowRankLinear.from_factors(left, right, bias)
    inputs = torch.randn(3, 7, generator=generator)
    torch.testing.assert_close(module(inputs), inputs @ (left @ right).T + bias)
    torch.testing.assert_close(module.weight, left @ right)
    assert (module.in_features, module.out_features, module.rank) == (7, 5, 2)


def test_replace_with_lowrank_keeps_bias(tiny_bert) -> None:
    model = tiny_bert().eval()
    name = "bert.encoder.layer.1.output.dense"
    old = model.get_submodule(name)
    result = svd(old.weight, 4)
    replace_with_lowrank(model, {name: (result.left, result.right)})
    new = model.get_submodule(name)
    assert isinstance(new, LowRankLinear) and new.rank == 4
    assert torch.equal(new.bias, old.bias)
