"""The comparison tables from fixture records with known numbers."""

import math

import pytest

from lpaf.recover.results import best_per_task, comparison_table, summarize, to_latex, to_markdown


def records():
    # pipeline, task, seed, score, rho_achieved
    rows = [
        ("fine-tuned", "MRPC", 1, 90.0, 1.0),
        ("fine-tuned", "MRPC", 2, 92.0, 1.0),
        ("svd", "MRPC", 1, 70.0, 0.3),
        ("svd", "MRPC", 2, 74.0, 0.3),
        ("lpaf", "MRPC", 1, 85.0, 0.29),
        ("lpaf", "MRPC", 2, 87.0, 0.29),
        ("fine-tuned", "RTE", 1, 60.0, 1.0),
        ("svd", "RTE", 1, 58.0, 0.3),
        ("lpaf", "RTE", 1, 55.0, 0.29),
    ]
    return [
        {"pipeline": p, "task": t, "rho": 0.3, "seed": s, "score": v, "rho_achieved": r}
        for p, t, s, v, r in rows
    ]


def test_summary_mean_std_count():
    summary = summarize(records()).set_index(["pipeline", "task"])
    assert summary.loc[("svd", "MRPC"), "score_mean"] == 72.0
    assert summary.loc[("svd", "MRPC"), "score_std"] == pytest.approx(math.sqrt(8.0))  # ddof=1
    assert summary.loc[("lpaf", "MRPC"), "seeds"] == 2
    assert math.isnan(summary.loc[("svd", "RTE"), "score_std"])  # one seed


def test_best_excludes_the_reference():
    best = best_per_task(summarize(records()))
    assert best == {"MRPC": "lpaf", "RTE": "svd"}  # fine-tuned is higher but not compressed


def test_comparison_table_cells_and_bold():
    table = comparison_table(
        summarize(records()),
        ["fine-tuned", "svd", "lpaf"],
        ["MRPC", "RTE"],
        extra_columns=["rho_achieved"],
    ).set_index("method")
    assert table.loc["fine-tuned", "MRPC"] == "91.0 ± 1.4"
    assert table.loc["svd", "MRPC"] == "72.0 ± 2.8"
    assert table.loc["lpaf", "MRPC"] == "**86.0 ± 1.4**"
    assert table.loc["svd", "RTE"] == "**58.0**"
    assert table.loc["lpaf", "rho_achieved"] == pytest.approx(0.29)
    md = to_markdown(table.reset_index())
    assert "**86.0 ± 1.4**" in md
    latex = to_latex(table.reset_index(), caption="rho = 0.3")
    assert r"\textbf{86.0 $\pm$ 1.4}" in latex and r"\toprule" in latex


def test_ablation_table_init_and_final_mean_std():
    import pandas as pd

    from lpaf.recover.results import ablation_table

    # pipeline, rho, seed, init_score, score
    rows = [
        ("lpaf", 0.3, 1, 81.22, 81.22),
        ("lpaf", 0.3, 2, 0.0, 81.22),
        ("lpaf_with_svd", 0.3, 1, 70.0, 80.0),
        ("lpaf_with_svd", 0.3, 2, 72.0, 84.0),
        ("lpaf", 0.1, 1, 10.0, 60.0),
    ]
    flat = pd.DataFrame(
        [
            {"pipeline": p, "task": "MRPC", "rho": r, "seed": s, "init_score": i, "score": v}
            for p, r, s, i, v in rows
        ]
    )
    summary, wide = ablation_table(flat, ["lpaf", "lpaf_with_svd"], ["MRPC"])
    s = summary.set_index(["pipeline", "rho"])
    assert s.loc[("lpaf", 0.3), "init_score"] == pytest.approx(40.61)
    assert s.loc[("lpaf", 0.3), "init_score_std"] == pytest.approx(81.22 / math.sqrt(2))
    assert s.loc[("lpaf_with_svd", 0.3), "score_std"] == pytest.approx(math.sqrt(8.0))
    assert s.loc[("lpaf", 0.1), "seeds"] == 1
    # largest rho first, then the configured order; one seed has no "±"
    assert list(zip(wide["variant"], wide["rho"], strict=True)) == [
        ("lpaf", 0.3),
        ("lpaf_with_svd", 0.3),
        ("lpaf", 0.1),
    ]
    assert list(wide["MRPC init"]) == ["40.6 ± 57.4", "71.0 ± 1.4", "10.0"]
    assert list(wide["MRPC final"]) == ["81.2 ± 0.0", "82.0 ± 2.8", "60.0"]
