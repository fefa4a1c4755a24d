"""The shipped study configs plan the whole comparison (dry runs, nothing trains)."""

import re

import pytest
import yaml

from lpaf.bench import BACKENDS

pytestmark = pytest.mark.slow


def dry_run(snakemake, repo, tmp_path, configfile, offline=True):
    """Dry run with ``configfile`` (a path or a list of paths, later ones overriding)."""
    proc = snakemake(
        "--dry-run",
        workdir=tmp_path,
        configfiles=[
            repo / c for c in ([configfile] if isinstance(configfile, str) else configfile)
        ],
        offline=offline,
        timeout=600,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    stats = out[out.index("Job stats:") :]
    return out, {k: int(v) for k, v in re.findall(r"^(\w+)\s+(\d+)$", stats, re.M)}


def test_paper_config_plans_every_stage_on_gpus(snakemake, repo, tmp_path):
    out, jobs = dry_run(snakemake, repo, tmp_path, "config/paper.yaml", offline=False)
    tasks, seeds, rhos = 9, 5, 4  # 8 GLUE tasks and SQuAD
    assert jobs["finetune"] == tasks * seeds
    # 10 recovering pipelines (svd, fwsvd, magnitude_svd, lpaf and the 6 other lpaf
    # variants of the ablations) at every rho, task and seed
    assert jobs["recover"] == tasks * seeds * rhos * 10
    assert jobs["prune"] == tasks * seeds * 2 * 4
    for name in (
        "table_main",
        "table_ablation",
        "fig_score_vs_rho",
        "fig_rank_vs_retained",
        "bench",
    ):
        assert jobs[name] == 1
    finetune_block = out[out.index("rule finetune:") :][:2000]
    assert re.search(r"resources: .*gpu=1", finetune_block)
    # the paper target times every backend lpaf.bench knows (issue 15)
    paper = yaml.safe_load((repo / "config/paper.yaml").read_text())
    assert tuple(paper["evaluate"]["latency_backends"]) == BACKENDS


def test_cpu_study_config_plans_main_table_and_ablations(snakemake, repo, tmp_path):
    _, jobs = dry_run(snakemake, repo, tmp_path, "config/cpu-study.yaml")
    assert jobs["finetune"] == 2 * 2
    assert jobs["table_main"] == jobs["table_ablation"] == 1
    assert jobs["recover"] > 0


def test_ablation_overlay_adds_every_ablation_to_the_default(snakemake, repo, tmp_path):
    _, jobs = dry_run(
        snakemake, repo, tmp_path, ["config/config.yaml", "config/ablations_minilm.yaml"]
    )
    assert jobs["finetune"] == 1
    # movement, magnitude and first-order Taylor at the default's one density
    assert jobs["prune"] == 3
    # 11 recovering pipelines: svd, fwsvd, magnitude_svd, lpaf, the 6 lpaf ablations
    # of METHOD.md and lpaf_movement
    assert jobs["recover"] == 11
    assert jobs["table_main"] == jobs["table_ablation"] == 1


@pytest.mark.parametrize("task", ["sst2", "stsb"])
def test_study_overlays_plan_three_seeds_two_rhos(snakemake, repo, tmp_path, task):
    _, jobs = dry_run(
        snakemake, repo, tmp_path, ["config/config.yaml", f"config/study-{task}.yaml"]
    )
    seeds, rhos = 3, 2
    assert jobs["finetune"] == seeds
    # svd, fwsvd, lpaf and its two ablations (lpaf_with_svd, lpaf_plain_recovery)
    # recover at every rho and seed; two pruners at two densities
    assert jobs["recover"] == 5 * rhos * seeds
    assert jobs["prune"] == 2 * 2 * seeds
    # sparsity_aware and svd of both pruned models, svd and fwsvd of the teacher
    assert jobs["factorize"] == (2 * 2 + 2) * rhos * seeds
    assert jobs["table_main"] == jobs["table_ablation"] == 1


@pytest.mark.parametrize("rho", ["0.3", "0.1"])
def test_rho_overlays_plan_half_of_a_study(snakemake, repo, tmp_path, rho):
    _, jobs = dry_run(
        snakemake,
        repo,
        tmp_path,
        ["config/config.yaml", "config/study-sst2.yaml", f"config/study-rho{rho}.yaml"],
    )
    seeds = 3
    assert jobs["finetune"] == seeds  # the teachers, shared by both halves
    assert jobs["recover"] == 5 * seeds and jobs["prune"] == 2 * seeds
    assert jobs["factorize"] == (2 + 2) * seeds


def test_squad_study_plans_the_main_table_methods(snakemake, repo, tmp_path):
    _, jobs = dry_run(snakemake, repo, tmp_path, ["config/config.yaml", "config/squad-study.yaml"])
    rhos = 2
    assert jobs["finetune"] == 1 and jobs["prune"] == 2
    assert jobs["recover"] == 3 * rhos  # svd, fwsvd and lpaf at each rho
    assert jobs["table_main"] == 1


def test_budget_tuning_overlay_prunes_at_two_densities_for_one_rho(snakemake, repo, tmp_path):
    out, jobs = dry_run(
        snakemake,
        repo,
        tmp_path,
        ["config/config.yaml", "config/tune-sst2.yaml", "config/tune-sst2-budget.yaml"],
    )
    assert jobs["finetune"] == 1
    assert jobs["prune"] == 2  # first-order Taylor to 0.3 (lpaf) and to 0.5 (lpaf_density05)
    assert jobs["recover"] == 3  # fwsvd, lpaf, lpaf_density05 at rho 0.3
    # the density knob: factors at rho 0.3 of the model pruned to 0.5
    assert "prune-first_order_taylor-density0.5/sparsity_aware/uniform/rho0.3" in out


def test_long_recovery_overlay_plans_the_low_rank_rows_at_480_steps(snakemake, repo, tmp_path):
    files = [
        "config/config.yaml",
        "config/study-sst2.yaml",
        "config/study-rho0.3.yaml",
        "config/study-long-recovery.yaml",
    ]
    _, jobs = dry_run(snakemake, repo, tmp_path, files)
    seeds = 3
    assert jobs["finetune"] == seeds and jobs["prune"] == seeds  # first-order Taylor only
    assert jobs["recover"] == 3 * seeds  # svd, fwsvd, lpaf at rho 0.3
    assert "table_ablation" not in jobs
    overlay = yaml.safe_load((repo / files[-1]).read_text())
    batch = yaml.safe_load((repo / files[0]).read_text())["recover"]["batch_size"]
    assert overlay["recover"]["max_train_examples"] == 480 * batch
