"""The settings of stage 6 (evaluate): :class:`EvaluateConfig`."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class EvaluateConfig:
    """The config's ``evaluate`` block (defaults: the schema's, see
    ``tests/config/test_defaults.py``)."""

    batch_size: int = 128
    latency_batch_sizes: tuple[int, ...] = (1, 32)
    latency_seq_length: int = 128
    latency_warmup: int = 3
    latency_repeats: int = 10
    # the bench rule's backends (lpaf.bench)
    latency_backends: tuple[str, ...] = ("eager",)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> EvaluateConfig:
        block = config["evaluate"]
        return cls(**{f.name: block[f.name] for f in fields(cls) if f.name in block})
