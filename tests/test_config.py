"""Config validation: the shipped configs pass, bad ones stop with a message naming
the key and what is allowed."""

import copy

import pytest
import yaml

from lpaf.config import ConfigError, load_config, validate_config


@pytest.fixture
def tiny(repo):
    return yaml.safe_load((repo / "tests/config/tiny.yaml").read_text())


def test_shipped_configs_validate_and_fill_defaults(repo):
    config = load_config(repo / "config/config.yaml")
    assert config["model"] == "minilm-l6"
    assert config["finetune"]["max_steps"] is None  # default filled in
    assert config["evaluate"]["latency_seq_length"] == 128
    tiny = load_config(repo / "tests/config/tiny.yaml")
    assert tiny["data"]["source"] == "local"  # default of a missing nested block
    assert tiny["finetune"]["learning_rate"] == 5e-5


def test_empty_config_gets_every_default(repo):
    config = validate_config({}, base_dir=repo)
    assert config["tasks"] == ["MRPC"]
    assert config["device"] == "auto"
    assert config["finetune"]["batch_size"] == 32


BAD = [
    # (mutation, words the message must contain)
    (lambda c: c.update(modle="tiny-bert"), ["modle", "allowed keys", "model"]),
    (lambda c: c.update(device="gpu"), ["device", "gpu", "auto", "cpu", "cuda"]),
    (lambda c: c.update(precision="fp16"), ["precision", "fp16", "auto", "fp32", "bf16"]),
    (lambda c: c.update(tasks=["MRPC", "SST2x"]), ["tasks", "SST2x", "CoLA", "RTE"]),
    (lambda c: c.update(tasks=[]), ["tasks"]),
    (lambda c: c.update(seeds="42"), ["seeds", "'42'", "array"]),
    (lambda c: c["finetune"].update(learning_rate="fast"), ["finetune.learning_rate", "number"]),
    (lambda c: c["finetune"].update(batch_size=0), ["finetune.batch_size", "minimum"]),
    (lambda c: c["finetune"].update(epoch=3), ["finetune", "epoch", "epochs"]),
    (lambda c: c.update(data={"source": "s3"}), ["data.source", "local", "hub"]),
    (lambda c: c.update(max_seq_length=2), ["max_seq_length", "minimum"]),
    (lambda c: c.update(model="./no/such/model"), ["model", "./no/such/model", "does not exist"]),
    (lambda c: c.update(model="/tmp"), ["model", "config.json"]),
    (lambda c: c.update(data={"local_dir": "no_such_dir"}), ["data.local_dir", "no_such_dir"]),
    (lambda c: c.update(tasks=["QNLI"]), ["QNLI", "train.tsv", "missing"]),
    (lambda c: c.update(model_tag="a/b"), ["model_tag", "a/b"]),
    (
        lambda c: c.update(factorize={"methods": ["svd", "nmf"]}),
        ["factorize.methods", "nmf", "fwsvd", "sparsity_aware_rows"],
    ),
    (lambda c: c.update(factorize={"methods": []}), ["factorize.methods"]),
    (lambda c: c.update(factorize={"rhos": [0.3, 1.5]}), ["factorize.rhos", "1.5", "maximum"]),
    (lambda c: c.update(factorize={"rhos": [0]}), ["factorize.rhos", "minimum"]),
    (lambda c: c.update(factorize={"rhos": [0.3, 0.3000001]}), ["factorize.rhos", "same path"]),
    (
        lambda c: c.update(factorize={"ridge": 0.1, "solver": "em"}),
        ["factorize.ridge", "als"],
    ),
    (
        lambda c: c.update(factorize={"rank_rule": "energy"}),
        ["factorize.rank_rule", "uniform", "global_energy"],
    ),
    (
        lambda c: c.update(factorize={"sources": ["prune/movement/0.3"]}),
        ["factorize.sources", "prune/movement/0.3", "does not match"],
    ),
    (
        lambda c: c.update(factorize={"sources": ["prune/movement/density0.7"]}),
        ["factorize.sources", "pruning sweep", "density0.7", "prune.densities"],
    ),
    (lambda c: c.update(factorize={"sources": ["finetuned"]}), ["factorize.sources", "finetuned"]),
    (lambda c: c.update(factorize={"fisher_batches": 0}), ["factorize.fisher_batches", "minimum"]),
    (lambda c: c.update(factorize={"n_iter": -1}), ["factorize.n_iter", "minimum"]),
    (lambda c: c.update(factorize={"epsilon": 0}), ["factorize.epsilon", "minimum"]),
    (lambda c: c.update(factorize={"solver": "sgd"}), ["factorize.solver", "als", "em"]),
    (
        lambda c: c.update(factorize={"dense_importance": "fisher"}),
        ["factorize.dense_importance", "taylor", "uniform"],
    ),
    (lambda c: c.update(factorize={"rho": [0.3]}), ["factorize", "rho", "allowed keys", "rhos"]),
    (
        lambda c: c.update(factorize={"methods_by_source": {"finetune": ["svd", "pca"]}}),
        ["factorize.methods_by_source.finetune", "pca", "fwsvd"],
    ),
    (
        lambda c: c.update(factorize={"methods_by_source": {"prune/movement": ["svd"]}}),
        ["factorize.methods_by_source", "prune/movement"],
    ),
]


@pytest.mark.parametrize("mutate,words", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_config_names_key_and_allowed_values(tiny, repo, mutate, words):
    config = copy.deepcopy(tiny)
    mutate(config)
    with pytest.raises(ConfigError) as info:
        validate_config(config, base_dir=repo)
    message = str(info.value)
    for word in words:
        assert word in message, f"{word!r} missing from: {message}"


def test_offline_hub_id_not_in_cache_is_a_clear_error(tiny, repo, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = dict(tiny, model="someone/no-such-model-xyz")
    with pytest.raises(ConfigError, match="offline"):
        validate_config(config, base_dir=repo)


def test_onnxruntime_backend_without_the_extra_is_a_clear_error(tiny, repo, monkeypatch):
    import importlib.util

    config = dict(tiny, evaluate=dict(tiny["evaluate"], latency_backends=["onnxruntime"]))
    validate_config(config, base_dir=repo)  # installed here (make setup): accepted
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "onnxruntime" else real(n, *a)
    )
    with pytest.raises(ConfigError, match=r"latency_backends.*missing onnxruntime"):
        validate_config(config, base_dir=repo)
    validate_config(
        dict(tiny, evaluate=dict(tiny["evaluate"], latency_backends=["eager"])), base_dir=repo
    )


BAD_PRUNE = [
    (lambda c: c["prune"].update(methods=["random"]), ["prune.methods", "random", "movement"]),
    (lambda c: c["prune"].update(methods=[]), ["prune.methods", "non-empty"]),
    (lambda c: c["prune"].update(densities=[0.5, 1.0]), ["prune.densities", "1.0", "maximum"]),
    (lambda c: c["prune"].update(densities=[0.0]), ["prune.densities", "0.0", "minimum"]),
    (lambda c: c["prune"].update(densities=0.3), ["prune.densities", "0.3", "array"]),
    (lambda c: c["prune"].update(densities=[0.3, 0.3]), ["prune.densities", "non-unique"]),
    (lambda c: c["prune"].update(threshold="local"), ["prune.threshold", "per_matrix", "global"]),
    (lambda c: c["prune"].update(init="random"), ["prune.init", "finetuned", "pretrained"]),
    (lambda c: c["prune"].update(initial_warmup=1.5), ["prune.initial_warmup", "maximum"]),
    (
        lambda c: c["prune"].update(initial_warmup=0.6, final_warmup=0.5),
        ["prune.initial_warmup", "prune.final_warmup", "must not exceed 1"],
    ),
    (lambda c: c["prune"].update(mask_update_interval=0), ["prune.mask_update_interval"]),
    (lambda c: c["prune"].update(ema_beta=1.0), ["prune.ema_beta", "maximum"]),
    (lambda c: c["prune"].update(scores_learning_rate=0), ["prune.scores_learning_rate"]),
    (lambda c: c["prune"].update(learning_rate="fast"), ["prune.learning_rate", "number"]),
    (lambda c: c["prune"].update(epoch=3), ["prune", "epoch", "allowed keys", "epochs"]),
    (lambda c: c["prune"].update(density=0.3), ["prune", "density", "allowed keys", "densities"]),
    (
        lambda c: c["prune"].update(distillation={"alpha": 1.5}),
        ["prune.distillation.alpha", "maximum"],
    ),
    (
        lambda c: c["prune"].update(distillation={"temperature": 0}),
        ["prune.distillation.temperature"],
    ),
    (
        lambda c: c["prune"].update(distillation={"enable": False}),
        ["prune.distillation", "enable", "enabled"],
    ),
    (
        lambda c: c.update(rank_analysis={"spectra_density": 0.7}),
        ["rank_analysis.spectra_density", "0.7", "prune.densities"],
    ),
    (lambda c: c.update(rank_analysis={"spectra_layer": -1}), ["rank_analysis.spectra_layer"]),
    (lambda c: c.update(rank_analysis={"layer": 2}), ["rank_analysis", "layer", "spectra_layer"]),
]


@pytest.mark.parametrize("mutate,words", BAD_PRUNE, ids=[str(i) for i in range(len(BAD_PRUNE))])
def test_bad_prune_config_names_key_and_allowed_values(tiny, repo, mutate, words):
    config = copy.deepcopy(tiny)
    config.setdefault("prune", {})
    mutate(config)
    with pytest.raises(ConfigError) as info:
        validate_config(config, base_dir=repo)
    message = str(info.value)
    for word in words:
        assert word in message, f"{word!r} missing from: {message}"


def test_prune_defaults_and_train_keys(repo):
    config = validate_config({}, base_dir=repo)
    prune = config["prune"]
    assert prune["methods"] == ["movement", "magnitude"]
    assert prune["densities"] == [0.5, 0.3, 0.2, 0.1]
    assert prune["init"] == "finetuned" and prune["threshold"] == "per_matrix"
    assert prune["distillation"] == {
        "enabled": True,
        "temperature": 2.0,
        "alpha": 0.5,
        "hidden_weight": 0.0,
    }
    # the training keys of the prune block, with defaults of their own
    assert prune["epochs"] == 10 and prune["batch_size"] == 32 and prune["max_steps"] is None
    assert config["rank_analysis"] == {"spectra_layer": None, "spectra_density": None}
    shipped = load_config(repo / "config/config.yaml")
    assert shipped["prune"]["methods"] == ["first_order_taylor"]  # LPAF's pruner (METHOD.md)
    spectra = validate_config(
        {"prune": {"densities": [0.5, 0.25]}, "rank_analysis": {"spectra_density": 0.25}},
        base_dir=repo,
    )
    assert spectra["rank_analysis"]["spectra_density"] == 0.25
