"""Every rule declares threads and resources, derived from the config; a dry run
through the SLURM profile plans each job with them (GPU only for device: cuda)."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Rules that load a model and compute on the configured device.
GPU_RULES = {"finetune", "evaluate", "prune", "factorize", "recover"}
RULE_FILES = sorted((REPO / "workflow" / "rules").glob("*.smk"))


def rule_blocks(text: str):
    """(name, body) of every rule in a .smk file."""
    parts = re.split(r"^rule (\w+):\n", text, flags=re.M)
    return list(zip(parts[1::2], parts[2::2], strict=True))


def test_every_rule_declares_threads_and_resources():
    rules = [(f.name, name, body) for f in RULE_FILES for name, body in rule_blocks(f.read_text())]
    assert len(rules) >= 4
    for file, name, body in rules:
        body = body.split("\nrule ")[0]
        assert re.search(r"^    threads:", body, re.M), f"{file}: rule {name} has no threads:"
        assert re.search(r"^    resources:", body, re.M), f"{file}: rule {name} has no resources:"
        assert re.search(r"^    log:", body, re.M), f"{file}: rule {name} has no log:"


def dry_run(snakemake, tmp_path, *config):
    profile = tmp_path / "profile"
    profile.mkdir()
    text = (REPO / "profiles/slurm/config.yaml").read_text()
    text = text.replace("CHANGE_ME_PARTITION", "gpu_or_cpu").replace("CHANGE_ME_ACCOUNT", "acct")
    (profile / "config.yaml").write_text(text)
    proc = snakemake(
        "--profile",
        str(profile),
        "--dry-run",
        "--config",
        *config,
        workdir=tmp_path / "run",
        cores=None,
        cwd=REPO,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    jobs = re.findall(r"^rule (\w+):\n(.*?)(?=^\S|\Z)", proc.stdout + proc.stderr, re.M | re.S)
    parsed = []
    for name, body in jobs:
        match = re.search(r"resources: (.*)", body)
        if match:
            resources = dict(kv.split("=", 1) for kv in match.group(1).split(", "))
            parsed.append((name, resources))
    return parsed


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_dry_run_plans_resources_from_the_config(snakemake, tmp_path, device):
    pytest.importorskip("snakemake_executor_plugin_slurm")
    jobs = dry_run(snakemake, tmp_path, f"device={device}")
    names = {name for name, _ in jobs}
    assert {"finetune", "evaluate"} <= names
    for name, resources in jobs:
        assert "mem_mb" in resources and "runtime" in resources, (name, resources)
        assert resources.get("slurm_partition") == "gpu_or_cpu"
        wants_gpu = device == "cuda" and name in GPU_RULES
        assert ("gpu" in resources) == wants_gpu, (name, resources)
