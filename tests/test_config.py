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
    (lambda c: c.update(precision="fp16"), ["precision", "fp16", "bf16"]),
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
    # --- factorize (stage 4) ---
    (
        lambda c: c.update(factorize={"methods": ["svd", "nmf"]}),
        ["factorize.methods", "nmf", "fwsvd", "sparsity_aware_rows"],
    ),
    (lambda c: c.update(factorize={"methods": []}), ["factorize.methods"]),
    (lambda c: c.update(factorize={"rhos": [0.3, 1.5]}), ["factorize.rhos", "1.5", "maximum"]),
    (lambda c: c.update(factorize={"rhos": [0]}), ["factorize.rhos", "minimum"]),
    (lambda c: c.update(factorize={"rhos": [0.3, 0.3000001]}), ["factorize.rhos", "same path"]),
    (
        lambda c: c.update(factorize={"rank_rule": "energy"}),
        ["factorize.rank_rule", "uniform", "global_energy"],
    ),
    (
        lambda c: c.update(factorize={"sources": ["prune/movement/0.3"]}),
        ["factorize.sources", "prune/movement/0.3", "does not match"],
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
    # --- end factorize ---
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
