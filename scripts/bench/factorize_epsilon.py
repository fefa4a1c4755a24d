"""Sensitivity of sparsity-aware SVD to ``factorize.epsilon`` (the weight of pruned
entries), scored before any training: the stage-4 call of the ``factorize`` rule
(:func:`lpaf.factorize.stage.run`), run once per epsilon x rho into a scratch directory.

Why: with a small epsilon the element-wise weighted solver fits the kept entries of the
pruned matrix closely but is free to put large values where the pruned model has zeros,
and those entries still multiply the layer's inputs. This script measures how the dev
score and the fidelity to the pruned source move as epsilon grows towards 1 (pruned
entries as important as an average kept one).

    python scripts/bench/factorize_epsilon.py \
        --source results/minilm-l6/MRPC/prune/first_order_taylor/density0.3/seed42 \
        --source-name prune/first_order_taylor/density0.3 --task MRPC --seed 42 \
        --rhos 0.5 0.3 --epsilons 1e-3 1e-1 1 --out docs/measurements/<date>-factorize-epsilon.csv
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

import pandas as pd  # noqa: E402

from lpaf.config import load_config  # noqa: E402
from lpaf.factorize import stage  # noqa: E402
from lpaf.runtime import Job  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--source", required=True, help="a prune run dir: model/, masks, importance"
    )
    parser.add_argument(
        "--source-name", required=True, help="its config name, prune/<m>/density<d>"
    )
    parser.add_argument("--task", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--rhos", nargs="+", type=float, default=[0.5, 0.3])
    parser.add_argument("--epsilons", nargs="+", type=float, default=[1e-3, 1e-1, 1.0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    source = Path(args.source)
    for name in ("model", "masks.safetensors", "importance.safetensors"):
        if not (source / name).exists():
            raise SystemExit(f"{source / name} is missing: --source must be a finished prune run")
    config = load_config(args.config)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for rho in args.rhos:
            for epsilon in args.epsilons:
                config["factorize"]["epsilon"] = epsilon
                run = Path(scratch) / f"rho{rho}-eps{epsilon}"
                metrics = stage.run(
                    config,
                    Job(args.task, args.seed, threads=args.threads),
                    stage.Spec(source=args.source_name, method="sparsity_aware", rho=rho),
                    stage.Inputs(
                        model=source / "model",
                        masks=source / "masks.safetensors",
                        importance=source / "importance.safetensors",
                    ),
                    stage.Outputs(
                        run / "model",
                        run / "reconstruction.csv",
                        run / "predictions.tsv",
                        run / "metrics_init.json",
                    ),
                )
                recon = pd.read_csv(run / "reconstruction.csv")
                fidelity = metrics["fidelity"]
                rows.append(
                    {
                        "rho": rho,
                        "epsilon": epsilon,
                        "score": 100 * metrics["main"],
                        "accuracy": 100
                        * metrics["metrics"]["validation"].get("accuracy", float("nan")),
                        "agreement": 100 * fidelity["agreement"],
                        "kl_from_source": fidelity["kl_from_source"],
                        "dev_loss": fidelity["dev_loss"],
                        "source_dev_loss": fidelity["source_dev_loss"],
                        **{
                            f"mean_{c}": recon[c].mean()
                            for c in recon.columns
                            if "error" in c and pd.api.types.is_numeric_dtype(recon[c])
                        },
                        "stage_seconds": metrics["timing"]["stage_seconds"],
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    table = pd.DataFrame(rows)
    print(table.to_markdown(index=False, floatfmt=".4g"))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
