"""Summarise a finished pruning sweep (stages 2-3) for docs/measurements/.

Reads, for one model x task x seed, the fine-tuned run and every pruned run under
``results/`` (``evaluation.json``, ``metrics.json``, ``rank_stats.csv``), and adds a
reference the workflow does not produce: the fine-tuned weights under a *random*
unstructured mask of the same per-matrix density (seeded), whose rank shows what
sparsity alone does to the rank. Writes ``<out>.csv`` (one row per model: score, %
retained, average exact / 90 / 95 / 99 %-energy rank, rank-deficient matrices, zero rows
and columns) and ``<out>_by_matrix.csv`` (the same rank averages per matrix type:
query, key, value, attention output, FFN in, FFN out).

    python scripts/bench/summarize_prune_sweep.py --results results --model minilm-l6 \
        --task MRPC --seed 42 --out docs/measurements/<date>-prune-sweep-minilm-mrpc
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from lpaf.rank import matrix_rank_stats  # noqa: E402
from lpaf.rank.results import rank_summary  # noqa: E402

MATRIX_TYPES = {
    r"attention\.self\.query$": "query",
    r"attention\.self\.key$": "key",
    r"attention\.self\.value$": "value",
    r"attention\.output\.dense$": "attn_out",
    r"intermediate\.dense$": "ffn_in",
    r"(?<!attention\.)output\.dense$": "ffn_out",
}


def matrix_type(name: str) -> str:
    for pattern, label in MATRIX_TYPES.items():
        if re.search(pattern, name):
            return label
    return "other"


def run_row(run: Path, method: str, density: str) -> tuple[dict, pd.DataFrame]:
    evaluation = json.loads((run / "evaluation.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    stats = pd.read_csv(run / "rank_stats.csv")
    row = {
        "method": method,
        "density": density,
        "score": 100 * evaluation["main"],
        "metric": evaluation["main_metric"],
        **rank_summary(stats),
        "steps": metrics.get("steps"),
        "train_seconds": metrics.get("train_seconds"),
    }
    return row, stats.assign(method=method, density=density)


def random_mask_stats(model_dir: Path, density: float, seed: int) -> pd.DataFrame:
    import lpaf
    from lpaf.prune import keep_count, topk_mask
    from lpaf.targets import find_targets

    model = lpaf.load_model(model_dir)
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for name, module in find_targets(model).items():
        weight = module.weight.detach()
        scores = torch.rand(weight.shape, generator=generator)
        mask = topk_mask(scores, keep_count(density, weight.numel()))
        stats = matrix_rank_stats(weight * mask)
        stats.pop("singular_values")
        rows.append({"name": name, **stats})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default="results")
    parser.add_argument("--model", default="minilm-l6")
    parser.add_argument("--task", default="MRPC")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--random-seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    base = Path(args.results) / args.model / args.task
    finetune = base / "finetune" / f"seed{args.seed}"
    rows, per_matrix = [], []
    row, stats = run_row(finetune, "fine-tuned", "1")
    rows.append(row)
    per_matrix.append(stats)
    densities = set()
    for run in sorted(base.glob(f"prune/*/density*/seed{args.seed}")):
        if not (run / "rank_stats.csv").exists() or not (run / "evaluation.json").exists():
            print(f"skipping unfinished {run}")
            continue
        method, density = run.parts[-3], run.parts[-2][len("density") :]
        densities.add(density)
        row, stats = run_row(run, method, density)
        rows.append(row)
        per_matrix.append(stats)
    for density in sorted(densities, key=float, reverse=True):
        stats = random_mask_stats(finetune / "model", float(density), args.random_seed)
        rows.append(
            {
                "method": "random mask (no training)",
                "density": density,
                "score": None,
                "metric": rows[0]["metric"],
                **rank_summary(stats),
            }
        )
        per_matrix.append(stats.assign(method="random mask (no training)", density=density))

    table = pd.DataFrame(rows)
    table["_d"] = -table["density"].astype(float)
    table = table.sort_values(["_d", "method"], kind="stable").drop(columns="_d")
    matrices = pd.concat(per_matrix, ignore_index=True)
    matrices["type"] = matrices["name"].map(matrix_type)
    by_type = (
        matrices.groupby(["method", "density", "type"], sort=False)
        .agg(
            avg_rank=("rank", "mean"),
            avg_energy_rank_95=("energy_rank_95", "mean"),
            max_rank=("max_rank", "first"),
            zero_rows=("zero_rows", "sum"),
            zero_cols=("zero_cols", "sum"),
        )
        .reset_index()
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out.with_suffix(".csv"), index=False, float_format="%.4g")
    by_type.to_csv(out.parent / f"{out.name}_by_matrix.csv", index=False, float_format="%.4g")
    columns = [
        "method",
        "density",
        "score",
        "retained_pct",
        "avg_rank",
        "avg_energy_rank_95",
        "rank_deficient",
        "zero_rows",
        "zero_cols",
        "train_seconds",
    ]
    print(table[columns].to_markdown(index=False, floatfmt=".2f"))
    print()
    print(by_type.to_markdown(index=False, floatfmt=".1f"))


if __name__ == "__main__":
    main()
