"""Factorization solvers, rank rules and model factorization (lpaf.factorize.solvers)."""

from __future__ import annotations

import math

import pytest
import torch

from lpaf.accounting import count_parameters
from lpaf.factorize import (
    factorize_model,
    fwsvd,
    global_energy_ranks,
    sparsity_aware,
    sparsity_aware_rows,
    sparsity_weights,
    svd,
    uniform_ranks,
    weighted_lowrank,
)
from lpaf.factorize.layer import LowRankLinear
from lpaf.targets import find_targets

DOUBLE = torch.float64


def random_matrix(rows: int, cols: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed), dtype=DOUBLE)


def weighted_objective(weight: torch.Tensor, weights: torch.Tensor, product: torch.Tensor) -> float:
    return float((weights * (weight - product).square()).sum())


def test_truncated_svd_error_is_the_tail_energy() -> None:
    weight = random_matrix(40, 30)
    singular_values = torch.linalg.svdvals(weight)
    for rank in (1, 7, 29):
        result = svd(weight, rank)
        residual = (weight - result.left @ result.right).square().sum()
        tail = singular_values[rank:].square().sum()
        assert float(residual) == pytest.approx(float(tail), rel=1e-9)
        assert result.error == pytest.approx(math.sqrt(tail / weight.square().sum()), rel=1e-9)
        assert result.rank == rank
        # balanced split: both factors carry sqrt of the singular values
        gram_left = torch.linalg.eigvalsh(result.left.T @ result.left).flip(0)
        torch.testing.assert_close(gram_left, singular_values[:rank], rtol=1e-9, atol=1e-12)


def test_svd_keeps_dtype_and_rejects_bad_rank() -> None:
    weight = random_matrix(6, 5).float()
    result = svd(weight, 2)
    assert result.left.dtype == torch.float32 and result.left.shape == (6, 2)
    assert result.right.shape == (2, 5)
    with pytest.raises(ValueError, match="rank"):
        svd(weight, 6)


def test_fwsvd_with_uniform_rows_equals_svd() -> None:
    weight = random_matrix(30, 20)
    plain = svd(weight, 5)
    weighted = fwsvd(weight, torch.full((30,), 3.7, dtype=DOUBLE), 5)
    torch.testing.assert_close(weighted.left @ weighted.right, plain.left @ plain.right)
    assert weighted.error == pytest.approx(plain.error, rel=1e-10)


def test_fwsvd_beats_svd_in_its_own_norm_and_fits_heavy_rows() -> None:
    weight = random_matrix(30, 20)
    row_importance = torch.ones(30, dtype=DOUBLE)
    row_importance[:3] = 1e4
    result = fwsvd(weight, row_importance, 3)
    plain = svd(weight, 3)
    element_weights = row_importance[:, None].expand_as(weight)
    assert weighted_objective(weight, element_weights, result.left @ result.right) < (
        weighted_objective(weight, element_weights, plain.left @ plain.right)
    )
    # three rows of weight 1e4 at rank 3: they are reproduced almost exactly
    product = result.left @ result.right
    assert float((product[:3] - weight[:3]).abs().max()) < 1e-2
    # zero row importance is guarded, not divided by
    zero_rows = row_importance.clone()
    zero_rows[5] = 0.0
    assert torch.isfinite(fwsvd(weight, zero_rows, 3).left).all()


def test_weighted_als_with_row_weights_converges_to_fwsvd() -> None:
    """Second implementation: row-constant element weights make the weighted problem the
    Fisher-weighted one, whose optimum is fwsvd's closed form."""
    weight = random_matrix(25, 15, seed=1)
    row_importance = torch.rand(25, generator=torch.Generator().manual_seed(2), dtype=DOUBLE)
    row_importance = row_importance + 0.1
    closed = fwsvd(weight, row_importance, 4)
    element_weights = row_importance[:, None].expand_as(weight).contiguous()
    left, right, history = weighted_lowrank(weight, element_weights, 4, n_iter=200)
    closed_value = weighted_objective(weight, element_weights, closed.left @ closed.right)
    assert history[-1] == pytest.approx(closed_value, rel=1e-6)
    assert history[-1] >= closed_value * (1 - 1e-9)  # closed form is the optimum


def test_sparsity_aware_rows_sums_importance_per_row() -> None:
    weight = random_matrix(20, 10)
    importance = torch.rand(20, 10, generator=torch.Generator().manual_seed(3), dtype=DOUBLE)
    by_rows = sparsity_aware_rows(weight, importance, 3)
    reference = fwsvd(weight, importance.sum(dim=1), 3)
    torch.testing.assert_close(by_rows.left @ by_rows.right, reference.left @ reference.right)


@pytest.mark.parametrize("solver", ["als", "em"])
def test_uniform_weights_reproduce_svd(solver: str) -> None:
    weight = random_matrix(30, 20)  # dense: every entry kept, every weight 1
    plain = svd(weight, 6)
    result = sparsity_aware(weight, torch.ones_like(weight), 6, n_iter=5, solver=solver)
    torch.testing.assert_close(
        result.left @ result.right, plain.left @ plain.right, rtol=1e-9, atol=1e-9
    )
    assert result.error == pytest.approx(plain.error, rel=1e-9)
    assert result.weighted_error == pytest.approx(plain.error, rel=1e-9)


@pytest.mark.parametrize("solver", ["als", "em"])
def test_objective_never_increases(solver: str) -> None:
    generator = torch.Generator().manual_seed(4)
    weight = torch.randn(40, 30, generator=generator, dtype=DOUBLE)
    importance = (weight * torch.randn(40, 30, generator=generator, dtype=DOUBLE)).abs()
    pruned = weight * (importance > importance.median())
    result = sparsity_aware(pruned, importance, 5, n_iter=15, solver=solver)
    history = torch.tensor(result.objective)
    assert len(history) == 16
    assert bool((history[1:] <= history[:-1]).all())
    assert history[-1] < 0.9 * history[0]  # it does move
    # the logged value is the objective of the returned factors
    element_weights = sparsity_weights(pruned, importance)
    value = weighted_objective(pruned, element_weights, result.left @ result.right)
    assert value == pytest.approx(result.objective[-1], rel=1e-9)


def test_ridge_with_uniform_weights_shrinks_the_singular_values() -> None:
    # closed form: min ||W - M||^2 + lam ||M||^2 over rank r is the truncated SVD with
    # singular values s / (1 + lam); with every weight 1, lam = ridge * mean(w) = ridge
    weight = random_matrix(30, 20, seed=7)
    ridge = 0.5
    result = sparsity_aware(weight, torch.ones_like(weight), 6, n_iter=3, ridge=ridge)
    u, s, vh = torch.linalg.svd(weight, full_matrices=False)
    expected = u[:, :6] @ torch.diag(s[:6] / (1 + ridge)) @ vh[:6]
    torch.testing.assert_close(result.left @ result.right, expected, rtol=1e-9, atol=1e-9)
    product = result.left @ result.right
    value = float((weight - product).square().sum() + ridge * product.square().sum())
    assert result.objective[-1] == pytest.approx(value, rel=1e-9)


def test_ridge_objective_never_increases_and_shrinks_pruned_entries() -> None:
    generator = torch.Generator().manual_seed(8)
    weight = torch.randn(40, 30, generator=generator, dtype=DOUBLE)
    importance = (weight * torch.randn(40, 30, generator=generator, dtype=DOUBLE)).abs()
    pruned = weight * (importance > importance.quantile(0.7))
    plain = sparsity_aware(pruned, importance, 8, n_iter=10, epsilon=1e-3)
    ridged = sparsity_aware(pruned, importance, 8, n_iter=10, epsilon=1e-3, ridge=0.1)
    history = torch.tensor(ridged.objective)
    assert bool((history[1:] <= history[:-1]).all())
    pruned_entries = pruned == 0
    size = lambda f: float((f.left @ f.right)[pruned_entries].square().sum())  # noqa: E731
    assert size(ridged) < size(plain)  # the penalty pulls the pruned entries toward 0
    assert ridged.error < plain.error


def test_ridge_is_rejected_for_em_and_when_negative() -> None:
    weight = random_matrix(10, 8)
    with pytest.raises(ValueError, match="als"):
        sparsity_aware(weight, None, 2, solver="em", ridge=0.1)
    with pytest.raises(ValueError, match="ridge"):
        sparsity_aware(weight, None, 2, ridge=-1.0)


def test_sparsity_aware_recovers_a_matrix_low_rank_on_kept_entries() -> None:
    generator = torch.Generator().manual_seed(5)
    low_rank = torch.randn(40, 3, generator=generator, dtype=DOUBLE) @ torch.randn(
        3, 30, generator=generator, dtype=DOUBLE
    )
    mask = torch.rand(40, 30, generator=generator, dtype=DOUBLE) < 0.6
    pruned = low_rank * mask
    plain = svd(pruned, 3)
    aware = sparsity_aware(pruned, None, 3, n_iter=30, epsilon=1e-3)
    element_weights = sparsity_weights(pruned, None, epsilon=1e-3)
    plain_weighted = weighted_objective(pruned, element_weights, plain.left @ plain.right)
    aware_weighted = weighted_objective(pruned, element_weights, aware.left @ aware.right)
    assert aware_weighted < 0.01 * plain_weighted
    assert aware.kept_error < 0.05 < plain.kept_error
    assert aware.objective[0] == pytest.approx(plain_weighted, rel=1e-9)  # starts at SVD


def test_sparsity_weights_definition() -> None:
    weight = torch.tensor([[1.0, 0.0], [2.0, 3.0]], dtype=DOUBLE)
    importance = torch.tensor([[2.0, 5.0], [4.0, 0.0]], dtype=DOUBLE)
    weights = sparsity_weights(weight, importance, epsilon=0.01)
    # kept entries: importance / mean over kept (2), floored at epsilon; pruned: epsilon
    expected = torch.tensor([[1.0, 0.01], [2.0, 0.01]], dtype=DOUBLE)
    torch.testing.assert_close(weights, expected)
    scaled = sparsity_weights(weight, 1000 * importance, epsilon=0.01)
    torch.testing.assert_close(scaled, expected)


def test_uniform_ranks_bert_base() -> None:
    ranks = uniform_ranks({"attn": (768, 768), "ffn_in": (3072, 768), "ffn_out": (768, 3072)}, 0.25)
    assert ranks == {"attn": 96, "ffn_in": 153, "ffn_out": 153}


def _greedy_reference(spectra: dict[str, tuple[torch.Tensor, tuple[int, int]]], rho: float):
    """Second implementation: add the best affordable next singular value until none fits."""
    budget = rho * sum(m * n for _, (m, n) in spectra.values())
    ranks = {name: 1 for name in spectra}
    spent = sum(m + n for _, (m, n) in spectra.values())
    while True:
        best, best_gain = None, -1.0
        for name, (values, (m, n)) in spectra.items():
            if ranks[name] < min(m, n) and spent + m + n <= budget:
                gain = float(values[ranks[name]]) ** 2 / (m + n)
                if gain > best_gain:
                    best, best_gain = name, gain
        if best is None:
            return ranks
        ranks[best] += 1
        spent += sum(spectra[best][1])


def test_global_energy_meets_budget_and_matches_reference() -> None:
    generator = torch.Generator().manual_seed(6)
    shapes = {"a": (20, 20), "b": (40, 20), "c": (20, 40), "d": (10, 30)}
    spectra = {
        name: (
            torch.rand(min(shape), generator=generator, dtype=DOUBLE).sort(descending=True)[0]
            * (i + 1),
            shape,
        )
        for i, (name, shape) in enumerate(shapes.items())
    }
    dense = sum(m * n for m, n in shapes.values())
    for rho in (0.2, 0.35, 0.5):
        ranks = global_energy_ranks(spectra, rho)
        spent = sum(ranks[name] * sum(shape) for name, shape in shapes.items())
        assert spent <= rho * dense
        cheapest_next = min(
            sum(shape) for name, shape in shapes.items() if ranks[name] < min(shape)
        )
        assert spent + cheapest_next > rho * dense  # within one rank step
        assert all(rank >= 1 for rank in ranks.values())
        assert ranks == _greedy_reference(spectra, rho)


def test_global_energy_prefers_energy_and_accepts_weights() -> None:
    generator = torch.Generator().manual_seed(7)
    basis_a = torch.linalg.qr(torch.randn(16, 16, generator=generator, dtype=DOUBLE))[0]
    basis_b = torch.linalg.qr(torch.randn(16, 16, generator=generator, dtype=DOUBLE))[0]
    strong = basis_a @ torch.diag(torch.linspace(10, 1, 16, dtype=DOUBLE)) @ basis_b
    weak = basis_b @ torch.diag(torch.linspace(1, 0.1, 16, dtype=DOUBLE)) @ basis_a
    ranks = global_energy_ranks({"strong": strong, "weak": weak}, 0.25)
    assert ranks["strong"] > ranks["weak"] >= 1
    with pytest.raises(ValueError, match="rank 1"):
        global_energy_ranks({"strong": strong}, 0.01)


def test_full_rank_factorization_reproduces_logits(tiny_bert, random_batch) -> None:
    model = tiny_bert().eval()
    inputs = random_batch()
    with torch.no_grad():
        expected = model(**inputs).logits
    targets = find_targets(model)
    full = {name: min(module.weight.shape) for name, module in targets.items()}
    factorized, report = factorize_model(model, "svd", ranks=full)
    assert all(isinstance(m, LowRankLinear) for m in find_targets(factorized).values())
    with torch.no_grad():
        actual = factorized(**inputs).logits
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)
    assert max(module["error"] for module in report["modules"].values()) < 1e-6


@pytest.mark.parametrize("method", ["svd", "fwsvd", "sparsity_aware", "sparsity_aware_rows"])
def test_factorize_model_report_and_budget(method: str, tiny_bert) -> None:
    model = tiny_bert().eval()
    targets = find_targets(model)
    generator = torch.Generator().manual_seed(9)
    importance = {n: torch.rand(m.weight.shape, generator=generator) for n, m in targets.items()}
    fisher = {n: torch.rand(m.weight.shape[0], generator=generator) for n, m in targets.items()}
    with torch.no_grad():  # prune half of every target by magnitude
        for module in targets.values():
            module.weight.mul_(module.weight.abs() > module.weight.abs().median())
    dense_weights = {n: m.weight.detach().clone() for n, m in targets.items()}
    _, report = factorize_model(
        model, method, rho=0.4, importance=importance, fisher=fisher, n_iter=3
    )
    assert report["rho_achieved"] <= 0.4
    assert report["rho_achieved"] == count_parameters(model)["retained_fraction"]
    query = report["modules"]["bert.encoder.layer.0.attention.self.query"]
    assert query["rank"] == 6  # floor(0.4 * 32 * 32 / 64)
    assert query["shape"] == [32, 32]
    for name, module in report["modules"].items():
        plain = svd(dense_weights[name], module["rank"])
        assert module["error"] >= plain.error * (1 - 1e-6)  # Eckart-Young: SVD is optimal
        if method == "sparsity_aware":
            assert module["objective"][-1] <= module["objective"][0]


def test_global_energy_rule_in_factorize_model(tiny_bert) -> None:
    model = tiny_bert().eval()
    _, report = factorize_model(model, "svd", rho=0.3, rank_rule="global_energy")
    assert report["rank_rule"] == "global_energy"
    assert report["rho_achieved"] <= 0.3
    assert report["rho_achieved"] > 0.3 - 96 / count_parameters(model)["targets_dense"]


def test_unknown_method_is_rejected(tiny_bert) -> None:
    with pytest.raises(ValueError, match="unknown factorization method"):
        factorize_model(tiny_bert().eval(), "nmf")
    with pytest.raises(ValueError, match="fwsvd needs"):
        factorize_model(tiny_bert().eval(), "fwsvd")


def test_factorize_model_takes_masks_from_pruning_modules(tiny_bert) -> None:
    prune = pytest.importorskip("lpaf.prune")
    from lpaf.targets import set_module

    model = tiny_bert().eval()
    for name, linear in find_targets(model).items():
        masked = prune.MaskedLinear(linear)
        masked.mask.copy_(linear.weight.abs() > linear.weight.abs().median())
        set_module(model, name, masked)
    assert count_parameters(model)["retained_fraction"] == 0.5
    _, report = factorize_model(model, "sparsity_aware", rho=0.3, n_iter=3)
    assert all(isinstance(m, LowRankLinear) for m in find_targets(model).values())
    assert report["rho_achieved"] <= 0.3
    for module in report["modules"].values():
        assert module["objective"][-1] < module["objective"][0]
