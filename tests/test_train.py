"""The training loop: deterministic on CPU, resumes exactly, hooks are called."""

import pytest
import torch

from lpaf.data import collator, load_task, subsample, tokenize
from lpaf.hooks import TrainHook
from lpaf.modeling import load_for_task
from lpaf.tasks import get_task
from lpaf.train import RunSettings, TrainSettings, epoch_order, linear_schedule, train

TASK = get_task("MRPC")


@pytest.fixture(scope="module")
def mrpc_small(repo, minilm_tokenizer):
    data = load_task(TASK, source="local", local_dir=repo / "resources/glue")
    train_set = tokenize(subsample(data["train"], 40, seed=0), minilm_tokenizer, TASK, 32)
    dev = tokenize(subsample(data["validation"], 24, seed=0), minilm_tokenizer, TASK, 32)
    return train_set, dev, collator(minilm_tokenizer)


def _run(tmp_path, mrpc_small, seed=3, hooks=(), **overrides):
    train_set, _, coll = mrpc_small
    model, _ = load_for_task("tiny-bert", TASK, seed=seed)
    values = dict(max_steps=8, batch_size=8, learning_rate=1e-3, checkpoint_every_steps=None)
    settings = TrainSettings(**{**values, **overrides})
    run = RunSettings(seed=seed, device="cpu", precision="fp32", threads=1)
    return train(model, train_set, coll, settings, run, tmp_path, hooks=hooks)


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_same_seed_same_weights_and_log(tmp_path, mrpc_small):
    a = _run(tmp_path / "a", mrpc_small)
    b = _run(tmp_path / "b", mrpc_small)
    wa, wb = _weights(a.model), _weights(b.model)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a.log["loss"].tolist() == b.log["loss"].tolist()
    c = _run(tmp_path / "c", mrpc_small, seed=4)
    assert a.log["loss"].tolist() != c.log["loss"].tolist()


def test_training_reduces_loss_on_a_fixed_batch(tmp_path, mrpc_small):
    train_set, _, coll = mrpc_small
    model, _ = load_for_task("tiny-bert", TASK, seed=0)
    tiny = train_set.select(range(8))
    settings = TrainSettings(
        max_steps=30,
        batch_size=8,
        learning_rate=3e-3,
        warmup_ratio=0.0,
        checkpoint_every_steps=None,
    )
    result = train(model, tiny, coll, settings, RunSettings(seed=0, device="cpu"), tmp_path)
    assert result.log["loss"].iloc[-5:].mean() < 0.6 * result.log["loss"].iloc[:3].mean()


class Interrupt(Exception):
    pass


class InterruptAt(TrainHook):
    def __init__(self, step):
        self.step = step

    def after_step(self, model, state):
        if state.step == self.step:
            raise Interrupt


def test_killed_run_resumes_to_identical_result(tmp_path, mrpc_small):
    reference = _run(tmp_path / "ref", mrpc_small, checkpoint_every_steps=None)
    work = tmp_path / "resume"
    # checkpoint every 3 steps, killed after step 5 -> restart resumes from step 3
    # (the hook raises after the step's checkpoint logic would run at step 6)
    with pytest.raises(Interrupt):
        _run(work, mrpc_small, hooks=[InterruptAt(5)], checkpoint_every_steps=3)
    assert (work / "checkpoint" / "state.pt").exists()
    resumed = _run(work, mrpc_small, hooks=[InterruptAt(100)], checkpoint_every_steps=3)
    assert resumed.resumed_from_step == 3
    wr, wc = _weights(reference.model), _weights(resumed.model)
    assert all(torch.equal(wr[k], wc[k]) for k in wr)
    assert resumed.log["loss"].tolist() == reference.log["loss"].tolist()
    assert resumed.log["step"].tolist() == list(range(1, 9))


def test_epoch_order_is_a_permutation_fixed_by_seed_and_epoch():
    a = epoch_order(50, seed=1, epoch=0)
    assert sorted(a.tolist()) == list(range(50))
    assert torch.equal(a, epoch_order(50, seed=1, epoch=0))
    assert not torch.equal(a, epoch_order(50, seed=1, epoch=1))
    assert not torch.equal(a, epoch_order(50, seed=2, epoch=0))


def test_linear_schedule_shape():
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1.0)
    sched = linear_schedule(opt, warmup_steps=4, total_steps=10)
    lrs = []
    for _ in range(10):
        lrs.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert lrs[:4] == pytest.approx([1 / 5, 2 / 5, 3 / 5, 4 / 5])
    assert lrs[4] == pytest.approx(1.0)  # peak right after warm-up
    assert lrs[9] == pytest.approx(1 / 6)  # (10 - 9) / (10 - 4)
    assert all(x > y for x, y in zip(lrs[4:], lrs[5:], strict=False))


class Recorder(TrainHook):
    def __init__(self):
        self.calls = []

    def setup(self, model, state):
        self.calls.append(("setup", state.step))
        return model

    def loss(self, batch, outputs, loss, state):
        self.calls.append(("loss", state.step))
        return loss * 0.0 + loss  # same value, proves the returned loss is used

    def after_backward(self, model, state):
        self.calls.append(("after_backward", state.step))

    def after_step(self, model, state):
        self.calls.append(("after_step", state.step))

    def log_values(self):
        return {"hook_value": 7.0}

    def finalize(self, model):
        self.calls.append(("finalize", None))
        return model


def test_hooks_called_in_documented_order(tmp_path, mrpc_small):
    rec = Recorder()
    result = _run(tmp_path, mrpc_small, hooks=[rec], max_steps=None, epochs=0.4)
    steps = result.steps
    assert rec.calls[0] == ("setup", 0)
    body = rec.calls[1:-1]
    assert body == [
        c for s in range(steps) for c in (("loss", s), ("after_backward", s), ("after_step", s + 1))
    ]
    assert rec.calls[-1] == ("finalize", None)
    assert (result.log["hook_value"] == 7.0).all()


def test_bf16_autocast_runs_on_cpu(tmp_path, mrpc_small):
    train_set, _, coll = mrpc_small
    model, _ = load_for_task("tiny-bert", TASK, seed=0)
    settings = TrainSettings(max_steps=2, batch_size=8, checkpoint_every_steps=None)
    result = train(
        model,
        train_set,
        coll,
        settings,
        RunSettings(seed=0, device="cpu", precision="bf16"),
        tmp_path,
    )
    assert torch.isfinite(torch.tensor(result.log["loss"].tolist())).all()
    assert next(result.model.parameters()).dtype == torch.float32  # master weights stay fp32
