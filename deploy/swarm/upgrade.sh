# redis-ha on Docker Swarm: the rolling upgrade of a running stack (sourced by deploy/swarm/lib.sh).
# The plan (what changed, the order given the roles) is `redis-ha upgrade plan`'s decision
# (services/cli/src/upgrade.rs), run in the new sidecars image; this file only carries out
# its steps: one stack deploy per step, each node service held at its running version
# (image and config object are per node in deploy/stack/redis-ha.yml) until its step moves it.
# shellcheck shell=bash

# The services replaced one at a time.
SW_NODE_SERVICES=(redis-1 redis-2 redis-3 sentinel-1 sentinel-2 sentinel-3)
declare -gA SW_PIN_IMAGE=() SW_PIN_HASH=() SW_PIN_SETTINGS=()

# The settings of a node service kind (redis, sentinel): the variables of its env file
# (redis-ha.yml, env_file), held per node like the image and the config.
sw_settings_keys() {
    case $1 in
        redis) echo "REDIS_HA_QUORUM REDIS_HA_DOWN_AFTER_MS REDIS_HA_MAXMEMORY" ;;
        sentinel) echo "REDIS_HA_QUORUM REDIS_HA_DOWN_AFTER_MS REDIS_HA_FAILOVER_TIMEOUT_MS" ;;
    esac
}

# KEY=VALUE lines on stdin: the settings among them, sorted (one form to hash and to compare).
sw_settings_only() {
    local keys
    keys=$(sw_settings_keys "$1")
    grep -E "^(${keys// /|})=" | LC_ALL=C sort || true
}

sw_settings_hash() {
    sha256sum "$1" | cut -c1-12
}

# The env file of the settings this run deploys for service $1 (written from the variables).
sw_desired_settings_file() {
    local kind=${1%-*} k file
    file=$STATE_DIR/settings/$kind.env
    mkdir -p "$STATE_DIR/settings"
    for k in $(sw_settings_keys "$kind"); do echo "$k=${!k}"; done | sw_settings_only "$kind" >"$file.new"
    mv "$file.new" "$file"
    echo "$file"
}

# The env file of the settings running service $1 has now (a held node keeps them).
sw_running_settings_file() {
    local file=$STATE_DIR/held-settings/$1.env
    mkdir -p "$STATE_DIR/held-settings"
    docker service inspect -f '{{range .Spec.TaskTemplate.ContainerSpec.Env}}{{println .}}{{end}}' \
        "${STACK}_$1" 2>/dev/null | sw_settings_only "${1%-*}" >"$file" || true
    echo "$file"
}

# The image / config hash a node service (redis-N, sentinel-N) is to run.
sw_desired_image() {
    local v=REDIS_HA_IMAGE_${1%-*}
    v=${v^^}
    echo "${!v}"
}
sw_desired_hash() {
    local v=REDIS_HA_CONF_${1%-*}
    v=${v^^}
    echo "${!v}"
}
# The config object's name of service $1 with content hash $2 (redis-ha.yml, configs).
sw_conf_name() {
    echo "${STACK}_${1%-*}_conf_$2"
}

# Moves service $1 to its new version.
sw_pin_desired() {
    SW_PIN_IMAGE[$1]=$(sw_desired_image "$1")
    SW_PIN_HASH[$1]=$(sw_desired_hash "$1")
    SW_PIN_SETTINGS[$1]=$(sw_desired_settings_file "$1")
}

sw_pin_all_desired() {
    local s
    for s in "${SW_NODE_SERVICES[@]}"; do sw_pin_desired "$s"; done
}

# Exports the stack file's per-node variables from the pins. A held config whose content is
# no longer in config/ gets its old content back from the swarm's config object (a config
# object cannot change, and stack deploy re-sends every config it names).
sw_export_pins() {
    local s kind n upper file
    for s in "${SW_NODE_SERVICES[@]}"; do
        kind=${s%-*} n=${s##*-}
        upper=${kind^^}
        file=$SW_STACK_DIR/config/$kind.conf
        if [[ ${SW_PIN_HASH[$s]} != "$(sw_desired_hash "$s")" ]]; then
            sw_held_config "$(sw_conf_name "$s" "${SW_PIN_HASH[$s]}")"
            file=$SW_HELD_FILE
        fi
        export "REDIS_HA_IMAGE_${upper}_$n=${SW_PIN_IMAGE[$s]}" \
            "REDIS_HA_CONF_${upper}_$n=${SW_PIN_HASH[$s]}" "REDIS_HA_CONF_FILE_${upper}_$n=$file" \
            "REDIS_HA_SETTINGS_FILE_${upper}_$n=${SW_PIN_SETTINGS[$s]}"
    done
}

# Sets SW_HELD_FILE: a file in the state directory with the content of config object $1.
sw_held_config() {
    local dir=$STATE_DIR/held-configs
    SW_HELD_FILE=$dir/$1
    [[ -s $SW_HELD_FILE ]] && return 0
    mkdir -p "$dir"
    docker config inspect -f '{{json .Spec.Data}}' "$1" | tr -d '"\n' | base64 -d >"$SW_HELD_FILE.new" ||
        sw_die "cannot read the config object $1 (the running version of a node service)"
    mv "$SW_HELD_FILE.new" "$SW_HELD_FILE"
}

# `redis-ha ARGS` of the NEW sidecars image (the running one may predate `upgrade`), in a
# throw-away container on the internal network, as the operator; stdin is passed on.
sw_cli_new() {
    docker run --rm -i --network "${STACK}_internal" --user "$(id -u):$(id -g)" \
        -v "$TLS_DIR:/tls:ro" -e REDIS_HA_CA=/tls/ca.pem -e REDIS_HA_CERT=/tls/operator.pem \
        -e REDIS_HA_KEY=/tls/operator-key.pem "$REDIS_HA_IMAGE_SIDECARS" \
        redis-ha --timeout-ms 2000 --coordinator http://coordinator:50051 --group "$GROUP" "$@"
}

# "IMAGE CONFIG_NAME" of the running service $1 ("- -" when there is none).
sw_running_version() {
    local out w c conf=- kind=${1%-*}
    out=$(docker service inspect -f '{{.Spec.TaskTemplate.ContainerSpec.Image}}{{range .Spec.TaskTemplate.ContainerSpec.Configs}} {{.ConfigName}}{{end}}' \
        "${STACK}_$1" 2>/dev/null) || { echo "- -"; return 0; }
    read -r -a w <<<"$out"
    for c in "${w[@]:1}"; do
        [[ $c != "${STACK}_${kind}_conf_"* ]] || conf=$c
    done
    echo "${w[0]:--} $conf"
}

sw_ulog() {
    printf 'upgrade [%4d s] %s\n' "$SECONDS" "$*"
}

# On a failed step: what runs where, and what to do.
sw_upgrade_report() {
    local rc=$? s v
    [[ $rc -ne 0 ]] || return 0
    {
        echo "redis-ha: the rolling upgrade stopped at ${SW_STEP:-planning}; nothing was rolled back."
        echo "  node services now (new = the version this run deploys):"
        for s in "${SW_NODE_SERVICES[@]}"; do
            v=$(sw_running_version "$s")
            if [[ $v == "$(sw_desired_image "$s") $(sw_conf_name "$s" "$(sw_desired_hash "$s")")" &&
                $(sw_settings_hash "$(sw_running_settings_file "$s")") == \
                "$(sw_settings_hash "$(sw_desired_settings_file "$s")")" ]]; then
                echo "    $s: new ($v)"
            else
                echo "    $s: OLD ($v)"
            fi
        done
        echo "  redis-ha status:"
        sw_cli_new status </dev/null 2>&1 | sed 's/^/    /' || true
        echo "redis-ha: fix the cause, then run deploy/up.sh again with the same options: the plan starts from"
        echo "  what runs now. deploy/up.sh --all-at-once deploys everything in one go instead."
    } >&2
}

# Waits until service $1 runs one task of its pinned image and config; sets SW_TASK_CONTAINER.
sw_wait_task() {
    local s=$1 want_image want_conf want_settings deadline state ids id line ok w settings
    want_image=${SW_PIN_IMAGE[$s]} want_conf=$(sw_conf_name "$s" "${SW_PIN_HASH[$s]}")
    want_settings=$(sw_settings_only "${s%-*}" <"${SW_PIN_SETTINGS[$s]}")
    deadline=$((SECONDS + WAIT_SECS))
    while ((SECONDS < deadline)); do
        state=$(docker service inspect -f '{{if .UpdateStatus}}{{.UpdateStatus.State}}{{end}}' "${STACK}_$s")
        [[ $state != paused && $state != rollback_* ]] ||
            sw_die "the swarm's update of ${STACK}_$s is $state (docker service ps --no-trunc ${STACK}_$s says why)"
        ids=$(docker service ps -q --filter desired-state=running "${STACK}_$s")
        ok=0
        if [[ $(wc -w <<<"$ids") -eq 1 ]]; then
            id=$ids
            line=$(docker inspect --type task -f '{{.Spec.ContainerSpec.Image}} {{range .Spec.ContainerSpec.Configs}}{{.ConfigName}} {{end}}{{.Status.State}} {{.Status.ContainerStatus.ContainerID}}' "$id" 2>/dev/null) || line=""
            read -r -a w <<<"$line"
            settings=$(docker inspect --type task -f '{{range .Spec.ContainerSpec.Env}}{{println .}}{{end}}' "$id" 2>/dev/null |
                sw_settings_only "${s%-*}")
            if [[ ${#w[@]} -ge 3 && (${w[0]} == "$want_image" || ${w[0]} == "$want_image@"*) &&
                " ${w[*]:1} " == *" $want_conf "* && ${w[-2]} == running && $settings == "$want_settings" ]]; then
                SW_TASK_CONTAINER=${w[-1]}
                ok=1
            fi
        fi
        [[ $ok -eq 0 ]] || return 0
        sleep 1
    done
    sw_die "${STACK}_$s does not run $want_image with $want_conf and its settings ($(tr '\n' ' ' <<<"$want_settings")) after ${WAIT_SECS} s (docker service ps --no-trunc ${STACK}_$s)"
}

# Node N's new Redis container, when it is on this host: its own INFO says it is a replica
# with its link to the master up (the coordinator's view follows within a report).
sw_wait_container_link() {
    local n=$1 deadline out
    [[ -n $(docker ps -q --filter "id=$SW_TASK_CONTAINER") ]] || return 0
    deadline=$((SECONDS + WAIT_SECS))
    while ((SECONDS < deadline)); do
        out=$(docker exec "$SW_TASK_CONTAINER" sh -c 'REDISCLI_AUTH=$(cat /run/secrets/redis_admin_password) exec timeout 3 redis-cli --no-auth-warning -p "$0" info replication' \
            "$((9000 + n))" 2>/dev/null | tr -d '\r') || out=""
        if grep -qx 'role:slave' <<<"$out" && grep -qx 'master_link_status:up' <<<"$out"; then
            return 0
        fi
        sleep 1
    done
    sw_die "node-$n's new Redis is not a replica with its link up after ${WAIT_SECS} s (docker service logs ${STACK}_redis-$n)"
}

# One node service moved to its new version: deploy, its task, then it is back.
sw_step_node() {
    local s=$1 n=${1##*-} deadline
    shift
    sw_pin_desired "$s"
    sw_export_pins
    sw_deploy
    sw_wait_task "$s"
    sw_ulog "$s runs $(sw_desired_image "$s") (task container ${SW_TASK_CONTAINER:0:12})"
    [[ $s != redis-* ]] || sw_wait_container_link "$n"
    # (pipefail: the status is redis-ha's)
    if ! sw_cli_new upgrade wait "$@" --max-wait-ms $((WAIT_SECS * 1000)) </dev/null | sed 's/^/    /'; then
        sw_die "$s is not back after ${WAIT_SECS} s (above)"
    fi
    if [[ $s == sentinel-* ]]; then
        deadline=$((SECONDS + WAIT_SECS))
        until sw_sentinels_ready; do
            ((SECONDS < deadline)) ||
                sw_die "the Sentinels do not all know each other and both replicas (or one is in TILT) ${WAIT_SECS} s after $s came back"
            sleep 2
        done
        sw_ulog "every Sentinel knows its 2 peers and both replicas, none in TILT"
    fi
}

# The master moved from node $1 to node $2 by a switchover (a refusal is retried: a replica
# may still be settling); then $2 is the confirmed master with both replicas linked.
sw_step_switchover() {
    local from=$1 to=$2 i ok=0
    for i in 1 2 3; do
        if sw_cli_new switchover --to "node-$to" --verbose </dev/null 2>&1 | sed 's/^/    /'; then
            ok=1
            break
        fi
        sw_ulog "switchover attempt $i failed (above)"
        sleep 5
    done
    [[ $ok -eq 1 ]] ||
        sw_die "the switchover from node-$from to node-$to failed 3 times (above): node-$from should still be the master, its Redis was not replaced"
    if ! sw_cli_new upgrade wait --master "$to" --max-wait-ms $((WAIT_SECS * 1000)) </dev/null | sed 's/^/    /'; then
        sw_die "node-$to is not the confirmed master with 2 linked replicas after the switchover"
    fi
}

# The rolling upgrade of the running stack (or, with --dry-run, its plan only).
sw_upgrade() {
    local s v input="" plan total n=0 line word kind a b cur_set
    for s in "${SW_NODE_SERVICES[@]}"; do
        v=$(sw_running_version "$s")
        # Held at what runs until its step (a missing service is refused by the plan).
        SW_PIN_IMAGE[$s]=${v%% *}
        SW_PIN_HASH[$s]=${v##*_}
        SW_PIN_SETTINGS[$s]=$(sw_running_settings_file "$s")
        cur_set=-
        [[ $v == "- -" ]] || cur_set=$(sw_settings_hash "${SW_PIN_SETTINGS[$s]}")
        input+="$s $v $(sw_desired_image "$s") $(sw_conf_name "$s" "$(sw_desired_hash "$s")")"
        input+=" $cur_set $(sw_settings_hash "$(sw_desired_settings_file "$s")")"$'\n'
    done
    echo "rolling upgrade of the running stack $STACK: redis-ha upgrade plan (in $REDIS_HA_IMAGE_SIDECARS)"
    plan=$(printf '%s' "$input" | sw_cli_new upgrade plan) ||
        sw_die "no rolling upgrade (above); the stack is unchanged"
    printf '%s\n' "$plan" | sed 's/^/  /'
    if [[ $DRY_RUN -eq 1 ]]; then
        echo "dry run: nothing deployed"
        exit 0
    fi
    total=$(grep -c '^step ' <<<"$plan")
    trap sw_upgrade_report EXIT
    # The plan on fd 3: the steps' docker commands may read stdin.
    while IFS= read -r -u 3 line; do
        # Without the comment for people ("# ...").
        read -r word kind a b _ <<<"${line%%#*}"
        [[ $word == step ]] || continue
        n=$((n + 1))
        SW_STEP="step $n/$total ($kind${a:+ $a}${b:+ $b})"
        sw_ulog "$SW_STEP: start"
        case $kind in
            others)
                sw_export_pins
                sw_deploy
                sw_wait_healthy
                ;;
            redis) sw_step_node "redis-$a" --replica "$a" ;;
            sentinel) sw_step_node "sentinel-$a" --sentinel "$a" ;;
            switchover) sw_step_switchover "$a" "$b" ;;
            final)
                sw_pin_all_desired
                sw_export_pins
                sw_deploy
                sw_wait_healthy
                ;;
            *) sw_die "unknown step '$kind' in the plan" ;;
        esac
        sw_ulog "$SW_STEP: done"
    done 3<<<"$plan"
    trap - EXIT
    rm -rf "$STATE_DIR/held-configs" "$STATE_DIR/held-settings"
}
