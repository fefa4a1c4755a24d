"""The settings of stage 2 (prune): :class:`PruneConfig` and the allowed values."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lpaf.config_errors import ConfigError
from lpaf.methods import PRUNE_METHODS
from lpaf.sources import label
from lpaf.targets import DEFAULT_TARGET_PATTERNS

THRESHOLD_MODES: tuple[str, ...] = ("global", "per_matrix")
SCORE_INITS: tuple[str, ...] = ("constant", "magnitude")


@dataclass
class PruneConfig:
    """Settings of stage 2 (prune).

    method: ``movement`` (first-order learned scores, default), ``first_order_taylor``
        (EMA of ``|W * G|``) or ``magnitude`` (``|W|``, zeroth order).
    final_density: fraction of target weights kept at the end (``1 - sparsity``).
    initial_warmup: fraction of the total optimizer steps at density 1 before pruning
        starts (Sanh et al.: 1 of 10 epochs, so 0.1).
    final_warmup: fraction of the total steps at the final density at the end
        (Sanh et al.: 2 of 10 epochs, so 0.2). Warm-ups are fractions of the total steps
        so one config fits every task size; they become ``round(fraction * total)`` steps.
    mask_update_interval: deltaT, optimizer steps between mask recomputations (PLATON:
        10). The mask is also recomputed when the schedule first reaches the final
        density and at the last step.
    threshold: ``per_matrix`` (every target matrix keeps the same fraction, the
        movement-pruning default) or ``global`` (one threshold over all targets; only
        the overall density is fixed).
    scores_learning_rate: learning rate of the movement scores (Sanh et al.: 1e-2; no
        weight decay on scores). Unused by the other methods.
    scores_init: initial movement scores, ``constant`` (zeros, default) or ``magnitude``.
    ema_beta: smoothing of the first-order Taylor importance (PLATON beta1: 0.85).
    target_patterns: regular expressions naming the target modules
        (:mod:`lpaf.targets`).
    """

    method: str = "movement"
    final_density: float = 0.25
    initial_warmup: float = 0.1
    final_warmup: float = 0.2
    mask_update_interval: int = 10
    threshold: str = "per_matrix"
    scores_learning_rate: float = 1e-2
    scores_init: str = "constant"
    ema_beta: float = 0.85
    target_patterns: tuple[str, ...] = field(default_factory=lambda: DEFAULT_TARGET_PATTERNS)

    @classmethod
    def from_config(cls, config: dict[str, Any], method: str, density: float) -> PruneConfig:
        """One run (``method`` at ``density``) of a validated config's ``prune`` block."""
        block = config["prune"]
        per_run = ("method", "final_density", "target_patterns")
        shared = {f: block[f] for f in cls.__dataclass_fields__ if f in block and f not in per_run}
        return cls(
            method=method,
            final_density=float(density),
            target_patterns=tuple(config["target_modules"]),
            **shared,
        )

    def __post_init__(self) -> None:
        self.target_patterns = tuple(self.target_patterns)
        if self.method not in PRUNE_METHODS:
            raise ValueError(f"prune.method must be one of {PRUNE_METHODS}, got {self.method!r}")
        if self.threshold not in THRESHOLD_MODES:
            raise ValueError(
                f"prune.threshold must be one of {THRESHOLD_MODES}, got {self.threshold!r}"
            )
        if self.scores_init not in SCORE_INITS:
            raise ValueError(
                f"prune.scores_init must be one of {SCORE_INITS}, got {self.scores_init!r}"
            )
        if not 0.0 <= self.final_density <= 1.0:
            raise ValueError(f"prune.final_density must be in [0, 1], got {self.final_density}")
        if self.initial_warmup < 0 or self.final_warmup < 0:
            raise ValueError("prune warm-ups must be non-negative fractions of the total steps")
        if self.initial_warmup + self.final_warmup > 1.0:
            raise ValueError("prune.initial_warmup + prune.final_warmup must not exceed 1")
        if self.mask_update_interval < 1:
            raise ValueError("prune.mask_update_interval must be at least 1")
        if not 0.0 <= self.ema_beta < 1.0:
            raise ValueError(f"prune.ema_beta must be in [0, 1), got {self.ema_beta}")


def check(config: dict[str, Any]) -> None:
    """Checks of the ``prune`` and ``rank_analysis`` blocks a schema cannot express."""
    prune = config.get("prune")
    if prune is None:
        return
    if prune["initial_warmup"] + prune["final_warmup"] > 1.0:
        raise ConfigError(
            "config keys 'prune.initial_warmup' + 'prune.final_warmup' must not exceed 1 "
            f"(got {prune['initial_warmup']} + {prune['final_warmup']}): they are fractions "
            "of the pruning steps"
        )
    labels = [label(d) for d in prune["densities"]]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"config key 'prune.densities': duplicate values {prune['densities']}")
    spectra_density = (config.get("rank_analysis") or {}).get("spectra_density")
    if spectra_density is not None and not any(
        abs(float(spectra_density) - float(d)) < 1e-12 for d in prune["densities"]
    ):
        raise ConfigError(
            f"config key 'rank_analysis.spectra_density': {spectra_density} is not one of "
            f"prune.densities {prune['densities']}"
        )
