"""The settings of stage 4 (factorize): :class:`FactorizeConfig` and the checks of the
``factorize`` block a schema cannot express."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from lpaf.config_errors import ConfigError
from lpaf.sources import label


@dataclass(frozen=True)
class FactorizeConfig:
    """The config's ``factorize`` block (defaults: the schema's, checked by
    ``tests/config/test_defaults.py``)."""

    methods: tuple[str, ...] = ("svd", "fwsvd", "sparsity_aware", "sparsity_aware_rows")
    rhos: tuple[float, ...] = (0.5, 0.3, 0.2, 0.1)
    rank_rule: str = "uniform"
    sources: tuple[str, ...] = ("finetune",)
    methods_by_source: dict[str, list[str]] = field(default_factory=dict)
    fisher_batches: int = 32
    batch_size: int = 32
    n_iter: int = 10
    epsilon: float = 1.0
    ridge: float = 0.0
    solver: str = "als"
    dense_importance: str = "taylor"

    @classmethod
    def from_config(cls, config: dict[str, Any], **overrides: Any) -> FactorizeConfig:
        block = {**config["factorize"], **overrides}
        return cls(**{f.name: block[f.name] for f in fields(cls) if f.name in block})


def check(config: dict[str, Any]) -> None:
    """Checks of the ``factorize`` block a schema cannot express: a ridge term with the
    EM solver, budgets that would share a results path, pruned sources outside the
    pruning sweep."""
    factorize = config.get("factorize")
    if factorize is None:
        return
    if factorize.get("ridge") and factorize.get("solver") == "em":
        raise ConfigError(
            f"config key 'factorize.ridge': {factorize['ridge']} needs factorize.solver "
            "'als' (the EM solver has no ridge term); set ridge to 0 or solver to als"
        )
    labels = [label(r) for r in factorize["rhos"]]
    if len(set(labels)) != len(labels):
        raise ConfigError(
            f"config key 'factorize.rhos': values {factorize['rhos']} give the same path "
            f"label twice ({labels})"
        )
    prune = config.get("prune")
    if prune is None:
        return
    densities = [label(d) for d in prune["densities"]]
    for source in factorize["sources"]:
        if source == "finetune":
            continue
        _, method, density = source.split("/")
        density = density.removeprefix("density")
        if method not in prune["methods"] or density not in densities:
            raise ConfigError(
                f"config key 'factorize.sources': {source!r} is not a model of the pruning "
                f"sweep (prune.methods {prune['methods']}, prune.densities "
                f"{prune['densities']}, i.e. density{', density'.join(densities)}); "
                "add it there or remove it here"
            )
