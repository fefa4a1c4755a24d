"""The low-rank module that replaces a target ``nn.Linear``.

A rank-``r`` factorization ``W ~ A @ B`` of an ``out x in`` weight is two linears:
``down`` (``in -> r``, no bias, weight ``B``) then ``up`` (``r -> out``, weight ``A``,
carrying the original bias). It costs ``r * (in + out)`` weight parameters instead of
``in * out``.

State-dict keys of a replaced module ``name`` are ``name.down.weight``,
``name.up.weight`` and ``name.up.bias``; :mod:`lpaf.compressed` relies on them.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from lpaf.targets import set_module

Factors = tuple[torch.Tensor, torch.Tensor]


class LowRankLinear(nn.Module):
    """``x -> up(down(x))`` with ``down: in -> rank`` and ``up: rank -> out``."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rank: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if rank < 1:
            raise ValueError(f"rank must be >= 1, got {rank}")
        self.in_features = in_features
        self.out_features = out_features
        self.down = nn.Linear(in_features, rank, bias=False, device=device, dtype=dtype)
        self.up = nn.Linear(rank, out_features, bias=bias, device=device, dtype=dtype)

    @property
    def rank(self) -> int:
        return self.down.out_features

    @property
    def bias(self) -> nn.Parameter | None:
        return self.up.bias

    @property
    def weight(self) -> torch.Tensor:
        """The ``out x in`` product ``up.weight @ down.weight`` (for analysis; not a
        parameter, computed on every access)."""
        return self.up.weight @ self.down.weight

    def effective_weight(self) -> torch.Tensor:
        """Same as :attr:`weight`; the method name shared with masked pruning modules
        (``lpaf.prune.MaskedLinear``) so analysis code can treat both alike."""
        return self.weight

    def stored_cost(self) -> int:
        """``r * (in + out)``: the two factors (:class:`lpaf.layers.CompressedLinear`)."""
        return self.rank * (self.in_features + self.out_features)

    @classmethod
    def from_factors(
        cls, left: torch.Tensor, right: torch.Tensor, bias: torch.Tensor | None = None
    ) -> LowRankLinear:
        """Build from ``left`` (``out x r``, the ``up`` weight), ``right`` (``r x in``,
        the ``down`` weight) and an optional bias (``out``). The tensors are copied; the
        module takes the device and dtype of ``left``."""
        if left.ndim != 2 or right.ndim != 2 or left.shape[1] != right.shape[0]:
            raise ValueError(
                f"factors must be out x r and r x in, got {tuple(left.shape)} and "
                f"{tuple(right.shape)}"
            )
        out_features, rank = left.shape
        in_features = right.shape[1]
        module = cls(
            in_features,
            out_features,
            rank,
            bias=bias is not None,
            device=left.device,
            dtype=left.dtype,
        )
        with torch.no_grad():
            module.up.weight.copy_(left)
            module.down.weight.copy_(right)
            if bias is not None:
                if bias.shape != (out_features,):
                    raise ValueError(f"bias must have shape ({out_features},), got {bias.shape}")
                module.up.bias.copy_(bias)
        return module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"rank={self.rank}, bias={self.bias is not None}"
        )


def replace_with_lowrank(
    model: nn.Module, factors: Mapping[str, Factors | LowRankLinear]
) -> nn.Module:
    """Swap each module ``name`` of ``model`` for a :class:`LowRankLinear` (in place).

    ``factors[name]`` is either a ready module or ``(left, right)`` with ``left`` of
    shape ``out x r`` and ``right`` of shape ``r x in``; the bias is then copied from
    the module being replaced. Returns ``model``.
    """
    for name, value in factors.items():
        old = model.get_submodule(name)
        if isinstance(value, LowRankLinear):
            new = value
        else:
            left, right = value
            old_bias = getattr(old, "bias", None)
            bias = old_bias.detach() if old_bias is not None else None
            new = LowRankLinear.from_factors(left, right, bias)
        if (new.out_features, new.in_features) != (old.out_features, old.in_features):
            raise ValueError(
                f"{name}: low-rank module is {new.out_features}x{new.in_features}, "
                f"the module it replaces is {old.out_features}x{old.in_features}"
            )
        old_weight = getattr(old, "weight", None)
        if isinstance(old_weight, torch.Tensor):
            new = new.to(device=old_weight.device, dtype=old_weight.dtype)
        set_module(model, name, new)
    return model


def swap_to_lowrank(model: nn.Module, ranks: Mapping[str, int]) -> nn.Module:
    """Swap each module ``name`` for an (uninitialised-values) :class:`LowRankLinear`
    of rank ``ranks[name]`` with the same shape, bias presence, device and dtype, in
    place; used to rebuild a saved low-rank architecture before loading its weights.
    """
    for name, rank in ranks.items():
        old = model.get_submodule(name)
        old_weight = getattr(old, "weight", None)
        device = old_weight.device if isinstance(old_weight, torch.Tensor) else None
        dtype = old_weight.dtype if isinstance(old_weight, torch.Tensor) else None
        new = LowRankLinear(
            old.in_features,
            old.out_features,
            int(rank),
            bias=getattr(old, "bias", None) is not None,
            device=device,
            dtype=dtype,
        )
        set_module(model, name, new)
    return model


def lowrank_modules(model: nn.Module) -> dict[str, LowRankLinear]:
    """``{name: module}`` of every :class:`LowRankLinear` in ``model``."""
    return {n: m for n, m in model.named_modules() if isinstance(m, LowRankLinear)}
