"""lpaf.deploy: the inference rewrites give the plain model's outputs (padded batch),
touch only the modules they should, survive ONNX export, and leave a module whose
forward reads its input otherwise unfused."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
import torch
from torch import nn

import lpaf
from lpaf.compressed import save_compressed
from lpaf.deploy import FusedDownAttention, optimize_for_inference
from lpaf.export import export_model
from lpaf.factorize.layer import LowRankLinear, swap_to_lowrank

LAYER = "bert.encoder.layer.{}"


def _lowrank(tiny_bert) -> nn.Module:
    """Layer 0: q/k/v low-rank (ranks 3, 4, 5) and its FFN at rank 16, which costs
    16 * (32 + 64) > 32 * 64 (the fallback); layer 1: only its query low-rank."""
    model = tiny_bert(seed=2).eval()
    self0 = LAYER.format(0) + ".attention.self."
    ranks = {self0 + "query": 3, self0 + "key": 4, self0 + "value": 5}
    ranks[LAYER.format(0) + ".intermediate.dense"] = 32  # 32 * 96 >= 32 * 64
    ranks[LAYER.format(1) + ".attention.self.query"] = 6
    swap_to_lowrank(model, ranks)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LowRankLinear):
                for p in module.parameters():
                    p.copy_(0.2 * torch.randn(p.shape, generator=generator))
    return model


def _batch(random_batch):
    batch = random_batch(seed=4, size=3, length=9, labels=False)
    batch["attention_mask"][1, 6:] = 0  # a padded row: the mask must reach the attention
    return batch


def test_rewritten_model_gives_the_same_logits(tiny_bert, random_batch) -> None:
    model = _lowrank(tiny_bert)
    batch = _batch(random_batch)
    with torch.no_grad():
        want = model(**batch).logits
    report = optimize_for_inference(model)
    assert report["dense_fallback"] == [LAYER.format(0) + ".intermediate.dense"]
    assert report["fused_qkv_down"] == [LAYER.format(0) + ".attention.self"]
    fused = model.get_submodule(LAYER.format(0) + ".attention.self")
    assert isinstance(fused, FusedDownAttention) and fused.down.out_features == 3 + 4 + 5
    assert type(model.get_submodule(LAYER.format(0) + ".intermediate.dense")) is nn.Linear
    # layer 1 has only a low-rank query: nothing to fuse, the module stays
    assert isinstance(model.get_submodule(LAYER.format(1) + ".attention.self.query"), LowRankLinear)
    with torch.no_grad():
        got = model(**batch).logits
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()


def test_load_for_inference_and_onnx_export(tiny_bert, random_batch, tmp_path) -> None:
    model = _lowrank(tiny_bert)
    save_compressed(model, None, tmp_path / "model", metadata={"method": "svd"})
    fast = lpaf.load_for_inference(tmp_path / "model")
    assert any(isinstance(m, FusedDownAttention) for m in fast.modules())
    batch = _batch(random_batch)
    with torch.no_grad():
        want = model(**batch).logits.numpy()
    export_model(fast, tmp_path / "fast.onnx", list(batch))
    session = onnxruntime.InferenceSession(str(tmp_path / "fast.onnx"))
    got = session.run(None, {k: v.numpy() for k, v in batch.items()})[0]
    assert np.allclose(got, want, atol=1e-4)


class _ReadsItsInput(nn.Module):
    """query/key/value low-rank, but the output adds the input itself: the fused
    module would add the codes instead, so it must not be fused."""

    def __init__(self) -> None:
        super().__init__()
        self.query, self.key, self.value = (LowRankLinear(8, 8, 2) for _ in range(3))

    def forward(self, x):
        return self.query(x) + self.key(x) + self.value(x) + x.sum(-1, keepdim=True)


def test_a_module_that_reads_its_input_otherwise_is_left_unfused() -> None:
    model = nn.Sequential(_ReadsItsInput())
    report = optimize_for_inference(model)
    assert report["fused_qkv_down"] == []
    assert isinstance(model[0], _ReadsItsInput) and isinstance(model[0].query, LowRankLinear)


@pytest.mark.parametrize("rank", [1, 16])  # 16 * (32 + 32) == 32 * 32: the fallback
def test_fallback_threshold(tiny_bert, rank) -> None:
    model = tiny_bert().eval()
    name = LAYER.format(0) + ".attention.output.dense"
    swap_to_lowrank(model, {name: rank})
    report = optimize_for_inference(model, fuse=False)
    assert report["dense_fallback"] == ([name] if rank == 16 else [])
