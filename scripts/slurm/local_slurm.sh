#!/usr/bin/env bash
# local_slurm.sh -- a throw-away, single-node SLURM cluster (with real job
# accounting) on this machine, for testing `snakemake --profile profiles/slurm`.
#
#   scripts/slurm/local_slurm.sh install   # apt-get the packages if missing
#   scripts/slurm/local_slurm.sh start     # install if needed, write configs, start daemons
#   scripts/slurm/local_slurm.sh status    # daemons, sinfo, squeue
#   scripts/slurm/local_slurm.sh env       # prints `export SLURM_CONF=...`; use: eval "$(... env)"
#   scripts/slurm/local_slurm.sh stop      # cancel jobs, kill our daemons by PID, remove state
#
# What it runs (all as root, each in its foreground form, detached with setsid,
# its PID recorded in $STATE/run/<daemon>.pid):
#   munged -F      authentication (key and socket in the state dir)
#   mariadbd       accounting database (datadir in the state dir, 127.0.0.1 only)
#   slurmdbd -D    accounting daemon -- snakemake-executor-plugin-slurm polls job
#                  states with `sacct` and validates accounts with `sacctmgr`,
#                  so accounting is real, not faked
#   slurmctld -D   controller
#   slurmd -D      the one compute node (= this host, its real CPUs and memory)
# Node: this host; partition `local` (Default=YES); account `lpaf_test`
# (root is a member; AccountingStorageEnforce=associations, so a wrong account
# is rejected just like on a real cluster).
#
# No systemd and no cgroups: ProctrackType=proctrack/linuxproc, TaskPlugin=task/none.
# Outside the state directory it only installs packages and, while running, makes
# the symlink /run/slurm/conf -> $STATE/etc (see make_conf_link for why).
#
# Environment (all optional):
#   LPAF_SLURM_STATE    state directory                  [/tmp/lpaf-slurm]
#   LPAF_SLURM_PORTS    base port: ctld, d, dbd, mariadb = base, +1, +2, +3  [16817]
#   LPAF_SLURM_TIMEOUT  seconds to wait for each daemon / the node           [60]
#   LPAF_SLURM_KEEP_STATE=1   `stop` keeps the state directory (logs) instead of removing it
set -euo pipefail
# Daemons and admin tools live in /usr/sbin, which a non-login PATH may lack.
export PATH="$PATH:/usr/sbin:/sbin"

STATE="${LPAF_SLURM_STATE:-/tmp/lpaf-slurm}"
PORT_BASE="${LPAF_SLURM_PORTS:-16817}"
TIMEOUT="${LPAF_SLURM_TIMEOUT:-60}"
CLUSTER="lpaflocal"          # lowercase letters only: sacctmgr lower-cases cluster names
ACCOUNT="lpaf_test"
PARTITION="local"
CTLD_PORT=$((PORT_BASE))
SLURMD_PORT=$((PORT_BASE + 1))
DBD_PORT=$((PORT_BASE + 2))
DB_PORT=$((PORT_BASE + 3))
ETC="$STATE/etc"
RUN="$STATE/run"
LOG="$STATE/log"
SLURM_CONF_FILE="$ETC/slurm.conf"
MUNGE_SOCKET="$RUN/munge.socket.2"
DB_SOCKET="$RUN/mariadb.sock"
# start order; stop goes in reverse
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)
APT_PACKAGES=(slurm-wlm slurmdbd munge mariadb-server mariadb-client)
REQUIRED_BINARIES=(munged mungekey mariadbd mariadb-install-db mariadb slurmdbd slurmctld slurmd
    sbatch srun sacct sacctmgr sinfo squeue scancel scontrol)

log() { printf '[local_slurm %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { printf '[local_slurm] ERROR: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# ----------------------------------------------------------------- install --
missing_binaries() {
    local b out=()
    for b in "${REQUIRED_BINARIES[@]}"; do
        command -v "$b" >/dev/null 2>&1 || out+=("$b")
    done
    echo "${out[*]:-}"
}

cmd_install() {
    local t0 missing
    t0=$(now)
    missing=$(missing_binaries)
    if [[ -z "$missing" ]]; then
        log "install: all packages present (0.0 s)"
        echo "TIMING install_s=0.0 (already installed)"
        return 0
    fi
    [[ $(id -u) -eq 0 ]] || die "missing binaries ($missing) and not root: install ${APT_PACKAGES[*]} yourself"
    command -v apt-get >/dev/null || die "missing binaries ($missing) and no apt-get (this script knows Debian/Ubuntu only)"
    log "install: missing [$missing]; apt-get install ${APT_PACKAGES[*]}"
    # Debian's maintainer scripts would try to start the services; a policy-rc.d
    # that answers 101 forbids that (containers usually already have one).
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && created_policy=1
    fi
    local rc=0
    if ! apt-cache show slurm-wlm >/dev/null 2>&1; then
        timeout 300 apt-get update -q || rc=$?
    fi
    if [[ $rc -eq 0 ]]; then
        DEBIAN_FRONTEND=noninteractive timeout 1200 \
            apt-get install -y -q --no-install-recommends "${APT_PACKAGES[@]}" >"/tmp/local_slurm_apt.$$.log" 2>&1 || rc=$?
    fi
    [[ $created_policy -eq 1 ]] && rm -f "$policy"
    if [[ $rc -ne 0 ]]; then
        tail -n 30 "/tmp/local_slurm_apt.$$.log" >&2 || true
        die "apt-get failed (rc=$rc); full log: /tmp/local_slurm_apt.$$.log"
    fi
    rm -f "/tmp/local_slurm_apt.$$.log"
    missing=$(missing_binaries)
    [[ -z "$missing" ]] || die "still missing after install: $missing"
    log "install: done in $(elapsed "$t0") s ($(slurmctld -V))"
    echo "TIMING install_s=$(elapsed "$t0")"
}

# ------------------------------------------------------------ pid helpers --
pidfile() { echo "$RUN/$1.pid"; }

# daemon_pid NAME: the recorded pid if that process is alive AND is that daemon
daemon_pid() {
    local f pid comm
    f=$(pidfile "$1")
    [[ -s $f ]] || return 1
    pid=$(<"$f")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
    [[ $comm == "$1" ]] || return 1
    echo "$pid"
}

# launch NAME CMD...: start a foreground-form daemon detached in its own session
launch() {
    local name=$1 pid
    shift
    # setsid: own session, so signals to the caller's process group/terminal do
    # not reach it. In a non-interactive shell the child is no group leader, so
    # setsid execs in place and $! is the daemon's own pid.
    setsid "$@" >>"$LOG/$name.out" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$(pidfile "$name")"
    sleep 0.3
    if ! daemon_pid "$name" >/dev/null; then
        tail -n 20 "$LOG/$name.out" >&2 2>/dev/null || true
        [[ -f "$LOG/$name.log" ]] && tail -n 20 "$LOG/$name.log" >&2
        die "$name did not stay up (see $LOG/$name.out${name:+ and $LOG/$name.log})"
    fi
}

# wait_for DESCRIPTION NAME CMD...: retry CMD until it succeeds, TIMEOUT seconds
wait_for() {
    local what=$1 name=$2 deadline
    shift 2
    deadline=$((SECONDS + TIMEOUT))
    until "$@" >/dev/null 2>&1; do
        if [[ -n $name ]] && ! daemon_pid "$name" >/dev/null; then
            tail -n 30 "$LOG/$name.out" "$LOG/$name.log" >&2 2>/dev/null || true
            die "$name died while waiting for: $what (logs in $LOG)"
        fi
        ((SECONDS < deadline)) || {
            tail -n 30 "$LOG/$name.out" "$LOG/$name.log" >&2 2>/dev/null || true
            die "timed out after ${TIMEOUT}s waiting for: $what (logs in $LOG)"
        }
        sleep 0.5
    done
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

slurm_env() { env SLURM_CONF="$SLURM_CONF_FILE" "$@"; }

# ----------------------------------------------------------------- configs --
write_configs() {
    local node cpus boards sockets cores threads mem host
    # `slurmd -C` prints this host's real layout, e.g.
    # NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24105
    node=$(slurmd -C | head -n 1)
    host=$(hostname -s)
    cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$node")
    boards=$(sed -n 's/.* Boards=\([0-9]*\).*/\1/p' <<<"$node")
    sockets=$(sed -n 's/.* SocketsPerBoard=\([0-9]*\).*/\1/p' <<<"$node")
    cores=$(sed -n 's/.* CoresPerSocket=\([0-9]*\).*/\1/p' <<<"$node")
    threads=$(sed -n 's/.* ThreadsPerCore=\([0-9]*\).*/\1/p' <<<"$node")
    mem=$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$node")
    [[ -n $cpus && -n $mem ]] || die "could not parse 'slurmd -C': $node"

    cat >"$SLURM_CONF_FILE" <<EOF
# Written by scripts/slurm/local_slurm.sh -- single-node test cluster. Do not edit.
ClusterName=$CLUSTER
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
CredType=cred/munge
StateSaveLocation=$STATE/spool/slurmctld
SlurmdSpoolDir=$STATE/spool/slurmd
SlurmctldPidFile=$STATE/spool/slurmctld.pid
SlurmdPidFile=$STATE/spool/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no systemd, no cgroups
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
# real accounting through slurmdbd (sacct/sacctmgr are what the snakemake plugin uses)
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
# for slurmdbd connections Slurm takes the munge socket from here, NOT from AuthInfo
AccountingStoragePass=$MUNGE_SOCKET
AccountingStorageEnforce=associations
JobCompType=jobcomp/none
MinJobAge=300
InactiveLimit=0
KillWait=10
Waittime=0
SlurmctldTimeout=60
SlurmdTimeout=120
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus Boards=${boards:-1} SocketsPerBoard=${sockets:-1} CoresPerSocket=${cores:-$cpus} ThreadsPerCore=${threads:-1} RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF

    # cgroup.conf is not used by proctrack/linuxproc + task/none, but slurmd
    # looks for it; keep it explicit and inert.
    cat >"$ETC/cgroup.conf" <<EOF
# Written by scripts/slurm/local_slurm.sh: cgroups are not used on this test cluster.
CgroupAutomount=no
ConstrainCores=no
ConstrainRAMSpace=no
ConstrainDevices=no
EOF

    local pw
    if [[ -s $ETC/db.pass ]]; then pw=$(<"$ETC/db.pass"); else
        pw=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
        (umask 077 && echo "$pw" >"$ETC/db.pass")
    fi
    (umask 077 && cat >"$ETC/slurmdbd.conf" <<EOF
# Written by scripts/slurm/local_slurm.sh
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=root
PidFile=$STATE/spool/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$pw
StorageLoc=slurm_acct_db
EOF
    )
    chmod 600 "$ETC/slurmdbd.conf"
}

# ------------------------------------------------------------------ start --
start_munged() {
    if [[ ! -s $ETC/munge.key ]]; then
        (umask 077 && head -c 1024 /dev/urandom >"$ETC/munge.key")
    fi
    chmod 400 "$ETC/munge.key"
    launch munged munged --foreground --force \
        --key-file="$ETC/munge.key" --socket="$MUNGE_SOCKET" \
        --pid-file="$STATE/spool/munged.pid" --seed-file="$STATE/spool/munged.seed" \
        --log-file="$LOG/munged.log"
    wait_for "munge socket" munged test -S "$MUNGE_SOCKET"
    wait_for "munge round trip" munged bash -c "munge -S '$MUNGE_SOCKET' -n | unmunge -S '$MUNGE_SOCKET'"
}

db() { mariadb --no-defaults --socket="$DB_SOCKET" -u root "$@"; }

start_mariadbd() {
    local datadir="$STATE/mariadb"
    if [[ ! -d $datadir/mysql ]]; then
        mkdir -p "$datadir"
        timeout 120 mariadb-install-db --no-defaults --datadir="$datadir" --user=root \
            --auth-root-authentication-method=socket --skip-test-db \
            >"$LOG/mariadb-install-db.log" 2>&1 || {
            tail -n 20 "$LOG/mariadb-install-db.log" >&2
            die "mariadb-install-db failed (log: $LOG/mariadb-install-db.log)"
        }
    fi
    launch mariadbd mariadbd --no-defaults --user=root --datadir="$datadir" \
        --socket="$DB_SOCKET" --pid-file="$STATE/spool/mariadbd.pid" \
        --bind-address=127.0.0.1 --port="$DB_PORT" --log-error="$LOG/mariadbd.log" \
        --innodb-buffer-pool-size=64M --innodb-lock-wait-timeout=900 --max-connections=50
    wait_for "mariadb accepting connections" mariadbd db -e "SELECT 1"
    local pw
    pw=$(<"$ETC/db.pass")
    db -e "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$pw';
           ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$pw';
           CREATE DATABASE IF NOT EXISTS slurm_acct_db;
           GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
           FLUSH PRIVILEGES;"
}

start_slurmdbd() {
    launch slurmdbd slurmdbd -D
    wait_for "slurmdbd answering sacctmgr" slurmdbd slurm_env sacctmgr -n list cluster
}

register_accounting() {
    # sacctmgr -i: no confirmation prompt. Each step only when missing.
    if ! slurm_env sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
        slurm_env sacctmgr -i add cluster "$CLUSTER" >/dev/null
    fi
    if ! slurm_env sacctmgr -n -P list account format=account | grep -qx "$ACCOUNT"; then
        slurm_env sacctmgr -i add account "$ACCOUNT" Cluster="$CLUSTER" \
            Description="lpaf local test" Organization=lpaf >/dev/null
    fi
    local user
    for user in root "$(id -un)"; do
        if ! slurm_env sacctmgr -n -P list assoc cluster="$CLUSTER" account="$ACCOUNT" \
            user="$user" format=user | grep -qx "$user"; then
            slurm_env sacctmgr -i add user "$user" Account="$ACCOUNT" Cluster="$CLUSTER" >/dev/null
        fi
    done
}

# The config must also be found WITHOUT $SLURM_CONF: snakemake-executor-plugin-
# slurm-jobstep runs each job through a nested `srun` whose environment it strips
# of every SLURM_* variable, SLURM_CONF included. Slurm clients then look at
# /etc/slurm/slurm.conf, and next at /run/slurm/conf/slurm.conf (where a
# "configless" slurmd puts its copy). We point the latter at our etc/ directory.
CONF_LINK=/run/slurm/conf
make_conf_link() {
    if [[ -e /etc/slurm/slurm.conf ]]; then
        die "/etc/slurm/slurm.conf exists: srun inside jobs would read it instead of this test cluster's config. Move it away or test elsewhere."
    fi
    if [[ -L $CONF_LINK && "$(readlink "$CONF_LINK")" == "$ETC" ]]; then return 0; fi
    if [[ -e $CONF_LINK || -L $CONF_LINK ]]; then
        die "$CONF_LINK exists (another configless slurmd?); cannot expose this cluster's config to srun inside jobs"
    fi
    mkdir -p "$(dirname "$CONF_LINK")"
    ln -s "$ETC" "$CONF_LINK"
}
remove_conf_link() {
    if [[ -L $CONF_LINK && "$(readlink "$CONF_LINK")" == "$ETC" ]]; then
        rm -f "$CONF_LINK"
        rmdir "$(dirname "$CONF_LINK")" 2>/dev/null || true
    fi
}

node_state() { slurm_env sinfo -h -N -o '%t' 2>/dev/null | head -n 1; }
node_is_idle() { [[ "$(node_state)" == idle ]]; }

all_running() {
    local d
    for d in "${DAEMONS[@]}"; do daemon_pid "$d" >/dev/null || return 1; done
}

cmd_start() {
    local t0 t_install
    t_install=$(now)
    cmd_install >/dev/null
    local install_s
    install_s=$(elapsed "$t_install")
    if all_running && node_is_idle; then
        log "already running (state: $STATE)"
        echo "TIMING install_s=$install_s start_s=0.0 (already running)"
        return 0
    fi
    if [[ -d $RUN ]] && ls "$RUN"/*.pid >/dev/null 2>&1; then
        log "a previous, incomplete start left daemons/state behind: stopping it first"
        cmd_stop >/dev/null
    fi
    t0=$(now)
    local p
    for p in "$CTLD_PORT" "$SLURMD_PORT" "$DBD_PORT" "$DB_PORT"; do
        ! port_in_use "$p" || die "port $p on 127.0.0.1 is in use; set LPAF_SLURM_PORTS to another base port"
    done
    mkdir -p "$ETC" "$RUN" "$LOG" "$STATE/spool/slurmctld" "$STATE/spool/slurmd"
    chmod 700 "$STATE" "$RUN"
    write_configs
    make_conf_link
    export SLURM_CONF="$SLURM_CONF_FILE"
    log "starting munged";   start_munged
    log "starting mariadbd"; start_mariadbd
    log "starting slurmdbd"; start_slurmdbd
    log "registering cluster '$CLUSTER', account '$ACCOUNT'"; register_accounting
    log "starting slurmctld"
    launch slurmctld slurmctld -D
    wait_for "slurmctld answering" slurmctld slurm_env scontrol ping
    log "starting slurmd"
    launch slurmd slurmd -D
    wait_for "node $(hostname -s) idle in sinfo" slurmd node_is_idle
    log "up in $(elapsed "$t0") s: partition '$PARTITION', account '$ACCOUNT'. Use: eval \"\$($0 env)\""
    echo "TIMING install_s=$install_s start_s=$(elapsed "$t0")"
}

# ------------------------------------------------------------------- stop --
# kill_daemon NAME: TERM, wait, then KILL -- only the recorded, verified pid
kill_daemon() {
    local name=$1 pid deadline
    pid=$(daemon_pid "$name") || { rm -f "$(pidfile "$name")"; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 20))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name ($pid) ignored SIGTERM for 20 s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.2
    fi
    rm -f "$(pidfile "$name")"
    log "stopped $name ($pid)"
}

# Job step daemons (slurmstepd) are forked by our slurmd and outlive it; find
# the ones that belong to THIS cluster by their open files in our state dir.
our_stepds() {
    local pid
    for pid in $(pgrep -x slurmstepd 2>/dev/null || true); do
        if ls -l "/proc/$pid/fd" 2>/dev/null | grep -q -- "-> $STATE/"; then echo "$pid"; fi
    done
}

cmd_stop() {
    local t0
    t0=$(now)
    if [[ ! -d $STATE ]]; then
        log "nothing to stop (no $STATE)"
        echo "TIMING stop_s=0.0 (not running)"
        return 0
    fi
    if daemon_pid slurmctld >/dev/null; then
        slurm_env scancel --user="$(id -un)" 2>/dev/null || true
        local deadline=$((SECONDS + 30))
        while [[ -n $(slurm_env squeue -h -o %i 2>/dev/null) ]] && ((SECONDS < deadline)); do sleep 0.5; done
    fi
    local i
    for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do kill_daemon "${DAEMONS[i]}"; done
    remove_conf_link
    local pid
    for pid in $(our_stepds); do
        log "killing leftover slurmstepd $pid"
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [[ ${LPAF_SLURM_KEEP_STATE:-0} == 1 ]]; then
        log "kept state (logs) in $STATE"
    else
        rm -rf -- "$STATE"
    fi
    log "stopped in $(elapsed "$t0") s"
    echo "TIMING stop_s=$(elapsed "$t0")"
}

# ----------------------------------------------------------- status / env --
cmd_status() {
    local d pid rc=0
    echo "state dir: $STATE"
    for d in "${DAEMONS[@]}"; do
        if pid=$(daemon_pid "$d"); then echo "  $d: running (pid $pid)"; else echo "  $d: not running"; rc=1; fi
    done
    if [[ $rc -eq 0 ]]; then
        echo "--- sinfo"; slurm_env sinfo || rc=1
        echo "--- squeue"; slurm_env squeue || rc=1
    fi
    return $rc
}

cmd_env() {
    [[ -f $SLURM_CONF_FILE ]] || die "not started (no $SLURM_CONF_FILE); run: $0 start"
    echo "export SLURM_CONF=$SLURM_CONF_FILE"
    echo "export LPAF_SLURM_STATE=$STATE"
    echo "export LPAF_SLURM_PARTITION=$PARTITION"
    echo "export LPAF_SLURM_ACCOUNT=$ACCOUNT"
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) cmd_env ;;
    *)
        sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
        exit 2
        ;;
esac
