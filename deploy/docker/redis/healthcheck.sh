#!/bin/bash
# HEALTHCHECK of the Redis and Sentinel images: the server answers PING on its port. LOADING
# (a big append-only file being read) and BUSY (a long script) count as alive: the swarm replaces
# an unhealthy task, and restarting a loading Redis only starts the load again.
set -euo pipefail
node=${REDIS_HA_NODE:-1}
case ${REDIS_HA_ROLE:-redis} in
    sentinel) port=${REDIS_HA_PORT:-$((19000 + node))} ;;
    *) port=${REDIS_HA_PORT:-$((9000 + node))} ;;
esac
# A Redis node is asked as the agent user (PING is all a check needs), a Sentinel with its own
# password; from the container's secret files, never argv.
secrets=${REDIS_HA_SECRETS_DIR:-/run/secrets}
user=()
case ${REDIS_HA_ROLE:-redis} in
    sentinel) pwfile=$secrets/sentinel_password ;;
    *) pwfile=$secrets/redis_agent_password; user=(--user agent) ;;
esac
REDISCLI_AUTH=$(<"$pwfile")
export REDISCLI_AUTH
reply=$(timeout 2 redis-cli --no-auth-warning "${user[@]}" -h 127.0.0.1 -p "$port" ping 2>&1) || true
case $reply in
    PONG | LOADING* | BUSY*) exit 0 ;;
    *) echo "ping on $port: ${reply:-no answer}"; exit 1 ;;
esac
