"""The constant predictor and the collapse flag (lpaf.evaluate.constant) against hand
computations, and their place in the comparison tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from lpaf.evaluate.constant import (
    COLLAPSED_MARK,
    CONSTANT,
    collapse_fields,
    constant_metrics,
    constant_prediction,
    is_collapsed,
    top_class_share,
)
from lpaf.recover.results import (
    ablation_table,
    best_per_task,
    comparison_table,
    summarize,
)


def test_majority_class_ties_go_to_the_lowest_id_and_regression_takes_the_mean():
    assert constant_prediction("SST-2", [1, 0, 1, 1]) == 1
    assert constant_prediction("SST-2", [1, 0, 0, 1]) == 0  # tie
    assert constant_prediction("MNLI", [2, 2, 1, 0, 1, 2]) == 2
    assert constant_prediction("STS-B", [0.0, 1.0, 5.0]) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="no training labels"):
        constant_prediction("SST-2", [])


def test_constant_metrics_are_the_closed_forms():
    # MRPC: always "paraphrase" (1). dev: 3 positives of 4 -> accuracy 3/4,
    # F1 = 2 TP / (2 TP + FP + FN) = 6 / 7
    m = constant_metrics("MRPC", [1, 1, 0], [1, 0, 1, 1])
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["f1"] == pytest.approx(6 / 7) and m["main"] == m["f1"]
    # a training majority that is the dev minority: F1 0 (no positive predicted)
    m = constant_metrics("MRPC", [0, 0, 1], [1, 0, 1, 1])
    assert m["f1"] == 0.0 and m["accuracy"] == pytest.approx(0.25)
    # correlations of a constant are 0, not NaN
    assert constant_metrics("CoLA", [1, 1, 0], [0, 1, 1])["main"] == 0.0
    sts = constant_metrics("STS-B", [1.0, 3.0], [0.5, 4.0, 2.0])
    assert sts["pearson"] == 0.0 and sts["spearmanr"] == 0.0 and sts["main"] == 0.0


def test_top_class_share_from_logits_and_ids():
    logits = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])
    assert top_class_share("SST-2", logits) == pytest.approx(0.75)
    assert top_class_share("SST-2", np.array([0, 0, 0, 1, 0])) == pytest.approx(0.8)
    assert top_class_share("STS-B", np.array([1.0, 2.0])) is None


@pytest.mark.parametrize(
    ("main", "constant", "share", "collapsed"),
    [
        (0.83, 0.812, 0.6, True),  # within 2 points above
        (0.833, 0.812, 0.6, False),  # 2.1 points above
        (0.0, 0.812, 0.6, True),  # below the constant (all-negative on MRPC)
        (0.90, 0.50, 0.95, True),  # 95 % of predictions in one class
        (0.90, 0.50, 0.949, False),
        (0.90, 0.50, None, False),  # regression: no class share
        (float("nan"), 0.0, None, True),
    ],
)
def test_collapse_rule(main, constant, share, collapsed):
    assert is_collapsed(main, constant, share) is collapsed


def test_collapse_fields_name_the_splits_and_judge_the_first():
    per_split = {
        "validation": {"main": 0.51, "top_class_share": 0.6},
        "heldout": {"main": 0.80, "top_class_share": 0.6},
    }
    constant = {"validation": {"main": 0.50}, "heldout": {"main": 0.55}}
    assert collapse_fields(per_split, constant) == {
        "collapsed": True,
        "collapsed_splits": ["validation"],
    }
    per_split["validation"]["main"] = 0.60
    assert collapse_fields(per_split, constant) == {"collapsed": False, "collapsed_splits": []}


def summary_with_constant():
    # pipeline, seed, score, collapsed; constant 50.9 on SST-2
    rows = [
        ("fine-tuned", 1, 88.0, 0.0),
        ("fine-tuned", 2, 89.0, 0.0),
        ("svd", 1, 52.0, 1.0),  # collapsed in every seed
        ("svd", 2, 95.0, 1.0),
        ("fwsvd", 1, 80.0, 0.0),
        ("fwsvd", 2, 51.0, 1.0),  # collapsed in one seed
        ("lpaf", 1, 84.0, 0.0),
        ("lpaf", 2, 86.0, 0.0),
    ]
    records = [
        {
            "pipeline": p,
            "task": "SST-2",
            "rho": 1.0 if p == "fine-tuned" else 0.3,
            "seed": s,
            "score": v,
            "constant_score": 50.9,
            "collapsed": c,
        }
        for p, s, v, c in rows
    ]
    return summarize(records)


def test_tables_show_the_constant_row_and_mark_collapsed_cells():
    summary = summary_with_constant()
    assert best_per_task(summary) == {"SST-2": "lpaf"}
    table = comparison_table(summary, ["fine-tuned", "svd", "fwsvd", "lpaf"], ["SST-2"])
    assert list(table["method"]) == ["fine-tuned", CONSTANT, "svd", "fwsvd", "lpaf"]
    cells = dict(zip(table["method"], table["SST-2"], strict=True))
    assert cells[CONSTANT] == "50.9"
    assert cells["svd"] == f"73.5 ± 30.4 {COLLAPSED_MARK}"
    assert cells["fwsvd"] == f"65.5 ± 20.5 {COLLAPSED_MARK}"  # one seed of two
    assert cells["lpaf"] == "**85.0 ± 1.4**"
    assert cells["fine-tuned"] == "88.5 ± 0.7"


def test_best_compressed_row_skips_one_collapsed_in_every_seed_even_if_highest():
    summary = summary_with_constant()
    summary.loc[summary["pipeline"] == "svd", "score_mean"] = 99.0
    assert best_per_task(summary) == {"SST-2": "lpaf"}


def test_tables_without_constant_records_are_unchanged():
    summary = summary_with_constant().drop(columns=["constant_score", "collapsed"])
    table = comparison_table(summary, ["fine-tuned", "svd", "lpaf"], ["SST-2"])
    assert list(table["method"]) == ["fine-tuned", "svd", "lpaf"]
    assert COLLAPSED_MARK not in "".join(table["SST-2"])


def test_ablation_table_constant_row_and_marks():
    flat = pd.DataFrame(
        [
            {
                "pipeline": "lpaf",
                "task": "SST-2",
                "rho": 0.3,
                "seed": s,
                "init_score": i,
                "score": v,
                "init_collapsed": ic,
                "collapsed": 0.0,
                "constant_score": 50.9,
            }
            for s, i, v, ic in [(1, 51.0, 85.0, 1.0), (2, 70.0, 86.0, 0.0)]
        ]
    )
    _, wide = ablation_table(flat, ["lpaf"], ["SST-2"])
    assert wide.loc[0, "variant"] == CONSTANT and math.isnan(wide.loc[0, "rho"])
    assert wide.loc[0, "SST-2 init"] == wide.loc[0, "SST-2 final"] == "50.9"
    assert wide.loc[1, "SST-2 init"] == f"60.5 ± 13.4 {COLLAPSED_MARK}"
    assert wide.loc[1, "SST-2 final"] == "85.5 ± 0.7"
