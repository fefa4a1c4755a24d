"""Config validation: the JSON schema (through Snakemake's validator) plus the checks a
schema cannot express (does the model exist, are the task files there).

The workflow calls :func:`validate_config` in ``workflow/rules/common.smk`` before any
job is planned, so a bad config stops the run with one message naming the key.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key and what is allowed."""


def _describe(error) -> str:
    where = ".".join(str(p) for p in error.absolute_path) or "<top level>"
    validator = error.validator
    if validator == "enum":
        return f"config key {where!r}: {error.instance!r} is not allowed; allowed values: {error.validator_value}"
    if validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        return f"config key {where!r}: {error.message}; allowed keys: {allowed}"
    if validator == "type":
        return f"config key {where!r}: {error.instance!r} has the wrong type, expected {error.validator_value}"
    return f"config key {where!r}: {error.message}"


def validate_schema(config: dict[str, Any], schema: str | os.PathLike = SCHEMA) -> dict[str, Any]:
    """Validate against the schema with defaults filled in (in place, also returned)."""
    import jsonschema
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    try:
        validate(config, str(schema), set_default=True)
    except WorkflowError as exc:
        # Snakemake raises its own error while handling jsonschema's; the latter has
        # the path of the offending key.
        cause = next(
            (
                e
                for e in (exc.__cause__, exc.__context__, *exc.args)
                if isinstance(e, jsonschema.ValidationError)
            ),
            None,
        )
        if cause is None:
            raise ConfigError(f"invalid config: {exc}") from exc
        best = jsonschema.exceptions.best_match([cause]) if cause.context else cause
        raise ConfigError(_describe(best)) from None
    return config


def check_semantics(config: dict[str, Any], base_dir: str | os.PathLike = ".") -> None:
    """Checks the schema cannot express; each raises :class:`ConfigError`."""
    from lpaf.modeling import ModelNotFoundError, resolve_model
    from lpaf.tasks import get_task

    if config["hub_offline"]:
        for var in OFFLINE_VARIABLES:
            os.environ.setdefault(var, "1")
    if "pipelines" in config and "study" in config:
        from lpaf.pipelines import check

        problems = check(config)
        if problems:
            raise ConfigError("; ".join(problems))
    try:
        resolve_model(config["model"])
    except ModelNotFoundError as exc:
        raise ConfigError(f"config key 'model': {exc}") from None
    if config["data"]["source"] == "local":
        root = Path(base_dir) / config["data"]["local_dir"]
        if not root.is_dir():
            raise ConfigError(
                f"config key 'data.local_dir': directory {str(root)!r} does not exist "
                "(use data.source: hub to load the tasks from the Hugging Face hub)"
            )
        for name in config["tasks"]:
            task = get_task(name)
            for split, file_name in task.local_files:
                path = root / task.local_dir / file_name
                if not path.is_file():
                    raise ConfigError(
                        f"config key 'tasks': task {name} needs {path} ({split} split), "
                        f"which is missing under data.local_dir={config['data']['local_dir']!r}"
                    )


# --- prune / rank_analysis (stages 2 and 3) ---------------------------------------


def check_prune(config: dict[str, Any]) -> None:
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
    labels = [f"{float(d):g}" for d in prune["densities"]]
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


# --- end prune / rank_analysis -----------------------------------------------------


# --- factorize (stage 4) -----------------------------------------------------------


def check_factorize(config: dict[str, Any]) -> None:
    """Checks of the ``factorize`` block a schema cannot express: budgets that would
    share a results path, pruned sources outside the pruning sweep."""
    factorize = config.get("factorize")
    if factorize is None:
        return
    labels = [f"{float(r):g}" for r in factorize["rhos"]]
    if len(set(labels)) != len(labels):
        raise ConfigError(
            f"config key 'factorize.rhos': values {factorize['rhos']} give the same path "
            f"label twice ({labels})"
        )
    prune = config.get("prune")
    if prune is None:
        return
    densities = [f"{float(d):g}" for d in prune["densities"]]
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


# --- end factorize -------------------------------------------------------------------


def validate_config(
    config: dict[str, Any], base_dir: str | os.PathLike = ".", semantics: bool = True
) -> dict[str, Any]:
    config = validate_schema(config)
    check_prune(config)  # prune / rank_analysis
    check_factorize(config)  # factorize
    if semantics:
        check_semantics(config, base_dir)
    return config


def load_config(path: str | os.PathLike, base_dir: str | os.PathLike | None = None) -> dict:
    path = Path(path)
    with path.open() as fh:
        config = yaml.safe_load(fh) or {}
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: the config must be a mapping of keys to values")
    return validate_config(copy.deepcopy(config), base_dir or REPO_ROOT)
