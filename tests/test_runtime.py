"""What every stage job shares (lpaf.runtime): the held-out training rows that tuning
uses instead of dev, and the constant predictor's metrics of a task's real data."""

from __future__ import annotations

import datasets
import numpy as np
import pytest

from lpaf import runtime
from lpaf.config import validate_config
from lpaf.data import load_task
from lpaf.evaluate.constant import constant_metrics


def table(n: int) -> datasets.Dataset:
    return datasets.Dataset.from_dict({"idx": list(range(n)), "label": [i % 2 for i in range(n)]})


def test_holdout_is_a_fixed_disjoint_draw_in_file_order():
    train = table(50)
    rest, held = runtime.split_holdout(train, 10)
    held, rest = held.to_dict(), rest.to_dict()
    assert len(held["idx"]) == 10 and len(rest["idx"]) == 40
    assert sorted(held["idx"] + rest["idx"]) == list(range(50))  # disjoint, complete
    assert held["idx"] == sorted(held["idx"]) and rest["idx"] == sorted(rest["idx"])
    order = np.random.default_rng(runtime.HOLDOUT_SEED).permutation(50)
    assert held["idx"] == sorted(order[:10].tolist())  # seed 0, whatever the run's seed
    again, held_again = runtime.split_holdout(train, 10)
    assert list(held_again["idx"]) == held["idx"] and list(again["idx"]) == rest["idx"]
    assert set(runtime.split_holdout(train, 20)[1]["idx"]) >= set(held["idx"])  # nested


@pytest.mark.parametrize("n", [0, None])
def test_no_holdout_keeps_the_training_set(n):
    train = table(5)
    rest, held = runtime.split_holdout(train, n)
    assert rest is train and held is None


def test_a_holdout_that_leaves_nothing_is_an_error():
    with pytest.raises(ValueError, match="data.holdout = 5 leaves no training rows"):
        runtime.split_holdout(table(5), 5)


def test_load_data_moves_held_out_rows_into_their_own_split_and_scores_the_constant(repo):
    config = validate_config({"tasks": ["MRPC"], "data": {"holdout": 100}}, base_dir=repo)
    task, train, evals = runtime.load_data(config, "MRPC")
    full = load_task("MRPC", local_dir=repo / "resources/glue")
    assert list(evals) == ["validation", runtime.HOLDOUT_SPLIT]  # dev first: it is "main"
    assert len(train) + len(evals["heldout"]) == len(full["train"])
    assert not set(train["idx"]) & set(evals["heldout"]["idx"])
    assert list(evals["validation"]["idx"]) == list(full["validation"]["idx"])
    constant = runtime.constant_baseline(task, train, evals)
    labels = np.asarray(train["label"])
    for split, dataset in evals.items():
        assert constant[split] == constant_metrics(task, labels, dataset["label"])
    # MRPC's training majority is "paraphrase": the dev F1 of always answering it
    positives = np.mean(full["validation"]["label"])
    assert constant["validation"]["f1"] == pytest.approx(2 * positives / (positives + 1))
