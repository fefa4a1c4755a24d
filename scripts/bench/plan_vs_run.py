"""Compare `lpaf plan`'s estimate (results/plan.json, written by `make run`) with what
the run took, per rule and in total, from Snakemake's own log of that run.

    .venv/bin/python scripts/bench/plan_vs_run.py results/plan.json .snakemake/log/<run>.snakemake.log \
        [--wall SECONDS] [--csv out.csv]

Job times come from the log's start and "Finished jobid" timestamps (1 s resolution);
with one job at a time their sum is the workflow's busy time. ``--wall`` is the
measured wall time of the whole command (e.g. from /usr/bin/time), compared with the
plan's total.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import pandas as pd

STAMP = re.compile(r"^\[(\w{3} \w{3}\s+\d+ \d\d:\d\d:\d\d \d{4})\]$")
RULE = re.compile(r"^(?:local)?rule (\S+):$")
JOBID = re.compile(r"^\s+jobid: (\d+)$")
WILDCARDS = re.compile(r"^\s+wildcards: (.*)$")
FINISHED = re.compile(r"^Finished jobid: (\d+) \(Rule: (\S+)\)$")


def _time(text: str) -> datetime:
    return datetime.strptime(" ".join(text.split()), "%a %b %d %H:%M:%S %Y")


def job_times(log_text: str) -> list[dict]:
    """One row per finished job: rule, wildcards, start, end, seconds."""
    stamp = None
    started: dict[str, dict] = {}
    current: dict | None = None
    rows = []
    for line in log_text.splitlines():
        m = STAMP.match(line)
        if m:
            stamp, current = _time(m.group(1)), None
            continue
        m = RULE.match(line)
        if m and stamp is not None:
            current = {"rule": m.group(1), "wildcards": {}, "start": stamp}
            continue
        if current is not None:
            m = JOBID.match(line)
            if m:
                started[m.group(1)] = current
                continue
            m = WILDCARDS.match(line)
            if m:
                current["wildcards"] = dict(item.split("=", 1) for item in m.group(1).split(", "))
                continue
        m = FINISHED.match(line)
        if m and m.group(1) in started:
            job = started.pop(m.group(1))
            rows.append({**job, "end": stamp, "seconds": (stamp - job["start"]).total_seconds()})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("plan", type=Path)
    parser.add_argument("log", type=Path)
    parser.add_argument("--wall", type=float, help="measured wall time of the run (s)")
    parser.add_argument("--csv", type=Path)
    args = parser.parse_args()
    plan = json.loads(args.plan.read_text())
    ran = job_times(args.log.read_text())
    estimate = defaultdict(float)
    for job in plan["jobs"]:
        estimate[job["rule"]] += job["seconds"]
    measured = defaultdict(float)
    count = defaultdict(int)
    for job in ran:
        measured[job["rule"]] += job["seconds"]
        count[job["rule"]] += 1
    rows = [
        {
            "rule": rule,
            "jobs": count[rule],
            "estimate_s": round(estimate[rule], 1),
            "measured_s": measured[rule],
            "estimate_over_measured": round(estimate[rule] / measured[rule], 3)
            if measured[rule]
            else None,
        }
        for rule in sorted(estimate, key=lambda r: -estimate[r])
    ]
    table = pd.DataFrame(rows)
    first = min(j["start"] for j in ran)
    last = max(j["end"] for j in ran)
    span = (last - first).total_seconds()
    print(table.to_markdown(index=False))
    print(
        f"\njobs: estimate {plan['serial_seconds']:.0f} s, measured {sum(measured.values()):.0f} s "
        f"(first job start to last job end {span:.0f} s); "
        f"plan total {plan['total_seconds']:.0f} s"
    )
    if args.wall:
        print(
            f"wall time of the command {args.wall:.0f} s: plan total / wall = "
            f"{plan['total_seconds'] / args.wall:.3f}"
        )
    if args.csv:
        table.to_csv(args.csv, index=False)


if __name__ == "__main__":
    main()
