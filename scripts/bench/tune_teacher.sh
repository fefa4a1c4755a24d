#!/usr/bin/env bash
# Teacher fine-tuning budget, chosen on held-out training rows (never dev): fine-tune
# the default config with config/tune-sst2.yaml (1000 training rows held out) once per
# (training examples, learning rate) and print each teacher's held-out score beside
# the constant predictor's.
#
#   scripts/bench/tune_teacher.sh WORKDIR OUT.csv EXAMPLES:LR [EXAMPLES:LR ...]
set -euo pipefail
work=${1:?usage: tune_teacher.sh WORKDIR OUT.csv EXAMPLES:LR [EXAMPLES:LR ...]}
out=${2:?usage: tune_teacher.sh WORKDIR OUT.csv EXAMPLES:LR [EXAMPLES:LR ...]}
shift 2
repo=$(cd "$(dirname "$0")/../.." && pwd)
py=${PYTHON:-$repo/.venv/bin/python}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export PATH="$(dirname "$py"):$PATH"
mkdir -p "$work"
for variant in "$@"; do
    n=${variant%%:*} lr=${variant##*:}
    dir=$work/n${n}_lr${lr}
    mkdir -p "$dir"
    printf 'finetune:\n  max_train_examples: %s\n  learning_rate: !!float %s\n' "$n" "$lr" >"$dir/overlay.yaml"
    snakemake --snakefile "$repo/Snakefile" --directory "$dir" \
        --configfile "$repo/config/config.yaml" "$repo/config/tune-sst2.yaml" "$dir/overlay.yaml" \
        --cores 2 --quiet rules --until finetune
done
"$py" - "$out" "$work" "$@" <<'PY'
import json, sys
from pathlib import Path
import pandas as pd
out, work, variants = sys.argv[1], sys.argv[2], sys.argv[3:]
rows = []
for v in variants:
    n, lr = v.split(":")
    for m in sorted(Path(work, f"n{n}_lr{lr}").glob("results/*/*/finetune/seed*/metrics.json")):
        metrics = json.loads(m.read_text())
        log = pd.read_csv(m.parent / "train_log.csv").dropna(subset=["eval_main"])
        rows.append({
            "max_train_examples": int(n), "learning_rate": float(lr),
            "seed": metrics["seed"], "steps": int(log["step"].max()),
            "heldout_score": 100 * metrics["metrics"]["heldout"]["main"],
            "best_heldout_along_training": 100 * log["eval_main"].max(),
            "constant": 100 * metrics["constant"]["heldout"]["main"],
            "train_seconds": metrics.get("train_seconds", float("nan")),
        })
table = pd.DataFrame(rows)
table.to_csv(out, index=False)
print(table.to_markdown(index=False, floatfmt="g"))
PY
