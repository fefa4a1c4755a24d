"""Named pipelines (lpaf.pipelines): the run directories of each stage at a budget,
with and without a pruning density of its own, and the checks a schema cannot make."""

from __future__ import annotations

import copy

import pytest

from lpaf.config import ConfigError, validate_config
from lpaf.pipelines import REFERENCE, check, runs


@pytest.fixture
def config(repo):
    return validate_config({}, base_dir=repo)


def with_pipeline(config, **spec):
    config = copy.deepcopy(config)
    config["pipelines"]["p"] = {"prune": None, "factorize": None, "recover": None, **spec}
    return config


def test_pruning_density_defaults_to_rho(config):
    c = with_pipeline(
        config, prune="first_order_taylor", factorize="sparsity_aware", recover="plain"
    )
    r = runs(c, "p", 0.3)
    assert r.prune == {"method": "first_order_taylor", "density": "0.3"}
    assert r.factorize == {
        "source": "prune-first_order_taylor-density0.3",
        "method": "sparsity_aware",
        "rank_rule": "uniform",
        "rho": "0.3",
    }
    assert r.recover == {"pipeline": "p", "rho": "0.3"}
    assert r.final == "recover" and r.sparse == "prune"


def test_a_pipeline_density_prunes_once_for_every_rho(config):
    c = with_pipeline(
        config, prune="magnitude", factorize="sparsity_aware", recover="mixed_rank", density=0.5
    )
    at = {rho: runs(c, "p", rho) for rho in (0.3, 0.1)}
    assert at[0.3].prune == at[0.1].prune == {"method": "magnitude", "density": "0.5"}
    assert (
        at[0.3].factorize["source"] == at[0.1].factorize["source"] == ("prune-magnitude-density0.5")
    )
    assert (at[0.3].factorize["rho"], at[0.1].factorize["rho"]) == ("0.3", "0.1")


def test_reference_row_has_no_runs(config):
    r = runs(config, REFERENCE, 0.3)
    assert (r.prune, r.factorize, r.recover, r.final) == (None, None, None, "finetune")


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"prune": "magnitude", "density": 0.5}, ["pipelines.p", "density", "sparse-only"]),
        ({"factorize": "svd", "recover": "plain", "density": 0.5}, ["pipelines.p", "density"]),
        ({"prune": "magnitude", "recover": "plain"}, ["pipelines.p", "recover without factorize"]),
    ],
)
def test_check_names_the_pipeline_and_the_problem(config, spec, words):
    problems = check(with_pipeline(config, **spec))
    assert len(problems) == 1
    for word in words:
        assert word in problems[0]


def test_a_density_of_its_own_is_accepted(config):
    c = with_pipeline(config, prune="magnitude", factorize="svd", recover="plain", density=0.5)
    assert check(c) == []


@pytest.mark.parametrize("density", [0, 1.5, "half"])
def test_schema_rejects_a_density_outside_0_1(repo, density):
    spec = {"prune": "magnitude", "factorize": "svd", "recover": "plain", "density": density}
    with pytest.raises(ConfigError, match="density"):
        validate_config({"pipelines": {"p": spec}, "study": {"main_table": ["p"]}}, base_dir=repo)


def test_config_validation_reports_a_sparse_only_density(repo):
    spec = {"prune": "magnitude", "factorize": None, "recover": None, "density": 0.5}
    with pytest.raises(ConfigError, match="density needs both prune and factorize"):
        validate_config({"pipelines": {"p": spec}, "study": {"main_table": ["p"]}}, base_dir=repo)
