#!/bin/bash
# Entrypoint of the redis-ha HAProxy image: picks the runtime API address, then execs HAProxy in
# the foreground on /etc/haproxy/haproxy.cfg (which reads the REDIS_HA_* variables).
#
# The runtime API has no authentication, so it must never listen where a client can reach it.
# HAProxy cannot bind "on one network" of a container attached to several (client, internal,
# haproxy-admin), only on an address: unless REDIS_HA_RUNTIME_API is given, it binds to this
# container's own address on the admin network, port REDIS_HA_RUNTIME_PORT (default 9999). The
# reloader, alone with HAProxy on that network, reaches every task at haproxy-runtime:9999.
#
# Finding that address: a swarm task's name enters DNS only once the task is healthy, so this
# container cannot look itself up yet. It looks up REDIS_HA_ADMIN_ALIAS (default redis-ha-admin),
# a name every member of the admin network carries there and only there (the reloader, the other
# HAProxy tasks), and asks the kernel which of its addresses reaches one of them directly
# (`ip route get`: the source address of an on-link route). Also accepted: an address of this
# container among those of REDIS_HA_RUNTIME_ALIAS (haproxy-runtime, for a restart while DNS still
# holds the old record). When neither turns up within REDIS_HA_RUNTIME_WAIT seconds (default
# 120) the container fails rather than bind the API anywhere else.
set -euo pipefail

log() { echo "redis-ha-haproxy: $*" >&2; }

# Prints this container's address on the admin network, or nothing.
admin_address() {
    local mine peer route src
    mine=" $(hostname -I 2>/dev/null) "
    for peer in $(getent ahostsv4 "$runtime_alias" 2>/dev/null | awk '{ print $1 }' | sort -u); do
        if [[ $mine == *" $peer "* ]]; then
            echo "$peer"
            return 0
        fi
    done
    for peer in $(getent ahostsv4 "$admin_alias" 2>/dev/null | awk '{ print $1 }' | sort -u); do
        [[ $mine != *" $peer "* ]] || continue
        route=$(ip -4 -o route get "$peer" 2>/dev/null) || continue
        # Directly connected only: a route through a gateway is not the admin network.
        [[ $route != *" via "* ]] || continue
        src=$(sed -n 's/.* src \([0-9.]*\).*/\1/p' <<<"$route")
        if [[ -n $src && $mine == *" $src "* ]]; then
            echo "$src"
            return 0
        fi
    done
}

if [[ -z ${REDIS_HA_RUNTIME_API:-} ]]; then
    runtime_alias=${REDIS_HA_RUNTIME_ALIAS:-haproxy-runtime}
    admin_alias=${REDIS_HA_ADMIN_ALIAS:-redis-ha-admin}
    api_port=${REDIS_HA_RUNTIME_PORT:-9999}
    wait_s=${REDIS_HA_RUNTIME_WAIT:-120}
    [[ $api_port =~ ^[0-9]+$ && $wait_s =~ ^[0-9]+$ ]] ||
        { log "REDIS_HA_RUNTIME_PORT and REDIS_HA_RUNTIME_WAIT must be numbers"; exit 1; }
    deadline=$((SECONDS + wait_s))
    said=0
    until own=$(admin_address) && [[ -n $own ]]; do
        if ((SECONDS >= deadline)); then
            log "no address of this container ($(hostname -I)) is on the admin network after ${wait_s} s"
            log "(no member of $admin_alias is reachable on-link): not binding the runtime API"
            exit 1
        fi
        if ((said == 0)); then
            log "waiting for a member of the admin network ($admin_alias) to find this task's address there"
            said=1
        fi
        sleep 1
    done
    export REDIS_HA_RUNTIME_API="ipv4@$own:$api_port"
fi
log "runtime API on $REDIS_HA_RUNTIME_API"

exec haproxy -db -f /etc/haproxy/haproxy.cfg "$@"
