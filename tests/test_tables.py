"""The path keys of the stage tables (lpaf.tables)."""

import pytest

from lpaf.tables import stage_keys


def test_stage_keys_of_finetune_and_prune_paths():
    assert stage_keys("results/m/MRPC/finetune/seed42/evaluation.json") == {
        "model": "m",
        "task": "MRPC",
        "method": "fine-tuned",
        "density": "1",
        "seed": "42",
    }
    keys = stage_keys("x/results/m/STS-B/prune/movement/density0.1/seed7/rank_stats.csv")
    assert keys == {
        "model": "m",
        "task": "STS-B",
        "method": "movement",
        "density": "0.1",
        "seed": "7",
    }
    with pytest.raises(ValueError):
        stage_keys("results/m/MRPC/factorize/svd/seed1/evaluation.json")
