# Shell functions shared by the Redis and Sentinel entrypoints of redis-ha (bash, sourced).
# shellcheck shell=bash

rh_log() {
    echo "redis-ha-${REDIS_HA_ROLE:-entrypoint}: $*" >&2
}

rh_die() {
    rh_log "$*"
    exit 1
}

# rh_read_secret FILE: prints the password held in FILE (one line; a trailing newline is
# dropped). Fails when the file cannot be read or holds nothing usable.
rh_read_secret() {
    local file=$1 value
    [[ -r $file ]] || rh_die "cannot read the password file $file"
    value=$(<"$file")
    value=${value%$'\r'}
    [[ -n $value ]] || rh_die "the password file $file is empty"
    [[ $value != *$'\n'* ]] || rh_die "the password file $file holds more than one line"
    printf '%s' "$value"
}

# rh_quote STR: STR as a double-quoted Redis config argument.
rh_quote() {
    local s=$1
    s=${s//\\/\\\\}
    s=${s//\"/\\\"}
    printf '"%s"' "$s"
}

# rh_sentinel_cli HOST PORT ARGS...: one bounded redis-cli call to a Sentinel; the Sentinel
# password, if any, goes through the environment (never the command line).
rh_sentinel_cli() {
    local host=$1 port=$2
    shift 2
    if [[ -n ${RH_SENTINEL_PASSWORD:-} ]]; then
        REDISCLI_AUTH=$RH_SENTINEL_PASSWORD timeout 3 redis-cli --no-auth-warning -h "$host" -p "$port" "$@"
    else
        timeout 3 redis-cli -h "$host" -p "$port" "$@"
    fi
}

# rh_master_from_sentinels GROUP "h:p h:p ..." WAIT_S: prints "HOST PORT EPOCH", the master
# named at the highest config epoch by the Sentinels that answer, polling for up to WAIT_S
# seconds until at least one answers. Returns 1 when none did.
rh_master_from_sentinels() {
    local group=$1 sentinels=$2 wait_s=$3 deadline s reply line best="" best_epoch=-1
    local -A kv
    deadline=$((SECONDS + wait_s))
    while :; do
        for s in $sentinels; do
            reply=$(rh_sentinel_cli "${s%:*}" "${s##*:}" sentinel master "$group" 2>/dev/null) || continue
            # The answer is alternating key and value lines.
            kv=()
            local key=""
            while IFS= read -r line; do
                if [[ -z $key ]]; then key=$line; else kv[$key]=$line; key=""; fi
            done <<<"$reply"
            local epoch=${kv[config-epoch]:-}
            [[ -n ${kv[ip]:-} && ${kv[port]:-} =~ ^[0-9]+$ && $epoch =~ ^[0-9]+$ ]] || continue
            if ((epoch > best_epoch)); then
                best_epoch=$epoch
                best="${kv[ip]} ${kv[port]} $epoch"
            fi
        done
        if [[ -n $best ]]; then
            echo "$best"
            return 0
        fi
        ((SECONDS < deadline)) || return 1
        sleep 1
    done
}

# rh_is_self HOST PORT MY_HOST MY_PORT: true when HOST:PORT names this container (by its
# announced name or one of its addresses).
rh_is_self() {
    local host=$1 port=$2 my_host=$3 my_port=$4 ip
    [[ $port == "$my_port" ]] || return 1
    [[ $host == "$my_host" ]] && return 0
    for ip in $(hostname -I 2>/dev/null); do
        [[ $host == "$ip" ]] && return 0
    done
    return 1
}

# rh_sentinel_list: the Sentinels of the group ("host:port" words), from REDIS_HA_SENTINELS
# (comma or space separated).
rh_sentinel_list() {
    echo "${REDIS_HA_SENTINELS:-sentinel-1:19001 sentinel-2:19002 sentinel-3:19003}" | tr ',' ' '
}

# rh_check_int NAME VALUE: fails unless VALUE is a non-negative integer.
rh_check_int() {
    [[ $2 =~ ^[0-9]+$ ]] || rh_die "$1 must be a number, got '$2'"
}
