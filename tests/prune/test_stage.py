"""Stage 2 and 3 as library calls (lpaf.prune.stage / lpaf.rank.stage) on a tiny BERT:
the switches the end-to-end test does not use (global threshold, first-order Taylor,
start from the pre-trained model, no distillation), and the expected kept counts."""

from __future__ import annotations

import copy
import json

import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import load_file

from lpaf.config import validate_config
from lpaf.prune import stage as prune_stage
from lpaf.prune.stage import expected_kept
from lpaf.rank import stage as rank_stage
from lpaf.runtime import Job
from lpaf.sources import label as density_label


@pytest.fixture(scope="module")
def tiny_config(repo):
    config = yaml.safe_load((repo / "tests/config/tiny.yaml").read_text())
    config["tasks"] = ["MRPC"]
    config["seeds"] = [1]
    config = validate_config(config, base_dir=repo)
    config["data"]["local_dir"] = str(repo / config["data"]["local_dir"])
    return config


@pytest.fixture(scope="module")
def teacher_dir(tiny_config, tmp_path_factory):
    from lpaf.modeling import load_for_task
    from lpaf.tasks import get_task

    model, tokenizer = load_for_task("tiny-bert", get_task("MRPC"), seed=3)
    path = tmp_path_factory.mktemp("teacher") / "model"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_global_first_order_from_pretrained_without_distillation(
    tiny_config, teacher_dir, tmp_path
):
    config = copy.deepcopy(tiny_config)
    config["prune"].update(
        threshold="global",
        init="pretrained",
        max_steps=6,
        initial_warmup=0.0,
        final_warmup=0.5,  # final density from step 3 on
        mask_update_interval=4,
        distillation={"enabled": False, "temperature": 2.0, "alpha": 0.5},
    )
    run = tmp_path / "prune/first_order_taylor/density0.25/seed1"
    out = prune_stage.Outputs(
        model=run / "model",
        masks=run / "masks.safetensors",
        importance=run / "importance.safetensors",
        metrics=run / "metrics.json",
        train_log=run / "train_log.csv",
        densities=run / "densities.csv",
    )
    metrics = prune_stage.run(
        config, Job("MRPC", 1, threads=1), "first_order_taylor", 0.25, teacher_dir, out
    )
    masks = load_file(str(run / "masks.safetensors"))
    total = sum(m.numel() for m in masks.values())
    kept = sum(int(m.sum()) for m in masks.values())
    assert kept == round(0.25 * total) == metrics["kept_weights"]  # global: overall count
    per_matrix = [int(m.sum()) for m in masks.values()]
    assert per_matrix != [round(0.25 * m.numel()) for m in masks.values()]  # not per matrix
    assert metrics["prune"]["init"] == "pretrained" and metrics["prune"]["threshold"] == "global"
    log = pd.read_csv(run / "train_log.csv")
    assert "kd_loss" not in log.columns  # no distillation hook
    assert (log["prune_density"].iloc[2:] == kept / total).all()
    importance = load_file(str(run / "importance.safetensors"))
    assert all(bool((t >= 0).all()) and t.dtype == torch.float32 for t in importance.values())
    assert json.loads((run / "metrics.json").read_text())["steps"] == 6

    # stage 3 on the result: one row per target, zeros of the saved weights
    stats = rank_stage.run(
        config, run / "model", rank_stage.Outputs(run / "rank_stats.csv", run / "sv.safetensors")
    )
    assert sorted(stats["name"]) == sorted(masks)  # safetensors sorts its keys
    assert list(stats["nonzeros"]) == [int(masks[name].sum()) for name in stats["name"]]
    assert list(pd.read_csv(run / "rank_stats.csv")["rank"]) == list(stats["rank"])


def test_expected_kept_and_labels():
    shapes = {"a": (3, 3), "b": (2, 5)}
    assert expected_kept(shapes, 0.25, "per_matrix") == round(2.25) + round(2.5) == 4
    assert expected_kept(shapes, 0.25, "global") == round(4.75) == 5
    assert density_label(0.3) == "0.3" and density_label("0.50") == "0.5"
