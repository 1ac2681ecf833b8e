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
pwfile=${REDIS_HA_PASSWORD_FILE:-/run/secrets/redis_password}
if [[ -r $pwfile ]]; then
    REDISCLI_AUTH=$(<"$pwfile")
    export REDISCLI_AUTH
fi
reply=$(timeout 2 redis-cli --no-auth-warning -h 127.0.0.1 -p "$port" ping 2>&1) || true
case $reply in
    PONG | LOADING* | BUSY*) exit 0 ;;
    *) echo "ping on $port: ${reply:-no answer}"; exit 1 ;;
esac
