"""End to end: the Snakemake workflow on the tiny test config, offline, in a temporary
working directory; then the files it made, a no-op rerun, and the report."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow


def snakemake(repo, workdir, *args, check=True):
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(repo / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(repo / "tests/config/tiny.yaml"),
        "--cores",
        "2",
        *args,
    ]
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc


@pytest.fixture(scope="module")
def finished(repo, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("workflow")
    snakemake(repo, workdir)
    return workdir


def test_outputs_of_every_run(finished):
    results = finished / "results" / "tiny-bert"
    for task, dev_rows in (("MRPC", 408), ("STS-B", 1500)):
        for seed in (1, 2):
            run = results / task / "finetune" / f"seed{seed}"
            metrics = json.loads((run / "metrics.json").read_text())
            assert metrics["task"] == task and metrics["seed"] == seed
            assert metrics["steps"] == 6 and metrics["train_examples"] == 48
            assert 0.0 <= abs(metrics["main"]) <= 1.0
            log = pd.read_csv(run / "train_log.csv")
            assert log["step"].tolist() == list(range(1, 7))
            predictions = pd.read_csv(run / "predictions.tsv", sep="\t")
            assert len(predictions) == dev_rows
            evaluation = json.loads((run / "evaluation.json").read_text())
            # the reloaded model scores what the trained model scored
            assert evaluation["main"] == pytest.approx(metrics["main"], abs=1e-6)
            assert evaluation["parameters"]["total"] > 0
            assert set(evaluation["latency"]) >= {"latency_ms_bs1", "latency_ms_bs4"}
            assert (run / "model" / "model.safetensors").exists()
            assert (run / "model" / "tokenizer.json").exists()
            assert not (run / "checkpoint").exists()  # removed once the result is complete
    leftovers = [p for p in finished.rglob("*") if ".tmp" in p.name]
    assert leftovers == []


def test_table_has_seed_rows_and_summary(finished):
    table = pd.read_csv(finished / "results/tables/finetune.csv", dtype={"seed": str})
    assert len(table) == 2 * (2 + 2)  # tasks x (seeds + mean + std)
    for task in ("MRPC", "STS-B"):
        rows = table[table.task == task].set_index("seed")
        assert rows.loc["mean", "score"] == pytest.approx(rows.loc[["1", "2"], "score"].mean())
        assert rows.loc["std", "score"] == pytest.approx(rows.loc[["1", "2"], "score"].std())
    assert "± " in (finished / "results/tables/finetune.md").read_text()
    assert (finished / "results/figures/finetune_curves.png").stat().st_size > 1000


def test_rerun_does_nothing(repo, finished):
    proc = snakemake(repo, finished, "--dry-run")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_report_builds_offline(repo, finished):
    snakemake(repo, finished, "--report", str(finished / "report.html"))
    html = (finished / "report.html").read_text(errors="replace")
    assert "finetune_curves.png" in html and "finetune.csv" in html


def test_bad_config_stops_before_any_job(repo, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("device: gpu\n")
    proc = snakemake(repo, tmp_path, "--configfile", str(bad), check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "device" in out and "'auto', 'cpu', 'cuda'" in out
    assert not (Path(tmp_path) / "results").exists()
