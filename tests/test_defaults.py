"""One source for every default: the schema (workflow/schemas/config.schema.yaml).

The config dataclasses (TrainSettings, PruneConfig, FactorizeConfig, RecoverConfig,
EvaluateConfig) must default to what the schema fills in, the method names of the
registry (lpaf.methods) must be the schema's enums, and config/README.md must document
every key with the schema's default.
"""

from __future__ import annotations

import dataclasses
import re

import pytest
import yaml

from lpaf import methods
from lpaf.config import SCHEMA, validate_schema
from lpaf.evaluate.stage import EvaluateConfig
from lpaf.factorize.stage import FactorizeConfig
from lpaf.prune.config import PruneConfig
from lpaf.recover.config import RecoverConfig
from lpaf.train import TrainSettings

DEFAULTS = validate_schema({})


def _plain(value):
    """Tuples as lists, so dataclass defaults compare with YAML values."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def _field_defaults(cls) -> dict:
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = _plain(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = _plain(f.default_factory())
    return out


# (dataclass, schema block, fields that are per run, not config keys)
CASES = [
    (TrainSettings, "finetune", ()),
    (EvaluateConfig, "evaluate", ()),
    (FactorizeConfig, "factorize", ()),
    (PruneConfig, "prune", ("method", "final_density", "target_patterns")),
    (RecoverConfig, "recover", ("schedule",)),
]


@pytest.mark.parametrize("cls,block,per_run", CASES, ids=[c[1] for c in CASES])
def test_dataclass_defaults_are_the_schemas(cls, block, per_run):
    schema = DEFAULTS[block]
    fields = _field_defaults(cls)
    for name, value in fields.items():
        if name in per_run:
            continue
        assert name in schema, f"{cls.__name__}.{name} is not a key of config {block!r}"
        assert value == schema[name], f"{cls.__name__}.{name}: {value!r} != schema {schema[name]!r}"
    if cls is not TrainSettings:  # TrainSettings is a part of its blocks, the others whole
        dataclass_keys = set(fields) - set(per_run)
        train_keys = set(_field_defaults(TrainSettings))
        assert set(schema) - dataclass_keys - train_keys - {"methods", "densities"} <= {
            "init",
            "distillation",
        }


def test_target_patterns_default_is_the_schemas():
    from lpaf.targets import DEFAULT_TARGET_PATTERNS

    assert list(DEFAULT_TARGET_PATTERNS) == DEFAULTS["target_modules"]
    assert list(PruneConfig().target_patterns) == DEFAULTS["target_modules"]


def _enum(*path):
    node = yaml.safe_load(SCHEMA.read_text())
    defs = node["$defs"]
    for key in path:
        node = node[key]
        if "$ref" in node:
            node = defs[node["$ref"].rsplit("/", 1)[-1]]
    if "items" in node:
        node = node["items"]
    return node["enum"]


def test_the_registry_is_the_schemas_enums():
    assert _enum("properties", "factorize", "properties", "methods") == list(
        methods.FACTORIZE_METHODS
    )
    assert _enum("properties", "factorize", "properties", "rank_rule") == list(methods.RANK_RULES)
    assert set(_enum("properties", "prune", "properties", "methods")) == set(methods.PRUNE_METHODS)
    recover = _enum("$defs", "pipeline", "properties", "recover")
    assert [s for s in recover if s is not None] == list(methods.RECOVER_SCHEDULES)


def _readme_rows(repo) -> dict[str, dict[str, str]]:
    """``{section: {key: default cell}}`` of config/README.md's key tables."""
    sections: dict[str, dict[str, str]] = {}
    section = None
    for line in (repo / "config/README.md").read_text().splitlines():
        heading = re.match(r"^## (?:`(\w+)`|Top level)", line)
        if heading:
            section = heading.group(1) or ""
            sections[section] = {}
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if section is None or len(cells) < 3 or not cells[0].startswith("`"):
            continue
        keys = re.findall(r"`([^`]+)`", cells[0])
        for key in keys:
            brace = re.match(r"^(\w+)\.\{([\w,]+)\}$", key)
            if brace:  # distillation.{enabled,temperature,alpha} with "true, 2.0, 0.5"
                values = re.findall(r"`([^`]+)`", cells[1])
                parts = values[0].split(",") if values else [cells[1]] * 3
                for sub, value in zip(brace.group(2).split(","), parts, strict=False):
                    sections[section][f"{brace.group(1)}.{sub}"] = f"`{value.strip()}`"
            else:
                sections[section][key] = cells[1]
    return sections


def _flat(block: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in block.items():
        if isinstance(value, dict) and value and key not in ("methods_by_source",):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


# blocks whose training keys the README documents in prose ("as in finetune")
TRAIN_KEYS_IN_PROSE = {"recover"}
NOT_TABLED = {"pipelines"}  # a mapping of named pipelines, documented as its own table


def test_config_readme_documents_every_key_with_its_default(repo):
    rows = _readme_rows(repo)
    train_keys = set(_field_defaults(TrainSettings))
    missing, wrong = [], []
    for block, value in DEFAULTS.items():
        if block in NOT_TABLED:
            continue
        if isinstance(value, dict) and block not in ("data",):
            documented = rows.get(block, {})
            for key, default in _flat(value).items():
                if block in TRAIN_KEYS_IN_PROSE and key in train_keys:
                    assert default == DEFAULTS["finetune"][key], (block, key)
                    continue
                cell = documented.get(key)
                if cell is None:
                    missing.append(f"{block}.{key}")
                elif cell.startswith("as in `finetune`"):
                    if default != DEFAULTS["finetune"][key]:
                        wrong.append(f"{block}.{key}: README says as in finetune")
                else:
                    _check_cell(f"{block}.{key}", cell, default, wrong)
        else:
            flat = _flat({block: value}) if isinstance(value, dict) else {block: value}
            for key, default in flat.items():
                cell = rows[""].get(key)
                if cell is None:
                    missing.append(key)
                elif key != "target_modules":  # prose: BERT's q, k, v, ...
                    _check_cell(key, cell, default, wrong)
    assert not missing, f"config/README.md does not document {missing}"
    assert not wrong, f"config/README.md states other defaults than the schema: {wrong}"


def _check_cell(key: str, cell: str, default, wrong: list[str]) -> None:
    first = re.match(r"^`([^`]*)`", cell)
    if first is None:
        wrong.append(f"{key}: no default in {cell!r}")
        return
    stated = yaml.safe_load(first.group(1))
    if isinstance(default, float) or isinstance(stated, float):
        ok = stated is not None and default is not None and float(stated) == float(default)
    else:
        ok = stated == default
    if not ok:
        wrong.append(f"{key}: README {stated!r}, schema {default!r}")
