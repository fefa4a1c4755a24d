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

from lpaf.config_errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA = REPO_ROOT / "workflow" / "schemas" / "config.schema.yaml"
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


def stage_checks():
    """The checks of each stage's block a schema cannot express (in stage order)."""
    from lpaf.factorize.config import check as factorize
    from lpaf.prune.config import check as prune

    return (prune, factorize)


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
    backends = config.get("evaluate", {}).get("latency_backends", [])
    if "onnxruntime" in backends:
        import importlib.util

        missing = [m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
        if missing:
            raise ConfigError(
                "config key 'evaluate.latency_backends': onnxruntime needs the onnx extra "
                f"(missing {', '.join(missing)}): pip install -e '.[onnx]', or drop it"
            )
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
            if task.kind == "extractive_qa":
                _check_qa_files(config, task, Path(base_dir))
                continue
            for split, file_name in task.local_files:
                path = root / task.local_dir / file_name
                if not path.is_file():
                    raise ConfigError(
                        f"config key 'tasks': task {name} needs {path} ({split} split), "
                        f"which is missing under data.local_dir={config['data']['local_dir']!r}"
                    )


def _check_qa_files(config: dict[str, Any], task, base_dir: Path) -> None:
    """Local SQuAD needs the dev file under ``qa.local_dir`` (the train file is
    optional: without it the dev file is split by article)."""
    local = config["qa"]["local_dir"]
    dev = base_dir / local / dict(task.local_files)["validation"]
    if not dev.is_file():
        raise ConfigError(
            f"config key 'tasks': task {task.name} needs {dev} (the SQuAD v1.1 dev file), "
            f"which is missing under qa.local_dir={local!r}"
        )


def check_qa(config: dict[str, Any]) -> None:
    """``qa.doc_stride`` below ``qa.max_seq_length`` (windows must advance)."""
    qa = config.get("qa") or {}
    if "doc_stride" in qa and "max_seq_length" in qa and qa["doc_stride"] >= qa["max_seq_length"]:
        raise ConfigError(
            f"config key 'qa.doc_stride': {qa['doc_stride']} must be below "
            f"qa.max_seq_length ({qa['max_seq_length']})"
        )


def validate_config(
    config: dict[str, Any], base_dir: str | os.PathLike = ".", semantics: bool = True
) -> dict[str, Any]:
    config = validate_schema(config)
    for check in stage_checks():
        check(config)
    check_qa(config)
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
