#!/usr/bin/env python3
"""Compare the JSON files of two workflow output directories (a SLURM run and a local run).

    compare_outputs.py DIR_A DIR_B [--glob 'results/**/*.json'] [--ignore-keys REGEX]

Every JSON file matched under either directory must exist under both and parse to
the same value, except for keys whose name matches --ignore-keys (wall-clock
measurements, which differ from run to run by nature). Floats are compared
exactly unless --rel-tol is given. Exit status 0 if equal, 1 otherwise; a line
per difference on stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

# Timings (train_seconds, wall_seconds, latency_ms_bs1, ...) are not results.
DEFAULT_IGNORE = r"(_seconds|_secs|_time|_timestamp)$|^latency_ms_"


def diff(a, b, path: str, ignore: re.Pattern, rel_tol: float, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if ignore.search(str(key)):
                continue
            where = f"{path}.{key}"
            if key not in a or key not in b:
                out.append(f"{where}: only in {'first' if key in a else 'second'}")
            else:
                diff(a[key], b[key], where, ignore, rel_tol, out)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{path}: list lengths {len(a)} != {len(b)}")
            return
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            diff(x, y, f"{path}[{i}]", ignore, rel_tol, out)
    elif isinstance(a, float) and isinstance(b, float) and rel_tol > 0:
        if not math.isclose(a, b, rel_tol=rel_tol, abs_tol=rel_tol):
            out.append(f"{path}: {a!r} != {b!r}")
    elif type(a) is not type(b) or a != b:
        if not (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)):
            out.append(f"{path}: {a!r} != {b!r}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir_a", type=Path)
    ap.add_argument("dir_b", type=Path)
    ap.add_argument(
        "--glob",
        action="append",
        default=None,
        help="pattern(s) relative to each directory [results/**/*.json]",
    )
    ap.add_argument(
        "--ignore-keys",
        default=DEFAULT_IGNORE,
        help=f"regex of key names to skip [{DEFAULT_IGNORE}]",
    )
    ap.add_argument("--rel-tol", type=float, default=0.0, help="tolerance for floats [exact]")
    args = ap.parse_args(argv)
    globs = args.glob or ["results/**/*.json"]
    ignore = re.compile(args.ignore_keys)

    def files(root: Path) -> set[str]:
        return {str(p.relative_to(root)) for g in globs for p in root.glob(g) if p.is_file()}

    fa, fb = files(args.dir_a), files(args.dir_b)
    problems: list[str] = []
    for rel in sorted(fa ^ fb):
        problems.append(f"{rel}: only under {args.dir_a if rel in fa else args.dir_b}")
    for rel in sorted(fa & fb):
        try:
            a = json.loads((args.dir_a / rel).read_text())
            b = json.loads((args.dir_b / rel).read_text())
        except ValueError as exc:
            problems.append(f"{rel}: not JSON ({exc})")
            continue
        diff(a, b, rel, ignore, args.rel_tol, problems)
    for line in problems:
        print(line)
    n = len(fa & fb)
    if not fa and not fb:
        print(f"no files match {globs} under either directory")
        return 1
    print(
        f"compared {n} JSON file(s): {'EQUAL' if not problems else f'{len(problems)} difference(s)'}"
        f" (ignoring keys matching {args.ignore_keys!r})"
    )
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
