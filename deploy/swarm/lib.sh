# redis-ha on Docker Swarm: the swarm branch of deploy/up.sh and deploy/down.sh (sourced by them;
# each parses its own options here). Stack files: deploy/stack/; images: deploy/build.sh.
# shellcheck shell=bash

SW_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SW_DEPLOY=$(cd "$SW_DIR/.." && pwd)
SW_STACK_DIR=$SW_DEPLOY/stack
# shellcheck source=deploy/swarm/upgrade.sh
source "$SW_DIR/upgrade.sh"

sw_die() {
    echo "redis-ha: $*" >&2
    exit 1
}

sw_usage_error() {
    echo "redis-ha: $*" >&2
    echo "(deploy/${SW_SCRIPT:-up.sh} --help lists the options)" >&2
    exit 2
}

sw_need_value() {
    [[ $# -ge 2 && -n $2 ]] || sw_usage_error "$1 needs a value"
}

sw_is_uint() {
    [[ $1 =~ ^[0-9]+$ ]]
}

# sw_uint_in OPTION VALUE MIN MAX: refuses VALUE unless it is a number within MIN..MAX.
sw_uint_in() {
    if ! sw_is_uint "$2" || ((10#$2 < $3 || 10#$2 > $4)); then
        sw_usage_error "$1 must be a number from $3 to $4, got '$2'"
    fi
}

sw_check_docker() {
    command -v docker >/dev/null 2>&1 || sw_die "docker not found (Debian: sudo apt-get install -y docker.io)"
    docker info >/dev/null 2>&1 ||
        sw_die "cannot reach the Docker engine: is it running (systemctl start docker), may this user use it?"
}

sw_check_stack_name() {
    [[ $STACK =~ ^[a-z0-9][a-z0-9_-]*$ && ${#STACK} -le 40 ]] ||
        sw_usage_error "--stack must be lower-case letters, digits, '_' or '-' (at most 40), got '$STACK'"
}

# Names of the stack's services, without the stack prefix.
SW_SERVICES=(redis-1 redis-2 redis-3 sentinel-1 sentinel-2 sentinel-3 agent-1 agent-2 agent-3
    coordinator haproxy haproxy-reloader name-holder)

# ============================================================================== up

swarm_usage() {
    cat <<USAGE
usage: deploy/up.sh [options]            the Docker Swarm stack (this machine: a swarm manager)
       deploy/up.sh --local [options]    every process on loopback (deploy/up.sh --local --help)

Initialises a single-node swarm when this engine is in none, builds the images that are missing
(deploy/build.sh), deploys the stack (deploy/stack/redis-ha.yml), waits until the master and both
replicas are linked and HAProxy routes a write, then prints the endpoints.

  --stack NAME          stack name (default redis-ha); several stacks can run side by side
  --base-port N         host ports: HAProxy N (reads N+10); with --node-ports Redis N+1..N+3 and
                        Sentinels N+10001..N+10003 (default 9000)
  --group NAME          Sentinel master name (default redis-cluster)
  --node-ports          also publish the Redis and Sentinel ports on the host
                        (deploy/stack/publish-nodes.yml; default: only HAProxy's)
  --no-node-ports       only HAProxy's port (the default)
  --grpc-port N         also publish the coordinator's gRPC port on N (default: not published;
                        use docker exec ... redis-ha status)
  --secrets-dir DIR     the passwords, one file each (redis_admin_password, redis_app_password,
                        redis_replication_password, redis_sentinel_password,
                        redis_agent_password, redis_simulator_password,
                        redis_coordinator_password, sentinel_password;
                        default: generated once into the state directory, mode 600)
  --maxmemory SIZE      each Redis node's maxmemory (default 256mb; policy noeviction)
  --no-encrypt-overlay  do not encrypt the overlay networks (default: encrypted when this
                        kernel can; deploy/stack/encrypted.yml)
  --quorum N            Sentinel quorum (default 2)
  --down-after-ms MS    Sentinel down-after-milliseconds (default 5000); the Redis nodes'
                        min-replicas-max-lag follows it (below 3000 a master cut off from its
                        replicas may acknowledge writes after a new master is promoted: a warning)
  --failover-timeout-ms MS  Sentinel failover-timeout (default 10000)
  --haproxy-replicas N  N HAProxy replicas on distinct nodes instead of one per node
  --dns IP              upstream DNS server of the Redis and Sentinel containers: Docker's
                        embedded DNS forwards the names it does not know there (default: the
                        engine's; deploy/stack/dns.yml)
  --jaeger              add Jaeger (deploy/stack/jaeger.yml; its image must be available)
  --hung-restart        agents restart a hung Redis (PING timing out) through the Docker API
                        (deploy/stack/hung-restart.yml; needs the Docker socket)
  --no-docker-socket    do not mount the Docker socket into the agents (deploy/stack/docker-socket.yml):
                        a crashed master is then failed over by Sentinel after down-after only
  --debug               build the debug binaries (default: release)
  --no-build            do not build; use the images of the last build for this stack
  --no-cargo            build the images from the binaries already in the target directory
                        (deploy/build.sh --no-cargo)
  --registry REG        push the images to REG (deploy/build.sh --push) for multi-node swarms:
                        every node must resolve REG to the same registry and trust it (HTTPS,
                        or REG in each engine's insecure-registries)
  --engine HOST         the Docker engine of another swarm node (docker -H HOST: ssh://user@node,
                        tcp://node:2376, unix:///path): the images are loaded onto it
                        (docker save | docker -H HOST load) and down.sh --purge removes its
                        volumes; repeat for each node. Without --engine or --registry the images
                        must already be on every node. Such nodes' engines need
                        DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1 in their environment, or each task
                        start tries to pull first (README "Several hosts")
  --advertise-addr A    address for 'docker swarm init' (default: the default route's source
                        address, else 127.0.0.1)
  --state-dir DIR       passwords and image list of this stack (default deploy/stack/run/STACK)
  --timeout S           how long to wait for a healthy stack, and for each step of a
                        rolling upgrade (default 300)
  --image NAME=IMAGE    run IMAGE instead of the built one (NAME: redis, sentinel, haproxy,
                        sidecars; repeatable), e.g. a patched Redis image
  --dry-run             on a running stack: print the upgrade plan (what changes, the order,
                        the master now, where the switchover goes) and change nothing
  --all-at-once         on a running stack: one stack deploy that restarts every changed
                        service at once (what up.sh did before the rolling upgrade; for a
                        group too broken for the rolling upgrade's checks)
  -h, --help            this text

On a stack that is already running, the Redis and Sentinel services whose image or config
changed are replaced one at a time (README "Upgrade"): the other services first (a normal
stack deploy), then the replicas' Redis (each linked and caught up before the next), then
the Sentinels (each back with the master and its peers before the next), then a
'redis-ha switchover' away from the master and the old master's Redis. A failed step stops
the upgrade and says which services run which version; running up.sh again continues.

Environment (passed to the stack; see deploy/stack/redis-ha.yml):
  REDIS_HA_PUBLISH_MODE=ingress   publish through the routing mesh (default host: works without IPVS)
  REDIS_HA_ENDPOINT_MODE=vip      service virtual IPs (default dnsrr: works without IPVS)
  REDIS_HA_RUST_LOG=debug         the sidecars' log filter (default info)
  REDIS_HA_IMAGE_JAEGER=IMAGE     the Jaeger image for --jaeger
USAGE
}

swarm_parse_up() {
    STACK=redis-ha
    BASE_PORT=9000
    GROUP=redis-cluster
    NODE_PORTS=0
    GRPC_PORT=""
    SECRETS_DIR=""
    MAXMEMORY=256mb
    ENCRYPT_OVERLAY=1
    QUORUM=2
    DOWN_AFTER_MS=5000
    FAILOVER_TIMEOUT_MS=10000
    HAPROXY_REPLICAS=""
    DNS=""
    JAEGER=0
    HUNG_RESTART=0
    DOCKER_SOCKET=1
    PROFILE=release
    BUILD=1
    CARGO=1
    REGISTRY=""
    ENGINES=()
    ADVERTISE_ADDR=""
    STATE_DIR=""
    WAIT_SECS=300
    DRY_RUN=0
    ALL_AT_ONCE=0
    IMAGE_OVERRIDES=()
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --stack) sw_need_value "$@"; STACK=$2; shift ;;
            --base-port) sw_need_value "$@"; BASE_PORT=$2; shift ;;
            --group) sw_need_value "$@"; GROUP=$2; shift ;;
            --node-ports) NODE_PORTS=1 ;;
            --no-node-ports) NODE_PORTS=0 ;;
            --grpc-port) sw_need_value "$@"; GRPC_PORT=$2; shift ;;
            --secrets-dir) sw_need_value "$@"; SECRETS_DIR=$2; shift ;;
            --password-file) sw_usage_error "--password-file is gone: one password per user now, see --secrets-dir" ;;
            --maxmemory) sw_need_value "$@"; MAXMEMORY=$2; shift ;;
            --no-encrypt-overlay) ENCRYPT_OVERLAY=0 ;;
            --quorum) sw_need_value "$@"; QUORUM=$2; shift ;;
            --down-after-ms) sw_need_value "$@"; DOWN_AFTER_MS=$2; shift ;;
            --failover-timeout-ms) sw_need_value "$@"; FAILOVER_TIMEOUT_MS=$2; shift ;;
            --haproxy-replicas) sw_need_value "$@"; HAPROXY_REPLICAS=$2; shift ;;
            --dns) sw_need_value "$@"; DNS=$2; shift ;;
            --jaeger) JAEGER=1 ;;
            --hung-restart) HUNG_RESTART=1 ;;
            --no-docker-socket) DOCKER_SOCKET=0 ;;
            --debug) PROFILE=debug ;;
            --release) PROFILE=release ;;
            --no-build) BUILD=0 ;;
            --no-cargo) CARGO=0 ;;
            --registry) sw_need_value "$@"; REGISTRY=${2%/}; shift ;;
            --engine) sw_need_value "$@"; ENGINES+=("$2"); shift ;;
            --advertise-addr) sw_need_value "$@"; ADVERTISE_ADDR=$2; shift ;;
            --state-dir) sw_need_value "$@"; STATE_DIR=$2; shift ;;
            --timeout) sw_need_value "$@"; WAIT_SECS=$2; shift ;;
            --image) sw_need_value "$@"; IMAGE_OVERRIDES+=("$2"); shift ;;
            --dry-run) DRY_RUN=1 ;;
            --all-at-once) ALL_AT_ONCE=1 ;;
            -h | --help) swarm_usage; exit 0 ;;
            *) sw_usage_error "unknown option $1" ;;
        esac
        shift
    done
    sw_check_stack_name
    if ! sw_is_uint "$BASE_PORT" || ((10#$BASE_PORT < 1 || 10#$BASE_PORT + 10003 > 65535)); then
        sw_usage_error "--base-port must be a number from 1 to 55532, got '$BASE_PORT'"
    fi
    BASE_PORT=$((10#$BASE_PORT))
    [[ $GROUP =~ ^[A-Za-z0-9._-]+$ ]] ||
        sw_usage_error "--group must be letters, digits, '.', '_' or '-', got '$GROUP'"
    if [[ -n $GRPC_PORT ]]; then
        if ! sw_is_uint "$GRPC_PORT" || ((10#$GRPC_PORT < 1 || 10#$GRPC_PORT > 65535)); then
            sw_usage_error "--grpc-port must be 1-65535, got '$GRPC_PORT'"
        fi
        GRPC_PORT=$((10#$GRPC_PORT))
    fi
    sw_uint_in --quorum "$QUORUM" 1 3
    sw_uint_in --down-after-ms "$DOWN_AFTER_MS" 100 86400000
    sw_uint_in --failover-timeout-ms "$FAILOVER_TIMEOUT_MS" 1000 86400000
    [[ -z $HAPROXY_REPLICAS ]] || sw_uint_in --haproxy-replicas "$HAPROXY_REPLICAS" 1 1000
    sw_uint_in --timeout "$WAIT_SECS" 1 86400
    [[ $HUNG_RESTART -eq 0 || $DOCKER_SOCKET -eq 1 ]] ||
        sw_usage_error "--hung-restart restarts containers through the Docker socket: it cannot go with --no-docker-socket"
    sw_check_dns
    # The form only; redis-ha-node checks the value at each node's start.
    [[ $MAXMEMORY =~ ^[0-9]+([kKmMgG][bB]?)?$ ]] ||
        sw_usage_error "--maxmemory must be bytes or a size like 512mb or 2gb, got '$MAXMEMORY'"
    [[ -n $STATE_DIR ]] || STATE_DIR=$SW_STACK_DIR/run/$STACK
    local o
    for o in "${IMAGE_OVERRIDES[@]}"; do
        [[ $o =~ ^(redis|sentinel|haproxy|sidecars)=[^[:space:]]+$ ]] ||
            sw_usage_error "--image must be NAME=IMAGE with NAME redis, sentinel, haproxy or sidecars, got '$o'"
    done
}

# --dns: one IPv4 or IPv6 address (the engine checks it again).
sw_check_dns() {
    [[ -z $DNS || $DNS =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ || $DNS =~ ^[0-9A-Fa-f:]*:[0-9A-Fa-f:]*$ ]] ||
        sw_usage_error "--dns must be an IP address, got '$DNS'"
}

# ------------------------------------------------------------------------------ swarm

# The address 'docker swarm init' advertises: the source address of the default route (other
# nodes can join), else loopback (a single-node swarm works on it).
sw_default_addr() {
    local a
    a=$(ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p' | head -n1) || true
    echo "${a:-127.0.0.1}"
}

sw_ensure_swarm() {
    local state control addr
    state=$(docker info -f '{{.Swarm.LocalNodeState}}')
    case $state in
        active) ;;
        inactive)
            addr=${ADVERTISE_ADDR:-$(sw_default_addr)}
            echo "this engine is in no swarm: docker swarm init --advertise-addr $addr"
            if ! docker swarm init --advertise-addr "$addr" >/dev/null; then
                [[ -z $ADVERTISE_ADDR && $addr != 127.0.0.1 ]] || sw_die "docker swarm init failed"
                echo "retrying with --advertise-addr 127.0.0.1"
                docker swarm init --advertise-addr 127.0.0.1 >/dev/null || sw_die "docker swarm init failed"
            fi
            ;;
        *) sw_die "this engine's swarm state is '$state': fix it (docker swarm leave --force, or wait) and retry" ;;
    esac
    control=$(docker info -f '{{.Swarm.ControlAvailable}}')
    [[ $control == true ]] || sw_die "this node is a swarm worker: run deploy/up.sh on a manager"
}

# ------------------------------------------------------------------------------ state, password

sw_prepare_state() {
    mkdir -p "$STATE_DIR"
    chmod 700 "$STATE_DIR"
    STATE_DIR=$(cd "$STATE_DIR" && pwd)
    sw_prepare_secrets
}

# ------------------------------------------------------------------------------ secrets (ACL)

# The secret files, one password each (who reads which: deploy/stack/redis-ha.yml, "secrets";
# the users' rules: services/node/src/acl.rs).
SW_SECRETS=(redis_admin_password redis_app_password redis_replication_password
    redis_sentinel_password redis_agent_password redis_simulator_password
    redis_coordinator_password sentinel_password)

# --secrets-dir: every file must be there. Otherwise the state directory, where each missing one
# is generated once (32 characters of [A-Za-z0-9]: no quoting issue anywhere), mode 600.
sw_prepare_secrets() {
    local name f random
    if [[ -n $SECRETS_DIR ]]; then
        [[ -d $SECRETS_DIR ]] || sw_die "--secrets-dir $SECRETS_DIR is no directory"
        SECRETS_DIR=$(cd "$SECRETS_DIR" && pwd)
    else
        SECRETS_DIR=$STATE_DIR
    fi
    for name in "${SW_SECRETS[@]}"; do
        f=$SECRETS_DIR/$name
        if [[ ! -s $f ]]; then
            [[ $SECRETS_DIR == "$STATE_DIR" ]] || sw_die "missing secret file $f (or it is empty)"
            # 512 random bytes keep about 120 of those characters.
            random=$(head -c 512 /dev/urandom | LC_ALL=C tr -dc 'A-Za-z0-9')
            ((${#random} >= 32)) || sw_die "could not generate a password"
            (umask 077 && printf '%s' "${random:0:32}" >"$f")
            echo "generated $f (mode 600)"
        fi
        [[ -r $f ]] || sw_die "cannot read the secret file $f"
        [[ $(stat -c '%a' "$f") =~ [0-7]00$ ]] || echo "note: $f is readable by others; chmod 600 it"
        [[ $(wc -l <"$f") -le 1 && $(<"$f") != *$'\n'* ]] || sw_die "$f must hold its password on one line"
    done
}

# Whether to encrypt the overlay networks: redis-ha-node's rule (services/node/src/kernel.rs)
# over this kernel's configuration, asked in the image the nodes run; says why when not.
sw_overlay_encryption() {
    SW_ENCRYPT=0
    if [[ $ENCRYPT_OVERLAY -eq 0 ]]; then
        echo "overlay networks: not encrypted (--no-encrypt-overlay)"
        return
    fi
    local answer
    if answer=$({ zcat /proc/config.gz 2>/dev/null || cat "/boot/config-$(uname -r)" 2>/dev/null || true; } |
        docker run --rm -i --network none --entrypoint redis-ha-node "$REDIS_HA_IMAGE_REDIS" overlay-encryption); then
        SW_ENCRYPT=1
        echo "overlay networks: encrypted (IPsec; $answer)"
    else
        echo "overlay networks: NOT encrypted: ${answer:-redis-ha-node overlay-encryption failed}."
        echo "  Traffic between swarm nodes (replication, Sentinel, gRPC) then crosses the network in clear;"
        echo "  on a single node it never leaves the host."
    fi
}

# ------------------------------------------------------------------------------ certificates

# The cluster CA and one certificate per sidecar and for the operator (mutual TLS on the
# coordinator's gRPC), in the state directory's tls/, made by `redis-ha certs create` of the
# sidecars image (what is issued, and what a re-run keeps, is its decision). They reach the
# services as Docker secrets (deploy/stack/tls.yml), named by a hash of the files.
sw_tls() {
    TLS_DIR=$STATE_DIR/tls
    echo "certificates (redis-ha certs create --dir $TLS_DIR):"
    docker run --rm --network none --user "$(id -u):$(id -g)" -v "$STATE_DIR:/state" \
        "$REDIS_HA_IMAGE_SIDECARS" redis-ha certs create --dir /state/tls \
        --nodes node-1,node-2,node-3 | sed 's/^/  /'
    [[ ${PIPESTATUS[0]} -eq 0 ]] || sw_die "redis-ha certs create failed"
    REDIS_HA_TLS_VERSION=$(cat "$TLS_DIR"/*.pem | sha256sum | cut -c1-12)
    export REDIS_HA_TLS_DIR=$TLS_DIR REDIS_HA_TLS_VERSION
}

# Adds the certificates' overlay to the stack files (after sw_stack_files).
sw_tls_files() {
    SW_FILES+=(-c "$SW_STACK_DIR/tls.yml")
}

# Certificate secrets of earlier versions of this stack: removed once nothing uses them.
sw_prune_tls_secrets() {
    local name
    while read -r name; do
        [[ $name == "${STACK}"_tls_* && $name != *_"$REDIS_HA_TLS_VERSION" ]] || continue
        docker secret rm "$name" >/dev/null 2>&1 || true
    done < <(docker secret ls --filter "label=com.docker.stack.namespace=$STACK" --format '{{.Name}}')
}

# How to use the CLI with the operator's certificate.
sw_print_tls_usage() {
    echo "  gRPC is mutual TLS: certificates in $TLS_DIR (the coordinator's container holds the operator's)"
    [[ -z $GRPC_PORT ]] || echo "    from this host: redis-ha --coordinator https://127.0.0.1:$GRPC_PORT --ca $TLS_DIR/ca.pem --cert $TLS_DIR/operator.pem --key $TLS_DIR/operator-key.pem ...
    (or REDIS_HA_CA, REDIS_HA_CERT, REDIS_HA_KEY)"
}

# ------------------------------------------------------------------------------ images

sw_images() {
    local env_file=$STATE_DIR/images.env
    if [[ $BUILD -eq 1 ]]; then
        local args=(--env-file "$env_file")
        [[ $PROFILE == debug ]] && args+=(--debug)
        [[ $CARGO -eq 1 ]] || args+=(--no-cargo)
        [[ -z $REGISTRY ]] || args+=(--push "$REGISTRY")
        echo "images (deploy/build.sh ${args[*]}):"
        "$SW_DEPLOY/build.sh" "${args[@]}" | sed 's/^/  /' || sw_die "deploy/build.sh failed"
    fi
    [[ -s $env_file ]] || sw_die "no image list in $env_file: run without --no-build once"
    local line key value
    while IFS= read -r line; do
        [[ $line =~ ^(REDIS_HA_IMAGE_[A-Z]+)=([^[:space:]]+)$ ]] || continue
        key=${BASH_REMATCH[1]} value=${BASH_REMATCH[2]}
        if [[ -z $REGISTRY ]] && ! docker image inspect "$value" >/dev/null 2>&1; then
            sw_die "image $value (from $env_file) is missing: run without --no-build"
        fi
        export "$key=$value"
    done <"$env_file"
    local v o
    for v in REDIS_HA_IMAGE_REDIS REDIS_HA_IMAGE_SENTINEL REDIS_HA_IMAGE_HAPROXY REDIS_HA_IMAGE_SIDECARS; do
        [[ -n ${!v:-} ]] || sw_die "$env_file names no $v: run without --no-build"
    done
    for o in "${IMAGE_OVERRIDES[@]}"; do
        v=REDIS_HA_IMAGE_${o%%=*}
        v=${v^^}
        if [[ -z $REGISTRY ]] && ! docker image inspect "${o#*=}" >/dev/null 2>&1; then
            sw_die "image ${o#*=} (--image $o) is not on this machine"
        fi
        export "$v=${o#*=}"
        echo "image ${o%%=*}: ${o#*=} (--image)"
    done
}

# The images onto the other nodes' engines (--engine), unless a registry serves them: each
# image the engine lacks (by id) goes over docker save | docker -H load. The engines are kept in
# the state directory, for down.sh --purge.
sw_distribute_images() {
    local engines_file=$STATE_DIR/engines e v img id there t0
    if [[ ${#ENGINES[@]} -gt 0 ]]; then
        {
            printf '%s\n' "${ENGINES[@]}"
            [[ ! -f $engines_file ]] || cat "$engines_file"
        } | awk 'NF && !seen[$0]++' >"$engines_file.new"
        mv "$engines_file.new" "$engines_file"
    fi
    if [[ -n $REGISTRY ]]; then
        return 0
    fi
    if [[ ${#ENGINES[@]} -eq 0 ]]; then
        local nodes
        nodes=$(docker node ls -q | wc -l)
        ((nodes <= 1)) ||
            echo "note: this swarm has $nodes nodes and neither --engine nor --registry was given: the images must already be on every node"
        return 0
    fi
    # What each engine lacks; one archive of those (docker save shares the common layers), loaded
    # onto every engine at once.
    local need=() missing pids=() failed=0 archive
    t0=$SECONDS
    for e in "${ENGINES[@]}"; do
        docker -H "$e" info >/dev/null 2>&1 || sw_die "cannot reach the Docker engine $e (--engine)"
        missing=0
        for v in REDIS_HA_IMAGE_REDIS REDIS_HA_IMAGE_SENTINEL REDIS_HA_IMAGE_HAPROXY REDIS_HA_IMAGE_SIDECARS; do
            img=${!v}
            id=$(docker image inspect -f '{{.Id}}' "$img")
            there=$(docker -H "$e" image inspect -f '{{.Id}}' "$img" 2>/dev/null || true)
            [[ $there == "$id" ]] || missing=1
        done
        [[ $missing -eq 0 ]] || need+=("$e")
    done
    if [[ ${#need[@]} -eq 0 ]]; then
        echo "images: already on the ${#ENGINES[@]} other engine(s)"
        return 0
    fi
    archive=$(mktemp "${TMPDIR:-/tmp}/redis-ha-images.XXXXXX.tar")
    docker save -o "$archive" "$REDIS_HA_IMAGE_REDIS" "$REDIS_HA_IMAGE_SENTINEL" \
        "$REDIS_HA_IMAGE_HAPROXY" "$REDIS_HA_IMAGE_SIDECARS" || { rm -f "$archive"; sw_die "docker save failed"; }
    for e in "${need[@]}"; do
        docker -H "$e" load -q -i "$archive" >/dev/null &
        pids+=($!)
    done
    for v in "${!pids[@]}"; do
        wait "${pids[$v]}" || { echo "redis-ha: loading the images onto ${need[$v]} failed" >&2; failed=1; }
    done
    rm -f "$archive"
    [[ $failed -eq 0 ]] || exit 1
    echo "images loaded onto ${need[*]} ($((SECONDS - t0)) s)"
}

# The Redis nodes' min-replicas-max-lag follows down-after: redis-ha-node's rule
# (services/node/src/durability.rs), asked in the image the nodes run. Its warning (a down-after
# too short for the guarantee) goes to the terminal; a value it cannot serve stops here.
sw_check_down_after() {
    local lag
    lag=$(docker run --rm --network none --entrypoint redis-ha-node "$REDIS_HA_IMAGE_REDIS" \
        min-replicas-max-lag --down-after-ms "$DOWN_AFTER_MS") ||
        sw_die "--down-after-ms $DOWN_AFTER_MS refused (above)"
    echo "Sentinel down-after $DOWN_AFTER_MS ms: Redis min-replicas-max-lag $lag s"
}

# ------------------------------------------------------------------------------ deploy

sw_stack_exists() {
    docker stack ls --format '{{.Name}}' | grep -qxF "$1"
}

# True when something accepts connections on 127.0.0.1:PORT.
sw_port_in_use() {
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null
}

sw_check_ports() {
    # A redeploy of a running stack holds its own ports.
    sw_stack_exists "$STACK" && return 0
    local p taken=()
    for p in "${SW_PUBLISHED[@]}"; do
        if sw_port_in_use "$p"; then taken+=("$p"); fi
    done
    [[ ${#taken[@]} -eq 0 ]] ||
        sw_die "port(s) ${taken[*]} already in use on this host: choose another --base-port (or --grpc-port)"
}

# Node N's services are pinned to the node labelled redis-ha.node=N when the swarm's nodes
# carry labels 1, 2 and 3; otherwise the scheduler places them (single node: all here).
sw_placement() {
    local labels n
    labels=$(docker node ls -q | xargs docker node inspect -f '{{index .Spec.Labels "redis-ha.node"}}' 2>/dev/null || true)
    for n in 1 2 3; do
        if grep -qxF "$n" <<<"$labels"; then
            export "REDIS_HA_PLACEMENT_$n=node.labels.redis-ha.node==$n"
        else
            export "REDIS_HA_PLACEMENT_$n=node.platform.os==linux"
        fi
    done
    if [[ $REDIS_HA_PLACEMENT_1 == node.labels* || $REDIS_HA_PLACEMENT_2 == node.labels* ||
        $REDIS_HA_PLACEMENT_3 == node.labels* ]]; then
        echo "placement: node N's services on the node labelled redis-ha.node=N"
    fi
    # The coordinator and the reloader on a manager (unless REDIS_HA_PLACEMENT_CONTROL says
    # otherwise): off the Redis nodes when those are workers, so losing a Redis host does not
    # also take the control plane.
    export REDIS_HA_PLACEMENT_CONTROL=${REDIS_HA_PLACEMENT_CONTROL:-node.role==manager}
    echo "placement: coordinator and reloader where $REDIS_HA_PLACEMENT_CONTROL"
}

sw_file_hash() {
    sha256sum "$1" | cut -c1-12
}

sw_export_vars() {
    export REDIS_HA_STACK=$STACK REDIS_HA_GROUP=$GROUP REDIS_HA_SECRETS_DIR=$SECRETS_DIR
    export REDIS_HA_MAXMEMORY=$MAXMEMORY
    export REDIS_HA_QUORUM=$QUORUM REDIS_HA_DOWN_AFTER_MS=$DOWN_AFTER_MS
    export REDIS_HA_FAILOVER_TIMEOUT_MS=$FAILOVER_TIMEOUT_MS
    # A dead Redis returns only after the Sentinels have had time to name its successor.
    export REDIS_HA_REDIS_RESTART_DELAY=${REDIS_HA_REDIS_RESTART_DELAY:-$((DOWN_AFTER_MS / 1000 + 5))s}
    export REDIS_HA_PORT_HAPROXY=$BASE_PORT REDIS_HA_PORT_HAPROXY_READ=$((BASE_PORT + 10))
    local n
    for n in 1 2 3; do
        export "REDIS_HA_PORT_REDIS_$n=$((BASE_PORT + n))" "REDIS_HA_PORT_SENTINEL_$n=$((BASE_PORT + 10000 + n))"
    done
    SW_PUBLISHED=("$BASE_PORT" $((BASE_PORT + 10)))
    [[ $NODE_PORTS -eq 0 ]] || SW_PUBLISHED+=($((BASE_PORT + 1)) $((BASE_PORT + 2)) $((BASE_PORT + 3))
        $((BASE_PORT + 10001)) $((BASE_PORT + 10002)) $((BASE_PORT + 10003)))
    if [[ -n $GRPC_PORT ]]; then
        export REDIS_HA_PORT_GRPC=$GRPC_PORT
        SW_PUBLISHED+=("$GRPC_PORT")
    fi
    [[ -z $HAPROXY_REPLICAS ]] || export REDIS_HA_HAPROXY_REPLICAS=$HAPROXY_REPLICAS
    export REDIS_HA_CONF_REDIS REDIS_HA_CONF_SENTINEL REDIS_HA_CONF_AGENT REDIS_HA_CONF_COORDINATOR \
        REDIS_HA_CONF_RELOADER
    REDIS_HA_CONF_REDIS=$(sw_file_hash "$SW_STACK_DIR/config/redis.conf")
    REDIS_HA_CONF_SENTINEL=$(sw_file_hash "$SW_STACK_DIR/config/sentinel.conf")
    REDIS_HA_CONF_AGENT=$(sw_file_hash "$SW_STACK_DIR/config/agent.toml")
    REDIS_HA_CONF_COORDINATOR=$(sw_file_hash "$SW_STACK_DIR/config/coordinator.toml")
    REDIS_HA_CONF_RELOADER=$(sw_file_hash "$SW_STACK_DIR/config/reloader.toml")
}

# The stack files: the main one, then the overlays the options ask for.
sw_stack_files() {
    SW_FILES=(-c "$SW_STACK_DIR/redis-ha.yml")
    [[ $NODE_PORTS -eq 0 ]] || SW_FILES+=(-c "$SW_STACK_DIR/publish-nodes.yml")
    [[ $SW_ENCRYPT -eq 0 ]] || SW_FILES+=(-c "$SW_STACK_DIR/encrypted.yml")
    [[ -z $GRPC_PORT ]] || SW_FILES+=(-c "$SW_STACK_DIR/publish-grpc.yml")
    [[ -z $HAPROXY_REPLICAS ]] || SW_FILES+=(-c "$SW_STACK_DIR/haproxy-replicated.yml")
    [[ $JAEGER -eq 0 ]] || SW_FILES+=(-c "$SW_STACK_DIR/jaeger.yml")
    if [[ -n $DNS ]]; then
        SW_FILES+=(-c "$SW_STACK_DIR/dns.yml")
        export REDIS_HA_DNS=$DNS
    fi
    if [[ $DOCKER_SOCKET -eq 1 ]]; then
        SW_FILES+=(-c "$SW_STACK_DIR/docker-socket.yml")
        REDIS_HA_DOCKER_GID=$(stat -c %g /var/run/docker.sock) ||
            sw_die "cannot read the group of /var/run/docker.sock (the agents' Docker events; --no-docker-socket deploys without)"
        export REDIS_HA_DOCKER_GID REDIS_HA_STACK=$STACK
    fi
    [[ $HUNG_RESTART -eq 0 ]] || SW_FILES+=(-c "$SW_STACK_DIR/hung-restart.yml")
}

# The swarm cannot switch a service between global and replicated mode: say what to do.
sw_check_haproxy_mode() {
    local want=global have
    [[ -z $HAPROXY_REPLICAS ]] || want=replicated
    have=$(docker service inspect -f '{{if .Spec.Mode.Global}}global{{else}}replicated{{end}}' \
        "${STACK}_haproxy" 2>/dev/null) || return 0
    [[ $have == "$want" ]] ||
        sw_die "${STACK}_haproxy runs in $have mode and the swarm cannot switch it to $want: remove it first
  (docker service rm ${STACK}_haproxy; clients have no proxy until this script deploys it again)"
}

sw_deploy() {
    sw_check_haproxy_mode
    local resolve=never
    # Images in a registry: let the swarm record their digests so every node pulls the same.
    [[ -z $REGISTRY ]] || resolve=always
    echo "docker stack deploy ${SW_FILES[*]} $STACK"
    docker stack deploy --prune --resolve-image "$resolve" "${SW_FILES[@]}" "$STACK" |
        sed 's/^/  /' || sw_die "docker stack deploy failed"
}

# Config objects of earlier versions of this stack (a changed file gets a new name): removed
# once nothing uses them (removing one in use fails, and is left for the next run).
sw_prune_configs() {
    local name
    while read -r name; do
        [[ -n $name ]] || continue
        case " $REDIS_HA_CONF_REDIS $REDIS_HA_CONF_SENTINEL $REDIS_HA_CONF_AGENT $REDIS_HA_CONF_COORDINATOR $REDIS_HA_CONF_RELOADER " in
            *" ${name##*_} "*) continue ;;
        esac
        docker config rm "$name" >/dev/null 2>&1 || true
    done < <(docker config ls --filter "label=com.docker.stack.namespace=$STACK" --format '{{.Name}}')
}

# ------------------------------------------------------------------------------ wait

# Services of the stack (short names) that do not run all their tasks yet (a global service
# counts one task per eligible node).
sw_pending_services() {
    local s list updating waiting=() run want
    list=$(docker stack services "$STACK" --format '{{.Name}} {{.Replicas}}' 2>/dev/null || true)
    # A redeploy: until a service's rolling update is over its old task still counts as running.
    updating=$(docker stack services -q "$STACK" 2>/dev/null |
        xargs -r docker service inspect -f '{{.Spec.Name}} {{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}' 2>/dev/null |
        awk '$2 == "updating" || $2 == "rollback_started" { print $1 }' || true)
    for s in "${SW_WAIT_SERVICES[@]}"; do
        run=0 want=0
        read -r run want < <(awk -v n="${STACK}_$s" '$1 == n { split($2, r, "/"); print r[1] + 0, r[2] + 0 }' <<<"$list") || true
        if ((${want:-0} == 0 || ${run:-0} < ${want:-0})) || grep -qxF "${STACK}_$s" <<<"$updating"; then
            waiting+=("$s")
        fi
    done
    echo "${waiting[*]}"
}

# The id of a running container of SERVICE on this node, if any.
sw_local_container() {
    docker ps -q --filter "label=com.docker.swarm.service.name=${STACK}_$1" --filter status=running | head -n1
}

# Runs `redis-ha ARGS` against the coordinator: in a local sidecar container (they all know the
# coordinator's address), else in a throw-away container on the stack's internal network.
sw_cli() {
    local c s
    for s in coordinator haproxy-reloader agent-1 agent-2 agent-3; do
        c=$(sw_local_container "$s")
        if [[ -n $c ]]; then
            docker exec "$c" redis-ha --timeout-ms 2000 "$@"
            return
        fi
    done
    # With the operator's certificate from the state directory.
    docker run --rm --network "${STACK}_internal" --user "$(id -u):$(id -g)" \
        -v "$TLS_DIR:/tls:ro" -e REDIS_HA_CA=/tls/ca.pem -e REDIS_HA_CERT=/tls/operator.pem \
        -e REDIS_HA_KEY=/tls/operator-key.pem "$REDIS_HA_IMAGE_SIDECARS" \
        redis-ha --timeout-ms 2000 --coordinator http://coordinator:50051 --group "$GROUP" "$@"
}

# A write through HAProxy's published port on this host: redis-cli when installed, else the
# redis-cli of a local Redis container through the overlay network (haproxy:9000).
sw_write_through_proxy() {
    local key="redis-ha:up" value reply c
    value=$(date +%s)
    if command -v redis-cli >/dev/null 2>&1; then
        # As the application user: the write a client makes.
        reply=$(REDISCLI_AUTH=$(<"$SECRETS_DIR/redis_app_password") timeout 3 redis-cli --no-auth-warning \
            --user app -h 127.0.0.1 -p "$BASE_PORT" set "$key" "$value" 2>&1) || return 1
        SW_WRITE_VIA="redis-cli -p $BASE_PORT on this host"
    else
        c=$(sw_local_container redis-1)
        [[ -n $c ]] || c=$(sw_local_container redis-2)
        [[ -n $c ]] || c=$(sw_local_container redis-3)
        [[ -n $c ]] || return 1
        # The password reaches redis-cli through the container's secret file, not argv.
        reply=$(docker exec "$c" sh -c 'REDISCLI_AUTH=$(cat /run/secrets/redis_app_password) exec timeout 3 redis-cli --no-auth-warning --user app -h haproxy -p 9000 set "$0" "$1"' "$key" "$value" 2>&1) || return 1
        SW_WRITE_VIA="redis-cli in a Redis container -> haproxy:9000"
    fi
    [[ $reply == OK ]]
}

# On a multi-node swarm: a write through the HAProxy of every other node running one (its
# published port on the node's swarm address), with redis-cli on this host. Without redis-cli
# only this host's HAProxy is checked (a note says so).
sw_write_on_every_node() {
    local self host addr reply ok=0 skipped=0
    SW_NODES_VIA=""
    self=$(docker info -f '{{.Swarm.NodeID}}')
    local hosts
    hosts=$(docker service ps "${STACK}_haproxy" --filter desired-state=running --format '{{.Node}}' 2>/dev/null | sort -u)
    [[ -n $hosts ]] || return 1
    while read -r host; do
        [[ -n $host ]] || continue
        [[ $(docker node inspect -f '{{.ID}}' "$host" 2>/dev/null) != "$self" ]] || continue
        if ! command -v redis-cli >/dev/null 2>&1; then
            skipped=$((skipped + 1))
            continue
        fi
        addr=$(docker node inspect -f '{{.Status.Addr}}' "$host") || return 1
        reply=$(REDISCLI_AUTH=$(<"$SECRETS_DIR/redis_app_password") timeout 3 redis-cli --no-auth-warning \
            --user app -h "$addr" -p "$BASE_PORT" set redis-ha:up:node "$(date +%s)" 2>&1) || return 1
        [[ $reply == OK ]] || return 1
        ok=$((ok + 1))
    done <<<"$hosts"
    ((ok == 0)) || SW_NODES_VIA=", and via the HAProxy of $ok other node(s)"
    ((skipped == 0)) || SW_NODES_VIA=", $skipped other node(s) unchecked (no redis-cli here)"
    return 0
}

sw_show_failures() {
    local pending=$1 s show=()
    if [[ -n $pending ]]; then
        read -r -a show <<<"$pending"
    else
        show=(coordinator agent-1 agent-2 agent-3 haproxy haproxy-reloader redis-1 sentinel-1)
    fi
    for s in "${show[@]}"; do
        # The task list says why a task never ran (no such image, no node fits, port taken).
        echo "--- docker service ps ${STACK}_$s (latest tasks):" >&2
        docker service ps --no-trunc --format '{{.Name}}  desired {{.DesiredState}}  {{.CurrentState}}  {{.Error}}' \
            "${STACK}_$s" 2>&1 | head -n 3 >&2 || true
        echo "--- docker service logs --tail 20 ${STACK}_$s:" >&2
        docker service logs --no-task-ids --tail 20 "${STACK}_$s" 2>&1 | tail -n 20 >&2 || true
    done
}

# The Sentinels on other nodes, asked from a throw-away container on the internal network (the
# password on its stdin, never in its command line or environment): for each of them one line
# "N OTHERS REPLICAS TILT".
sw_remote_sentinels() {
    # shellcheck disable=SC2016 # expanded by the container's shell
    docker run --rm -i --network "${STACK}_internal" --entrypoint bash "$REDIS_HA_IMAGE_SENTINEL" -c '
        read -r REDISCLI_AUTH; export REDISCLI_AUTH
        group=$1; shift
        for n in "$@"; do
            m=$(timeout 3 redis-cli --no-auth-warning -h "sentinel-$n" -p $((19000 + n)) sentinel master "$group" 2>/dev/null) || m=""
            i=$(timeout 3 redis-cli --no-auth-warning -h "sentinel-$n" -p $((19000 + n)) info sentinel 2>/dev/null | tr -d "\r") || i=""
            o=$(sed -n "/^num-other-sentinels$/{n;p;}" <<<"$m")
            r=$(sed -n "/^num-slaves$/{n;p;}" <<<"$m")
            t=$(sed -n "s/^sentinel_tilt://p" <<<"$i")
            echo "$n ${o:-0} ${r:-0} ${t:-1}"
        done' sentinels "$GROUP" "$@" <"$SECRETS_DIR/sentinel_password"
}

# True when every Sentinel knows the two other Sentinels and both replicas, and is not in TILT
# mode: before that a failover cannot be elected (a kill right after deploy would wait for
# Sentinel's retry, 2 x failover-timeout). Those on this host through docker exec, the others
# (other swarm nodes) through the internal network.
sw_sentinels_ready() {
    local n c out others replicas remote=() tilt
    for n in 1 2 3; do
        c=$(sw_local_container "sentinel-$n")
        if [[ -z $c ]]; then
            remote+=("$n")
            continue
        fi
        # The password reaches redis-cli through the container's secret file, not argv.
        out=$(docker exec "$c" sh -c 'REDISCLI_AUTH=$(cat /run/secrets/sentinel_password 2>/dev/null) exec timeout 3 redis-cli --no-auth-warning -p "$0" sentinel master "$1"' \
            "$((19000 + n))" "$GROUP" 2>/dev/null) || return 1
        others=$(sed -n '/^num-other-sentinels$/{n;p;}' <<<"$out")
        replicas=$(sed -n '/^num-slaves$/{n;p;}' <<<"$out")
        [[ ${others:-0} -ge 2 && ${replicas:-0} -ge 2 ]] || return 1
        # A Sentinel in TILT mode (its event loop was stalled, e.g. by a slow name lookup at
        # start) takes no action for 30 s: a kill in that time would not be failed over.
        out=$(docker exec "$c" sh -c 'REDISCLI_AUTH=$(cat /run/secrets/sentinel_password 2>/dev/null) exec timeout 3 redis-cli --no-auth-warning -p "$0" info sentinel' \
            "$((19000 + n))" 2>/dev/null) || return 1
        grep -q '^sentinel_tilt:0' <<<"${out//$'\r'/}" || return 1
    done
    [[ ${#remote[@]} -gt 0 ]] || return 0
    out=$(sw_remote_sentinels "${remote[@]}") || return 1
    [[ $(wc -l <<<"$out") -eq ${#remote[@]} ]] || return 1
    while read -r n others replicas tilt; do
        [[ ${others:-0} -ge 2 && ${replicas:-0} -ge 2 && ${tilt:-1} == 0 ]] || return 1
    done <<<"$out"
}

sw_wait_healthy() {
    local deadline pending last="" stage="tasks" left
    SW_WAIT_SERVICES=("${SW_SERVICES[@]}")
    [[ $JAEGER -eq 0 ]] || SW_WAIT_SERVICES+=(jaeger)
    deadline=$((SECONDS + WAIT_SECS))
    echo "waiting for the services (up to ${WAIT_SECS} s):"
    # The swarm starts a redeploy's rolling updates a moment after the deploy returns.
    sleep 2
    while ((SECONDS < deadline)); do
        pending=$(sw_pending_services)
        if [[ -n $pending ]]; then
            local n_pending
            n_pending=$(wc -w <<<"$pending")
            if [[ "$pending" != "$last" ]]; then
                printf '  [%3d s] %d/%d services running; waiting for: %s\n' "$SECONDS" \
                    $((${#SW_WAIT_SERVICES[@]} - n_pending)) "${#SW_WAIT_SERVICES[@]}" "$pending"
                last=$pending
            fi
            sleep 2
            continue
        fi
        if [[ $stage == tasks ]]; then
            printf '  [%3d s] all %d services running; waiting for a confirmed master, two linked replicas, Sentinels that know each other and a write through HAProxy\n' \
                "$SECONDS" "${#SW_WAIT_SERVICES[@]}"
            stage=topology
            last=""
        fi
        if [[ $stage == topology ]]; then
            # `redis-ha wait` decides and prints its progress; it fails when its time is up or
            # its container goes away (then the loop looks at the tasks again).
            left=$((deadline - SECONDS))
            ((left > 0)) || break
            if sw_cli wait --replicas 2 --max-wait-ms $((left * 1000)) 2>&1 | sed 's/^/  /'; then
                stage=final
            else
                sleep 2
                continue
            fi
        fi
        if sw_sentinels_ready && sw_write_through_proxy && sw_write_on_every_node; then
            printf '  [%3d s] healthy (write OK via %s%s)\n' "$SECONDS" "$SW_WRITE_VIA" "$SW_NODES_VIA"
            return 0
        fi
        sleep 2
    done
    echo "redis-ha: the stack $STACK is not healthy after ${WAIT_SECS} s" >&2
    pending=$(sw_pending_services)
    if [[ -z $pending ]]; then
        echo "--- redis-ha status:" >&2
        sw_cli status >&2 || true
    fi
    sw_show_failures "$pending"
    echo "redis-ha: the stack is left as it is for inspection; deploy/down.sh --stack $STACK removes it" >&2
    exit 1
}

sw_print_endpoints() {
    local n host_cli
    echo
    echo "redis-ha is up: stack $STACK, group $GROUP"
    echo "  clients (HAProxy -> master)  <any node running HAProxy>:$BASE_PORT  (here: 127.0.0.1:$BASE_PORT)"
    echo "                               in the swarm: network ${STACK}_client, haproxy:9000"
    echo "  reads (HAProxy -> replicas)  <any node running HAProxy>:$((BASE_PORT + 10))  (read-only clients; the master when no replica qualifies)"
    if [[ $NODE_PORTS -eq 1 ]]; then
        for n in 1 2 3; do
            echo "  node-$n  redis :$((BASE_PORT + n))  sentinel :$((BASE_PORT + 10000 + n))  (on the node running redis-$n)"
        done
    fi
    # The coordinator's gRPC port is published on the node that runs it, which may be another.
    local here=0
    if [[ -n $(sw_local_container coordinator) ]]; then here=1; fi
    if [[ -n $GRPC_PORT ]]; then
        if [[ $here -eq 1 ]]; then
            echo "  coordinator (gRPC)           127.0.0.1:$GRPC_PORT"
        else
            echo "  coordinator (gRPC)           <the node running ${STACK}_coordinator>:$GRPC_PORT"
        fi
    fi
    [[ $JAEGER -eq 0 ]] || echo "  Jaeger UI                    http://127.0.0.1:${REDIS_HA_PORT_JAEGER_UI:-16686}"
    echo "  application user             app, password in $SECRETS_DIR/redis_app_password"
    echo "                               (REDISCLI_AUTH=\$(cat $SECRETS_DIR/redis_app_password) redis-cli --user app -p $BASE_PORT)"
    echo "  other secrets                $SECRETS_DIR (README \"Redis and Sentinel access\")"
    echo
    if [[ $here -eq 1 ]]; then
        host_cli="docker exec \$(docker ps -q -f label=com.docker.swarm.service.name=${STACK}_coordinator) redis-ha"
        [[ -z $GRPC_PORT ]] || host_cli="redis-ha --coordinator https://127.0.0.1:$GRPC_PORT --group $GROUP"
    else
        # As sw_cli does: a throw-away container on the internal network.
        host_cli="docker run --rm --network ${STACK}_internal -v $TLS_DIR:/tls:ro -e REDIS_HA_CA=/tls/ca.pem -e REDIS_HA_CERT=/tls/operator.pem -e REDIS_HA_KEY=/tls/operator-key.pem $REDIS_HA_IMAGE_SIDECARS redis-ha --coordinator https://coordinator:50051 --group $GROUP"
    fi
    echo "  $host_cli status | watch | master | events | switchover | failover"
    if [[ $here -eq 1 ]]; then sw_print_tls_usage; fi
    echo "  docker stack services $STACK; docker service logs ${STACK}_coordinator"
    echo "  deploy/down.sh --stack $STACK   (--purge also removes the data volumes and the generated passwords)"
    echo
    sw_cli status || true
}

swarm_up() {
    SW_SCRIPT=up.sh
    swarm_parse_up "$@"
    local t0=$SECONDS
    sw_check_docker
    sw_ensure_swarm
    if [[ -n $HAPROXY_REPLICAS && ${REDIS_HA_PUBLISH_MODE:-host} == host ]]; then
        local nodes
        nodes=$(docker node ls -q | wc -l)
        ((HAPROXY_REPLICAS <= nodes)) ||
            sw_die "--haproxy-replicas $HAPROXY_REPLICAS needs as many swarm nodes with host-mode ports (this swarm has $nodes)"
    fi
    sw_prepare_state
    sw_export_vars
    sw_check_ports
    sw_images
    sw_distribute_images
    sw_tls
    sw_check_down_after
    sw_overlay_encryption
    sw_placement
    sw_stack_files
    sw_tls_files
    if [[ $JAEGER -eq 1 ]] && ! docker image inspect "${REDIS_HA_IMAGE_JAEGER:-jaegertracing/all-in-one:1.57}" >/dev/null 2>&1; then
        echo "note: ${REDIS_HA_IMAGE_JAEGER:-jaegertracing/all-in-one:1.57} is not on this machine: the swarm will try to pull it"
    fi
    # Every node service at its new version: a fresh deploy, or --all-at-once.
    sw_pin_all_desired
    sw_export_pins
    if sw_stack_exists "$STACK" && [[ $ALL_AT_ONCE -eq 0 ]]; then
        sw_upgrade
    else
        if [[ $DRY_RUN -eq 1 ]]; then
            if sw_stack_exists "$STACK"; then
                echo "dry run: --all-at-once: one stack deploy of $STACK, every changed service restarted at once; nothing deployed"
            else
                echo "dry run: no stack $STACK yet: a fresh deploy of every service; nothing deployed"
            fi
            exit 0
        fi
        sw_deploy
        sw_wait_healthy
    fi
    sw_prune_configs
    sw_prune_tls_secrets
    sw_print_endpoints
    echo
    echo "(deploy/up.sh took $((SECONDS - t0)) s)"
}

# ============================================================================== down

swarm_down_usage() {
    cat <<USAGE
usage: deploy/down.sh [options]            remove the Docker Swarm stack
       deploy/down.sh --local [options]    stop a local run (deploy/down.sh --local --help)

  --stack NAME      stack name (default redis-ha)
  --purge           also remove the stack's volumes (Redis data, Sentinel state) and its state
                    directory (generated passwords, image list); on the other nodes through
                    the engines given to up.sh --engine (kept in the state directory) and here
  --engine HOST     another node's Docker engine whose volumes --purge removes (repeatable)
  --state-dir DIR   as given to up.sh (default deploy/stack/run/STACK)
  --timeout S       how long to wait for the stack's containers and networks to go (default 120)
  -h, --help        this text

The swarm stays initialised and the images stay (deploy/build.sh --prune removes old ones).
USAGE
}

# Waits until COMMAND prints nothing, for up to S seconds. Returns 1 on timeout.
sw_wait_empty() {
    local s=$1 deadline
    shift
    deadline=$((SECONDS + s))
    while [[ -n $("$@" 2>/dev/null) ]]; do
        ((SECONDS < deadline)) || return 1
        sleep 1
    done
}

swarm_down() {
    SW_SCRIPT=down.sh
    STACK=redis-ha
    local purge=0 wait_s=120 state_dir="" engines=()
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --stack) sw_need_value "$@"; STACK=$2; shift ;;
            --purge) purge=1 ;;
            --engine) sw_need_value "$@"; engines+=("$2"); shift ;;
            --state-dir) sw_need_value "$@"; state_dir=$2; shift ;;
            --timeout) sw_need_value "$@"; wait_s=$2; shift ;;
            -h | --help) swarm_down_usage; exit 0 ;;
            *) sw_usage_error "unknown option $1" ;;
        esac
        shift
    done
    sw_check_stack_name
    sw_is_uint "$wait_s" || sw_usage_error "--timeout needs seconds"
    [[ -n $state_dir ]] || state_dir=$SW_STACK_DIR/run/$STACK
    sw_check_docker
    local label="label=com.docker.stack.namespace=$STACK"
    if [[ $(docker info -f '{{.Swarm.LocalNodeState}}') != active ]]; then
        echo "this engine is in no swarm: no stack to remove"
    elif sw_stack_exists "$STACK"; then
        echo "docker stack rm $STACK"
        docker stack rm "$STACK" | sed 's/^/  /'
    else
        echo "no stack $STACK"
    fi
    # stack rm returns at once; the tasks' containers and the networks go afterwards.
    echo "waiting for its containers and networks to go ..."
    sw_wait_empty "$wait_s" docker ps -aq --filter "$label" ||
        sw_die "containers of $STACK still there after ${wait_s} s: docker ps -a --filter $label"
    sw_wait_empty "$wait_s" docker network ls -q --filter "$label" ||
        sw_die "networks of $STACK still there after ${wait_s} s: docker network ls --filter $label"
    if [[ $purge -eq 1 ]]; then
        local v e
        while read -r v; do
            [[ -n $v ]] || continue
            docker volume rm "$v" >/dev/null && echo "removed volume $v"
        done < <(docker volume ls -q --filter "$label")
        # The other nodes' volumes, on the engines given now or to up.sh.
        [[ ! -f $state_dir/engines ]] || mapfile -t -O "${#engines[@]}" engines <"$state_dir/engines"
        for e in "${engines[@]}"; do
            [[ -n $e ]] || continue
            if ! docker -H "$e" info >/dev/null 2>&1; then
                echo "note: cannot reach $e: its volumes of $STACK (if any) are kept" >&2
                continue
            fi
            sw_wait_empty "$wait_s" docker -H "$e" ps -aq --filter "$label" ||
                sw_die "containers of $STACK still there on $e after ${wait_s} s"
            while read -r v; do
                [[ -n $v ]] || continue
                docker -H "$e" volume rm "$v" >/dev/null && echo "removed volume $v on $e"
            done < <(docker -H "$e" volume ls -q --filter "$label")
        done
        local nodes
        # No swarm (never initialised, or left): no other nodes to speak of.
        nodes=$(docker node ls -q 2>/dev/null | wc -l || true)
        if ((nodes > 1 + ${#engines[@]})); then
            echo "note: $nodes swarm nodes, $((${#engines[@]})) engine(s) known: volumes of $STACK may remain on the others" \
                "(docker volume ls --filter $label there; deploy/down.sh --purge --engine HOST removes them)"
        fi
        if [[ -d $state_dir ]]; then
            rm -rf -- "$state_dir"
            echo "removed $state_dir"
        fi
        # Left by earlier versions of up.sh.
        rm -f "$SW_STACK_DIR/.$STACK.no-node-ports.generated.yml"
    else
        local n
        n=$(docker volume ls -q --filter "$label" | wc -l)
        echo "removed; $n volume(s) of $STACK kept (Redis data, Sentinel state): --purge removes them"
    fi
}
