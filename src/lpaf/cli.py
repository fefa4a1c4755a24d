"""The ``lpaf`` command: ``lpaf plan`` (what a run will do and how long it will take)."""

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
    from lpaf.plan import format_plan, plan

    result = plan(snakemake_args, args.cores)
    print(format_plan(result))
    if args.json:
        write_json(args.json, result.to_dict())
        print(f"plan written to {args.json}")
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
    args, rest = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "plan":
        return _plan(args, rest)
    return 2


if __name__ == "__main__":
    sys.exit(main())
