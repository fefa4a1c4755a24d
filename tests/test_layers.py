"""The three linear modules of lpaf through their shared protocol
(:class:`lpaf.layers.CompressedLinear`): MaskedLinear (stage 2), LowRankLinear
(stage 4) and MixedRankLinear (stage 5). Each is checked against closed forms built
here from its parts: the eval-mode forward pass, the effective weight, a state-dict
round trip into a freshly built module, and what accounting counts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from lpaf.accounting import count_parameters, effective_weight
from lpaf.factorize import LowRankLinear
from lpaf.layers import CompressedLinear
from lpaf.prune import MaskedLinear
from lpaf.recover import MixedRankLinear

IN, OUT, RANK = 12, 8, 3
DENSITY = 0.4  # of the random masks


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_mask(seed: int) -> torch.Tensor:
    return torch.rand(OUT, IN, generator=generator(seed)) < DENSITY


def masked(seed: int) -> MaskedLinear:
    g = generator(seed)
    linear = nn.Linear(IN, OUT)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(OUT, IN, generator=g))
        linear.bias.copy_(torch.randn(OUT, generator=g))
    module = MaskedLinear(linear, with_scores=True, scores_init="magnitude")
    with torch.no_grad():
        module.mask.copy_(random_mask(seed + 100))
    return module


def lowrank(seed: int) -> LowRankLinear:
    g = generator(seed)
    return LowRankLinear.from_factors(
        torch.randn(OUT, RANK, generator=g),
        torch.randn(RANK, IN, generator=g),
        torch.randn(OUT, generator=g),
    )


def mixed(seed: int) -> MixedRankLinear:
    sparse = torch.randn(OUT, IN, generator=generator(seed + 200)) * random_mask(seed + 100)
    module = MixedRankLinear(lowrank(seed), sparse)
    module.p = 1.0  # training would always take the sparse path; eval never does
    return module


@dataclass(frozen=True)
class Spec:
    build: Callable[[int], nn.Module]  # a module with random parameters (and mask)
    fresh: Callable[[], nn.Module]  # built as a loader would, before its state dict
    weight: Callable[[nn.Module], torch.Tensor]  # the effective weight from its parts
    stored: Callable[[nn.Module], int]  # weight parameters stored for inference
    compressed: Callable[[nn.Module], int]  # weight parameters it costs (accounting)


SPECS = {
    "masked": Spec(
        build=masked,
        fresh=lambda: MaskedLinear(nn.Linear(IN, OUT), with_scores=True),
        weight=lambda m: m.weight * m.mask,
        stored=lambda m: OUT * IN,  # stored dense, zeros included
        compressed=lambda m: int(m.mask.sum()),  # its non-zeros
    ),
    "lowrank": Spec(
        build=lowrank,
        fresh=lambda: LowRankLinear(IN, OUT, RANK),
        weight=lambda m: m.up.weight @ m.down.weight,
        stored=lambda m: RANK * (IN + OUT),
        compressed=lambda m: RANK * (IN + OUT),
    ),
    "mixed_rank": Spec(
        build=mixed,
        fresh=lambda: MixedRankLinear(LowRankLinear(IN, OUT, RANK), torch.zeros(OUT, IN)),
        weight=lambda m: m.lowrank.up.weight @ m.lowrank.down.weight,
        stored=lambda m: RANK * (IN + OUT),  # only the factors are saved
        compressed=lambda m: OUT * IN,  # accounting: non-zeros of the factors' product
    ),
}


@pytest.fixture(params=list(SPECS), ids=list(SPECS))
def spec(request) -> Spec:
    return SPECS[request.param]


@pytest.fixture
def module(spec) -> nn.Module:
    return spec.build(0).eval()


def inputs(seed: int = 1, *shape: int) -> torch.Tensor:
    return torch.randn(*(shape or (5,)), IN, generator=generator(seed))


def test_is_a_compressed_linear_of_the_target_shape(module):
    assert isinstance(module, CompressedLinear)
    assert (module.out_features, module.in_features) == (OUT, IN)
    assert module.effective_weight().shape == (OUT, IN)
    assert module.bias.shape == (OUT,)
    assert not isinstance(nn.Linear(IN, OUT), CompressedLinear)  # the protocol discriminates


def test_effective_weight_is_the_closed_form_of_its_parts(spec, module):
    with torch.no_grad():
        expected = spec.weight(module)
        torch.testing.assert_close(module.effective_weight(), expected)
        # accounting reads the same weight
        torch.testing.assert_close(effective_weight(module), expected)


@pytest.mark.parametrize("shape", [(5,), (2, 7)], ids=["2d", "3d"])
def test_eval_forward_is_linear_with_the_effective_weight(spec, module, shape):
    x = inputs(1, *shape)
    with torch.no_grad():
        actual = module(x)
        torch.testing.assert_close(actual, F.linear(x, module.effective_weight(), module.bias))
        # and with the weight and bias taken from the parts
        torch.testing.assert_close(actual, x @ spec.weight(module).T + module.bias)
    assert actual.shape == (*shape, OUT)


def test_state_dict_round_trip_into_a_fresh_module(spec, module):
    x = inputs(2)
    fresh = spec.fresh().eval()
    with torch.no_grad():
        assert not torch.allclose(fresh(x), module(x))  # the round trip has work to do
    state = module.state_dict()
    fresh.load_state_dict(state)
    assert fresh.state_dict().keys() == state.keys()
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in state.items())
    with torch.no_grad():
        assert torch.equal(fresh(x), module(x))
        assert torch.equal(fresh.effective_weight(), module.effective_weight())


def test_stored_cost_is_the_closed_form(spec, module):
    cost = module.stored_cost()
    assert isinstance(cost, int)
    assert cost == spec.stored(module)


def test_accounting_of_a_model_holding_the_module(spec, module):
    model = nn.ModuleDict({"proj": module})
    counts = count_parameters(model, target_patterns=("proj",))
    assert counts["num_targets"] == 1
    assert counts["targets_dense"] == OUT * IN
    assert counts["targets_bias"] == OUT
    assert counts["total"] == spec.stored(module) + OUT  # stored weights and the bias
    assert counts["targets_compressed"] == spec.compressed(module)
    assert counts["retained_fraction"] == spec.compressed(module) / (OUT * IN)
    # training-only tensors (scores, the sparse weight) count as stored, not as model
    assert counts["stored"] == sum(p.numel() for p in module.parameters())
