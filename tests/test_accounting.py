"""Parameter and MAC accounting against hand-computed counts of a tiny BERT."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lpaf.accounting import (
    attention_score_macs_per_token,
    count_parameters,
    effective_weight,
    macs_per_token,
    uniform_rank,
    whole_model_macs,
)
from lpaf.factorize.layer import swap_to_lowrank
from lpaf.targets import set_module

HIDDEN, INTERMEDIATE, LAYERS, VOCAB, POSITIONS, TYPES, LABELS = 32, 64, 2, 100, 512, 2, 2

# hand-computed from the architecture
EMBEDDING = VOCAB * HIDDEN + POSITIONS * HIDDEN + TYPES * HIDDEN  # 19648
ATTENTION = 4 * (HIDDEN * HIDDEN + HIDDEN)
FFN = (HIDDEN * INTERMEDIATE + INTERMEDIATE) + (INTERMEDIATE * HIDDEN + HIDDEN)
LAYER = ATTENTION + FFN + 2 * 2 * HIDDEN  # + two LayerNorms
TOTAL = (
    EMBEDDING + 2 * HIDDEN + LAYERS * LAYER + (HIDDEN * HIDDEN + HIDDEN) + HIDDEN * LABELS + LABELS
)
TARGETS_DENSE = LAYERS * (4 * HIDDEN * HIDDEN + 2 * HIDDEN * INTERMEDIATE)  # 16384
TARGETS_BIAS = LAYERS * (4 * HIDDEN + INTERMEDIATE + HIDDEN)
QUERY0 = "bert.encoder.layer.0.attention.self.query"


@pytest.fixture
def model(tiny_bert):
    """The tiny BERT of the counts above, in eval mode."""
    return tiny_bert(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        num_layers=LAYERS,
        intermediate_size=INTERMEDIATE,
        num_labels=LABELS,
    ).eval()


class MaskedLinear(nn.Linear):
    """A stand-in for a pruning module: mask buffer plus training-only scores."""

    def __init__(self, linear: nn.Linear, mask: torch.Tensor) -> None:
        super().__init__(linear.in_features, linear.out_features)
        self.load_state_dict(linear.state_dict())
        self.register_buffer("mask", mask.float())
        self.scores = nn.Parameter(torch.zeros_like(linear.weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight * self.mask, self.bias)


def test_hand_counts_of_dense_model(model) -> None:
    counts = count_parameters(model)
    assert TOTAL == 37922  # the arithmetic above, written out
    assert (
        counts["total"] == TOTAL == counts["stored"] == sum(p.numel() for p in model.parameters())
    )
    assert counts["embedding"] == EMBEDDING
    assert counts["non_embedding"] == TOTAL - EMBEDDING
    assert counts["targets_dense"] == TARGETS_DENSE == 16384
    assert counts["targets_compressed"] == TARGETS_DENSE
    assert counts["targets_nonzero"] == TARGETS_DENSE
    assert counts["targets_bias"] == TARGETS_BIAS
    assert counts["retained_fraction"] == 1.0
    assert counts["num_targets"] == 6 * LAYERS
    assert counts["total_compressed"] == TOTAL


def test_pruned_weight_costs_its_nonzeros(model) -> None:
    weight = model.get_submodule(QUERY0).weight
    with torch.no_grad():
        weight.view(-1)[:300] = 0.0
    counts = count_parameters(model)
    assert counts["total"] == TOTAL  # stored dense
    assert counts["targets_compressed"] == TARGETS_DENSE - 300
    assert counts["total_compressed"] == TOTAL - 300
    assert counts["non_embedding_compressed"] == TOTAL - EMBEDDING - 300
    assert counts["retained_fraction"] == pytest.approx((TARGETS_DENSE - 300) / TARGETS_DENSE)
    macs = macs_per_token(model)
    assert macs["targets"] == macs["encoder_linear"] == TARGETS_DENSE - 300
    assert macs["targets_dense"] == TARGETS_DENSE


def test_masked_module_counts_effective_weight_and_not_its_scores(model) -> None:
    linear = model.get_submodule(QUERY0)
    mask = torch.zeros(HIDDEN, HIDDEN)
    mask[:, :8] = 1
    masked = MaskedLinear(linear, mask)
    set_module(model, QUERY0, masked)
    assert torch.equal(effective_weight(masked), linear.weight * mask)
    counts = count_parameters(model)
    removed = HIDDEN * HIDDEN - HIDDEN * 8
    assert counts["total"] == TOTAL  # scores are not model parameters
    assert counts["stored"] == TOTAL + HIDDEN * HIDDEN
    assert counts["targets_compressed"] == TARGETS_DENSE - removed
    assert counts["total_compressed"] == TOTAL - removed


def test_effective_weight_attribute_wins() -> None:
    class Exposing(nn.Linear):
        @property
        def effective_weight(self) -> torch.Tensor:
            return torch.zeros_like(self.weight)

    module = Exposing(4, 3)
    assert torch.equal(effective_weight(module), torch.zeros(3, 4))


def test_lowrank_module_costs_r_times_m_plus_n(model) -> None:
    swap_to_lowrank(model, {QUERY0: 4})
    counts = count_parameters(model)
    lowrank_cost = 4 * (HIDDEN + HIDDEN)
    assert counts["total"] == counts["total_compressed"] == TOTAL - HIDDEN * HIDDEN + lowrank_cost
    assert counts["stored"] == counts["total"]
    assert counts["targets_compressed"] == TARGETS_DENSE - HIDDEN * HIDDEN + lowrank_cost
    assert counts["per_target"][QUERY0] == {
        "shape": [HIDDEN, HIDDEN],
        "rank": 4,
        "dense": HIDDEN * HIDDEN,
        "compressed": lowrank_cost,
    }
    macs = macs_per_token(model)
    assert macs["targets"] == macs["encoder_linear"] == TARGETS_DENSE - HIDDEN * HIDDEN + 256
    assert macs["encoder_linear_dense"] == TARGETS_DENSE


def test_uniform_rank_known_values() -> None:
    assert uniform_rank(768, 768, 0.25) == 96
    assert uniform_rank(768, 3072, 0.25) == 153
    assert uniform_rank(3072, 768, 0.25) == 153
    assert uniform_rank(100, 100, 0.58) == 29  # 0.58 * 100 * 100 / 200 is 28.999999999999996
    assert uniform_rank(10, 10, 0.01) == 1  # clamped below
    assert uniform_rank(10, 10, 5.0) == 10  # clamped above


def test_attention_score_macs() -> None:
    assert attention_score_macs_per_token(12, 768, 128) == 2 * 12 * 128 * 768


def _flop_counter_macs_per_token(model, seq_len: int, batch: int = 2) -> float:
    """Half the FLOPs torch's own counter records for one eager forward, per token:
    a second implementation of the whole-model count."""
    from torch.utils.flop_counter import FlopCounterMode

    ids = torch.randint(0, VOCAB, (batch, seq_len))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(input_ids=ids)
    return counter.get_total_flops() / 2 / (batch * seq_len)


@pytest.fixture
def eager_model(tiny_bert):
    """The tiny BERT with eager attention (plain matmuls the flop counter sees)."""
    model = tiny_bert(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        num_layers=LAYERS,
        intermediate_size=INTERMEDIATE,
        num_labels=LABELS,
    ).eval()
    model.set_attn_implementation("eager")
    return model


@pytest.mark.parametrize("seq_len", [8, 16])
def test_whole_model_macs_hand_count_and_flop_counter(eager_model, seq_len) -> None:
    macs = whole_model_macs(eager_model, seq_len)
    attention = 2 * LAYERS * seq_len * HIDDEN
    head = (HIDDEN * HIDDEN + HIDDEN * LABELS) / seq_len  # pooler + classifier, once
    assert macs["targets"] == macs["targets_dense"] == TARGETS_DENSE
    assert macs["attention"] == attention
    assert macs["other"] == pytest.approx(head)
    assert macs["total"] == macs["total_dense"] == pytest.approx(TARGETS_DENSE + attention + head)
    assert macs["total"] == pytest.approx(_flop_counter_macs_per_token(eager_model, seq_len))


def test_whole_model_macs_lowrank_matches_flop_counter(eager_model) -> None:
    swap_to_lowrank(eager_model, {QUERY0: 4, "bert.encoder.layer.1.output.dense": 3})
    macs = whole_model_macs(eager_model, 16)
    saved = HIDDEN * HIDDEN - 4 * 2 * HIDDEN + INTERMEDIATE * HIDDEN - 3 * (HIDDEN + INTERMEDIATE)
    assert macs["targets"] == TARGETS_DENSE - saved
    assert macs["total_dense"] - macs["total"] == pytest.approx(saved)
    assert macs["total"] == pytest.approx(_flop_counter_macs_per_token(eager_model, 16))


def test_whole_model_macs_sparse_kernel_switch(eager_model) -> None:
    weight = eager_model.get_submodule(QUERY0).weight
    with torch.no_grad():
        weight.view(-1)[:300] = 0.0
    sparse = whole_model_macs(eager_model, 16)
    dense_kernel = whole_model_macs(eager_model, 16, sparse_kernel=False)
    assert sparse["targets"] == TARGETS_DENSE - 300
    assert dense_kernel["targets"] == TARGETS_DENSE
    # a dense kernel multiplies the zeros: the flop counter agrees with it
    assert dense_kernel["total"] == pytest.approx(_flop_counter_macs_per_token(eager_model, 16))


def test_whole_model_macs_needs_a_config() -> None:
    with pytest.raises(ValueError, match="num_hidden_layers"):
        whole_model_macs(nn.Linear(3, 3), 8)
    with pytest.raises(ValueError, match="seq_len"):
        whole_model_macs(nn.Linear(3, 3), 0)
