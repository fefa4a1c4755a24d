"""Tests of lpaf.rank.analysis against numpy on matrices whose ranks are known by construction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lpaf.hooks import TrainState
from lpaf.prune import PruneConfig, PruningHook
from lpaf.rank import energy_rank, matrix_rank_stats, model_rank_table


def test_zero_rows_and_columns_are_counted_and_bound_the_rank():
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((20, 15)).astype(np.float32)
    matrix[rng.random((20, 15)) < 0.5] = 0.0  # random sparsity
    zero_rows, zero_cols = [1, 4, 9, 17], [0, 7, 14]
    matrix[zero_rows, :] = 0.0
    matrix[:, zero_cols] = 0.0
    stats = matrix_rank_stats(torch.from_numpy(matrix))
    assert stats["zero_rows"] == 4
    assert stats["zero_cols"] == 3
    assert stats["nonzeros"] == int(np.count_nonzero(matrix))
    assert stats["rank"] == np.linalg.matrix_rank(matrix)
    assert stats["rank"] <= min(20 - 4, 15 - 3)
    assert stats["max_rank"] == 15
    np.testing.assert_allclose(
        stats["singular_values"],
        np.linalg.svd(matrix.astype(np.float64), compute_uv=False),
        atol=1e-12,
    )


def test_rank_five_product_has_rank_five_and_energy_ranks_at_most_five():
    rng = np.random.default_rng(1)
    matrix = (rng.standard_normal((30, 5)) @ rng.standard_normal((5, 40))).astype(np.float32)
    stats = matrix_rank_stats(torch.from_numpy(matrix))
    assert stats["rank"] == 5
    assert stats["rank"] == np.linalg.matrix_rank(matrix)
    torch_rank = torch.linalg.matrix_rank(
        torch.from_numpy(matrix).double(), atol=stats["rank_tolerance"], rtol=0.0
    )
    assert int(torch_rank) == 5
    for key in ("energy_rank_90", "energy_rank_95", "energy_rank_99"):
        assert 1 <= stats[key] <= 5
    assert stats["energy_rank_90"] <= stats["energy_rank_95"] <= stats["energy_rank_99"]
    reference = np.linalg.svd(matrix.astype(np.float64), compute_uv=False)
    np.testing.assert_allclose(stats["singular_values"], reference, rtol=1e-10, atol=1e-10)
    assert stats["singular_values"].shape == (30,)


def test_energy_ranks_on_a_known_spectrum():
    # energies 9, 4, 1 of 14: 90% (12.6) needs 2, 95% (13.3) and 99% (13.86) need 3
    matrix = torch.zeros(6, 4)
    matrix[0, 0], matrix[2, 1], matrix[4, 3] = 3.0, -2.0, 1.0
    stats = matrix_rank_stats(matrix)
    assert (stats["energy_rank_90"], stats["energy_rank_95"], stats["energy_rank_99"]) == (2, 3, 3)
    assert stats["rank"] == 3
    assert stats["zero_rows"] == 3 and stats["zero_cols"] == 1
    np.testing.assert_allclose(stats["singular_values"], [3.0, 2.0, 1.0, 0.0], atol=1e-12)
    # exactly at a boundary: energies 1, 1 of 2 -> 50% needs 1
    assert energy_rank(np.array([1.0, 1.0]), 0.5) == 1
    assert energy_rank(np.array([1.0, 1.0]), 1.0) == 2


def test_all_zero_matrix():
    stats = matrix_rank_stats(torch.zeros(3, 5))
    assert stats["rank"] == 0 and stats["energy_rank_99"] == 0
    assert stats["zero_rows"] == 3 and stats["zero_cols"] == 5 and stats["nonzeros"] == 0


def test_model_rank_table_on_tiny_bert_dense_and_masked(tiny_bert):
    model = tiny_bert()
    table, spectra = model_rank_table(model)
    assert len(table) == 12 and list(table["name"]) == list(spectra)
    assert {"rank", "energy_rank_90", "zero_rows", "zero_cols", "nonzeros"} <= set(table.columns)
    query = model.bert.encoder.layer[0].attention.self.query.weight.detach()
    row = table.set_index("name").loc["bert.encoder.layer.0.attention.self.query"]
    assert row["rank"] == np.linalg.matrix_rank(query.numpy()) == 32
    intermediate = table[table["name"].str.endswith("intermediate.dense")]
    assert set(zip(intermediate["rows"], intermediate["cols"], strict=True)) == {(64, 32)}

    hook = PruningHook(PruneConfig(method="magnitude"))
    model = hook.setup(model, TrainState(total_steps=1))
    hook.update_masks(0.25)
    masked_table, _ = model_rank_table(model)  # uses the masked (effective) weights
    expected_nonzeros = [int(m.sum()) for m in hook.masks().values()]
    assert list(masked_table["nonzeros"]) == expected_nonzeros
    model = hook.finalize(model)
    final_table, final_spectra = model_rank_table(model)
    assert list(final_table["nonzeros"]) == expected_nonzeros
    assert list(final_table["rank"]) == list(masked_table["rank"])
    assert final_spectra.keys() == spectra.keys()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tolerance_follows_the_matrix_dtype(dtype):
    matrix = torch.diag(torch.tensor([1.0, 1e-9], dtype=torch.float64)).to(dtype)
    # 1e-9 is noise at float32 precision but a real direction at float64 precision
    assert matrix_rank_stats(matrix)["rank"] == (1 if dtype == torch.float32 else 2)
    assert matrix_rank_stats(matrix)["rank"] == np.linalg.matrix_rank(matrix.numpy())
