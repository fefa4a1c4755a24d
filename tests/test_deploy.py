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


def test_sliced_up_reads_its_slice_in_place() -> None:
    """SlicedUp equals ``up(x[..., a:b])`` on a contiguous 3-D input (BLAS reads the
    strided slice: no copy at all), a 2-D one and a non-contiguous one (the fallback)."""
    from torch.profiler import ProfilerActivity, profile

    from lpaf.deploy import SlicedUp

    torch.manual_seed(0)
    for bias in (True, False):
        up = nn.Linear(5, 7, bias=bias)
        sliced = SlicedUp(up, 3, 8)
        x = torch.randn(2, 4, 12)
        with torch.no_grad():
            for inp in (x, x[0], x.transpose(0, 1)):
                want = up(inp[..., 3:8])
                assert torch.allclose(sliced(inp), want, atol=1e-6)
            with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
                sliced(x)
        # addmm copies the bias into its output, never the (8 x 5) slice
        copied = [
            e.input_shapes
            for e in prof.key_averages(group_by_input_shape=True)
            if e.key in ("aten::copy_", "aten::contiguous", "aten::clone")
        ]
        assert all(shapes[0] == [8, 7] for shapes in copied), copied


_ALLOCATION = """
import ctypes, sys, torch
from lpaf.deploy import tune_cpu_allocator

class Info(ctypes.Structure):  # glibc's struct mallinfo2
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd",
        "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
if sys.argv[1] == "tuned":
    assert tune_cpu_allocator()
before = libc.mallinfo2()
tensor = torch.ones((24 << 20) // 4)  # an activation of MiniLM at batch 32
during = libc.mallinfo2()
del tensor
after = libc.mallinfo2()
print(during.hblkhd - before.hblkhd, after.fordblks)
"""


def test_tuned_allocator_keeps_large_blocks_in_the_heap() -> None:
    """glibc's own account (mallinfo2) of a 24 MiB tensor, in two fresh processes: by
    default it is a fresh mapping (its pages fault in on first touch, every forward
    pass) and is unmapped when freed; after tune_cpu_allocator it comes from the heap,
    and the heap keeps it once freed, for the next pass."""
    import platform
    import subprocess
    import sys

    from lpaf.deploy import tune_cpu_allocator

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        assert tune_cpu_allocator() is False
        pytest.skip("mallopt is glibc's")
    if tuple(int(p) for p in platform.libc_ver()[1].split(".")[:2]) < (2, 33):
        pytest.skip("mallinfo2 needs glibc >= 2.33")

    def account(mode: str) -> list[int]:
        out = subprocess.run(
            [sys.executable, "-c", _ALLOCATION, mode], capture_output=True, text=True, check=True
        )
        return [int(v) for v in out.stdout.split()[-2:]]

    size = 24 << 20
    mapped, kept = account("default")
    assert mapped >= size and kept < size
    mapped, kept = account("tuned")
    assert mapped == 0 and kept >= size
