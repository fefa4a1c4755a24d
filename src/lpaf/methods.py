"""The one registry of method names: which pruning, factorization, rank-rule and
recovery methods exist and what each needs from earlier stages.

The rules' wildcard constraints (``workflow/rules/*.smk``), the stage code, the config
checks and the schema's enums all read it (``tests/config/test_defaults.py`` checks
the schema against it), so adding a method starts here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class FactorizeMethod:
    """A stage-4 method. ``needs``: ``fisher`` (Fisher row importance from the
    gradient pass), ``importance`` (stage 2's importance for a pruned source, else
    ``factorize.dense_importance``) or ``None`` (the weights alone)."""

    name: str
    needs: str | None = None

    @property
    def weighted(self) -> bool:
        """True for the sparsity-aware methods, which weight the fit by importance."""
        return self.needs == "importance"


FACTORIZE_METHODS: dict[str, FactorizeMethod] = {
    m.name: m
    for m in (
        FactorizeMethod("svd"),
        FactorizeMethod("fwsvd", needs="fisher"),
        FactorizeMethod("sparsity_aware", needs="importance"),
        FactorizeMethod("sparsity_aware_rows", needs="importance"),
    )
}
RANK_RULES: tuple[str, ...] = ("uniform", "global_energy")
PRUNE_METHODS: tuple[str, ...] = ("movement", "first_order_taylor", "magnitude")
RECOVER_SCHEDULES: tuple[str, ...] = ("plain", "mixed_rank", "rank_sampling")


def alternation(names: Iterable[str]) -> str:
    """A regular expression matching exactly one of ``names`` (for Snakemake's
    ``wildcard_constraints``); one that matches nothing for no names."""
    names = sorted(names)
    return "|".join(re.escape(n) for n in names) if names else "(?!)"
