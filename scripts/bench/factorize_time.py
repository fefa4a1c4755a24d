"""Time stage 4 against plain SVD in one process, best of ``--repeats`` runs each, so a
shared machine's load spikes count less than in the per-job ``metrics_init.json``.

For one source model (a ``model/`` directory the workflow wrote; with ``--masks`` and
``--importance`` for a pruned one) and each method at each rho: the wall time of
``lpaf.factorize.factorize_model`` on a fresh copy of the model, against one float64
``torch.linalg.svd`` of every target matrix; the gradient pass (Fisher rows and
``|W * dL/dW|`` over ``--batches`` training batches) is timed once. Writes a CSV.

    python scripts/bench/factorize_time.py --model results/minilm-l6/MRPC/finetune/seed42/model \
        --task MRPC --rhos 0.3 --out docs/measurements/<date>-factorize-time-minilm-cpu.csv
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from lpaf.accounting import effective_weight  # noqa: E402
from lpaf.config import load_config  # noqa: E402
from lpaf.factorize import COMPUTE_DTYPE, factorize_model  # noqa: E402
from lpaf.factorize.stage import FactorizeConfig, gradient_statistics  # noqa: E402
from lpaf.modeling import load_model, load_tokenizer  # noqa: E402
from lpaf.runtime import prepare_task  # noqa: E402
from lpaf.targets import find_targets  # noqa: E402
from lpaf.train import TrainSettings  # noqa: E402


def plain_svd_seconds(weights) -> float:
    start = time.perf_counter()
    for weight in weights.values():
        torch.linalg.svd(weight.to(COMPUTE_DTYPE), full_matrices=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--task", required=True)
    parser.add_argument("--masks")
    parser.add_argument("--importance")
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument(
        "--methods", nargs="+", default=["svd", "fwsvd", "sparsity_aware_rows", "sparsity_aware"]
    )
    parser.add_argument("--rhos", nargs="+", type=float, default=[0.3])
    parser.add_argument("--n-iter", type=int, default=10)
    parser.add_argument("--batches", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_config(args.config)
    config["factorize"]["fisher_batches"] = args.batches
    patterns = config["target_modules"]
    source = load_model(args.model)
    tokenizer = load_tokenizer(args.model)
    _, train_set, _, collator = prepare_task(
        config, args.task, tokenizer, 42, TrainSettings.from_dict(config["finetune"])
    )
    from safetensors.torch import load_file

    masks = load_file(args.masks) if args.masks else None
    stage2 = load_file(args.importance) if args.importance else None
    start = time.perf_counter()
    settings = FactorizeConfig.from_config(config)
    fisher, taylor = gradient_statistics(settings, source, train_set, collator, 42, patterns)
    gradient_seconds = time.perf_counter() - start
    with torch.no_grad():
        weights = {
            n: effective_weight(m).detach().clone()
            for n, m in find_targets(source, patterns).items()
        }
    rows = []
    for rho in args.rhos:
        for method in args.methods:
            svd_times, method_times = [], []
            for _ in range(args.repeats):
                svd_times.append(plain_svd_seconds(weights))
                model = copy.deepcopy(source)
                start = time.perf_counter()
                factorize_model(
                    model,
                    method=method,
                    rho=rho,
                    importance=stage2 if stage2 is not None else taylor,
                    fisher=fisher,
                    masks=masks,
                    target_patterns=patterns,
                    n_iter=args.n_iter,
                )
                method_times.append(time.perf_counter() - start)
            needs_pass = method == "fwsvd" or (
                method.startswith("sparsity_aware") and stage2 is None
            )
            row = {
                "model": args.model,
                "method": method,
                "rho": rho,
                "n_iter": args.n_iter if method == "sparsity_aware" else None,
                "plain_svd_seconds": min(svd_times),
                "factorize_seconds": min(method_times),
                "gradient_pass_seconds": gradient_seconds if needs_pass else 0.0,
                "threads": args.threads,
                "repeats": args.repeats,
            }
            row["factorize_over_svd"] = row["factorize_seconds"] / row["plain_svd_seconds"]
            row["stage_over_svd"] = (row["factorize_seconds"] + row["gradient_pass_seconds"]) / row[
                "plain_svd_seconds"
            ]
            print(row, flush=True)
            rows.append(row)
    pd.DataFrame(rows).to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
