#!/usr/bin/env bash
# Stop redis-ha.
#
#   deploy/down.sh --local [--dir DIR] [--purge]
#   deploy/down.sh --local --node N [--dir DIR]
#
# --local stops exactly the processes deploy/up.sh --local started: the pids in the run
# directory's pid files, each checked against /proc/PID/cmdline first (a reused pid is left
# alone). --purge also removes the run directory (configs, data, logs). --node N stops only
# Redis node N, gracefully: while it is the master, its redis-ha-node redis-run asks the
# coordinator to move the master away first (a switchover, no write lost); a replica just stops.
# Without --local: removes the Docker Swarm stack (deploy/swarm/lib.sh; deploy/down.sh --help).
set -euo pipefail

# shellcheck source=deploy/local/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/local/lib.sh"
rh_swarm_unless_local swarm_down "$@"

usage() {
    cat <<USAGE
usage: deploy/down.sh --local [options]

  --local      stop the processes of a local run (without it: remove the Docker Swarm stack,
               see deploy/down.sh --help)
  --dir DIR    run directory given to up.sh (default deploy/local/run)
  --purge      also remove the run directory (configs, data, logs)
  --node N     stop only Redis node N (1-3), gracefully: a master hands its role over first
               (a switchover through the coordinator); a replica just stops
  --timeout S  how long to wait for each group of processes to exit before SIGKILL (default 10)
  -h, --help   this text
USAGE
}

RUN_DIR=$RH_DEFAULT_RUN_DIR
PURGE=0
STOP_SECS=10
NODE=

while [[ $# -gt 0 ]]; do
    case "$1" in
        --local) ;; # this branch; without --local the swarm branch ran above
        --dir)
            [[ $# -ge 2 && -n $2 ]] || { echo "redis-ha: --dir needs a value" >&2; exit 2; }
            RUN_DIR=$2
            shift
            ;;
        --purge) PURGE=1 ;;
        --node)
            [[ $# -ge 2 && $2 =~ ^[1-3]$ ]] || { echo "redis-ha: --node needs 1, 2 or 3" >&2; exit 2; }
            NODE=$2
            shift
            ;;
        --timeout)
            [[ $# -ge 2 && $2 =~ ^[0-9]+$ ]] || { echo "redis-ha: --timeout needs seconds" >&2; exit 2; }
            STOP_SECS=$2
            shift
            ;;
        -h | --help) usage; exit 0 ;;
        *) rh_usage_error "unknown option $1" ;;
    esac
    shift
done

# Waits until none of the given pids is alive, for up to STOP_SECS; prints those still alive.
wait_gone() {
    local deadline pid left
    deadline=$((SECONDS + STOP_SECS))
    while :; do
        left=()
        for pid in "$@"; do
            if rh_alive "$pid"; then left+=("$pid"); fi
        done
        if [[ ${#left[@]} -eq 0 || $SECONDS -ge $deadline ]]; then
            echo "${left[*]}"
            return 0
        fi
        sleep 0.1
    done
}

# Stops the processes named in one group (space-separated pid file names) together, with
# SIGNAL (default TERM). A Redis node runs under redis-ha-node redis-run: TERM hands a master's
# role over first, INT stops it at once (the whole cluster is going down).
stop_group() {
    local group=$1 signal=${2:-TERM} name pid pids=() left
    for name in $group; do
        [[ -f $RUN_DIR/$name.pid ]] || continue
        if pid=$(rh_live_pid "$RUN_DIR" "$name"); then
            kill "-$signal" "$pid" 2>/dev/null || true
            pids+=("$pid")
            echo "stopping $name (pid $pid)"
        else
            echo "$name: not running (stale pid file removed)"
            rm -f "$RUN_DIR/$name.pid"
        fi
    done
    [[ ${#pids[@]} -gt 0 ]] || return 0
    left=$(wait_gone "${pids[@]}")
    if [[ -n $left ]]; then
        echo "still running after ${STOP_SECS} s, sending SIGKILL: $left"
        for name in $group; do
            # Checked again: only a process that still is ours gets the SIGKILL.
            if pid=$(rh_live_pid "$RUN_DIR" "$name"); then
                # Its process group (up.sh starts each in a session of its own): redis-run's
                # redis-server child too.
                kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
            fi
        done
        left=$(wait_gone "${pids[@]}")
        if [[ -n $left ]]; then
            echo "redis-ha: could not stop pid(s) $left; their pid files are kept" >&2
            FAILED=1
            return 0
        fi
    fi
    for name in $group; do
        rm -f "$RUN_DIR/$name.pid"
    done
}

local_down() {
    RUN_DIR=$(rh_abs_path "$RUN_DIR")
    if [[ ! -d $RUN_DIR ]]; then
        echo "nothing to stop: $RUN_DIR does not exist"
        return 0
    fi
    [[ -f $RUN_DIR/$RH_MARKER ]] || rh_die "$RUN_DIR is not a redis-ha run directory (no $RH_MARKER)"

    # Watchers first (so they do not report the teardown as failures), then HAProxy, the
    # Sentinels (so no failover starts), Redis (SIGTERM lets it flush its append-only file),
    # the coordinator last.
    local groups=("reloader agent-1 agent-2 agent-3" "haproxy" "sentinel-1 sentinel-2 sentinel-3"
        "redis-1 redis-2 redis-3" "coordinator") name known group
    known=" ${RH_STOP_ORDER[*]} "
    while read -r name; do
        # A pid file we did not write is left alone, and said so.
        [[ $known == *" $name "* ]] || echo "ignoring $RUN_DIR/$name.pid (not a redis-ha process name)"
    done < <(rh_pid_names "$RUN_DIR")

    FAILED=0
    if [[ -n $NODE ]]; then
        # The handover may take a switchover's time (the Sentinels' reading of the priorities).
        ((STOP_SECS >= 60)) || STOP_SECS=60
        stop_group "redis-$NODE" TERM
        [[ $FAILED -eq 0 ]] || exit 1
        echo "redis-$NODE stopped (its log: $RUN_DIR/redis-$NODE.log); the rest keeps running"
        return 0
    fi
    for group in "${groups[@]}"; do
        if [[ $group == redis-* ]]; then
            stop_group "$group" INT
        else
            stop_group "$group"
        fi
    done
    [[ $FAILED -eq 0 ]] || exit 1

    if [[ $PURGE -eq 1 ]]; then
        rm -rf -- "$RUN_DIR"
        echo "removed $RUN_DIR"
    else
        echo "stopped; configs, data and logs are kept in $RUN_DIR (--purge removes them)"
    fi
}

local_down
