"""The method comparison end to end (tiny model, one task, one seed, one rho): the
recover rule, the main and ablation tables, the score-vs-rho figure; a rerun plans
nothing, and a change to plotting code alone reruns only that plot."""

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch

import lpaf

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def study(study_workflow):
    """The session's copy of the workflow (so a test may edit its plotting code) and a
    finished run: the tiny run, copied, then rule all with tests/config/tiny_study.yaml
    (conftest's study_workflow)."""
    return study_workflow.code, study_workflow.workdir


def test_main_table_rows_and_values(study):
    _, workdir = study
    table = pd.read_csv(workdir / "results/tables/main.csv")
    assert list(table["pipeline"]) == ["fine-tuned", "svd", "first_order_taylor", "lpaf"]
    for row in table.itertuples():
        final = {
            "fine-tuned": "finetune",
            "svd": "recover/svd/rho0.5",
            "first_order_taylor": "prune/first_order_taylor/density0.5",
            "lpaf": "recover/lpaf/rho0.5",
        }
        ev = json.loads(
            (
                workdir / f"results/tiny-bert/MRPC/{final[row.pipeline]}/seed1/evaluation.json"
            ).read_text()
        )
        assert row.score_mean == pytest.approx(100 * ev["main"])
        assert row.rho_achieved == pytest.approx(ev["parameters"]["retained_fraction"])
        assert row.precision == ev["precision"] == "fp32"
    lowrank = table.set_index("pipeline").loc[["svd", "lpaf"], "rho_achieved"]
    assert (lowrank <= 0.5).all() and (lowrank > 0.4).all()
    md = (workdir / "results/tables/main.md").read_text()
    assert "## rho = 0.5" in md
    # the best compressed row is bold unless every one is collapsed in every seed
    compressed = table[table["pipeline"] != "fine-tuned"]
    assert ("**" in md) == bool((compressed["collapsed"] < 1).any())
    assert "Evaluated with precision fp32; device cpu." in md
    assert r"\toprule" in (workdir / "results/tables/main.tex").read_text()
    assert (workdir / "results/figures/score_vs_rho.png").stat().st_size > 1000


def test_ablation_has_init_and_final(study):
    _, workdir = study
    table = pd.read_csv(workdir / "results/tables/ablation.csv").set_index("pipeline")
    assert set(table.index) == {"lpaf", "lpaf_plain_recovery"}
    init = json.loads(
        (
            workdir
            / "results/tiny-bert/MRPC/factorize/prune-first_order_taylor-density0.5/sparsity_aware"
            "/uniform/rho0.5/seed1/metrics_init.json"
        ).read_text()
    )
    assert table.loc["lpaf", "init_score"] == pytest.approx(100 * init["main"])


def test_recovered_model_is_a_compressed_artifact(study):
    _, workdir = study
    run = workdir / "results/tiny-bert/MRPC/recover/lpaf/rho0.5/seed1"
    record = json.loads((run / "model/lpaf.json").read_text())
    assert record["stage"] == "recover" and record["schedule"] == "mixed_rank"
    log = pd.read_csv(run / "train_log.csv")
    assert log["mixed_rank_p"].iloc[0] > 0 and log["mixed_rank_p"].iloc[-1] == 0
    model = lpaf.load_model(run / "model")
    assert any(type(m).__name__ == "LowRankLinear" for m in model.modules())
    assert not any(type(m).__name__ == "MixedRankLinear" for m in model.modules())
    # the reloaded model reproduces the saved dev logits
    from lpaf.data import collator, load_task, tokenize
    from lpaf.evaluate import predict
    from lpaf.modeling import load_tokenizer
    from lpaf.tasks import get_task

    task = get_task("MRPC")
    tokenizer = load_tokenizer(str(run / "model"))
    dev = tokenize(
        load_task(task, local_dir=study[0] / "resources/glue")["validation"], tokenizer, task, 32
    )
    logits = predict(model, dev, collator(tokenizer), batch_size=256)
    saved = pd.read_csv(run / "predictions.tsv", sep="\t")
    expected = saved[[f"logit_{n}" for n in task.label_names]].to_numpy()
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
    assert torch.is_tensor(next(model.parameters()))


def test_constant_predictor_and_collapse_flags_match_the_run_files(study):
    from lpaf.data import load_task
    from lpaf.evaluate.constant import COLLAPSED_MARK, CONSTANT, constant_metrics, is_collapsed

    code, workdir = study
    data = load_task("MRPC", local_dir=code / "resources/glue")
    expected = constant_metrics("MRPC", data["train"]["label"], data["validation"]["label"])
    table = pd.read_csv(workdir / "results/tables/main.csv").set_index("pipeline")
    md = (workdir / "results/tables/main.md").read_text()
    constant_line = next(line for line in md.splitlines() if line.startswith(f"| {CONSTANT}"))
    assert f"{100 * expected['main']:.1f}" in constant_line
    for path in sorted(workdir.glob("results/tiny-bert/MRPC/**/seed1/evaluation.json")):
        ev = json.loads(path.read_text())
        assert ev["constant"]["validation"] == pytest.approx(expected)
        dev = ev["metrics"]["validation"]
        collapsed = is_collapsed(dev["main"], expected["main"], dev["top_class_share"])
        assert ev["collapsed"] is collapsed, path
    for pipeline, row in table.iterrows():
        assert row["constant_score"] == pytest.approx(100 * expected["main"])
        cells = [line for line in md.splitlines() if line.startswith(f"| {pipeline} ")]
        assert (COLLAPSED_MARK in cells[0]) == (row["collapsed"] > 0), (pipeline, cells)


def test_recovery_logs_fidelity_and_the_curves_figure(study):
    _, workdir = study
    run = workdir / "results/tiny-bert/MRPC/recover/lpaf/rho0.5/seed1"
    evals = pd.read_csv(run / "train_log.csv").dropna(subset=["eval_main"])
    assert len(evals) >= 1
    for column in ("eval_dev_loss", "eval_agreement", "eval_kl_from_reference"):
        assert evals[column].notna().all(), column
    assert (evals["eval_kl_from_reference"] >= 0).all()
    assert evals["eval_agreement"].between(0, 1).all()
    # the last evaluation is the final model's: its dev score is the one in metrics.json
    metrics = json.loads((run / "metrics.json").read_text())
    assert evals["eval_main"].iloc[-1] == pytest.approx(metrics["main"])
    assert (workdir / "results/figures/recovery_curves.png").stat().st_size > 1000


def test_bench_times_every_main_table_model_against_the_fine_tuned_one(study):
    """The bench rule: each main-table model (seed 1) in each configured backend at
    each batch size; its MAC ratio is the whole-model MACs of the saved model against
    the fine-tuned one, its latency ratio against the fine-tuned model in the same
    backend and batch size."""
    from lpaf.accounting import whole_model_macs
    from lpaf.targets import DEFAULT_TARGET_PATTERNS

    _, workdir = study
    table = pd.read_csv(workdir / "results/tables/latency.csv")
    table = table[table["precision"] == "fp32"]  # bf16 only where this CPU has it
    main = pd.read_csv(workdir / "results/tables/main.csv")
    assert list(dict.fromkeys(table["pipeline"])) == list(main["pipeline"])
    assert set(table["backend"]) == {"eager", "onnxruntime"}
    assert len(table) == len(main) * 2 * 2  # backends x batch sizes 1 and 4
    assert set(table["batch_size"]) == {1, 4} and (table["seq_len"] == 32).all()
    assert np.allclose(table.loc[table["pipeline"] == "fine-tuned", "latency_ratio"], 1.0)
    assert (table["latency_ms"] > 0).all()
    final = {"fine-tuned": "finetune", "first_order_taylor": "prune/first_order_taylor/density0.5"}
    runs = workdir / "results/tiny-bert/MRPC"
    macs = {}
    for pipeline in main["pipeline"]:
        path = runs / final.get(pipeline, f"recover/{pipeline}/rho0.5") / "seed1/model"
        macs[pipeline] = whole_model_macs(lpaf.load_model(path), 32, DEFAULT_TARGET_PATTERNS)
    for row in table.itertuples():
        expected = macs[row.pipeline]["total"] / macs["fine-tuned"]["total"]
        assert row.mac_ratio == pytest.approx(expected)
    assert table.loc[table["pipeline"] == "lpaf", "mac_ratio"].max() < 0.9
    assert (workdir / "results/figures/latency_vs_macs.png").stat().st_size > 1000


def test_rerun_plans_nothing_and_plot_code_change_reruns_only_the_plot(study_workflow):
    def snakemake(*args):
        proc = study_workflow.snakemake(*args)
        return proc.stdout + proc.stderr

    assert "Nothing to be done" in snakemake("--dry-run")
    script = study_workflow.code / "workflow/scripts/fig_score_vs_rho.py"
    original = script.read_text()
    try:
        script.write_text(original + "\n# a change to plotting code\n")
        out = snakemake("--dry-run")
    finally:  # the session's other runs share the copy
        script.write_text(original)
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", out, re.M))
    jobs.pop("total", None)
    assert jobs == {"fig_score_vs_rho": "1", "all": "1"}, out[-3000:]
