#!/usr/bin/env python3
"""Compare the JSON files of two workflow output directories (a SLURM run and a local run).

    compare_outputs.py DIR_A DIR_B [--glob 'results/**/*.json'] [--ignore-keys REGEX]
                       [--tables GLOB ...] [--tensors GLOB ...] [--bytes GLOB ...]
                       [--map REGEX=REPLACEMENT ...]

Every JSON file matched under either directory must exist under both and parse to
the same value, except for keys whose name matches --ignore-keys (wall-clock
measurements, which differ from run to run by nature). Floats are compared
exactly unless --rel-tol is given. Exit status 0 if equal, 1 otherwise; a line
per difference on stdout.

``--tables GLOB`` adds CSV/TSV tables (result tables, training logs, dev predictions
with their logits) compared cell for cell after dropping the columns --ignore-keys
matches; ``--tensors GLOB`` safetensors files (saved weights, masks, importance),
every tensor exactly and the metadata as a mapping (its order on disk is not fixed);
``--bytes GLOB`` files compared byte for byte. ``--map REGEX=REPLACEMENT`` rewrites DIR_A's relative
paths before matching them with DIR_B's (``re.sub``, in order), for comparing two
versions of the workflow whose results layout differs.
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


def table_diff(a: Path, b: Path, rel: str, ignore: re.Pattern) -> list[str]:
    """Cell-by-cell differences of two CSV/TSV tables, ignored columns dropped."""
    import pandas as pd

    sep = "\t" if a.suffix == ".tsv" else ","
    ta, tb = (pd.read_csv(p, sep=sep) for p in (a, b))
    if list(ta.columns) != list(tb.columns):
        return [f"{rel}: columns {list(ta.columns)} != {list(tb.columns)}"]
    keep = [c for c in ta.columns if not ignore.search(str(c))]
    ta, tb = ta[keep], tb[keep]
    if ta.shape != tb.shape:
        return [f"{rel}: shape {ta.shape} != {tb.shape}"]
    if ta.equals(tb):
        return []
    differ = [c for c in keep if not ta[c].equals(tb[c])]
    return [f"{rel}: column(s) {differ} differ"]


def tensor_diff(a: Path, b: Path, rel: str) -> list[str]:
    """Differences of two safetensors files: names, every tensor exactly, metadata."""
    import torch
    from safetensors import safe_open

    with safe_open(str(a), framework="pt") as ha, safe_open(str(b), framework="pt") as hb:
        if ha.metadata() != hb.metadata():
            return [f"{rel}: metadata {ha.metadata()} != {hb.metadata()}"]
        if set(ha.keys()) != set(hb.keys()):
            return [f"{rel}: tensor names differ"]
        return [
            f"{rel}: tensor {k} differs"
            for k in sorted(ha.keys())
            if not torch.equal(ha.get_tensor(k), hb.get_tensor(k))
        ]


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
    ap.add_argument("--tables", action="append", default=[], help="CSV/TSV glob(s)")
    ap.add_argument("--tensors", action="append", default=[], help="safetensors glob(s)")
    ap.add_argument("--bytes", action="append", default=[], help="glob(s) compared byte for byte")
    ap.add_argument("--map", action="append", default=[], help="REGEX=REPLACEMENT for DIR_A paths")
    args = ap.parse_args(argv)
    globs = args.glob or ["results/**/*.json"]
    ignore = re.compile(args.ignore_keys)
    maps = [tuple(m.split("=", 1)) for m in args.map]

    def files(root: Path, patterns, mapped: bool) -> dict[str, Path]:
        found = {}
        for g in patterns:
            for p in root.glob(g):
                if p.is_file():
                    rel = str(p.relative_to(root))
                    for pattern, replacement in maps if mapped else ():
                        rel = re.sub(pattern, replacement, rel)
                    found[rel] = p
        return found

    problems: list[str] = []
    counts = {}
    kinds = (
        ("JSON", globs),
        ("table", args.tables),
        ("safetensors", args.tensors),
        ("byte-compared", args.bytes),
    )
    for kind, patterns in kinds:
        if not patterns:
            continue
        fa, fb = files(args.dir_a, patterns, True), files(args.dir_b, patterns, False)
        if not fa and not fb:
            print(f"no files match {patterns} under either directory")
            return 1
        for rel in sorted(fa.keys() ^ fb.keys()):
            problems.append(f"{rel}: only under {args.dir_a if rel in fa else args.dir_b}")
        for rel in sorted(fa.keys() & fb.keys()):
            if kind == "table":
                problems += table_diff(fa[rel], fb[rel], rel, ignore)
                continue
            if kind == "safetensors":
                problems += tensor_diff(fa[rel], fb[rel], rel)
                continue
            if kind != "JSON":
                if fa[rel].read_bytes() != fb[rel].read_bytes():
                    problems.append(f"{rel}: bytes differ")
                continue
            try:
                a, b = json.loads(fa[rel].read_text()), json.loads(fb[rel].read_text())
            except ValueError as exc:
                problems.append(f"{rel}: not JSON ({exc})")
                continue
            diff(a, b, rel, ignore, args.rel_tol, problems)
        counts[kind] = len(fa.keys() & fb.keys())
    for line in problems:
        print(line)
    compared = ", ".join(f"{n} {kind} file(s)" for kind, n in counts.items())
    print(
        f"compared {compared}: {'EQUAL' if not problems else f'{len(problems)} difference(s)'}"
        f" (ignoring keys matching {args.ignore_keys!r})"
    )
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
