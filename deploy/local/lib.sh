# shellcheck shell=bash
# Helpers shared by deploy/up.sh and deploy/down.sh in local mode. Sourced, not executed.
#
# A run directory holds one generated config, one log and one pid file per process:
#   coordinator, redis-N, sentinel-N, agent-N (N = 1..3), and haproxy, reloader when present.
# A pid is trusted only while /proc/PID/cmdline still names the expected program and the run
# directory (the config path is on every command line, or in the process title for Redis),
# so a reused pid is never signalled.

# The run directory up.sh and down.sh use without --dir.
# shellcheck disable=SC2034 # used by up.sh and down.sh
RH_DEFAULT_RUN_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/run

# The marker that makes a directory ours to empty (up.sh) or delete (down.sh --purge).
# shellcheck disable=SC2034 # used by up.sh and down.sh
RH_MARKER=".redis-ha-local"

# Stop order: watchers first (so they do not report the teardown as failures), Sentinels before
# Redis (so no failover starts), the coordinator last.
RH_STOP_ORDER=(reloader agent-1 agent-2 agent-3 haproxy sentinel-1 sentinel-2 sentinel-3
    redis-1 redis-2 redis-3 coordinator)

# Without --local: hands the arguments to the Docker Swarm stack's FN (deploy/swarm/lib.sh parses
# its options) and exits; with --local returns, for the caller's local branch.
rh_swarm_unless_local() {
    local fn=$1
    shift
    case " $* " in
        *" --local "*) return 0 ;;
    esac
    # shellcheck source=deploy/swarm/lib.sh
    source "$(dirname "${BASH_SOURCE[0]}")/../swarm/lib.sh"
    "$fn" "$@"
    exit 0
}

# An option error of up.sh or down.sh --local: the message, the caller's usage, exit 2.
rh_usage_error() {
    echo "redis-ha: $*" >&2
    usage >&2
    exit 2
}

rh_die() {
    echo "redis-ha: $*" >&2
    exit 1
}

# The program a pid file's process must be, from the file's name.
rh_expected_prog() {
    case "$1" in
        redis-*) echo "redis-server" ;;
        sentinel-*) echo "redis-sentinel" ;;
        agent-*) echo "redis-ha-agent" ;;
        coordinator) echo "redis-ha-coordinator" ;;
        reloader) echo "redis-ha-reloader" ;;
        haproxy) echo "haproxy" ;;
        *) return 1 ;;
    esac
}

# True when PID runs and is not a zombie (an exited child nobody reaped yet).
rh_alive() {
    local pid=$1 state
    [[ -r /proc/$pid/stat ]] || return 1
    # Field 3 of /proc/PID/stat is the state; the name in field 2 may hold spaces, so cut after ")".
    state=$(sed -e 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [[ -n $state && $state != Z && $state != X ]]
}

# Prints the pid recorded for NAME in RUN_DIR when that process is alive and still ours.
rh_live_pid() {
    local run_dir=$1 name=$2 file pid prog cmdline
    file="$run_dir/$name.pid"
    [[ -f $file ]] || return 1
    pid=$(head -n1 "$file" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    rh_alive "$pid" || return 1
    prog=$(rh_expected_prog "$name") || return 1
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ $cmdline == *"$prog"* && $cmdline == *"$run_dir/"* ]] || return 1
    echo "$pid"
}

# Names (without .pid) of every pid file in RUN_DIR, in stop order, then any unknown ones.
rh_pid_names() {
    local run_dir=$1 name f
    for name in "${RH_STOP_ORDER[@]}"; do
        [[ -f $run_dir/$name.pid ]] && echo "$name"
    done
    for f in "$run_dir"/*.pid; do
        [[ -f $f ]] || continue
        name=$(basename "$f" .pid)
        [[ " ${RH_STOP_ORDER[*]} " == *" $name "* ]] || echo "$name"
    done
}

# Canonical absolute path of DIR (which may not exist yet): up.sh and down.sh must spell it alike.
rh_abs_path() {
    realpath -m -- "$1"
}
