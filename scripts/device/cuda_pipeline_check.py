"""Every stage of the workflow on the configured device, without Snakemake: the same
library calls the rules make (finetune -> evaluate -> prune -> rank_analysis ->
factorize (svd, fwsvd, sparsity_aware) -> recover (mixed_rank) -> evaluate), then a
timing of the sparsity-aware solver against plain SVD on MiniLM-sized matrices.
Used to check the CUDA path on a lent GPU machine (which has torch but no Snakemake):

    python scripts/device/cuda_pipeline_check.py --config resolved.json --model DIR --out OUT

``resolved.json`` is a config validated where Snakemake is installed
(``lpaf.config.load_config``), ``DIR`` any local model directory.
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

import torch  # noqa: E402

from lpaf.evaluate import stage as evaluate  # noqa: E402
from lpaf.factorize import stage as factorize  # noqa: E402
from lpaf.finetune import stage as finetune  # noqa: E402
from lpaf.prune import stage as prune  # noqa: E402
from lpaf.rank import stage as rank_stage  # noqa: E402
from lpaf.recover import stage as recover  # noqa: E402
from lpaf.runtime import Job  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--task", default="MRPC")
    args = parser.parse_args()
    config = json.loads(Path(args.config).read_text())
    config["model"] = args.model
    out, task, seed = Path(args.out), args.task, 1
    report = {"device": config["device"], "torch": torch.__version__}
    if torch.cuda.is_available():
        report["gpu"] = torch.cuda.get_device_name()

    def timed(name, fn, **kwargs):
        start = time.perf_counter()
        result = fn(**kwargs)
        report[name] = {"seconds": round(time.perf_counter() - start, 2)}
        if isinstance(result, dict) and "main" in result:
            report[name]["main"] = result["main"]
        print(name, json.dumps(report[name]), flush=True)
        return result

    job = Job(task, seed)
    ft = out / "finetune"
    timed(
        "finetune",
        finetune.run,
        config=config,
        job=job,
        out=finetune.Outputs(
            ft / "model", ft / "metrics.json", ft / "train_log.csv", ft / "predictions.tsv"
        ),
    )
    timed(
        "evaluate_finetune",
        evaluate.run,
        config=config,
        job=job,
        model_dir=ft / "model",
        output=ft / "evaluation.json",
    )
    pr = out / "prune"
    timed(
        "prune_movement",
        prune.run,
        config=config,
        job=job,
        method="movement",
        density=0.5,
        teacher=ft / "model",
        out=prune.Outputs(
            model=pr / "model",
            masks=pr / "masks.safetensors",
            importance=pr / "importance.safetensors",
            metrics=pr / "metrics.json",
            train_log=pr / "train_log.csv",
            densities=pr / "densities.csv",
        ),
    )
    timed(
        "rank_analysis",
        rank_stage.run,
        config=config,
        model_dir=pr / "model",
        out=rank_stage.Outputs(pr / "rank_stats.csv", pr / "singular_values.safetensors"),
    )
    for method, source, src_dir in (
        ("svd", "finetune", ft),
        ("fwsvd", "finetune", ft),
        ("sparsity_aware", "prune/movement/density0.5", pr),
    ):
        fz = out / f"factorize_{method}"
        pruned = source != "finetune"
        timed(
            f"factorize_{method}",
            factorize.run,
            config=config,
            job=job,
            spec=factorize.Spec(source=source, method=method, rho=0.5),
            inputs=factorize.Inputs(
                model=src_dir / "model",
                masks=pr / "masks.safetensors" if pruned else None,
                importance=pr / "importance.safetensors" if pruned else None,
            ),
            out=factorize.Outputs(
                fz / "model",
                fz / "reconstruction.csv",
                fz / "predictions_init.tsv",
                fz / "metrics_init.json",
            ),
        )
    rc = out / "recover"
    timed(
        "recover_lpaf",
        recover.run,
        config=config,
        job=job,
        pipeline="lpaf",
        inputs=recover.Inputs(
            factorized=out / "factorize_sparsity_aware" / "model",
            sparse=pr / "model",
            teacher=ft / "model",
        ),
        out=recover.Outputs(
            rc / "model", rc / "metrics.json", rc / "train_log.csv", rc / "predictions.tsv"
        ),
    )
    ev = timed(
        "evaluate_recovered",
        evaluate.run,
        config=config,
        job=job,
        model_dir=rc / "model",
        output=rc / "evaluation.json",
    )
    report["recovered_latency"] = ev["latency"]
    report["recovered_rho"] = ev["parameters"]["retained_fraction"]

    # the solver on MiniLM-sized matrices, against one plain SVD of the same matrix
    from lpaf.factorize import sparsity_aware, svd

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    generator = torch.Generator().manual_seed(0)
    bench = []
    for shape, rank in (((384, 384), 57), ((1536, 384), 76), ((384, 1536), 76)):
        weight = torch.randn(shape, generator=generator)
        importance = torch.rand(shape, generator=generator) ** 4
        mask = importance > importance.flatten().kthvalue(int(0.7 * weight.numel())).values
        weight = weight * mask
        for fn, kwargs in ((svd, {}), (sparsity_aware, {"importance": importance, "n_iter": 10})):
            fn(weight, rank=rank, device=device, **kwargs)  # warm-up
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            result = fn(weight, rank=rank, device=device, **kwargs)
            if device.type == "cuda":
                torch.cuda.synchronize()
            bench.append(
                {
                    "shape": list(shape),
                    "rank": rank,
                    "method": fn.__name__,
                    "seconds": time.perf_counter() - start,
                    "kept_error": float(result.kept_error),
                }
            )
            print(json.dumps(bench[-1]), flush=True)
    report["solver_bench"] = bench
    (out / "report.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
