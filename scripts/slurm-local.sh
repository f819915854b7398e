#!/usr/bin/env bash
# A one-machine SLURM cluster, to try wavelab's cluster path (hydra/launcher=slurm_cpu) on a laptop
# or in CI:
#   sudo scripts/slurm-local.sh start     # installs slurm-wlm and munge if missing, starts it
#   scripts/slurm-local.sh status         # the daemons and `sinfo`
#   sudo scripts/slurm-local.sh stop      # ends the daemons this script started
# One node (this machine, with the CPUs and memory `slurmd -C` reports), one partition (`local`),
# munge auth, no accounting daemon: finished jobs are listed in $DIR/log/jobcomp.txt.
# WAVELAB_SLURM_NODES=2 starts two nodes instead, n1 and n2: two slurmd on this machine (Debian
# builds SLURM with --enable-multiple-slurmd), each claiming all of its CPUs and memory, so that
# a job can span two nodes (the nodes share the machine: jobs on both share its cores); their
# names get a line in /etc/hosts (removed by stop), since Lightning's DDP reaches n1 by name. Every file
# it writes (config, munge key, state, spool, logs, pid files) is under $WAVELAB_SLURM_DIR
# (default /tmp/wavelab-slurm), plus /etc/slurm/slurm.conf as a link to its config when that
# file did not exist (so sinfo, sbatch and srun find the cluster without SLURM_CONF); where a
# slurm.conf existed already, it is left alone and the clients need SLURM_CONF=$DIR/slurm.conf.
# Debian/Ubuntu only (apt-get), as root: slurmd runs jobs as their submitting users.
set -euo pipefail

DIR="${WAVELAB_SLURM_DIR:-/tmp/wavelab-slurm}"
CONF="$DIR/slurm.conf"
SYSTEM_CONF=/etc/slurm/slurm.conf
CTLD_PORT="${WAVELAB_SLURM_PORT:-6817}"  # the slurmds listen on the next ports
NODES="${WAVELAB_SLURM_NODES:-1}"

die() {
    echo "slurm-local: cannot $1" >&2
    exit 1
}

pid_of() { # the pid in $DIR/run/$1.pid when that process still runs
    local file="$DIR/run/$1.pid" pid
    [ -f "$file" ] || return 1
    pid=$(cat "$file")
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
        return
    fi
    command -v apt-get >/dev/null ||
        die "install SLURM: slurmctld, slurmd or munged is missing and there is no apt-get here (install slurm-wlm and munge with this system's package manager)"
    echo "slurm-local: installing slurm-wlm and munge (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq slurm-wlm munge; } >"$DIR/log/apt.log" 2>&1 ||
        die "install SLURM: apt-get install slurm-wlm munge failed (see $DIR/log/apt.log)"
}

drop_hosts_line() { # in place (/etc/hosts may be a mount point, which sed -i cannot replace)
    local kept
    grep -q '# wavelab-slurm-local$' /etc/hosts 2>/dev/null || return 0
    kept=$(grep -v '# wavelab-slurm-local$' /etc/hosts)
    printf '%s\n' "$kept" >/etc/hosts
}

write_config() {
    local node cpus sockets cores threads memory host
    # e.g. "NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24105"
    node=$(slurmd -C | head -n 1)
    field() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<"$node"; }
    cpus=$(field CPUs) sockets=$(field SocketsPerBoard) cores=$(field CoresPerSocket)
    threads=$(field ThreadsPerCore) memory=$(field RealMemory)
    host=$(hostname -s)
    local nodes=("NodeName=$host NodeAddr=127.0.0.1")
    if [ "$NODES" -gt 1 ]; then
        nodes=()
        for i in $(seq "$NODES"); do
            nodes+=("NodeName=n$i NodeHostname=$host NodeAddr=127.0.0.1 Port=$((CTLD_PORT + i))")
        done
    fi
    if [ "$NODES" -gt 1 ]; then
        # Lightning's DDP reaches the first node by its name: make n1, n2, ... resolve here.
        drop_hosts_line
        echo "127.0.0.1 $(seq -f 'n%g' -s ' ' "$NODES") # wavelab-slurm-local" >>/etc/hosts
    fi
    cat >"$CONF" <<EOF
# Written by scripts/slurm-local.sh: a one-node cluster on $host.
ClusterName=wavelab-local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$((CTLD_PORT + 1))
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket.2
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd-%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd-%n.log
# No cgroups (containers often have none to give): processes are tracked through /proc.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/log/jobcomp.txt
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
# Jobs stay visible to squeue and scontrol for an hour after they end.
MinJobAge=3600
KillWait=30
PartitionName=local Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    local node hardware="CPUs=$cpus Sockets=$sockets CoresPerSocket=$cores ThreadsPerCore=$threads"
    for node in "${nodes[@]}"; do
        echo "$node $hardware RealMemory=$memory State=UNKNOWN" >>"$CONF"
    done
}

start_munged() {
    pid_of munged >/dev/null && return
    local key="$DIR/munge/munge.key"
    if [ ! -s "$key" ]; then
        (umask 077 && dd if=/dev/urandom of="$key" bs=1024 count=1 status=none)
    fi
    local cmd=(munged --socket="$DIR/munge/munge.socket.2" --key-file="$key"
        --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munge/munged.log"
        --seed-file="$DIR/munge/munged.seed")
    if id munge >/dev/null 2>&1; then # as its own user, as the package runs it
        chown -R munge: "$DIR/munge"
        cmd=(runuser -u munge -- "${cmd[@]}")
    else
        cmd+=(--force)
    fi
    "${cmd[@]}" || die "start munged (see $DIR/munge/munged.log)"
    cp "$DIR/munge/munged.pid" "$DIR/run/munged.pid"
}

wait_for() { # wait_for SECONDS WHAT COMMAND...: until COMMAND succeeds
    local deadline=$((SECONDS + $1)) what=$2
    shift 2
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || die "start the cluster: $what within the time allowed"
        sleep 1
    done
}

node_names() { sed -n 's/^NodeName=\([^ ]*\).*/\1/p' "$CONF"; }

daemons() { # the names of the pid files: munged, slurmctld, and slurmd-<node> for each node
    printf '%s\n' munged slurmctld
    if [ -f "$CONF" ]; then node_names | sed 's/^/slurmd-/'; else echo slurmd; fi
}

all_running() {
    local name
    for name in $(daemons); do pid_of "$name" >/dev/null || return 1; done
}

nodes_idle() { # every node of the config idle
    local idle
    idle=$(SLURM_CONF="$CONF" sinfo -h -N -o '%T' | grep -cx idle)
    [ "$idle" -eq "$(node_names | wc -l)" ]
}

start() {
    [ "$(id -u)" -eq 0 ] || die "start the cluster: run it as root (sudo $0 start), which apt-get and slurmd need"
    [[ "$NODES" =~ ^[1-9][0-9]*$ ]] || die "start the cluster: WAVELAB_SLURM_NODES=$NODES is not a node count"
    mkdir -p "$DIR"/{log,run,state,spool,munge}
    install_packages
    if all_running; then
        echo "slurm-local: already running"
        status
        return
    fi
    pid_of slurmctld >/dev/null || write_config
    if [ ! -e "$SYSTEM_CONF" ]; then
        mkdir -p "$(dirname "$SYSTEM_CONF")"
        ln -s "$CONF" "$SYSTEM_CONF"
    elif [ "$(readlink "$SYSTEM_CONF")" != "$CONF" ]; then
        echo "slurm-local: $SYSTEM_CONF exists and is left alone: export SLURM_CONF=$CONF" >&2
    fi
    start_munged
    pid_of slurmctld >/dev/null || slurmctld -f "$CONF" || die "start slurmctld (see $DIR/log/slurmctld.log)"
    wait_for 30 "slurmctld did not write its pid file" pid_of slurmctld
    local node flags
    for node in $(node_names); do
        flags=(-f "$CONF")
        [ "$(node_names | wc -l)" -eq 1 ] || flags+=(-N "$node")
        pid_of "slurmd-$node" >/dev/null || slurmd "${flags[@]}" ||
            die "start slurmd for $node (see $DIR/log/slurmd-$node.log)"
        wait_for 30 "slurmd did not write $DIR/run/slurmd-$node.pid" pid_of "slurmd-$node"
    done
    wait_for 60 "sinfo did not show every node idle (see $DIR/log/)" nodes_idle
    status
}

stop() {
    local name pid
    for name in $(daemons | tac); do # the slurmds first, munged last
        if pid=$(pid_of "$name"); then
            kill "$pid"
            for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
            if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid"; fi
            echo "slurm-local: stopped $name ($pid)"
        fi
        rm -f "$DIR/run/$name.pid"
    done
    if [ "$(readlink "$SYSTEM_CONF" 2>/dev/null)" = "$CONF" ]; then
        rm -f "$SYSTEM_CONF"
    fi
    drop_hosts_line
}

status() {
    local name pid down=0
    for name in $(daemons); do
        if pid=$(pid_of "$name"); then
            echo "$name: running ($pid)"
        else
            echo "$name: not running"
            down=1
        fi
    done
    [ "$down" -eq 0 ] || return 3
    SLURM_CONF="$CONF" sinfo -V
    SLURM_CONF="$CONF" sinfo -N -o '%N %P %T %c %m'
}

case "${1:-}" in
start) start ;;
stop) stop ;;
status) status ;;
*)
    echo "usage: $0 start|stop|status  (files under \$WAVELAB_SLURM_DIR, default /tmp/wavelab-slurm)" >&2
    exit 2
    ;;
esac
