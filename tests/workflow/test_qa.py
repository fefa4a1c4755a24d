"""Extractive QA end to end (tiny model, SQuAD's offline split, one seed): every
stage the main and ablation tables need ran, the tables' EM and F1 columns are the
run files' numbers, the constant row is the first-sentence answer, the recovered
model is a compressed QA artifact, and a rerun plans nothing."""

import json

import pandas as pd
import pytest

import lpaf

pytestmark = pytest.mark.slow

RUNS = {
    "fine-tuned": "finetune/seed1",
    "svd": "recover/svd/rho0.5/seed1",
    "lpaf": "recover/lpaf/rho0.5/seed1",
}


def _read(workdir, run, name):
    return json.loads((workdir / "results/tiny-bert/SQuAD" / run / name).read_text())


def test_main_table_em_and_f1_are_the_run_files(qa_workflow):
    workdir = qa_workflow.workdir
    table = pd.read_csv(workdir / "results/tables/main.csv")
    assert set(table["task"]) == {"SQuAD EM", "SQuAD F1"}
    for pipeline, run in RUNS.items():
        ev = _read(workdir, run, "evaluation.json")
        assert ev["main_metric"] == "f1"
        dev = ev["metrics"]["validation"]
        rows = table[table["pipeline"] == pipeline].set_index("task")
        assert rows.loc["SQuAD F1", "score_mean"] == pytest.approx(100 * dev["f1"])
        assert rows.loc["SQuAD EM", "score_mean"] == pytest.approx(100 * dev["exact_match"])
        constant = ev["constant"]["validation"]
        assert rows.loc["SQuAD F1", "constant_score"] == pytest.approx(100 * constant["f1"])
        # latency timed at the QA window length, not evaluate.latency_seq_length
        assert ev["latency"]["latency_seq_length"] == 64
    bench = pd.read_csv(workdir / "results/tables/latency.csv")
    assert set(bench["task"]) == {"SQuAD"} and (bench["seq_len"] == 64).all()
    md = (workdir / "results/tables/main.md").read_text()
    assert "| SQuAD EM" in md and "| SQuAD F1" in md and "constant" in md


def test_runs_record_the_split_and_score_the_questions(qa_workflow):
    workdir = qa_workflow.workdir
    metrics = _read(workdir, RUNS["fine-tuned"], "metrics.json")
    split = metrics["qa_split"]
    assert split["train_articles"] == 47 and len(split["dev_articles"]) == 1
    predictions = pd.read_csv(
        workdir / "results/tiny-bert/SQuAD/finetune/seed1/predictions.tsv", sep="\t"
    )
    assert len(predictions) == split["dev_questions"]  # one row per question, not window
    assert {"id", "prediction", "answers"} <= set(predictions.columns)
    # the fidelity of the factorized initialization is measured on spans
    init = json.loads(
        (
            workdir / "results/tiny-bert/SQuAD/factorize/finetune/svd/uniform/rho0.5/seed1"
            "/metrics_init.json"
        ).read_text()
    )
    assert init["fidelity"]["kl_from_source"] >= 0 and 0 <= init["fidelity"]["agreement"] <= 1


def test_ablation_has_init_and_final_for_em_and_f1(qa_workflow):
    table = pd.read_csv(qa_workflow.workdir / "results/tables/ablation.csv")
    assert set(table["task"]) == {"SQuAD EM", "SQuAD F1"}
    assert table["init_score"].notna().all() and table["score"].notna().all()


def test_recovered_model_is_a_compressed_qa_artifact(qa_workflow):
    model = lpaf.load_model(
        qa_workflow.workdir / "results/tiny-bert/SQuAD" / RUNS["lpaf"] / "model"
    )
    assert type(model).__name__ == "BertForQuestionAnswering"
    assert any(type(m).__name__ == "LowRankLinear" for m in model.modules())


def test_rerun_plans_nothing(qa_workflow):
    out = qa_workflow.snakemake("-n", "results/tables/main.csv", "results/tables/ablation.csv")
    assert "Nothing to be done" in out.stdout + out.stderr
