"""Which modules LPAF compresses.

The targets are chosen by name patterns, like PEFT's ``target_modules``: each pattern is
a regular expression that must match a module's full dotted name
(``re.fullmatch``), and only ``nn.Linear`` modules (or modules that wrap one and
expose ``in_features``/``out_features``/``weight``) are taken. The default patterns
pick, in every encoder layer of a BERT-style model, query, key, value, attention
output, FFN in (intermediate) and FFN out; embeddings, LayerNorm, pooler and the
classifier stay dense.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from torch import nn

DEFAULT_TARGET_PATTERNS: tuple[str, ...] = (
    r".*encoder\.layer\.\d+\.attention\.self\.(query|key|value)",
    r".*encoder\.layer\.\d+\.attention\.output\.dense",
    r".*encoder\.layer\.\d+\.intermediate\.dense",
    r".*encoder\.layer\.\d+\.output\.dense",
)


def _is_linear_like(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or (
        hasattr(module, "in_features") and hasattr(module, "out_features")
    )


def find_targets(
    model: nn.Module, patterns: Sequence[str] = DEFAULT_TARGET_PATTERNS
) -> dict[str, nn.Module]:
    """Return ``{module name: module}`` for every linear-like module whose full name
    matches one of ``patterns``, in the model's module order.

    Raises ``ValueError`` when no module matches, since a compression run that
    silently compresses nothing would report a meaningless ratio.
    """
    compiled = [re.compile(p) for p in patterns]
    found = {
        name: module
        for name, module in model.named_modules()
        if name and _is_linear_like(module) and any(c.fullmatch(name) for c in compiled)
    }
    if not found:
        linear_names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        raise ValueError(
            f"target patterns {list(patterns)} match no linear module; "
            f"linear modules of this model include {linear_names[:8]}"
        )
    return found


def set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Replace the submodule called ``name`` (dotted path) by ``new``."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)
