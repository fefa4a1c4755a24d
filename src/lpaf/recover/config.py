"""The settings of stage 5 (recover): :class:`RecoverConfig` and the schedules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lpaf.methods import RECOVER_SCHEDULES

SCHEDULES = RECOVER_SCHEDULES


@dataclass
class RecoverConfig:
    schedule: str = "mixed_rank"
    p0: float = 0.5  # mixed_rank: initial probability of the sparse full-rank path
    anneal_fraction: float = 0.5  # share of the steps over which p (or sampling) runs
    min_rank_fraction: float = 0.25  # rank_sampling: smallest sub-rank, as a share of r
    train_sparse: bool = False  # mixed_rank: also train the sparse full-rank weights

    @classmethod
    def from_config(cls, config: dict[str, Any], schedule: str) -> RecoverConfig:
        """``schedule`` (a pipeline's ``recover``) with the settings of a validated
        config's ``recover`` block."""
        block = config["recover"]
        shared = {f: block[f] for f in cls.__dataclass_fields__ if f in block and f != "schedule"}
        return cls(schedule=schedule, **shared)

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"recover.schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if not 0.0 <= self.p0 <= 1.0:
            raise ValueError(f"recover.p0 must be in [0, 1], got {self.p0}")
        if not 0.0 <= self.anneal_fraction <= 1.0:
            raise ValueError(
                f"recover.anneal_fraction must be in [0, 1], got {self.anneal_fraction}"
            )
        if not 0.0 < self.min_rank_fraction <= 1.0:
            raise ValueError(
                f"recover.min_rank_fraction must be in (0, 1], got {self.min_rank_fraction}"
            )
