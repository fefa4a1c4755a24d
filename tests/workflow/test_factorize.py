"""Stage 4 end to end: the tiny config through `factorize` (svd, fwsvd and
sparsity_aware from the fine-tuned model; svd and sparsity_aware from a pruned one,
tests/config/tiny_factorize.yaml), `evaluate` on the compressed models, and the table
and figure of scores before training. The fine-tuned and pruned sources are the
session's tiny run's (the workflow's own `finetune` and `prune` rules)."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.slow


SEED = 1
RHO = "0.4"
DENSITY = 0.3  # tests/config/tiny.yaml prunes to this density
PRUNED = f"prune/movement/density{DENSITY}"
PRUNED_SEGMENT = f"prune-movement-density{DENSITY}"
TARGETS = 12  # tiny-bert: 2 layers x 6 matrices


def run_path(source_segment: str, method: str) -> str:
    return f"results/tiny-bert/MRPC/factorize/{source_segment}/{method}/uniform/rho{RHO}/seed{SEED}"


@pytest.fixture(scope="module")
def config_file(factorize_workflow):
    """The overlay of the run (tests/config/tiny_factorize.yaml), as the constants above
    describe it."""
    path = factorize_workflow.configfiles[-1]
    factorize = yaml.safe_load(path.read_text())["factorize"]
    assert factorize["rhos"] == [float(RHO)]
    assert factorize["sources"] == ["finetune", PRUNED]
    assert factorize["methods_by_source"] == {PRUNED: ["svd", "sparsity_aware"]}
    return path


@pytest.fixture(scope="module")
def finished(factorize_workflow, config_file):
    """The session's tiny run, copied, then its factorize targets with the overlay
    (conftest's factorize_workflow)."""
    return factorize_workflow.workdir


RUNS = [
    ("finetune", "svd"),
    ("finetune", "fwsvd"),
    ("finetune", "sparsity_aware"),
    (PRUNED_SEGMENT, "svd"),
    (PRUNED_SEGMENT, "sparsity_aware"),
]


@pytest.mark.parametrize("segment,method", RUNS)
def test_each_run_writes_the_compressed_format_and_its_records(finished, segment, method):
    run = finished / run_path(segment, method)
    record = json.loads((run / "model/lpaf.json").read_text())
    metrics = json.loads((run / "metrics_init.json").read_text())
    source = "finetune" if segment == "finetune" else PRUNED
    assert record["method"] == method and record["stage"] == "factorize"
    assert record["source"] == source and metrics["source"] == source
    assert record["rho_achieved"] == metrics["rho_achieved"] == record["retained_fraction"]
    assert len(record["ranks"]) == TARGETS

    recon = pd.read_csv(run / "reconstruction.csv")
    assert len(recon) == TARGETS
    assert {"module", "rank", "out_features", "in_features", "error", "weighted_error"} <= set(
        recon.columns
    )
    assert dict(zip(recon["module"], recon["rank"], strict=True)) == record["ranks"]
    # (the plain error of sparsity_aware on a pruned source may exceed 1: entries weighted
    # epsilon, the pruned ones, are left free; kept_error is what it fits)
    assert np.isfinite(recon["error"]).all() and (recon["error"] > 0).all()
    assert (recon["kept_error"] > 0).all() and (recon["kept_error"] < 1).all()

    # rho achieved <= target, and short of it by less than one rank in every matrix
    target = float(RHO)
    dense = (recon["out_features"] * recon["in_features"]).sum()
    rank_step = (recon["out_features"] + recon["in_features"]).sum() / dense
    factors = (recon["rank"] * (recon["out_features"] + recon["in_features"])).sum()
    assert metrics["rho_achieved"] == pytest.approx(factors / dense)
    assert metrics["rho_achieved"] <= target
    assert target - metrics["rho_achieved"] < rank_step
    assert metrics["rank_step"] == pytest.approx(rank_step)

    assert metrics["parameters"]["targets_compressed"] == factors
    assert metrics["macs_per_token"]["targets"] == factors
    timing = metrics["timing"]
    assert timing["plain_svd_seconds"] > 0 and timing["stage_seconds"] > 0
    expected_importance = {
        "svd": "none",
        "fwsvd": "fisher",
        "sparsity_aware": "taylor" if segment == "finetune" else "stage2",
    }[method]
    assert metrics["importance"] == record["importance"] == expected_importance
    # the gradient pass ran once per source in rule factorize_gradients
    expected_pass = None if expected_importance in ("none", "stage2") else "factorize_gradients"
    assert timing["importance_pass"] == expected_pass
    fidelity = metrics["fidelity"]
    assert 0 <= fidelity["agreement"] <= 1 and fidelity["kl_from_source"] >= 0
    assert fidelity["dev_loss"] > 0 and fidelity["source_dev_loss"] > 0
    source_metrics = finished / f"results/tiny-bert/MRPC/{source}/seed{SEED}/metrics.json"
    assert fidelity["source_main"] == pytest.approx(
        json.loads(source_metrics.read_text())["main"], abs=1e-9
    )
    if segment == "finetune":
        # a second implementation: KL and agreement from the teacher's saved dev logits
        # (rule finetune) and the factorized model's (predictions_init.tsv), with torch
        import torch
        import torch.nn.functional as F

        def logits(path):
            table = pd.read_csv(path, sep="\t")
            return torch.tensor(table.filter(like="logit_").to_numpy(), dtype=torch.float64)

        p = logits(finished / f"results/tiny-bert/MRPC/finetune/seed{SEED}/predictions.tsv")
        q = logits(run / "predictions_init.tsv")
        kl = F.kl_div(q.log_softmax(1), p.log_softmax(1), log_target=True, reduction="batchmean")
        assert fidelity["kl_from_source"] == pytest.approx(kl.item(), rel=1e-3, abs=1e-6)
        agree = (p.argmax(1) == q.argmax(1)).double().mean().item()
        assert fidelity["agreement"] == pytest.approx(agree)
    if method == "sparsity_aware":
        assert (recon["iterations"] >= 1).all()
        assert (recon["objective_end"] <= recon["objective_start"]).all()
        assert (recon["objective_end"] < recon["objective_start"]).any()
    if segment != "finetune":
        assert recon["kept_fraction"].to_numpy() == pytest.approx(DENSITY, abs=0.02)
    assert not list(run.rglob("*.tmp*"))


def test_gradient_statistics_once_per_source(finished):
    from safetensors import safe_open

    for segment in ("finetune", PRUNED_SEGMENT):
        gradients = finished / f"results/tiny-bert/MRPC/factorize/{segment}/gradients/seed{SEED}"
        if segment != "finetune":  # fwsvd is not asked from the pruned source
            assert not gradients.exists()
            continue
        for kind, shape_of in (("fisher", lambda s: s[:1]), ("taylor", lambda s: s)):
            with safe_open(str(gradients / f"{kind}.safetensors"), framework="pt") as handle:
                assert len(list(handle.keys())) == TARGETS
                assert float(handle.metadata()["seconds"]) > 0
                assert handle.metadata()["batches"] == "2"
                query = handle.get_tensor("bert.encoder.layer.0.attention.self.query")
                assert tuple(query.shape) == shape_of((32, 32)) and (query >= 0).all()


def test_methods_differ(finished):
    """The weighted methods solve other problems than plain SVD: worse in the plain
    Frobenius error (SVD is optimal there), and on a pruned source sparsity_aware fits
    the kept entries far better than SVD of the pruned matrix."""
    recon = {key: pd.read_csv(finished / run_path(*key) / "reconstruction.csv") for key in RUNS}
    svd = recon[("finetune", "svd")]["error"].to_numpy()
    for key in [("finetune", "fwsvd"), ("finetune", "sparsity_aware")]:
        error = recon[key]["error"].to_numpy()
        assert not np.allclose(error, svd)
        assert (error >= svd - 1e-9).all()
    pruned_svd = recon[(PRUNED_SEGMENT, "svd")]
    pruned_sa = recon[(PRUNED_SEGMENT, "sparsity_aware")]
    assert pruned_sa["kept_error"].mean() < pruned_svd["kept_error"].mean()
    assert (pruned_svd["error"] <= pruned_sa["error"] + 1e-9).all()


@pytest.mark.parametrize(
    "segment,method", [("finetune", "svd"), (PRUNED_SEGMENT, "sparsity_aware")]
)
def test_reload_gives_recorded_logits_and_evaluate_agrees(
    repo, finished, config_file, segment, method
):
    import lpaf
    from lpaf.compressed import read_metadata
    from lpaf.config import validate_config
    from lpaf.evaluate import predict
    from lpaf.factorize.layer import LowRankLinear
    from lpaf.modeling import load_tokenizer
    from lpaf.runtime import prepare_task
    from lpaf.train import TrainSettings

    run = finished / run_path(segment, method)
    model = lpaf.load_compressed(run / "model")
    ranks = read_metadata(run / "model")["ranks"]
    assert all(isinstance(model.get_submodule(n), LowRankLinear) for n in ranks)

    config = yaml.safe_load((repo / "tests/config/tiny.yaml").read_text())
    config.update(yaml.safe_load(config_file.read_text()))
    config = validate_config(config, base_dir=repo)
    config["data"]["local_dir"] = str(repo / config["data"]["local_dir"])
    tokenizer = load_tokenizer(str(run / "model"))
    task, _, evals, collator = prepare_task(
        config, "MRPC", tokenizer, 0, TrainSettings(max_train_examples=1)
    )
    logits = predict(
        model,
        evals[task.eval_splits[0]],
        collator,
        batch_size=config["evaluate"]["batch_size"],
        precision=config["precision"],
    )
    recorded = pd.read_csv(run / "predictions_init.tsv", sep="\t")
    columns = [f"logit_{name}" for name in task.label_names]
    np.testing.assert_array_equal(logits, recorded[columns].to_numpy(dtype=np.float32))

    metrics = json.loads((run / "metrics_init.json").read_text())
    evaluation = json.loads((run / "evaluation.json").read_text())
    assert evaluation["main"] == metrics["main"]
    assert evaluation["metrics"] == metrics["metrics"]
    assert evaluation["parameters"]["retained_fraction"] == metrics["rho_achieved"]
    assert evaluation["parameters"]["total"] == metrics["parameters"]["total"]
    assert evaluation["latency"]["latency_ms_bs1"] > 0


def test_corrupt_lpaf_json_raises_the_documented_error(finished, tmp_path):
    import lpaf
    from lpaf.compressed import CompressedFormatError

    copy = tmp_path / "model"
    shutil.copytree(finished / run_path("finetune", "svd") / "model", copy)
    lpaf.load_model(copy)  # intact copy loads
    (copy / "lpaf.json").write_text('{"format_version": 1, "ranks": {')
    with pytest.raises(CompressedFormatError, match="corrupt JSON"):
        lpaf.load_model(copy)
    record = json.loads((finished / run_path("finetune", "svd") / "model/lpaf.json").read_text())
    name = next(iter(record["ranks"]))
    record["ranks"][name] += 1
    (copy / "lpaf.json").write_text(json.dumps(record))
    with pytest.raises(CompressedFormatError, match="rank"):
        lpaf.load_model(copy)


def test_table_and_figure(finished):
    table = pd.read_csv(finished / "results/tables/factorize_init.csv", dtype={"seed": str})
    runs = table[~table["seed"].isin(["mean", "std"])]
    assert len(runs) == 5  # methods_by_source: no fwsvd from the pruned model
    assert set(zip(runs["source"], runs["method"], strict=True)) == {
        ("finetune", "svd"),
        ("finetune", "fwsvd"),
        ("finetune", "sparsity_aware"),
        (PRUNED, "svd"),
        (PRUNED, "sparsity_aware"),
    }
    assert (runs["rho_achieved"] <= float(RHO)).all()
    metrics = json.loads((finished / run_path("finetune", "svd") / "metrics_init.json").read_text())
    row = runs[(runs["source"] == "finetune") & (runs["method"] == "svd")].iloc[0]
    assert row["score"] == pytest.approx(100 * metrics["main"])
    md = (finished / "results/tables/factorize_init.md").read_text()
    assert f"rho {RHO}" in md and PRUNED in md
    assert (finished / "results/figures/init_vs_rho.png").stat().st_size > 1000
    assert (finished / "results/figures/init_vs_rho.pdf").exists()
