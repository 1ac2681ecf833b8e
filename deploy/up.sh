#!/usr/bin/env bash
# Start redis-ha.
#
#   deploy/up.sh --local [--dir DIR] [--base-port N] [--grpc-port N] [--group NAME] [--down-after-ms MS]
#                        [--release] [--no-build]
#
# --local runs the whole system as processes on loopback: 3 Redis nodes (node 1 starts as master),
# a Sentinel beside each (quorum 2), a health agent per node, the coordinator, and HAProxy with its
# reloader when both are available. It waits until the coordinator reports a confirmed master and
# two linked replicas, then prints the endpoints. deploy/down.sh --local stops it.
# Without --local: the Docker Swarm stack (deploy/swarm/lib.sh; deploy/up.sh --help).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
# shellcheck source=deploy/local/lib.sh
source "$SCRIPT_DIR/local/lib.sh"
rh_swarm_unless_local swarm_up "$@"

usage() {
    cat <<USAGE
usage: deploy/up.sh --local [options]

  --local          run every process on loopback (without it: the Docker Swarm stack,
                   see deploy/up.sh --help)
  --dir DIR        run directory: configs, data, logs, pid files (default deploy/local/run)
  --base-port N    HAProxy on N (reads N+10), Redis on N+1..N+3, Sentinels on N+10001..N+10003,
                   HAProxy stats N+10000, sidecar metrics N+20001..N+20011 (default 9000)
  --grpc-port N    coordinator gRPC port (default 50051)
  --group NAME     master group / Sentinel master name (default redis-cluster)
  --down-after-ms MS  Sentinel down-after-milliseconds (default 5000); Redis's
                   min-replicas-max-lag follows it (below 3000 a master cut off from its
                   replicas may acknowledge writes after a new master is promoted: a warning)
  --maxmemory SIZE each Redis node's maxmemory (default 256mb; policy noeviction)
  --release        build and run the release binaries (default: debug)
  --no-build       use the binaries already in target/ (no cargo build)
  --timeout S      how long to wait for a healthy cluster (default 60)
  -h, --help       this text
USAGE
}

RUN_DIR=$RH_DEFAULT_RUN_DIR
BASE_PORT=9000
GRPC_PORT=50051
GROUP=redis-cluster
DOWN_AFTER_MS=5000
MAXMEMORY=256mb
PROFILE=debug
BUILD=1
WAIT_SECS=60

need_value() {
    [[ $# -ge 2 && -n $2 ]] || rh_usage_error "$1 needs a value"
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --local) ;; # this branch; without --local the swarm branch ran above
        --dir) need_value "$@"; RUN_DIR=$2; shift ;;
        --base-port) need_value "$@"; BASE_PORT=$2; shift ;;
        --grpc-port) need_value "$@"; GRPC_PORT=$2; shift ;;
        --group) need_value "$@"; GROUP=$2; shift ;;
        --down-after-ms) need_value "$@"; DOWN_AFTER_MS=$2; shift ;;
        --maxmemory) need_value "$@"; MAXMEMORY=$2; shift ;;
        --timeout) need_value "$@"; WAIT_SECS=$2; shift ;;
        --release) PROFILE=release ;;
        --no-build) BUILD=0 ;;
        -h | --help) usage; exit 0 ;;
        *) rh_usage_error "unknown option $1" ;;
    esac
    shift
done

# ------------------------------------------------------------------------------ checks

is_port() {
    [[ $1 =~ ^[0-9]{1,5}$ ]] && ((10#$1 >= 1 && 10#$1 <= 65535))
}

check_options() {
    if ! [[ $BASE_PORT =~ ^[0-9]{1,5}$ ]] || ((10#$BASE_PORT < 1 || 10#$BASE_PORT + 20011 > 65535)); then
        echo "redis-ha: --base-port must be a number from 1 to 45524, got '$BASE_PORT'" >&2
        exit 2
    fi
    BASE_PORT=$((10#$BASE_PORT))
    is_port "$GRPC_PORT" || { echo "redis-ha: --grpc-port must be 1-65535, got '$GRPC_PORT'" >&2; exit 2; }
    GRPC_PORT=$((10#$GRPC_PORT))
    [[ $GROUP =~ ^[A-Za-z0-9._-]+$ ]] ||
        { echo "redis-ha: --group must be letters, digits, '.', '_' or '-', got '$GROUP'" >&2; exit 2; }
    [[ $WAIT_SECS =~ ^[0-9]+$ && $WAIT_SECS -gt 0 ]] ||
        { echo "redis-ha: --timeout must be a positive number of seconds" >&2; exit 2; }
    # Which values are served is redis-ha-node's rule (min_lag below): only the form here.
    [[ $DOWN_AFTER_MS =~ ^[0-9]{1,12}$ ]] ||
        { echo "redis-ha: --down-after-ms must be a number of milliseconds, got '$DOWN_AFTER_MS'" >&2; exit 2; }
    DOWN_AFTER_MS=$((10#$DOWN_AFTER_MS))
    [[ $MAXMEMORY =~ ^[0-9]+([kKmMgG][bB]?)?$ ]] ||
        { echo "redis-ha: --maxmemory must be bytes or a size like 512mb or 2gb, got '$MAXMEMORY'" >&2; exit 2; }
    RUN_DIR=$(rh_abs_path "$RUN_DIR")
}

check_packages() {
    local missing=() p
    for p in redis-server redis-sentinel; do
        command -v "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    if [[ ${#missing[@]} -gt 0 ]]; then
        echo "redis-ha: ${missing[*]} not found. Install the Debian packages:" >&2
        echo "  sudo apt-get install -y redis-server redis-sentinel haproxy" >&2
        echo "(their system services on 6379/26379 are not used and can be disabled)" >&2
        exit 1
    fi
    if [[ $BUILD -eq 1 ]] && ! command -v cargo >/dev/null 2>&1; then
        echo "redis-ha: cargo not found: install Rust (https://rustup.rs) or pass --no-build" >&2
        exit 1
    fi
}

# True when something accepts connections on 127.0.0.1:PORT.
port_in_use() {
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

# check_ports NAME...: refuses when any of these PORTS entries is taken.
check_ports() {
    local name port busy=0
    for name in "$@"; do
        port=${PORTS[$name]}
        if port_in_use "$port"; then
            echo "redis-ha: port $port ($name) is already in use" >&2
            busy=1
        fi
    done
    if [[ $busy -eq 1 ]]; then
        echo "redis-ha: free those ports or choose others with --base-port / --grpc-port" >&2
        exit 1
    fi
}

check_not_running() {
    local name pid
    [[ -d $RUN_DIR ]] || return 0
    while read -r name; do
        if pid=$(rh_live_pid "$RUN_DIR" "$name"); then
            echo "redis-ha: already running in $RUN_DIR ($name is pid $pid); deploy/down.sh --local first" >&2
            exit 1
        fi
    done < <(rh_pid_names "$RUN_DIR")
}

# ------------------------------------------------------------------------------ build

build() {
    local flags=(--bins)
    [[ $PROFILE == release ]] && flags+=(--release)
    if [[ $BUILD -eq 1 ]]; then
        echo "building the sidecars (cargo build ${flags[*]}) ..."
        (cd "$REPO_ROOT" && cargo build "${flags[@]}") || rh_die "cargo build failed"
    fi
    BIN_DIR="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/$PROFILE"
    local b
    for b in redis-ha-agent redis-ha-coordinator redis-ha redis-ha-node; do
        [[ -x $BIN_DIR/$b ]] || rh_die "$BIN_DIR/$b is missing (build failed or --no-build without a build)"
    done
}

# Redis's min-replicas-max-lag for the down-after: redis-ha-node's rule
# (services/node/src/durability.rs). Its warning (a down-after too short for the guarantee)
# goes to the terminal; a value it cannot serve stops here.
min_lag() {
    MIN_REPLICAS_MAX_LAG=$("$BIN_DIR/redis-ha-node" min-replicas-max-lag --down-after-ms "$DOWN_AFTER_MS") ||
        rh_die "--down-after-ms $DOWN_AFTER_MS refused (above)"
    echo "Sentinel down-after $DOWN_AFTER_MS ms: Redis min-replicas-max-lag $MIN_REPLICAS_MAX_LAG s"
}

# ------------------------------------------------------------------------------ run dir

# A fresh cluster every time: the previous run's configs, data and logs are replaced (down.sh
# without --purge keeps them for a look after a run). Only a directory carrying our marker, or an
# empty one, is emptied.
prepare_run_dir() {
    if [[ -d $RUN_DIR ]] && [[ -n $(ls -A "$RUN_DIR") ]]; then
        [[ -f $RUN_DIR/$RH_MARKER ]] ||
            rh_die "$RUN_DIR exists and is not a redis-ha run directory; choose another --dir"
        # The certificates stay (see create_certs): a re-run keeps what is still valid.
        find "$RUN_DIR" -mindepth 1 -maxdepth 1 ! -name "$RH_MARKER" ! -name tls -exec rm -rf {} +
    fi
    mkdir -p "$RUN_DIR"
    echo "redis-ha local run directory, created by deploy/up.sh; deploy/down.sh --local --purge removes it" \
        >"$RUN_DIR/$RH_MARKER"
}

# render TEMPLATE OUT KEY=VALUE...: copies TEMPLATE with every @KEY@ replaced.
render() {
    local tmpl=$1 out=$2 kv key value text
    shift 2
    text=$(<"$tmpl")
    for kv in "$@"; do
        key=${kv%%=*}
        value=${kv#*=}
        # Quoted: bash 5.2 would otherwise put the match in place of each & of the value.
        text=${text//"@$key@"/"$value"}
    done
    [[ $text != *@[A-Z_]*@* ]] || rh_die "unfilled placeholder in $out (from $tmpl)"
    printf '%s\n' "$text" >"$out"
}

# ------------------------------------------------------------------------------ secrets (ACL)

# The passwords, one mode-600 file each in RUN_DIR/secrets (generated once, 32 characters of
# [A-Za-z0-9]); the users and their rules: services/node/src/acl.rs, README "Redis and Sentinel
# access". Sets SECRETS_DIR, REDIS_AUTH and SENTINEL_AUTH (the config lines redis-ha-node
# renders from them; they go into the mode-600 configs only, never onto a command line).
local_secrets() {
    local name f random
    SECRETS_DIR=$RUN_DIR/secrets
    mkdir -p "$SECRETS_DIR"
    chmod 700 "$SECRETS_DIR"
    for name in redis_admin_password redis_app_password redis_replication_password \
        redis_sentinel_password redis_agent_password redis_simulator_password redis_coordinator_password \
        sentinel_password; do
        f=$SECRETS_DIR/$name
        [[ -s $f ]] && continue
        random=$(head -c 512 /dev/urandom | LC_ALL=C tr -dc 'A-Za-z0-9')
        ((${#random} >= 32)) || rh_die "could not generate a password"
        (umask 077 && printf '%s\n' "${random:0:32}" >"$f")
    done
    REDIS_AUTH=$("$BIN_DIR/redis-ha-node" auth-lines --kind redis --secrets-dir "$SECRETS_DIR") ||
        rh_die "redis-ha-node auth-lines failed"
    SENTINEL_AUTH=$("$BIN_DIR/redis-ha-node" auth-lines --kind sentinel --group "$GROUP" \
        --secrets-dir "$SECRETS_DIR") || rh_die "redis-ha-node auth-lines failed"
}

# ------------------------------------------------------------------------------ certificates

# The cluster CA and one certificate per sidecar and for the operator (mutual TLS on the
# coordinator's gRPC), in $RUN_DIR/tls: keys mode 600. What is issued, and what a re-run keeps,
# is `redis-ha certs create`'s decision.
create_certs() {
    TLS_DIR=$RUN_DIR/tls
    echo "certificates (redis-ha certs create --dir $TLS_DIR):"
    "$BIN_DIR/redis-ha" certs create --dir "$TLS_DIR" --nodes node-1,node-2,node-3 | sed 's/^/  /'
    [[ ${PIPESTATUS[0]} -eq 0 ]] || rh_die "redis-ha certs create failed"
    # This script's own redis-ha calls (wait, status) authenticate as the operator.
    export REDIS_HA_CA=$TLS_DIR/ca.pem REDIS_HA_CERT=$TLS_DIR/operator.pem \
        REDIS_HA_KEY=$TLS_DIR/operator-key.pem
}

# How to use the CLI with the operator's certificate.
print_tls_usage() {
    echo "  the coordinator requires a client certificate of the CA in $TLS_DIR; redis-ha"
    echo "  takes the operator's with --ca/--cert/--key or:"
    echo "    export REDIS_HA_CA=$REDIS_HA_CA \\"
    echo "           REDIS_HA_CERT=$REDIS_HA_CERT \\"
    echo "           REDIS_HA_KEY=$REDIS_HA_KEY"
}

generate_configs() {
    local n replicaof
    local_secrets
    # The Redis and Sentinel configs hold passwords.
    umask 077
    render "$SCRIPT_DIR/local/coordinator.toml.tmpl" "$RUN_DIR/coordinator.toml" \
        "SECRETS_DIR=$SECRETS_DIR" \
        "GRPC_PORT=$GRPC_PORT" "GROUP=$GROUP" "METRICS_PORT=${PORTS[coordinator-metrics]}" \
        "REDIS_1=${PORTS[redis-1]}" "REDIS_2=${PORTS[redis-2]}" "REDIS_3=${PORTS[redis-3]}" \
        "SENTINEL_1=${PORTS[sentinel-1]}" "SENTINEL_2=${PORTS[sentinel-2]}" \
        "SENTINEL_3=${PORTS[sentinel-3]}" "TLS_DIR=$TLS_DIR"
    for n in 1 2 3; do
        mkdir -p "$RUN_DIR/node-$n"
        replicaof=""
        [[ $n -eq 1 ]] || replicaof="replicaof 127.0.0.1 ${PORTS[redis-1]}"
        render "$SCRIPT_DIR/local/redis.conf.tmpl" "$RUN_DIR/redis-$n.conf" \
            "NODE=$n" "PORT=${PORTS[redis-$n]}" "DATA_DIR=$RUN_DIR/node-$n" "REPLICAOF=$replicaof" \
            "MIN_REPLICAS_MAX_LAG=$MIN_REPLICAS_MAX_LAG" "AUTH=$REDIS_AUTH" "MAXMEMORY=$MAXMEMORY"
        render "$SCRIPT_DIR/local/sentinel.conf.tmpl" "$RUN_DIR/sentinel-$n.conf" \
            "NODE=$n" "PORT=${PORTS[sentinel-$n]}" "DATA_DIR=$RUN_DIR/node-$n" \
            "GROUP=$GROUP" "MASTER_PORT=${PORTS[redis-1]}" "QUORUM=2" \
            "DOWN_AFTER_MS=$DOWN_AFTER_MS" "FAILOVER_TIMEOUT_MS=10000" "AUTH_PASS=$SENTINEL_AUTH"
        render "$SCRIPT_DIR/local/agent.toml.tmpl" "$RUN_DIR/agent-$n.toml" \
            "NODE=$n" "GROUP=$GROUP" "PORT=${PORTS[redis-$n]}" \
            "SENTINEL_PORT=${PORTS[sentinel-$n]}" "GRPC_PORT=$GRPC_PORT" \
            "METRICS_PORT=${PORTS[agent-$n-metrics]}" "SECRETS_DIR=$SECRETS_DIR" "TLS_DIR=$TLS_DIR"
    done
}

# ------------------------------------------------------------------------------ processes

STARTED=()
WAIT_PID=""

# On any failure after the first process started, say how to clean up; the processes stay for
# inspection (their logs are in the run directory).
on_exit() {
    local rc=$?
    # A `redis-ha wait` still running when a process died: it has nothing left to wait for.
    [[ -z ${WAIT_PID:-} ]] || kill "$WAIT_PID" 2>/dev/null || true
    if [[ $rc -ne 0 && ${#STARTED[@]} -gt 0 ]]; then
        echo "redis-ha: processes left running for inspection; stop them with deploy/down.sh --local${DIR_ARG}" >&2
    fi
}
trap on_exit EXIT

# start NAME COMMAND...: runs COMMAND in the background in its own session (so a Ctrl-C in this
# terminal later does not reach it), output to NAME.log, pid to NAME.pid.
start() {
    local name=$1 pid
    shift
    # NO_COLOR: plain log files, without terminal colour codes.
    RUST_LOG=${RUST_LOG:-info} NO_COLOR=1 setsid nohup "$@" >>"$RUN_DIR/$name.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$RUN_DIR/$name.pid"
    STARTED+=("$name")
    # Until the background shell has exec'd the program, its command line is this script's:
    # wait for that, so later liveness checks never mistake a slow exec for an exit.
    local i
    for ((i = 0; i < 100; i++)); do
        rh_live_pid "$RUN_DIR" "$name" >/dev/null && return 0
        rh_alive "$pid" || break
        sleep 0.05
    done
    check_alive
    rh_die "$name (pid $pid) did not start as expected (see $RUN_DIR/$name.log)"
}

# Fails when a started process has exited (its log says why).
check_alive() {
    local name
    for name in "${STARTED[@]}"; do
        if ! rh_live_pid "$RUN_DIR" "$name" >/dev/null; then
            echo >&2
            echo "redis-ha: $name exited; the end of $RUN_DIR/$name.log:" >&2
            tail -n 20 "$RUN_DIR/$name.log" >&2 || true
            exit 1
        fi
    done
}

# Waits until PORT accepts connections, or NAME exits.
wait_port() {
    local name=$1 port=$2 i
    for ((i = 0; i < 100; i++)); do
        port_in_use "$port" && return 0
        check_alive
        sleep 0.1
    done
    rh_die "$name does not listen on $port after 10 s (see $RUN_DIR/$name.log)"
}

start_all() {
    local n
    start coordinator "$BIN_DIR/redis-ha-coordinator" --config "$RUN_DIR/coordinator.toml"
    for n in 1 2 3; do
        # Under redis-ha-node redis-run: a SIGTERM to a master (deploy/down.sh --local --node N)
        # hands its role over first (a switchover), README "Graceful stop".
        start "redis-$n" "$BIN_DIR/redis-ha-node" redis-run --node-id "node-$n" \
            --port "${PORTS[redis-$n]}" --group "$GROUP" --coordinator "http://127.0.0.1:$GRPC_PORT" \
            --ca-file "$TLS_DIR/ca.pem" --cert-file "$TLS_DIR/agent-node-$n.pem" \
            --key-file "$TLS_DIR/agent-node-$n-key.pem" --secrets-dir "$SECRETS_DIR" \
            -- redis-server "$RUN_DIR/redis-$n.conf"
    done
    for n in 1 2 3; do
        wait_port "redis-$n" "${PORTS[redis-$n]}"
    done
    for n in 1 2 3; do
        start "sentinel-$n" redis-sentinel "$RUN_DIR/sentinel-$n.conf"
    done
    wait_port coordinator "$GRPC_PORT"
    for n in 1 2 3; do
        start "agent-$n" "$BIN_DIR/redis-ha-agent" --config "$RUN_DIR/agent-$n.toml"
    done
    start_proxy
}

# HAProxy on the base port, driven by redis-ha-reloader, when both are there: HAProxy is
# optional in local mode (clients can ask `redis-ha master`), so its absence is only a note.
HAVE_PROXY=0
proxy_wanted() {
    if ! command -v haproxy >/dev/null 2>&1; then
        NOTES+=("haproxy is not installed: no client endpoint on ${PORTS[haproxy]} (sudo apt-get install -y haproxy)")
        return 1
    fi
    if [[ ! -x $BIN_DIR/redis-ha-reloader ]]; then
        NOTES+=("$BIN_DIR/redis-ha-reloader is missing: no client endpoint on ${PORTS[haproxy]}")
        return 1
    fi
    return 0
}

start_proxy() {
    [[ $HAVE_PROXY -eq 1 ]] || return 0
    # A copy in the run directory: down.sh recognises the process by that path.
    cp "$REPO_ROOT/deploy/haproxy/haproxy.cfg" "$RUN_DIR/haproxy.cfg"
    cp "$REPO_ROOT/deploy/haproxy/majority-guard.lua" "$RUN_DIR/majority-guard.lua"
    render "$SCRIPT_DIR/local/reloader.toml.tmpl" "$RUN_DIR/reloader.toml" \
        "GRPC_PORT=$GRPC_PORT" "GROUP=$GROUP" "RUN_DIR=$RUN_DIR" "SENTINEL_1=${PORTS[sentinel-1]}" \
        "SENTINEL_2=${PORTS[sentinel-2]}" "SENTINEL_3=${PORTS[sentinel-3]}" \
        "REDIS_1=${PORTS[redis-1]}" "REDIS_2=${PORTS[redis-2]}" "REDIS_3=${PORTS[redis-3]}" \
        "METRICS_PORT=${PORTS[reloader-metrics]}" "SECRETS_DIR=$SECRETS_DIR" "TLS_DIR=$TLS_DIR"
    # Redis requires a password here (the ACL users), which the tcp-check cannot send: without
    # REDIS_HA_NO_CHECK it would mark every server DOWN within seconds (as on the stack, the
    # reloader alone decides who is ready).
    REDIS_HA_NO_CHECK=1 \
        REDIS_HA_GUARD_LUA="$RUN_DIR/majority-guard.lua" \
        REDIS_HA_PROXY_BIND="127.0.0.1:${PORTS[haproxy]}" \
        REDIS_HA_READ_BIND="127.0.0.1:${PORTS[haproxy-read]}" \
        REDIS_HA_RUNTIME_API="$RUN_DIR/haproxy.sock" \
        REDIS_HA_STATS_BIND="127.0.0.1:${PORTS[haproxy-stats]}" \
        REDIS_HA_NODE_1="127.0.0.1:${PORTS[redis-1]}" \
        REDIS_HA_NODE_2="127.0.0.1:${PORTS[redis-2]}" \
        REDIS_HA_NODE_3="127.0.0.1:${PORTS[redis-3]}" \
        start haproxy haproxy -db -f "$RUN_DIR/haproxy.cfg"
    wait_port haproxy "${PORTS[haproxy]}"
    start reloader "$BIN_DIR/redis-ha-reloader" --config "$RUN_DIR/reloader.toml"
}

# True when a client connecting to the HAProxy port reaches a Redis that says role:master.
proxy_routes_to_master() {
    local role
    # As the operator (ROLE is no data command); the password through the environment.
    role=$(REDISCLI_AUTH=$(<"$SECRETS_DIR/redis_admin_password") timeout 2 redis-cli --no-auth-warning \
        -h 127.0.0.1 -p "${PORTS[haproxy]}" role 2>/dev/null | head -n1) || return 1
    [[ $role == master ]]
}

# ------------------------------------------------------------------------------ wait

# Waits for `redis-ha wait` (a confirmed master, two linked replicas: the CLI decides), then,
# with HAProxy, for the proxy to route to that master. A started process that exits ends the
# wait at once, with its log.
wait_healthy() {
    local deadline rc=0
    deadline=$((SECONDS + WAIT_SECS))
    "$CLI" --timeout-ms 1000 wait --replicas 2 --max-wait-ms $((WAIT_SECS * 1000)) &
    WAIT_PID=$!
    while rh_alive "$WAIT_PID"; do
        check_alive
        sleep 0.5
    done
    wait "$WAIT_PID" || rc=$?
    WAIT_PID=""
    if [[ $rc -eq 0 && $HAVE_PROXY -eq 1 ]]; then
        printf 'waiting for HAProxy to route to the master '
        until proxy_routes_to_master; do
            if ((SECONDS >= deadline)); then
                echo " timed out"
                rc=1
                break
            fi
            check_alive
            printf '.'
            sleep 1
        done
        [[ $rc -ne 0 ]] || echo " ok"
    fi
    [[ $rc -ne 0 ]] || return 0
    echo "--- last status:" >&2
    "$CLI" --timeout-ms 1000 status >&2 || true
    local name
    for name in "${STARTED[@]}"; do
        echo "--- $name ($RUN_DIR/$name.log):" >&2
        tail -n 15 "$RUN_DIR/$name.log" >&2 || true
    done
    echo "redis-ha: the cluster did not become healthy within ${WAIT_SECS} s" >&2
    exit 1
}

print_endpoints() {
    local n
    echo
    echo "redis-ha is up (group $GROUP, run directory $RUN_DIR)"
    if [[ $HAVE_PROXY -eq 1 ]]; then
        echo "  clients (HAProxy -> master)  127.0.0.1:${PORTS[haproxy]}  (stats http://127.0.0.1:${PORTS[haproxy-stats]}/stats)"
        echo "  reads (HAProxy -> replicas)  127.0.0.1:${PORTS[haproxy-read]}  (read-only clients; the master when no replica qualifies)"
    fi
    for n in 1 2 3; do
        echo "  node-$n  redis 127.0.0.1:${PORTS[redis-$n]}  sentinel 127.0.0.1:${PORTS[sentinel-$n]}"
    done
    echo "  coordinator (gRPC, mutual TLS) https://127.0.0.1:$GRPC_PORT"
    echo
    print_tls_usage
    echo "  $CLI_HINT status | watch | master | events | switchover | failover"
    echo "  REDISCLI_AUTH=\$(cat $SECRETS_DIR/redis_app_password) redis-cli --user app -p ${PORTS[haproxy]}"
    echo "  REDISCLI_AUTH=\$(cat $SECRETS_DIR/sentinel_password) redis-cli -p ${PORTS[sentinel-1]} sentinel get-master-addr-by-name $GROUP"
    echo "  passwords: $SECRETS_DIR (README \"Redis and Sentinel access\")"
    echo "  deploy/down.sh --local${DIR_ARG}"
    local note
    for note in "${NOTES[@]}"; do
        echo "  note: $note"
    done
    echo
    "$CLI" status
}

# ------------------------------------------------------------------------------ modes

local_up() {
    check_options
    declare -gA PORTS=(
        [redis-1]=$((BASE_PORT + 1)) [redis-2]=$((BASE_PORT + 2)) [redis-3]=$((BASE_PORT + 3))
        [sentinel-1]=$((BASE_PORT + 10001)) [sentinel-2]=$((BASE_PORT + 10002))
        [sentinel-3]=$((BASE_PORT + 10003)) [coordinator]=$GRPC_PORT
        # Prometheus /metrics of the sidecars (three agents share this host).
        [agent-1-metrics]=$((BASE_PORT + 20001)) [agent-2-metrics]=$((BASE_PORT + 20002))
        [agent-3-metrics]=$((BASE_PORT + 20003)) [coordinator-metrics]=$((BASE_PORT + 20010))
    )
    DIR_ARG=""
    [[ $RUN_DIR == "$(rh_abs_path "$RH_DEFAULT_RUN_DIR")" ]] || DIR_ARG=" --dir $RUN_DIR"
    check_packages
    check_not_running
    local names
    mapfile -t names < <(printf '%s\n' "${!PORTS[@]}" | sort)
    check_ports "${names[@]}"
    build
    min_lag
    # Whether HAProxy runs is known once the reloader is (or is not) built.
    NOTES=()
    if proxy_wanted; then
        HAVE_PROXY=1
        PORTS[haproxy]=$BASE_PORT
        PORTS[haproxy-read]=$((BASE_PORT + 10))
        PORTS[haproxy-stats]=$((BASE_PORT + 10000))
        PORTS[reloader-metrics]=$((BASE_PORT + 20011))
        check_ports haproxy haproxy-read haproxy-stats reloader-metrics
    fi
    CLI="$BIN_DIR/redis-ha"
    CLI_HINT=$CLI
    [[ $GRPC_PORT -eq 50051 ]] || CLI_HINT+=" --coordinator http://127.0.0.1:$GRPC_PORT"
    [[ $GROUP == redis-cluster ]] || CLI_HINT+=" --group $GROUP"
    export REDIS_HA_COORDINATOR="http://127.0.0.1:$GRPC_PORT" REDIS_HA_GROUP="$GROUP"
    prepare_run_dir
    create_certs
    generate_configs
    start_all
    wait_healthy
    print_endpoints
}

local_up
