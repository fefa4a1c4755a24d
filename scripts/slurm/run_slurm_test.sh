#!/usr/bin/env bash
# run_slurm_test.sh -- prove profiles/slurm on a real (local, single-node) SLURM.
#
#   scripts/slurm/run_slurm_test.sh                 # lpaf on tests/config/tiny.yaml
#   scripts/slurm/run_slurm_test.sh --smoke         # the two-rule workflow in scripts/slurm/smoke/
#   scripts/slurm/run_slurm_test.sh --snakefile S [--configfile C] [-- TARGET ...]
#
# Steps: install + start the local SLURM (scripts/slurm/local_slurm.sh); copy
# profiles/slurm with its placeholders filled in (partition `local`, account
# `lpaf_test`; nothing else changed); run the target through SLURM with that
# profile, then the same target locally, each in its own fresh directory;
# compare their JSON outputs (timing keys excepted, scripts/slurm/compare_outputs.py);
# check that every job snakemake submitted is a COMPLETED job of our account and
# partition in `sacct` and in the slurmctld log; stop SLURM; print timings.
# Exit status 0 only if everything held.
#
# Options:
#   --smoke            use scripts/slurm/smoke/Snakefile (no config file)
#   --snakefile FILE   workflow to run [Snakefile of the repository]
#   --configfile FILE  its config [tests/config/tiny.yaml; none with --smoke]
#   --cores N          cores of the local run [nproc]
#   --workdir DIR      where the runs go [a new /tmp/lpaf-slurm-test.XXXXXX]
#   --keep-cluster     leave the local SLURM running at the end
#   --                 everything after it: targets for both runs
set -euo pipefail
# Daemons and admin tools live in /usr/sbin, which a non-login PATH may lack.
export PATH="$PATH:/usr/sbin:/sbin"

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
LOCAL_SLURM="$REPO/scripts/slurm/local_slurm.sh"
SNAKEFILE="$REPO/Snakefile"
CONFIGFILE=""
CONFIG_SET=0
CORES=$(nproc)
WORK=""
KEEP_CLUSTER=0
TARGETS=()
PARTITION=local
ACCOUNT=lpaf_test

while [[ $# -gt 0 ]]; do
    case "$1" in
        --smoke) SNAKEFILE="$REPO/scripts/slurm/smoke/Snakefile"; CONFIGFILE=""; CONFIG_SET=1 ;;
        --snakefile) SNAKEFILE=$(realpath "$2"); shift ;;
        --configfile) CONFIGFILE=$(realpath "$2"); CONFIG_SET=1; shift ;;
        --cores) CORES=$2; shift ;;
        --workdir) WORK=$2; shift ;;
        --keep-cluster) KEEP_CLUSTER=1 ;;
        --) shift; TARGETS=("$@"); break ;;
        -h | --help) sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
if [[ $CONFIG_SET -eq 0 && $SNAKEFILE == "$REPO/Snakefile" ]]; then
    if [[ -f $REPO/tests/config/tiny.yaml ]]; then
        CONFIGFILE="$REPO/tests/config/tiny.yaml"
    else
        echo "no tests/config/tiny.yaml: falling back to --smoke" >&2
        SNAKEFILE="$REPO/scripts/slurm/smoke/Snakefile"
    fi
fi
[[ -f $SNAKEFILE ]] || { echo "no such Snakefile: $SNAKEFILE" >&2; exit 2; }

if [[ -z ${VIRTUAL_ENV:-} && -x $REPO/.venv/bin/snakemake ]]; then
    # shellcheck disable=SC1091
    . "$REPO/.venv/bin/activate"
fi
command -v snakemake >/dev/null || { echo "snakemake not on PATH" >&2; exit 2; }
python -c "import snakemake_executor_plugin_slurm" 2>/dev/null ||
    { echo "snakemake-executor-plugin-slurm is not installed: pip install snakemake-executor-plugin-slurm" >&2; exit 2; }

[[ -n $WORK ]] || WORK=$(mktemp -d /tmp/lpaf-slurm-test.XXXXXX)
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
# Workflows read models/data offline, like the test suite does.
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1

say() { printf '\n=== %s\n' "$*"; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
declare -A T
FAIL=0
fail() { echo "FAIL: $*"; FAIL=1; }

CLUSTER_UP=0
cleanup() {
    if [[ $CLUSTER_UP -eq 1 && $KEEP_CLUSTER -eq 0 ]]; then
        CLUSTER_UP=0
        local t0
        t0=$(now)
        LPAF_SLURM_KEEP_STATE=0 "$LOCAL_SLURM" stop >/dev/null || echo "WARNING: stop failed" >&2
        T[stop]=$(secs "$t0" "$(now)")
    fi
}
trap cleanup EXIT

# --- SLURM up ----------------------------------------------------------------
say "install (apt-get, only what is missing)"
t0=$(now); "$LOCAL_SLURM" install; T[install]=$(secs "$t0" "$(now)")
say "start the local SLURM"
t0=$(now); CLUSTER_UP=1; "$LOCAL_SLURM" start; T[start]=$(secs "$t0" "$(now)")
eval "$("$LOCAL_SLURM" env)"
STATE=$LPAF_SLURM_STATE

# --- the profile, placeholders filled in ----------------------------------------
mkdir -p "$WORK/profile"
sed -e "s/\"CHANGE_ME_PARTITION\"/\"$PARTITION\"/" -e "s/\"CHANGE_ME_ACCOUNT\"/\"$ACCOUNT\"/" \
    "$REPO/profiles/slurm/config.yaml" >"$WORK/profile/config.yaml"
if grep -v '^\s*#' "$WORK/profile/config.yaml" | grep -q CHANGE_ME; then
    fail "placeholders left in the profile copy: $(grep -n CHANGE_ME "$WORK/profile/config.yaml" | grep -v '#')"
fi
diff -u "$REPO/profiles/slurm/config.yaml" "$WORK/profile/config.yaml" | grep '^[-+] ' || true

CONFIG_ARGS=()
[[ -n $CONFIGFILE ]] && CONFIG_ARGS=(--configfile "$CONFIGFILE")
cd "$REPO" # like a user: from the repository root, so profiles/default applies too

# --- the workflow through SLURM --------------------------------------------------
say "workflow through SLURM: $SNAKEFILE ${CONFIGFILE:+(config $CONFIGFILE)} -> $WORK/slurm"
# Short first status poll: the test jobs take seconds, not hours.
SLURM_CMD=(snakemake --snakefile "$SNAKEFILE" --directory "$WORK/slurm" "${CONFIG_ARGS[@]}"
    --profile "$WORK/profile" --slurm-init-seconds-before-status-checks 2
    --slurm-keep-successful-logs "${TARGETS[@]}")
echo "${SLURM_CMD[*]}"
t0=$(now)
rc=0; timeout 3000 "${SLURM_CMD[@]}" >"$WORK/slurm.log" 2>&1 || rc=$?
T[slurm]=$(secs "$t0" "$(now)")
[[ $rc -eq 0 ]] || { tail -n 40 "$WORK/slurm.log"; fail "SLURM run exited $rc (log: $WORK/slurm.log)"; }

# --- the same locally ------------------------------------------------------------
say "workflow locally (--cores $CORES) -> $WORK/local"
LOCAL_CMD=(snakemake --snakefile "$SNAKEFILE" --directory "$WORK/local" "${CONFIG_ARGS[@]}"
    --cores "$CORES" "${TARGETS[@]}")
echo "${LOCAL_CMD[*]}"
t0=$(now)
rc=0; timeout 3000 "${LOCAL_CMD[@]}" >"$WORK/local.log" 2>&1 || rc=$?
T[local]=$(secs "$t0" "$(now)")
[[ $rc -eq 0 ]] || { tail -n 40 "$WORK/local.log"; fail "local run exited $rc (log: $WORK/local.log)"; }

# --- same results? -----------------------------------------------------------------
say "compare JSON outputs (SLURM vs local)"
python "$REPO/scripts/slurm/compare_outputs.py" "$WORK/slurm" "$WORK/local" || fail "JSON outputs differ"

# --- did every job go through SLURM? ---------------------------------------------------
say "SLURM job ids"
RUN_ID=$(sed -n 's/.*SLURM run ID: \([^ ]*\).*/\1/p' "$WORK/slurm.log" | head -n 1)
mapfile -t JOBIDS < <(sed -n 's/.*has been submitted with SLURM jobid \([0-9]*\).*/\1/p' "$WORK/slurm.log")
N_FINISHED=$(grep -c '^Finished jobid' "$WORK/slurm.log" || true)
echo "run id: ${RUN_ID:-?}; jobs finished: $N_FINISHED; submitted to SLURM: ${#JOBIDS[@]} (${JOBIDS[*]:-})"
echo "(finished jobs not submitted are rules without an action, e.g. 'all', which snakemake completes itself)"
[[ -n $RUN_ID ]] || fail "no 'SLURM run ID' in the snakemake log: did the slurm executor run?"
[[ ${#JOBIDS[@]} -gt 0 ]] || fail "no job was submitted to SLURM"
if [[ ${#JOBIDS[@]} -gt 0 ]]; then
    SACCT=$(sacct -X -n -P --name "$RUN_ID" -S "$(date -d '-1 day' +%Y-%m-%dT%H:%M)" \
        -o JobIDRaw,State,Account,Partition,ReqCPUS,ReqMem,Elapsed,Comment%60)
    printf 'sacct (JobID|State|Account|Partition|ReqCPUS|ReqMem|Elapsed):\n%s\n' "$SACCT"
    for id in "${JOBIDS[@]}"; do
        line=$(grep "^$id|" <<<"$SACCT" || true)
        [[ -n $line ]] || { fail "job $id is not in sacct"; continue; }
        IFS='|' read -r _ state account partition _ <<<"$line"
        [[ $state == COMPLETED ]] || fail "job $id: state $state"
        [[ $account == "$ACCOUNT" ]] || fail "job $id: account $account"
        [[ $partition == "$PARTITION" ]] || fail "job $id: partition $partition"
        grep -q "JobId=$id " "$STATE/log/slurmctld.log" || fail "job $id not in slurmctld.log"
    done
    # The smoke workflow records the SLURM_JOB_ID each job saw (logs/**/*.env).
    while IFS= read -r -d '' envfile; do
        seen=$(python -c 'import json,sys; print(json.load(open(sys.argv[1]))["slurm_job_id"])' "$envfile")
        [[ " ${JOBIDS[*]} " == *" $seen "* ]] || fail "$envfile: ran outside the submitted SLURM jobs (SLURM_JOB_ID=$seen)"
        echo "  ${envfile#"$WORK"/slurm/}: SLURM_JOB_ID=$seen"
    done < <(find "$WORK/slurm/logs" -name '*.env' -print0 2>/dev/null)
    echo "slurmctld.log: $(grep -c '_slurm_rpc_submit_batch_job: JobId=' "$STATE/log/slurmctld.log") batch submissions"
fi
cd "$WORK"

# --- down ---------------------------------------------------------------------------
if [[ $KEEP_CLUSTER -eq 0 ]]; then say "stop the local SLURM"; fi
cleanup
for d in munged mariadbd slurmdbd slurmctld slurmd; do
    [[ ! -s $STATE/run/$d.pid ]] || fail "$d pid file left behind"
done

say "timings (seconds)"
{
    printf '%-28s %8s\n' "install (apt, if missing)" "${T[install]}"
    printf '%-28s %8s\n' "start local SLURM" "${T[start]}"
    printf '%-28s %8s\n' "workflow via SLURM" "${T[slurm]}"
    printf '%-28s %8s\n' "workflow locally" "${T[local]}"
    printf '%-28s %8s\n' "stop local SLURM" "${T[stop]:-kept running}"
} | tee "$WORK/timings.txt"
echo "logs and outputs: $WORK"
if [[ $FAIL -eq 0 ]]; then echo "RESULT: PASS"; else echo "RESULT: FAIL"; fi
exit "$FAIL"
