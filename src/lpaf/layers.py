"""The protocol the three linear modules of lpaf share: :class:`lpaf.prune.MaskedLinear`
(stage 2), :class:`lpaf.factorize.LowRankLinear` (stage 4) and
:class:`lpaf.recover.MixedRankLinear` (stage 5). Accounting, rank analysis and the
tests (``tests/test_layers.py``) treat all three through it."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class CompressedLinear(Protocol):
    """A drop-in replacement for an ``nn.Linear`` target of ``out_features x
    in_features``.

    ``effective_weight()`` is the ``out x in`` weight its forward pass in eval mode
    computes with (so ``module.eval()(x) == F.linear(x, effective_weight(), bias)``);
    ``stored_cost()`` the weight parameters it stores for inference (``m * n`` for a
    masked weight, ``r * (m + n)`` for factors)."""

    in_features: int
    out_features: int

    @property
    def bias(self) -> torch.Tensor | None: ...

    def effective_weight(self) -> torch.Tensor: ...

    def stored_cost(self) -> int: ...
