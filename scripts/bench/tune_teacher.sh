#!/usr/bin/env bash
# Teacher fine-tuning budget, chosen on held-out training rows (never dev): fine-tune
# the default config with config/tune-sst2.yaml (1000 training rows held out) once per
# (training examples, learning rate[, epochs]) and print each teacher's held-out score
# beside the constant predictor's.
#
#   scripts/bench/tune_teacher.sh WORKDIR OUT.csv EXAMPLES:LR[:EPOCHS] [...]
#
# EXAMPLES "all" trains on every non-held-out row. TUNE_CONFIG replaces
# config/tune-sst2.yaml by other overlays on config/config.yaml (paths from the repo
# root, in order), e.g. TUNE_CONFIG="config/study-stsb.yaml config/tune-stsb.yaml".
set -euo pipefail
usage="usage: tune_teacher.sh WORKDIR OUT.csv EXAMPLES:LR[:EPOCHS] [...]"
work=${1:?$usage}
out=${2:?$usage}
shift 2
repo=$(cd "$(dirname "$0")/../.." && pwd)
py=${PYTHON:-$repo/.venv/bin/python}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export PATH="$(dirname "$py"):$PATH"
overlays=()
for f in ${TUNE_CONFIG:-config/tune-sst2.yaml}; do overlays+=("$repo/$f"); done
mkdir -p "$work"
for variant in "$@"; do
    IFS=: read -r n lr epochs <<<"$variant"
    dir=$work/n${n}_lr${lr}${epochs:+_e$epochs}
    mkdir -p "$dir"
    {
        printf 'finetune:\n  max_train_examples: %s\n  learning_rate: !!float %s\n' \
            "$([ "$n" = all ] && echo null || echo "$n")" "$lr"
        [ -n "$epochs" ] && printf '  epochs: %s\n' "$epochs"
    } >"$dir/overlay.yaml"
    snakemake --snakefile "$repo/Snakefile" --directory "$dir" \
        --configfile "$repo/config/config.yaml" "${overlays[@]}" "$dir/overlay.yaml" \
        --cores 2 --quiet rules --until finetune
done
"$py" - "$out" "$work" "$@" <<'PY'
import json, sys
from pathlib import Path
import pandas as pd
from lpaf.tasks import get_task
out, work, variants = sys.argv[1], sys.argv[2], sys.argv[3:]
rows = []
for v in variants:
    n, lr, *epochs = v.split(":")
    name = f"n{n}_lr{lr}" + (f"_e{epochs[0]}" if epochs else "")
    for m in sorted(Path(work, name).glob("results/*/*/finetune/seed*/metrics.json")):
        metrics = json.loads(m.read_text())
        log = pd.read_csv(m.parent / "train_log.csv").dropna(subset=["eval_main"])
        rows.append({
            "task": metrics.get("task", ""), "max_train_examples": n,
            "learning_rate": float(lr), "epochs": epochs[0] if epochs else "",
            "seed": metrics["seed"], "steps": int(log["step"].max()),
            "heldout_score": 100 * metrics["metrics"]["heldout"]["main"],
            "best_heldout_along_training": 100 * log["eval_main"].max(),
            "constant": 100 * metrics["constant"]["heldout"]["main"],
            **{f"heldout_{k}": 100 * metrics["metrics"]["heldout"][k]
               for k in get_task(metrics["task"]).metrics},
            "train_seconds": metrics.get("train_seconds", float("nan")),
        })
table = pd.DataFrame(rows)
table.to_csv(out, index=False)
print(table.to_markdown(index=False, floatfmt="g"))
PY
