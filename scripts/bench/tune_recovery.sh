#!/usr/bin/env bash
# Recovery learning rate and budget, chosen on held-out training rows (never dev): run
# the default config with config/tune-sst2.yaml once up to the factorized models, then
# recovery once per variant in its own copy of that run, and collect every recovered
# model's held-out score, dev loss and KL to the teacher along training.
#
#   scripts/bench/tune_recovery.sh WORKDIR OUT.csv VARIANT [VARIANT ...]
#
# A VARIANT is a learning rate (`1e-4`: the default budget) or LR:EXAMPLES
# (`1e-4:15360`: recovery on 15,360 training examples, 480 steps at batch 32).
# TUNE_OVERLAY=FILE adds a config file after config/tune-sst2.yaml in every run (for
# example config/tune-sst2-budget.yaml: other rows, a second pruning density).
# The per-variant runs share the base run's fine-tuned, pruned and factorized models
# (hard-linked copies; every output is replaced by rename, never written in place).
set -euo pipefail
usage="usage: tune_recovery.sh WORKDIR OUT.csv LR[:EXAMPLES] [LR[:EXAMPLES] ...]"
work=${1:?$usage}
out=${2:?$usage}
shift 2
[ $# -gt 0 ] || { echo "$usage" >&2; exit 2; }
repo=$(cd "$(dirname "$0")/../.." && pwd)
py=${PYTHON:-$repo/.venv/bin/python}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export PATH="$(dirname "$py"):$PATH"
smk() {  # DIR OVERLAY|"" SNAKEMAKE-ARGS...
    local dir=$1 overlay=$2
    shift 2
    local files=("$repo/config/config.yaml" "$repo/config/tune-sst2.yaml")
    [ -n "${TUNE_OVERLAY:-}" ] && files+=("$(realpath "$TUNE_OVERLAY")")
    [ -n "$overlay" ] && files+=("$overlay")
    snakemake --snakefile "$repo/Snakefile" --directory "$dir" --configfile "${files[@]}" \
        --cores 2 --rerun-triggers mtime --quiet rules "$@"
}
variant_dir() {  # LR[:EXAMPLES] -> the run directory's name
    case $1 in
        *:*) echo "lr${1%%:*}_n${1##*:}" ;;
        *) echo "lr$1" ;;
    esac
}
mkdir -p "$work"
smk "$work/base" "" --until factorize
for variant in "$@"; do
    name=$(variant_dir "$variant")
    dir=$work/$name
    [ -d "$dir" ] || cp -al "$work/base" "$dir"
    {
        printf 'recover:\n  learning_rate: !!float %s\n' "${variant%%:*}"
        case $variant in *:*) printf '  max_train_examples: %s\n' "${variant##*:}" ;; esac
    } >"$work/$name.yaml"
    smk "$dir" "$work/$name.yaml" --until recover
done
"$py" "$repo/scripts/bench/collect_heldout.py" "$out" "$work" "$@"
