#!/usr/bin/env bash
# Behaviour unchanged across a refactor, shown: run the tiny test configs with the
# workflow and library of an OLD commit and of the working tree, then compare every
# metrics JSON, table and saved tensor (scripts/slurm/compare_outputs.py).
#
#   scripts/bench/layout_equivalence.sh OLD_COMMIT [WORKDIR]
#
# Two runs per tree: (a) tests/config/tiny.yaml, (b) tiny.yaml + tiny_study.yaml.
# Keys that hold wall time, paths or the precision probe are ignored; the factorize
# path split of the layout issue ({svd} -> {method}/{rank_rule}) is mapped.
set -euo pipefail
old=${1:?usage: layout_equivalence.sh OLD_COMMIT [WORKDIR]}
work=${2:-$(mktemp -d /tmp/lpaf-equiv-XXXX)}
repo=$(cd "$(dirname "$0")/../.." && pwd)
py=${PYTHON:-$repo/.venv/bin/python}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export PATH="$(dirname "$py"):$PATH"
export LPAF_CACHE_DIR="$work/cache"

mkdir -p "$work"
if [ ! -d "$work/old" ]; then
    git -C "$repo" archive --format=tar --prefix=old/ "$old" | tar -x -C "$work"
fi

run() {  # TREE OUT CONFIG...
    local tree=$1 out=$2; shift 2
    local args=(--configfile)  # one flag, several files (a second flag would replace the first)
    for c in "$@"; do args+=("$tree/$c"); done
    [ -f "$out/.done" ] && return 0
    PYTHONPATH="$tree/src" snakemake --snakefile "$tree/Snakefile" --directory "$out" \
        "${args[@]}" --cores 2 --quiet rules >"$out.log" 2>&1
    touch "$out/.done"
}

for tree in old new; do
    src=$work/old
    [ "$tree" = new ] && src=$repo
    run "$src" "$work/$tree-a" tests/config/tiny.yaml
    run "$src" "$work/$tree-b" tests/config/tiny.yaml tests/config/tiny_study.yaml
done

ignore='(_seconds|_secs|_time|_timestamp)$|^latency_ms_|^latency_ratio_|^stage_over_plain_svd$|^precision_choice$|^model_dir$|^source_model$|^teacher$|^elapsed_s$|^seconds$'
status=0
for run in a b; do
    echo "== run $run: $work/old-$run vs $work/new-$run"
    "$py" "$repo/scripts/slurm/compare_outputs.py" "$work/old-$run" "$work/new-$run" \
        --ignore-keys "$ignore" \
        --map '(factorize/[^/]+/[a-z_]+)/rho=\1/uniform/rho' \
        --tables 'results/**/*.csv' --tables 'results/**/*.tsv' \
        --tensors 'results/**/*.safetensors' || status=1
done
exit $status
