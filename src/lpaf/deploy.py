"""An inference-only rewrite of a loaded model, exact to float tolerance: what the
saved format stores stays as it is, only the forward pass changes.

:func:`optimize_for_inference` makes two rewrites, in place:

* **dense fallback**: a :class:`~lpaf.factorize.layer.LowRankLinear` whose factors
  cost at least the dense weight (``r * (in + out) >= in * out``, which mixed-rank
  allocations can produce) becomes an ``nn.Linear`` holding ``up @ down``: one GEMM
  of no more multiply-accumulates instead of two;
* **fused down-projections**: in a self-attention module whose ``query``, ``key``
  and ``value`` are all low-rank and read the same input (BERT-style encoders),
  the three down-projections become one GEMM, ``x @ [B_q; B_k; B_v]^T``, and each
  up-projection reads its slice of the result. The rewritten module is checked on a
  random input against the original before it is kept; a module whose forward uses
  its input otherwise (the check fails or raises) stays as it was.

:func:`lpaf.load_for_inference` loads a model directory and applies it.

:func:`tune_cpu_allocator` is the one process-wide setting of the CPU inference
path: glibc's ``malloc`` returns large freed blocks to the system, so each forward
pass maps its large activations afresh and pays a page fault per 4 KiB page of them
(measured: 40,000-60,000 faults, 160-250 MiB, per MiniLM forward at batch 32,
length 128, and 0 after the call; docs/measurements). It keeps freed memory in the
process instead, as jemalloc or tcmalloc would.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from lpaf.factorize.layer import LowRankLinear
from lpaf.targets import set_module

log = logging.getLogger(__name__)


#: glibc ``mallopt`` parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_ALLOCATOR_TUNED = False


def tune_cpu_allocator(
    mmap_threshold: int = 32 << 20, trim_threshold: int = 1 << 30, top_pad: int = 64 << 20
) -> bool:
    """Keep freed memory in this process (module docstring): blocks below
    ``mmap_threshold`` bytes come from the heap instead of fresh mappings, and the heap
    is given back to the system only above ``trim_threshold`` bytes free; ``top_pad``
    bytes are added to each heap extension. Process-wide and not undone: call it once,
    before timing or serving a model on the CPU. Returns whether it was applied (it is
    a no-op where the C library is not glibc)."""
    global _ALLOCATOR_TUNED
    import ctypes
    import ctypes.util
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = all(
            libc.mallopt(param, value) == 1
            for param, value in (
                (_M_MMAP_THRESHOLD, mmap_threshold),
                (_M_TRIM_THRESHOLD, trim_threshold),
                (_M_TOP_PAD, top_pad),
            )
        )
    except (OSError, AttributeError):
        return False
    _ALLOCATOR_TUNED = _ALLOCATOR_TUNED or ok
    return ok


def allocator_tuned() -> bool:
    """Whether :func:`tune_cpu_allocator` has been applied in this process."""
    return _ALLOCATOR_TUNED


class SlicedUp(nn.Module):
    """``x[..., start:stop] -> up(x[..., start:stop])``: one low-rank module's
    up-projection reading its part of a fused down-projection."""

    def __init__(self, up: nn.Linear, start: int, stop: int) -> None:
        super().__init__()
        self.up = up
        self.start, self.stop = start, stop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        codes = x[..., self.start : self.stop]
        if x.dim() < 2 or not x.is_contiguous():
            return self.up(codes)
        # The slice of a contiguous (..., k) tensor is a strided (tokens, rank) matrix
        # with leading dimension k: BLAS reads it in place. nn.Linear would copy it to
        # a contiguous tensor first (one copy per module, ~10 % of a rank-r forward at
        # batch 32) and add the bias in a second pass.
        flat = codes.reshape(-1, codes.shape[-1])
        weight, bias = self.up.weight, self.up.bias
        out = torch.mm(flat, weight.t()) if bias is None else torch.addmm(bias, flat, weight.t())
        return out.view(*codes.shape[:-1], weight.shape[0])

    def extra_repr(self) -> str:
        return f"start={self.start}, stop={self.stop}"


class FusedDownAttention(nn.Module):
    """A self-attention module whose ``query``/``key``/``value`` down-projections run
    as one GEMM: ``inner`` receives ``x @ down.weight^T`` (the concatenated codes) in
    place of the hidden states, and its ``query``/``key``/``value`` are
    :class:`SlicedUp` modules."""

    def __init__(self, inner: nn.Module, down: nn.Linear) -> None:
        super().__init__()
        self.inner = inner
        self.down = down

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any):
        return self.inner(self.down(hidden_states), *args, **kwargs)


def dense_fallback(model: nn.Module) -> list[str]:
    """Replace every low-rank module whose factors cost at least its dense weight by
    an ``nn.Linear`` of the product; returns their names."""
    replaced = []
    for name, module in list(model.named_modules()):
        if not isinstance(module, LowRankLinear):
            continue
        if module.stored_cost() < module.in_features * module.out_features:
            continue
        weight = module.up.weight
        dense = nn.Linear(
            module.in_features,
            module.out_features,
            bias=module.bias is not None,
            device=weight.device,
            dtype=weight.dtype,
        )
        with torch.no_grad():
            dense.weight.copy_(module.up.weight @ module.down.weight)
            if module.bias is not None:
                dense.bias.copy_(module.bias)
        set_module(model, name, dense)
        replaced.append(name)
    return replaced


def _fusable(module: nn.Module) -> list[LowRankLinear] | None:
    parts = [getattr(module, n, None) for n in ("query", "key", "value")]
    if not all(isinstance(p, LowRankLinear) for p in parts):
        return None
    if len({p.in_features for p in parts}) != 1:
        return None
    return parts  # type: ignore[return-value]


def _fuse(module: nn.Module, parts: list[LowRankLinear]) -> FusedDownAttention:
    weights = [p.down.weight for p in parts]
    down = nn.Linear(
        parts[0].in_features,
        sum(w.shape[0] for w in weights),
        bias=False,
        device=weights[0].device,
        dtype=weights[0].dtype,
    )
    with torch.no_grad():
        down.weight.copy_(torch.cat(weights, dim=0))
    start = 0
    for name, part in zip(("query", "key", "value"), parts, strict=True):
        setattr(module, name, SlicedUp(part.up, start, start + part.rank))
        start += part.rank
    return FusedDownAttention(module, down)


def _check(original: nn.Module, fused: nn.Module, in_features: int, atol: float) -> bool:
    weight = next(original.parameters())
    x = torch.randn(2, 5, in_features, generator=torch.Generator().manual_seed(0))
    x = x.to(device=weight.device, dtype=weight.dtype)
    try:
        with torch.no_grad():
            want, got = original(x), fused(x)
    except Exception as error:  # noqa: BLE001 - any failure means "do not fuse"
        log.info("fusion skipped: the fused module raised %r", error)
        return False
    want = want[0] if isinstance(want, tuple) else want
    got = got[0] if isinstance(got, tuple) else got
    return bool(torch.allclose(want, got, atol=atol, rtol=1e-4))


def fuse_attention_downs(model: nn.Module, atol: float = 1e-5) -> list[str]:
    """Fuse the down-projections of every self-attention module whose ``query``,
    ``key`` and ``value`` are low-rank (module docstring); returns their names."""
    import copy

    fused = []
    for name, module in list(model.named_modules()):
        parts = _fusable(module)
        if parts is None or not name:
            continue
        original = copy.deepcopy(module).eval()
        candidate = _fuse(module, parts)
        candidate.eval()
        if _check(original, candidate, parts[0].in_features, atol):
            set_module(model, name, candidate)
            fused.append(name)
        else:
            for n in ("query", "key", "value"):  # restore the module as it was
                setattr(module, n, getattr(original, n))
            log.info("%s: down-projections left unfused (fused output differs)", name)
    return fused


def optimize_for_inference(
    model: nn.Module, *, fallback: bool = True, fuse: bool = True
) -> dict[str, list[str]]:
    """Both rewrites of the module docstring on ``model`` (in place; put it in
    ``eval()`` mode: the check compares outputs without dropout); returns the names
    of the modules each rewrite touched."""
    model.eval()
    report = {"dense_fallback": dense_fallback(model) if fallback else []}
    report["fused_qkv_down"] = fuse_attention_downs(model) if fuse else []
    return report
