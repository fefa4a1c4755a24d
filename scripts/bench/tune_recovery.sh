#!/usr/bin/env bash
# Recovery learning rate, chosen on held-out training rows (never dev): run the
# default config with config/tune-sst2.yaml once up to the factorized models, then
# recovery once per learning rate in its own copy of that run, and collect every
# recovered model's held-out score, dev loss and KL to the teacher along training.
#
#   scripts/bench/tune_recovery.sh WORKDIR OUT.csv LR [LR ...]
#
# The per-LR runs share the base run's fine-tuned, pruned and factorized models
# (hard-linked copies; every output is replaced by rename, never written in place).
set -euo pipefail
work=${1:?usage: tune_recovery.sh WORKDIR OUT.csv LR [LR ...]}
out=${2:?usage: tune_recovery.sh WORKDIR OUT.csv LR [LR ...]}
shift 2
repo=$(cd "$(dirname "$0")/../.." && pwd)
py=${PYTHON:-$repo/.venv/bin/python}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export PATH="$(dirname "$py"):$PATH"
smk() {  # DIR OVERLAY|"" SNAKEMAKE-ARGS...
    local dir=$1 overlay=$2
    shift 2
    local files=("$repo/config/config.yaml" "$repo/config/tune-sst2.yaml")
    [ -n "$overlay" ] && files+=("$overlay")
    snakemake --snakefile "$repo/Snakefile" --directory "$dir" --configfile "${files[@]}" \
        --cores 2 --rerun-triggers mtime --quiet rules "$@"
}
mkdir -p "$work"
smk "$work/base" "" --until factorize
for lr in "$@"; do
    dir=$work/lr$lr
    [ -d "$dir" ] || cp -al "$work/base" "$dir"
    printf 'recover:\n  learning_rate: !!float %s\n' "$lr" >"$work/lr$lr.yaml"
    smk "$dir" "$work/lr$lr.yaml" --until recover
done
"$py" "$repo/scripts/bench/collect_heldout.py" "$out" "$work" "$@"
