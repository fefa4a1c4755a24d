"""End to end: the Snakemake workflow on the tiny test config, offline, in a temporary
working directory (the session's one run, conftest's tiny_workflow); then the files it
made, a no-op rerun, and the report."""

import json
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finished(tiny_workflow):
    return tiny_workflow.workdir


def test_outputs_of_every_run(finished):
    results = finished / "results" / "tiny-bert"
    for task, dev_rows in (("MRPC", 408), ("STS-B", 1500)):
        for seed in (1, 2):
            run = results / task / "finetune" / f"seed{seed}"
            metrics = json.loads((run / "metrics.json").read_text())
            assert metrics["task"] == task and metrics["seed"] == seed
            assert metrics["steps"] == 6 and metrics["train_examples"] == 48
            # tiny.yaml: threads 1 (the rule's threads: torch's pools), precision fp32
            assert metrics["environment"]["threads"] == 1
            assert metrics["precision"] == "fp32"
            assert metrics["precision_choice"]["setting"] == "fp32"
            assert 0.0 <= abs(metrics["main"]) <= 1.0
            log = pd.read_csv(run / "train_log.csv")
            assert log["step"].tolist() == list(range(1, 7))
            predictions = pd.read_csv(run / "predictions.tsv", sep="\t")
            assert len(predictions) == dev_rows
            evaluation = json.loads((run / "evaluation.json").read_text())
            # the reloaded model scores what the trained model scored
            assert evaluation["main"] == pytest.approx(metrics["main"], abs=1e-6)
            assert evaluation["parameters"]["total"] > 0
            assert evaluation["precision"] == "fp32"
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
    per_seed = table[table.seed.isin(["1", "2"])]
    assert set(per_seed["precision"]) == {"fp32"}  # provenance: what the runs trained in
    assert (finished / "results/figures/finetune_curves.png").stat().st_size > 1000


def test_rerun_does_nothing(tiny_workflow):
    proc = tiny_workflow.snakemake("--dry-run")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_report_builds_offline(tiny_workflow, finished):
    tiny_workflow.snakemake("--report", str(finished / "report.html"))
    html = (finished / "report.html").read_text(errors="replace")
    assert "finetune_curves.png" in html and "finetune.csv" in html


def test_bad_config_stops_before_any_job(snakemake, repo, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("device: gpu\n")
    proc = snakemake(
        workdir=tmp_path, configfiles=(repo / "tests/config/tiny.yaml", bad), check=False
    )
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "device" in out and "'auto', 'cpu', 'cuda'" in out
    assert not (Path(tmp_path) / "results").exists()


# tests/config/tiny.yaml prunes with movement and magnitude to density 0.3 (per-matrix
# threshold) in 8 steps; the runs above also made their rank statistics, the table and
# both figures (`rule all`), and test_rerun_does_nothing covers them too.

PRUNE_METHODS = ("movement", "magnitude")
PRUNE_DENSITY = 0.3
N_TARGETS = 12  # tiny-bert: 2 layers x 6 matrices


def _prune_runs(finished):
    for task in ("MRPC", "STS-B"):
        for seed in (1, 2):
            for method in PRUNE_METHODS:
                yield (
                    task,
                    seed,
                    method,
                    finished
                    / f"results/tiny-bert/{task}/prune/{method}/density{PRUNE_DENSITY}/seed{seed}",
                )


def test_pruned_models_have_exactly_the_target_density(finished):
    import torch
    from safetensors.torch import load_file

    import lpaf
    from lpaf.targets import find_targets

    for task, seed, method, run in _prune_runs(finished):
        metrics = json.loads((run / "metrics.json").read_text())
        assert (metrics["task"], metrics["seed"], metrics["method"]) == (task, seed, method)
        assert metrics["steps"] == 8 and metrics["target_density"] == PRUNE_DENSITY
        model = lpaf.load_model(run / "model")
        targets = find_targets(model)
        assert len(targets) == N_TARGETS
        masks = load_file(str(run / "masks.safetensors"))
        importance = load_file(str(run / "importance.safetensors"))
        assert set(masks) == set(importance) == set(targets)
        kept_total = numel_total = 0
        for name, module in targets.items():
            weight = module.weight.detach()
            mask = masks[name]
            assert mask.dtype == torch.bool and mask.shape == weight.shape
            imp = importance[name]
            assert imp.dtype == torch.float32 and imp.shape == weight.shape
            if method == "magnitude":  # importance = |W| of the stored weights
                assert torch.equal(imp[mask], weight.abs()[mask]), (run, name)
            else:  # movement: the learned scores, not |W|
                assert not torch.equal(imp, weight.abs()), (run, name)
            # per-matrix threshold: round(density * numel) kept, to the nearest weight
            assert int(mask.sum()) == round(PRUNE_DENSITY * weight.numel()), (run, name)
            # the saved model's zeros are exactly the masked-out weights
            assert torch.equal(weight != 0, mask), (run, name)
            kept_total += int(mask.sum())
            numel_total += weight.numel()
        assert metrics["achieved_density"] == kept_total / numel_total
        assert metrics["kept_weights"] == metrics["nonzero_weights"] == kept_total
        densities = pd.read_csv(run / "densities.csv")
        assert list(densities["name"]) == list(targets)
        assert list(densities["kept"]) == [int(masks[n].sum()) for n in targets]
        log = pd.read_csv(run / "train_log.csv")
        assert log["step"].tolist() == list(range(1, 9))
        assert {"loss", "learning_rate", "prune_density", "kd_loss"} <= set(log.columns)
        assert log["prune_density"].iloc[0] == 1.0  # initial warm-up: 1 step
        # final warm-up (2 steps): the achieved density is the target's, to the weight
        assert (log["prune_density"].iloc[-2:] == kept_total / numel_total).all()
        evaluation = json.loads((run / "evaluation.json").read_text())
        assert evaluation["main"] == pytest.approx(metrics["main"], abs=1e-6)
        assert evaluation["parameters"]["retained_fraction"] == pytest.approx(
            kept_total / numel_total
        )
        assert not (run / "checkpoint").exists()


def test_rank_stats_match_a_recomputation_from_the_saved_model(finished):
    import numpy as np
    from safetensors.numpy import load_file

    import lpaf
    from lpaf.rank import matrix_rank_stats
    from lpaf.targets import find_targets

    runs = [finished / "results/tiny-bert/MRPC/finetune/seed1"]
    runs += [run for task, seed, _, run in _prune_runs(finished) if task == "MRPC" and seed == 1]
    columns = [
        "rows",
        "cols",
        "nonzeros",
        "max_rank",
        "rank",
        "energy_rank_90",
        "energy_rank_95",
        "energy_rank_99",
        "zero_rows",
        "zero_cols",
    ]
    for run in runs:
        stats = pd.read_csv(run / "rank_stats.csv")
        targets = find_targets(lpaf.load_model(run / "model"))
        assert len(stats) == len(targets) == N_TARGETS
        assert list(stats["name"]) == list(targets)
        spectra = load_file(str(run / "singular_values.safetensors"))
        for row, (name, module) in zip(stats.to_dict("records"), targets.items(), strict=True):
            expected = matrix_rank_stats(module.weight.detach())
            assert row["shape"] == f"{expected['rows']}x{expected['cols']}"
            assert {c: row[c] for c in columns} == {c: expected[c] for c in columns}, name
            np.testing.assert_allclose(spectra[name], expected["singular_values"], rtol=1e-12)


def test_prune_table_and_figures(finished):
    table = pd.read_csv(finished / "results/tables/prune.csv", dtype={"seed": str})
    # per task: fine-tuned + 2 methods, each 2 seeds + mean + std
    assert len(table) == 2 * 3 * 4
    for task in ("MRPC", "STS-B"):
        rows = table[(table.task == task) & (table.method == "movement")].set_index("seed")
        assert rows.loc["mean", "score"] == pytest.approx(rows.loc[["1", "2"], "score"].mean())
        per_seed = rows.loc[["1", "2"]]
        assert per_seed["retained_pct"].tolist() == pytest.approx([100 * 307 / 1024] * 2)
        stats = pd.read_csv(
            finished / f"results/tiny-bert/{task}/prune/movement/density0.3/seed1/rank_stats.csv"
        )
        assert per_seed.loc["1", "avg_rank"] == pytest.approx(stats["rank"].mean())
        assert per_seed.loc["1", "zero_rows"] == stats["zero_rows"].sum()
        reference = table[(table.task == task) & (table.method == "fine-tuned")]
        assert reference.set_index("seed").loc[["1", "2", "mean"], "retained_pct"].eq(100).all()
    assert "± " in (finished / "results/tables/prune.md").read_text()
    for name in ("rank_vs_retained", "spectra"):
        for ext in ("png", "pdf"):
            assert (finished / f"results/figures/{name}.{ext}").stat().st_size > 1000
