#!/usr/bin/env bash
# A one-node SLURM cluster on localhost, for trying and testing the SLURM launcher (hydra/launcher=slurm).
#
#   scripts/slurm_local.sh up       install (Debian, as root) if missing, start munged/slurmctld/slurmd, wait
#                                   for the node to be idle, print the exports every client needs
#   scripts/slurm_local.sh status   daemons, node and queue
#   scripts/slurm_local.sh down     cancel the cluster's jobs, stop its daemons by their pid files
#   scripts/slurm_local.sh env      print the exports again (no side effects)
#
# Why a script and not systemd: these machines have none, so the daemons are started by hand, each with a
# pid file under $SLURM_LOCAL_DIR, and stopped by those pids only (never by name: other clusters may run).
# Why a sacct shim: without an accounting database `sacct` fails, and submitit (which polls `sacct`) would
# wait forever for a job that died without a result (scancel, time limit, memory kill). Finished jobs are
# logged by jobcomp/filetxt; $SLURM_LOCAL_DIR/bin/sacct (scripts/sacct_shim.py) answers from that log and
# from `scontrol`. See /work/shared/notes/slurm-local.md for the measured facts behind each setting.
#
# Memory limits (--mem): with a writable cgroup v1 memory controller (root in these containers) the cluster
# uses task/cgroup, so a job over its limit is killed by the kernel and ends OUT_OF_MEMORY, as on a real
# cluster.
# Otherwise jobacct_gather samples memory every second and kills the step (OverMemoryKill); SLURM 22.05 then
# records the job as FAILED (the job's stderr says "Exceeded job memory limit").
#
# Environment: SLURM_LOCAL_DIR (state, default /tmp/ssa-slurm), SLURM_LOCAL_PORT (slurmctld port, default
# 6817; slurmd uses the next one), SLURM_LOCAL_TIMEOUT (seconds to wait for an idle node, default 30),
# SLURM_LOCAL_CGROUP (auto|yes|no: enforce --mem with cgroup v1, default auto).
set -euo pipefail

DIR=${SLURM_LOCAL_DIR:-/tmp/ssa-slurm}
PORT=${SLURM_LOCAL_PORT:-6817}
WAIT=${SLURM_LOCAL_TIMEOUT:-30}
CGROUP=${SLURM_LOCAL_CGROUP:-auto}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CONF=$DIR/etc/slurm.conf
PACKAGES=(slurmctld slurmd slurm-client munge)
MUNGE_RUN=/run/munge
PATH=$PATH:/usr/sbin:/sbin  # the daemons (slurmctld, slurmd, munged) live there; a non-root PATH may lack it

log() { echo "slurm_local: $*" >&2; }
die() { log "$*"; exit "${2:-1}"; }

installed() {
    local binary
    for binary in slurmctld slurmd sbatch munged; do command -v "$binary" >/dev/null || return 1; done
}

install() {
    installed && return 0
    [[ $(id -u) == 0 ]] || die "slurm is not installed and installing it needs root (apt-get)" 3
    command -v apt-get >/dev/null || die "slurm is not installed and there is no apt-get to install it" 3
    log "installing ${PACKAGES[*]}"
    export DEBIAN_FRONTEND=noninteractive
    local apt=(apt-get install -y -q --no-install-recommends "${PACKAGES[@]}")
    "${apt[@]}" >/dev/null 2>&1 || { apt-get update -q >/dev/null && "${apt[@]}" >/dev/null; } \
        || die "apt-get install ${PACKAGES[*]} failed" 3
    installed || die "installed ${PACKAGES[*]} but the binaries are still missing" 3
}

alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }  # alive PIDFILE

exports() {
    echo "export SLURM_CONF=$CONF"
    echo "export PATH=$DIR/bin:\$PATH"
}

start_munge() {
    # munge is machine-wide (one socket in /run/munge): reuse a running munged, else start one and remember
    # that we did, so that `down` stops only what `up` started.
    if [[ -S $MUNGE_RUN/munge.socket.2 ]] && munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
        return 0
    fi
    [[ $(id -u) == 0 ]] || die "munged is not running and starting it needs root" 3
    [[ -s /etc/munge/munge.key ]] || { mungekey --create >/dev/null 2>&1 || \
        { dd if=/dev/urandom of=/etc/munge/munge.key bs=1k count=1 2>/dev/null; }; }
    chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
    mkdir -p "$MUNGE_RUN" /var/log/munge /var/lib/munge
    chown munge:munge "$MUNGE_RUN" /var/log/munge /var/lib/munge && chmod 0755 "$MUNGE_RUN"
    runuser -u munge -- /usr/sbin/munged --force
    for _ in $(seq 50); do
        [[ -s $MUNGE_RUN/munged.pid ]] && munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.1
    done
    munge -n </dev/null | unmunge >/dev/null 2>&1 || die "munged did not start"
    cp "$MUNGE_RUN/munged.pid" "$DIR/run/munged.pid"  # ours to stop
}

cgroup_v1_memory() {  # can slurmd make memory cgroups (v1)? Probe by making and removing one.
    local probe=/sys/fs/cgroup/memory/ssa-slurm-probe-$$
    [[ -f /sys/fs/cgroup/memory/memory.limit_in_bytes ]] || return 1
    mkdir "$probe" 2>/dev/null || return 1
    rmdir "$probe"
}

memory_settings() {  # the slurm.conf lines that enforce --mem (and cgroup.conf, when cgroups are used)
    local use=$CGROUP
    if [[ $use == auto ]]; then if cgroup_v1_memory; then use=yes; else use=no; fi; fi
    if [[ $use == yes ]]; then
        printf '%s\n' CgroupPlugin=cgroup/v1 CgroupMountpoint=/sys/fs/cgroup CgroupAutomount=no \
            ConstrainRAMSpace=yes ConstrainSwapSpace=no >"$DIR/etc/cgroup.conf"
        printf '%s\n' TaskPlugin=task/cgroup JobAcctGatherType=jobacct_gather/cgroup \
            JobAcctGatherFrequency=task=1
    else
        rm -f "$DIR/etc/cgroup.conf"
        printf '%s\n' TaskPlugin=task/none JobAcctGatherType=jobacct_gather/linux \
            JobAcctGatherFrequency=task=1 JobAcctGatherParams=OverMemoryKill
    fi
}

write_conf() {
    # The node line from slurmd -C (the real topology: slurmd refuses a node whose CPUs/cores disagree),
    # renamed localhost (works whatever the hostname), with RealMemory a bit under the machine's.
    local node mem
    node=$(slurmd -C | head -1)
    mem=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
    node=$(sed -E "s/^NodeName=[^ ]+/NodeName=localhost/; s/RealMemory=[0-9]+/RealMemory=$mem/" <<<"$node")
    mkdir -p "$DIR/etc"
    cat >"$CONF" <<EOF
# Written by scripts/slurm_local.sh: a one-node cluster for tests. Regenerated by every 'up'.
ClusterName=ssalocal
SlurmctldHost=localhost
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=slurm
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# Without a default memory per CPU one job takes all the node's memory and the next one waits.
DefMemPerCPU=1000
# How --mem is enforced (see the header of scripts/slurm_local.sh).
$(memory_settings)
# No accounting database: finished jobs go to a text file, which the sacct shim reads.
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/log/jobcomp.txt
MinJobAge=300
KillWait=5
$node State=UNKNOWN
PartitionName=local Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
}

node_state() { sinfo -h -n localhost -o %T 2>/dev/null | head -1; }

up() {
    install
    mkdir -p "$DIR"/{etc,state,spool,run,log,bin}
    chmod 755 "$DIR"  # slurmctld runs as the slurm user and must reach its state dir (mktemp gives 700)
    export SLURM_CONF=$CONF
    if alive "$DIR/run/slurmctld.pid" && alive "$DIR/run/slurmd.pid" \
        && [[ $(node_state) =~ ^(idle|mixed|allocated) ]]; then
        log "already up ($DIR)"
        exports
        return 0
    fi
    [[ $(id -u) == 0 ]] || die "starting slurmd needs root (it runs jobs as their users)" 3
    write_conf
    chown -R slurm:slurm "$DIR/state" "$DIR/log" "$DIR/run"
    cat >"$DIR/bin/sacct" <<EOF
#!/bin/sh
exec /usr/bin/env python3 "$HERE/sacct_shim.py" --jobcomp "$DIR/log/jobcomp.txt" "\$@"
EOF
    chmod +x "$DIR/bin/sacct"
    [[ -x /usr/bin/python3 ]] && sed -i "s|/usr/bin/env python3|/usr/bin/python3|" "$DIR/bin/sacct"
    start_munge
    alive "$DIR/run/slurmctld.pid" || slurmctld -f "$CONF"
    alive "$DIR/run/slurmd.pid" || slurmd -f "$CONF" -N localhost
    local deadline=$((SECONDS + WAIT)) state=""
    while ((SECONDS < deadline)); do
        state=$(node_state)
        case $state in
            idle*|mixed*|allocated*) break ;;
            drain*|down*) scontrol update nodename=localhost state=resume 2>/dev/null || true ;;
        esac
        sleep 0.3
    done
    case $state in
        idle*|mixed*|allocated*) ;;
        *) tail -5 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
           die "node localhost not idle after ${WAIT}s (state: '${state:-none}'); logs in $DIR/log" ;;
    esac
    log "up: node localhost $state ($DIR)"
    exports
}

stop() {  # stop NAME: TERM the pid in its pid file, wait up to 10 s, then KILL
    local file=$DIR/run/$1.pid pid
    alive "$file" || { rm -f "$file"; return 0; }
    pid=$(cat "$file")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        log "$1 ($pid) ignored TERM: KILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$file"
}

down() {
    export SLURM_CONF=$CONF
    if [[ -f $CONF ]] && alive "$DIR/run/slurmctld.pid"; then
        local jobs
        jobs=$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ')
        if [[ -n ${jobs// } ]]; then
            # shellcheck disable=SC2086
            scancel $jobs 2>/dev/null || true
            for _ in $(seq 50); do [[ -z $(squeue -h -o %A 2>/dev/null) ]] && break; sleep 0.2; done
        fi
    fi
    stop slurmd
    stop slurmctld
    stop munged
    # A job killed for memory can leave its (empty) cgroup behind, and the next cluster numbers jobs from 1
    # again: remove what is empty (rmdir refuses a cgroup that still has processes).
    if [[ -f $DIR/etc/cgroup.conf ]]; then
        find /sys/fs/cgroup/*/slurm_localhost -depth -mindepth 1 -type d -exec rmdir {} + 2>/dev/null || true
    fi
    log "down ($DIR)"
}

status() {
    export SLURM_CONF=$CONF
    local name rc=0
    for name in munged slurmctld slurmd; do
        if alive "$DIR/run/$name.pid"; then echo "$name: running (pid $(cat "$DIR/run/$name.pid"))"
        elif [[ $name == munged ]]; then echo "munged: not ours (machine-wide one used if running)"
        else echo "$name: stopped"; rc=1; fi
    done
    if ((rc == 0)); then
        sinfo -N -o "%N %T %c %m" || rc=1
        squeue || rc=1
    fi
    return $rc
}

case ${1:-} in
    up) up ;;
    down) down ;;
    status) status ;;
    env) exports ;;
    *) echo "usage: $0 up|down|status|env" >&2; exit 2 ;;
esac
