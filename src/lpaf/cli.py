"""The ``lpaf`` command: ``lpaf plan`` (what a run will do and how long it will take),
``lpaf inspect DIR`` (what a saved model holds), ``lpaf predict DIR FILE`` (its
predictions for a TSV file), ``lpaf export-onnx DIR OUT`` (the model as an ONNX graph,
checked in onnxruntime)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path


def _plan(args: argparse.Namespace, snakemake_args: list[str]) -> int:
    import os

    os.environ.setdefault("TQDM_DISABLE", "1")  # the plan's own steps need no bars
    from lpaf.io import write_json
    from lpaf.plan import PlanError, format_plan, plan

    try:
        result = plan(snakemake_args, args.cores)
    except PlanError as error:
        print(f"lpaf plan: error: {error}", file=sys.stderr)
        return 1
    print(format_plan(result))
    if args.json:
        write_json(args.json, result.to_dict())
        print(f"plan written to {args.json}")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local directory needs no hub
    from lpaf.describe import NotAModelError, describe, format_description
    from lpaf.io import write_json

    try:
        description = describe(args.directory)
    except NotAModelError as error:
        print(f"lpaf inspect: error: {error}", file=sys.stderr)
        return 2
    print(format_description(description, per_module=args.modules))
    if args.json:
        write_json(args.json, description)
    return 0


def _predict(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from lpaf.describe import NotAModelError
    from lpaf.io import write_dataframe
    from lpaf.predict import PredictError, predict

    try:
        table, metrics = predict(
            args.directory,
            args.file,
            args.task,
            tokenizer=args.tokenizer,
            max_seq_length=args.max_seq_length,
            batch_size=args.batch_size,
            device=args.device,
        )
    except (NotAModelError, PredictError) as error:
        print(f"lpaf predict: error: {error}", file=sys.stderr)
        return 2
    if args.out:
        write_dataframe(args.out, table)
        print(f"{len(table)} predictions written to {args.out}", file=sys.stderr)
    else:
        table.to_csv(sys.stdout, sep="\t", index=False)
    if metrics:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k != "main")
        print(f"metrics on the file's labels: {shown}", file=sys.stderr)
    return 0


def _export_onnx(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from lpaf.describe import NotAModelError
    from lpaf.export import ExportError, export_onnx

    try:
        result = export_onnx(args.directory, args.out, atol=args.atol, opset=args.opset)
    except (NotAModelError, ExportError) as error:
        print(f"lpaf export-onnx: error: {error}", file=sys.stderr)
        return 2
    print(
        f"{result['file']}: inputs {', '.join(result['inputs'])}; outputs "
        f"{', '.join(result['outputs'])}; opset {result['opset']}; onnxruntime matches "
        f"torch to {result['max_abs_diff']:.2g} on a batch of shape {result['check_shape']}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lpaf", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    plan = commands.add_parser(
        "plan",
        help="print the jobs a `snakemake` run would start and their estimated wall time",
        description="Dry-runs the workflow with the given Snakemake arguments (any you "
        "would pass to snakemake: --configfile, --config, targets), measures a few real "
        "training steps of the configured model on this machine and prints, per stage, "
        "the jobs, their training steps and estimated time. Run it from the repository.",
    )
    plan.add_argument("--cores", type=int, default=2, help="as for snakemake (default 2)")
    plan.add_argument("--json", type=Path, help="also write the plan (jobs, costs) here")
    inspect = commands.add_parser(
        "inspect",
        help="describe a saved model directory (kind, rho, ranks, parameters, provenance)",
        description="Loads a model directory the workflow wrote (dense, pruned or "
        "compressed) and prints its kind, retained fraction rho, ranks, parameter "
        "counts and what its stage recorded (method, source, seed).",
    )
    inspect.add_argument("directory", type=Path, help="a .../model directory")
    inspect.add_argument("--modules", action="store_true", help="one line per target module")
    inspect.add_argument("--json", type=Path, help="also write the description here")
    predict = commands.add_parser(
        "predict",
        help="predictions of a saved model directory for a TSV file",
        description="Runs a model directory the workflow wrote on a TSV file with a "
        "header naming the task's text columns (a GLUE dev file works as it is) and "
        "writes one row per input: index, prediction (class name or score) and the "
        "class probabilities. With the label column present it also prints the task's "
        "metrics.",
    )
    predict.add_argument("directory", type=Path, help="a .../model directory")
    predict.add_argument("file", type=Path, help="the TSV file of inputs (SQuAD: v1.1 JSON)")
    predict.add_argument("--task", help="the task (default: the one recorded with the model)")
    predict.add_argument("--out", type=Path, help="write a .tsv or .csv here (default stdout)")
    predict.add_argument("--tokenizer", help="tokenizer directory or id (default: the model's)")
    predict.add_argument("--max-seq-length", type=int, default=128, help="(default 128)")
    predict.add_argument("--batch-size", type=int, default=64, help="(default 64)")
    predict.add_argument("--device", default="cpu", help="torch device (default cpu)")
    export = commands.add_parser(
        "export-onnx",
        help="export a saved model directory to ONNX, checked against torch in onnxruntime",
        description="Exports a model directory the workflow wrote (dense, pruned or "
        "compressed; a compressed one keeps its factors) to one ONNX file with dynamic "
        "batch and sequence length, then runs it in onnxruntime and compares its outputs "
        "with torch's. Needs the onnx extra (pip install -e '.[onnx]').",
    )
    export.add_argument("directory", type=Path, help="a .../model directory")
    export.add_argument("out", type=Path, help="the .onnx file to write")
    export.add_argument(
        "--atol", type=float, default=1e-4, help="largest accepted |onnx - torch| (1e-4)"
    )
    export.add_argument("--opset", type=int, default=None, help="ONNX opset (exporter default)")
    args, rest = parser.parse_known_args(argv)
    if args.command != "plan" and rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "plan":
        return _plan(args, rest)
    if args.command == "inspect":
        return _inspect(args)
    if args.command == "predict":
        return _predict(args)
    if args.command == "export-onnx":
        return _export_onnx(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
