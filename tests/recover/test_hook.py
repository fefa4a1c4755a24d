"""Recovery schedules (lpaf.recover.RecoveryHook): mixed_rank at p=0 is plain low-rank
training, at p=1 it is the sparse model; rank_sampling never exceeds r."""

import pytest
import torch

from lpaf.factorize import factorize_model
from lpaf.factorize.layer import lowrank_modules
from lpaf.hooks import TrainState
from lpaf.recover import MixedRankLinear, RecoverConfig, RecoveryHook
from lpaf.targets import find_targets


@pytest.fixture
def sparse_and_lowrank(tiny_bert):
    """A model with half of every target's weights zeroed, its sparse weights, and its
    rank-reduced factorization (tiny BERT without dropout)."""

    def build(seed=0, density=0.5, rho=0.3):
        model = tiny_bert(seed, dropout=0.0)
        sparse = {}
        with torch.no_grad():
            for name, module in find_targets(model).items():
                w = module.weight
                k = int(density * w.numel())
                keep = torch.zeros(w.numel(), dtype=torch.bool)
                keep[w.abs().flatten().argsort(descending=True)[:k]] = True
                w.mul_(keep.view_as(w))
                sparse[name] = w.detach().clone()
        sparse_model = tiny_bert(seed, dropout=0.0)
        sparse_model.load_state_dict(model.state_dict())
        lowrank, _ = factorize_model(model, method="svd", rho=rho)
        return sparse_model, lowrank, sparse

    return build


@pytest.fixture
def batch(random_batch):
    """4 sequences of 12 tokens, labels 0 1 1 0."""
    return lambda seed=1: random_batch(seed, labels=torch.tensor([0, 1, 1, 0]))


def test_mixed_rank_p1_is_exactly_the_sparse_model(sparse_and_lowrank, batch):
    sparse_model, lowrank, sparse = sparse_and_lowrank()
    hook = RecoveryHook(RecoverConfig(schedule="mixed_rank", p0=1.0, anneal_fraction=1.0), sparse)
    model = hook.setup(lowrank, TrainState(step=0, total_steps=10))
    model.train()
    sparse_model.train()
    x = batch()
    x.pop("labels")
    assert torch.allclose(model(**x).logits, sparse_model(**x).logits, atol=1e-6)
    assert all(m.used_sparse_last for m in hook.modules.values())


def test_mixed_rank_p0_is_exactly_plain_lowrank_training(tmp_path, sparse_and_lowrank, batch):
    work_dir = tmp_path
    from lpaf.train import RunSettings, TrainSettings, train

    def run(schedule, p0):
        _, lowrank, sparse = sparse_and_lowrank()
        data = [dict(batch(s), idx=s) for s in range(6)]

        class DS(torch.utils.data.Dataset):
            def __len__(self):
                return len(data)

            def __getitem__(self, i):
                return data[i]

        def collate(items):
            return {k: v for k, v in items[0].items() if k != "idx"}

        hook = RecoveryHook(RecoverConfig(schedule=schedule, p0=p0, anneal_fraction=1.0), sparse)
        settings = TrainSettings(
            max_steps=6, batch_size=1, learning_rate=1e-2, checkpoint_every_steps=None
        )
        result = train(
            lowrank,
            DS(),
            collate,
            settings,
            RunSettings(seed=0, device="cpu"),
            work_dir=work_dir / schedule,
            hooks=[hook],
        )
        return result

    plain = run("plain", 0.0)
    mixed = run("mixed_rank", 0.0)
    assert plain.log["loss"].tolist() == mixed.log["loss"].tolist()
    wp, wm = plain.model.state_dict(), mixed.model.state_dict()
    assert wp.keys() == wm.keys()
    assert all(torch.equal(wp[k], wm[k]) for k in wp)
    # the saved model holds only the factors
    assert not any(isinstance(m, MixedRankLinear) for m in mixed.model.modules())
    assert len(lowrank_modules(mixed.model)) == 12


def test_mixed_rank_anneals_and_uses_both_paths(sparse_and_lowrank, batch):
    _, lowrank, sparse = sparse_and_lowrank()
    hook = RecoveryHook(RecoverConfig(schedule="mixed_rank", p0=0.5, anneal_fraction=0.5), sparse)
    model = hook.setup(lowrank, TrainState(step=0, total_steps=100))
    model.train()
    torch.manual_seed(0)
    x = batch()
    x.pop("labels")
    used = []
    for _ in range(50):
        model(**x)
        used += [m.used_sparse_last for m in hook.modules.values()]
    share = sum(used) / len(used)
    assert 0.4 < share < 0.6  # 600 Bernoulli(0.5) draws
    hook.after_step(model, TrainState(step=50, total_steps=100))
    assert hook.current_p == 0.0
    model(**x)
    assert not any(m.used_sparse_last for m in hook.modules.values())
    model.eval()
    hook.after_step(model, TrainState(step=0, total_steps=100))  # p back to 0.5
    model(**x)  # eval mode never takes the sparse path
    assert not any(m.used_sparse_last for m in hook.modules.values())


def test_rank_sampling_never_exceeds_r_and_ends_at_full_rank(sparse_and_lowrank):
    _, lowrank, _ = sparse_and_lowrank()
    cfg = RecoverConfig(schedule="rank_sampling", anneal_fraction=0.5, min_rank_fraction=0.25)
    hook = RecoveryHook(cfg)
    model = hook.setup(lowrank, TrainState(step=0, total_steps=40))
    seen = set()
    for step in range(1, 40):
        hook.after_step(model, TrainState(step=step, total_steps=40))
        for m in hook.modules.values():
            if step < 20:
                assert m.active_rank is not None
                assert -(-m.rank // 4) <= m.active_rank <= m.rank
                seen.add(m.active_rank)
            else:
                assert m.active_rank is None  # full rank after the sampling phase
    assert len(seen) > 2
    # a sub-rank forward equals the truncated factor product
    m = next(iter(hook.modules.values()))
    m.train()
    m.active_rank = 2
    x = torch.randn(3, m.in_features)
    expected = x @ (m.lowrank.up.weight[:, :2] @ m.lowrank.down.weight[:2]).T + m.lowrank.bias
    assert torch.allclose(m(x), expected, atol=1e-6)
