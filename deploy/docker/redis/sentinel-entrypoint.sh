#!/bin/bash
# Entrypoint of a redis-ha Sentinel. Builds the Sentinel's config file in its data volume from
# the shared template (a Docker config) plus the state the Sentinel saved there last time, then
# execs redis-sentinel on it (Sentinel needs a writable config: it rewrites it).
#
#   REDIS_HA_NODE                 node number N (required)
#   REDIS_HA_PORT                 port, default 19000+N
#   REDIS_HA_ANNOUNCE_HOST        the stable name the other Sentinels know this one by (sentinel-N)
#   REDIS_HA_GROUP                master name, default redis-cluster
#   REDIS_HA_INITIAL_MASTER       master of a brand-new cluster, default redis-1:9001
#   REDIS_HA_QUORUM               default 2
#   REDIS_HA_DOWN_AFTER_MS        default 5000
#   REDIS_HA_FAILOVER_TIMEOUT_MS  default 10000
#   REDIS_HA_SENTINELS            all the group's Sentinels (to ask a new Sentinel's peers)
#   REDIS_HA_TEMPLATE             default /etc/redis-ha/sentinel.conf
#   REDIS_HA_PASSWORD_FILE        default /run/secrets/redis_password; no file there: no AUTH.
#                                 The same password protects Redis (auth-pass) and the Sentinels
#                                 (requirepass, sentinel-pass between peers).
#
# Every start renders the template again (so a changed setting applies) and carries over only
# the state lines: this Sentinel's id, the epochs, the known replicas and Sentinels, and the
# master it last followed. The hashed password Sentinel writes into its file is not carried.
set -euo pipefail
# shellcheck source=deploy/docker/redis/lib.sh
source /usr/local/lib/redis-ha/lib.sh

node=${REDIS_HA_NODE:?REDIS_HA_NODE (the node number) must be set}
rh_check_int REDIS_HA_NODE "$node"
port=${REDIS_HA_PORT:-$((19000 + node))}
announce=${REDIS_HA_ANNOUNCE_HOST:-sentinel-$node}
group=${REDIS_HA_GROUP:-redis-cluster}
initial=${REDIS_HA_INITIAL_MASTER:-redis-1:9001}
quorum=${REDIS_HA_QUORUM:-2}
down_after=${REDIS_HA_DOWN_AFTER_MS:-5000}
failover_timeout=${REDIS_HA_FAILOVER_TIMEOUT_MS:-10000}
template=${REDIS_HA_TEMPLATE:-/etc/redis-ha/sentinel.conf}
data=${REDIS_HA_DATA_DIR:-/data}
pwfile=${REDIS_HA_PASSWORD_FILE:-/run/secrets/redis_password}
conf=$data/sentinel.conf
for v in port quorum down_after failover_timeout; do
    rh_check_int "$v" "${!v}"
done
[[ $group =~ ^[A-Za-z0-9._-]+$ ]] || rh_die "REDIS_HA_GROUP must be letters, digits, . _ -, got '$group'"
[[ -r $template ]] || rh_die "cannot read the template $template"
[[ -w $data ]] || rh_die "the data directory $data is not writable by $(id -un)"

password=""
if [[ -e $pwfile ]]; then
    password=$(rh_read_secret "$pwfile")
else
    rh_log "no password file at $pwfile: running without AUTH"
fi
RH_SENTINEL_PASSWORD=$password

# The master to monitor: the one this Sentinel followed last time, else the one its peers
# follow (a Sentinel joining an existing cluster), else the initial master.
m_host="" m_port=""
if [[ -s $conf ]]; then
    read -r m_host m_port < <(awk -v g="$group" \
        '$1 == "sentinel" && $2 == "monitor" && $3 == g && NF == 6 { print $4, $5 }' "$conf" | tail -n1) || true
fi
if [[ -z $m_host || ! $m_port =~ ^[0-9]+$ ]]; then
    peers=""
    for s in $(rh_sentinel_list); do
        [[ $s == "$announce:$port" ]] || peers+=" $s"
    done
    if answer=$(rh_master_from_sentinels "$group" "$peers" 5); then
        read -r m_host m_port _ <<<"$answer"
        rh_log "new Sentinel: the peers follow $m_host:$m_port"
    else
        m_host=${initial%:*} m_port=${initial##*:}
        rh_log "new Sentinel of a new cluster: monitoring $m_host:$m_port"
    fi
fi

text=$(<"$template")
for kv in "GROUP=$group" "MASTER_HOST=$m_host" "MASTER_PORT=$m_port" "QUORUM=$quorum" \
    "DOWN_AFTER_MS=$down_after" "FAILOVER_TIMEOUT_MS=$failover_timeout" "PORT=$port" \
    "ANNOUNCE_HOST=$announce" "DATA_DIR=$data"; do
    text=${text//@${kv%%=*}@/${kv#*=}}
done
[[ $text != *@[A-Z_]*@* ]] || rh_die "unfilled placeholder in $template"

umask 077
tmp=$(mktemp "$data/.sentinel.conf.XXXXXX")
{
    printf '%s\n' "$text"
    if [[ -n $password ]]; then
        echo "sentinel auth-pass $group $(rh_quote "$password")"
        echo "requirepass $(rh_quote "$password")"
        echo "sentinel sentinel-pass $(rh_quote "$password")"
    fi
    if [[ -s $conf ]]; then
        echo "# State saved by this Sentinel before its restart."
        awk -v g="$group" '
            $1 != "sentinel" { next }
            $2 == "myid" || $2 == "current-epoch" { print; next }
            ($2 == "config-epoch" || $2 == "leader-epoch" || $2 == "known-replica" ||
             $2 == "known-sentinel") && $3 == g { print }' "$conf"
    fi
} >"$tmp"
mv -f "$tmp" "$conf"
unset password RH_SENTINEL_PASSWORD

# No wait for the names to resolve: a swarm task's name exists only once the task is healthy,
# and Sentinel 7 starts with names that do not resolve yet (it retries them, and with
# announce-hostnames it keeps the names in its rewritten file). Waiting here would hold back the
# Redis nodes, which ask the Sentinels who the master is before they start.
exec redis-sentinel "$conf"
