"""lpaf plan: the dry-run parser against Snakemake's own job counts, the per-job
estimates against their closed form, and `lpaf plan` end to end on the tiny config."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from collections import Counter

import pytest

from lpaf.config import validate_config
from lpaf.plan import (
    COMPILE_PER_SHAPE_S,
    ONNX_EXPORT_S,
    Costs,
    Job,
    bench_models,
    build_plan,
    estimate_job,
    job_steps,
    parse_dry_run,
)

DRY_RUN = """\
Building DAG of jobs...
Job stats:
job          count
---------  -------
finetune         2
evaluate         1
all              1
total            4


[Tue Dec  1 21:42:51 2026]
rule finetune:
    output: results/m/MRPC/finetune/seed1/model
    log: results/logs/m/MRPC/finetune/seed1.log
    jobid: 3
    reason: Missing output files: results/m/MRPC/finetune/seed1/model
    wildcards: model=m, task=MRPC, seed=1
    threads: 2
    resources: tmpdir=/tmp, runtime=230, mem_mb=6000
Shell command: None

[Tue Dec  1 21:42:51 2026]
rule finetune:
    output: results/m/RTE/finetune/seed1/model
    jobid: 4
    wildcards: model=m, task=RTE, seed=1
Shell command: None

[Tue Dec  1 21:42:51 2026]
localrule evaluate:
    input: results/m/MRPC/finetune/seed1/model
    wildcards: model=m, task=MRPC, run=finetune/seed1
    resources: tmpdir=/tmp
Shell command: None

[Tue Dec  1 21:42:55 2026]
rule all:
    input: results/tables/finetune.csv
    jobid: 0
    reason: Input files updated by another job: results/tables/finetune.csv
    resources: tmpdir=/tmp
Shell command: None
Job stats:
job          count
"""


def test_parse_dry_run_reads_rules_and_wildcards():
    jobs = parse_dry_run(DRY_RUN)
    assert [j.rule for j in jobs] == ["finetune", "finetune", "evaluate", "all"]
    assert jobs[0].wildcards == {"model": "m", "task": "MRPC", "seed": "1"}
    assert jobs[1].wildcards["task"] == "RTE"
    assert jobs[2].wildcards["run"] == "finetune/seed1"
    assert jobs[3].wildcards == {}


@pytest.fixture(scope="module")
def config(repo):
    return validate_config({}, base_dir=repo, semantics=False)


def costs(**overrides) -> Costs:
    base = dict(
        threads=2,
        process_start=4.0,
        script_start=1.5,
        model_load=2.0,
        data={"MRPC": 3.0},
        train_examples={"MRPC": {"finetune": 3668, "prune": 3668, "recover": 3668}},
        eval_examples={"MRPC": 408},
        finetune_step=1.0,
        prune_step={"movement": 1.5},
        recover_step={"mixed_rank": 0.8, "plain": 0.7},
        eval_per_example=0.01,
        gradient_batch=1.2,
        latency_pass={"MRPC": {"1": 0.02, "32": 0.4}, "SST-2": {"1": 0.02, "32": 0.4}},
        svd_all=2.0,
        als_iteration_all=10.0,
    )
    base.update(overrides)
    return Costs(**base)


def test_training_steps_are_the_stages_own(config):
    """MRPC's 3,668 training pairs at batch 32: 115 steps an epoch (docs: 345 steps of
    fine-tuning in 3 epochs, 115 of pruning in one)."""
    c = costs()
    assert job_steps(config, Job("finetune", {"task": "MRPC"}), c) == 3 * math.ceil(3668 / 32)
    prune = dict(config["prune"], epochs=1)
    assert job_steps({**config, "prune": prune}, Job("prune", {"task": "MRPC"}), c) == 115
    capped = {**config, "recover": dict(config["recover"], max_steps=60)}
    assert job_steps(capped, Job("recover", {"task": "MRPC"}), c) == 60
    assert job_steps(config, Job("evaluate", {"task": "MRPC"}), c) == 0


def test_estimates_are_the_sum_of_their_costs(config):
    c = costs()
    dev = 408 * 0.01
    start = 4.0 + 1.0  # process start + Snakemake's per-job overhead
    finetune = estimate_job(config, Job("finetune", {"task": "MRPC"}), c)
    assert finetune == pytest.approx(start + 2.0 + 3.0 + 345 * 1.0 + 2 * dev)
    periodic = {**config, "finetune": dict(config["finetune"], eval_every_steps=100)}
    with_evals = estimate_job(periodic, Job("finetune", {"task": "MRPC"}), c)
    assert with_evals - finetune == pytest.approx(3 * dev)  # steps 100, 200, 300
    cfg = {**config, "factorize": dict(config["factorize"], n_iter=5, fisher_batches=32)}
    sa = estimate_job(
        cfg,
        Job("factorize", {"task": "MRPC", "method": "sparsity_aware", "rank_rule": "uniform"}),
        c,
    )
    svd = estimate_job(
        cfg, Job("factorize", {"task": "MRPC", "method": "svd", "rank_rule": "global_energy"}), c
    )
    assert sa - svd == pytest.approx(5 * 10.0)
    grads = estimate_job(cfg, Job("factorize_gradients", {"task": "MRPC"}), c)
    assert grads == pytest.approx(start + 2.0 + 3.0 + 32 * 1.2)
    ev = config["evaluate"]
    evaluate = estimate_job(config, Job("evaluate", {"task": "MRPC", "run": "x"}), c)
    reps = ev["latency_warmup"] + ev["latency_repeats"]
    assert evaluate == pytest.approx(start + 2.0 + 3.0 + dev + reps * 0.42)
    assert estimate_job(config, Job("table_main", {}), c) == pytest.approx(1.5 + 1.0)
    assert estimate_job(config, Job("all", {}), c) == 0.0


def test_bench_counts_every_main_table_model_of_one_seed_in_every_backend(config):
    """The bench rule: fine-tuned once, each other main-table row at every rho, per
    task; per model a load, (warm-up + repeats + 1) passes of each shape per backend,
    plus the export for onnxruntime and one compile per shape for torch.compile."""
    c = costs()
    study = dict(config["study"], main_table=["fine-tuned", "svd", "lpaf"], rhos=[0.3, 0.1])
    ev = dict(config["evaluate"], latency_warmup=2, latency_repeats=5)
    passes = (2 + 5 + 1) * 0.42
    start = 4.0 + 1.0
    for backends, per_model in (
        (["eager"], 2.0 + passes),
        (["eager", "onnxruntime"], 2.0 + 2 * passes + ONNX_EXPORT_S),
        (["compile"], 2.0 + passes + 2 * COMPILE_PER_SHAPE_S),  # batch sizes 1 and 32
    ):
        cfg = {
            **config,
            "tasks": ["MRPC", "SST-2"],
            "study": study,
            "evaluate": dict(ev, latency_backends=backends, latency_batch_sizes=[1, 32]),
        }
        assert bench_models(cfg) == 2 * (1 + 2 * 2)
        assert estimate_job(cfg, Job("bench", {}), c) == pytest.approx(start + 10 * per_model)


def test_recover_uses_the_step_cost_of_its_pipelines_schedule(config):
    c = costs()
    lpaf = estimate_job(config, Job("recover", {"task": "MRPC", "pipeline": "lpaf"}), c)
    plain = estimate_job(config, Job("recover", {"task": "MRPC", "pipeline": "svd"}), c)
    assert config["pipelines"]["lpaf"]["recover"] == "mixed_rank"
    assert config["pipelines"]["svd"]["recover"] == "plain"
    steps = job_steps(config, Job("recover", {"task": "MRPC"}), c)
    assert lpaf - plain == pytest.approx(steps * (0.8 - 0.7))


def test_jobs_share_the_cores_in_slots_of_threads(config):
    jobs = [Job("finetune", {"task": "MRPC"})] * 4 + [Job("table_main", {})]
    c = costs()
    one = estimate_job(config, jobs[0], c)
    serial = build_plan(config, jobs, c, cores=2, dag_seconds=5.0)  # threads 2: one slot
    assert serial.parallel_jobs == 1
    assert serial.total_seconds == pytest.approx(5.0 + 4 * one + 2.5)
    wide = build_plan(config, jobs, c, cores=8, dag_seconds=5.0)
    assert wide.parallel_jobs == 4
    assert wide.total_seconds == pytest.approx(5.0 + (4 * one + 2.5) / 4)
    rows = {r["rule"]: r for r in wide.per_rule}
    assert rows["finetune"]["jobs"] == 4 and rows["finetune"]["steps"] == 4 * 345
    # never less than the longest job
    few = build_plan(config, jobs[:1], c, cores=8, dag_seconds=0.0)
    assert few.total_seconds == pytest.approx(one)


@pytest.mark.slow
def test_lpaf_plan_on_the_tiny_workflow(tmp_path, tiny_workflow_args, snakemake):
    """`lpaf plan` lists every job Snakemake's dry run counts, with the tiny config's
    training steps, and writes the same numbers to --json."""
    args = tiny_workflow_args
    env = dict(os.environ, TQDM_DISABLE="1")
    dry = snakemake("--dry-run", workdir=tmp_path, cores=1, env={"TQDM_DISABLE": "1"})
    # Snakemake's own job-stats table: the second source of the job counts
    stats = dry.stdout.split("Job stats:")[1].split("\n\n")[0]
    expected = {
        m.group(1): int(m.group(2))
        for m in re.finditer(r"^(\S+)\s+(\d+)$", stats, flags=re.M)
        if m.group(1) != "total"
    }
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "lpaf.cli",
            "plan",
            "--cores",
            "1",
            "--json",
            str(tmp_path / "p.json"),
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    plan = json.loads((tmp_path / "p.json").read_text())
    assert {r["rule"]: r["jobs"] for r in plan["per_rule"]} == expected
    assert Counter(j["rule"] for j in plan["jobs"]) == Counter(expected)
    steps = {r["rule"]: r["steps"] for r in plan["per_rule"]}
    # tiny.yaml: 6 fine-tuning steps per task x seed, 8 pruning steps per method
    assert steps["finetune"] == 6 * expected["finetune"]
    assert steps["prune"] == 8 * expected["prune"]
    assert plan["costs"]["precision"] == "fp32"  # tiny.yaml sets it
    assert plan["costs"]["finetune_step"] > 0
    assert plan["total_seconds"] >= plan["serial_seconds"] > 0
    text = out.stdout
    assert "estimated wall time" in text and "precision: fp32" in text
    for rule, n in expected.items():
        assert re.search(rf"^{re.escape(rule)}\s+{n}\s", text, flags=re.M), rule
    assert not any((tmp_path / "results").glob("**/metrics.json"))  # nothing ran


@pytest.mark.slow
def test_lpaf_plan_names_an_invalid_config_without_a_traceback(tmp_path, tiny_workflow_args):
    """A config the workflow rejects (Snakemake prints that on stdout) reaches the user
    as one error naming the key, with exit status 1 and no Python traceback."""
    out = subprocess.run(
        [sys.executable, "-m", "lpaf.cli", "plan", "--cores", "1", *tiny_workflow_args]
        + ["--config", "seeds=[one]"],
        capture_output=True,
        text=True,
        env=dict(os.environ, TQDM_DISABLE="1"),
    )
    assert out.returncode == 1
    assert out.stderr.startswith("lpaf plan: error: snakemake --dry-run")
    assert "seeds.0" in out.stderr and "expected integer" in out.stderr
    assert "Traceback" not in out.stderr


def test_latency_is_timed_at_each_tasks_own_length(config, monkeypatch):
    """evaluate and bench time a QA model at qa.max_seq_length and a GLUE model at
    evaluate.latency_seq_length (lpaf.evaluate.stage.latency_seq_length); the plan's
    probe passes are measured at those lengths, once per distinct length, and each
    task's estimate uses its own."""
    from types import SimpleNamespace

    import lpaf.evaluate
    from lpaf.plan import _measure_latency, _Probe

    timed = []

    def fake_latency(model, batch_sizes, seq_length, **kw):
        timed.append((seq_length, tuple(batch_sizes)))
        return {f"latency_ms_bs{bs}": float(seq_length * bs) for bs in batch_sizes}

    monkeypatch.setattr(lpaf.evaluate, "measure_latency", fake_latency)
    cfg = {
        **config,
        "qa": dict(config.get("qa") or {}, max_seq_length=256),
        "evaluate": dict(config["evaluate"], latency_seq_length=128, latency_batch_sizes=[1, 32]),
    }
    probe = _Probe(
        cfg, [], Counter(evaluate=1), "cpu", None, None, SimpleNamespace(precision="fp32")
    )
    c = Costs()
    _measure_latency(probe, ["MRPC", "SQuAD", "SST-2"], c)
    assert timed == [(128, (1,)), (128, (32,)), (256, (1,)), (256, (32,))]
    assert c.latency_pass["SQuAD"] == {"1": 0.256, "32": 256 * 32 / 1000}
    assert c.latency_pass["SST-2"] == c.latency_pass["MRPC"] == {"1": 0.128, "32": 4.096}
    reps = cfg["evaluate"]["latency_warmup"] + cfg["evaluate"]["latency_repeats"]
    qa = estimate_job(cfg, Job("evaluate", {"task": "SQuAD", "run": "x"}), c)
    glue = estimate_job(cfg, Job("evaluate", {"task": "MRPC", "run": "x"}), c)
    assert qa - glue == pytest.approx(reps * (0.256 + 8.192 - 0.128 - 4.096))
