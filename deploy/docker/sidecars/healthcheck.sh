#!/bin/bash
# HEALTHCHECK of the sidecars image, by the program running as pid 1:
#   redis-ha-coordinator  answers a GetTopology on its own gRPC port (REDIS_HA_HEALTH_PORT,
#                         default 50051)
#   redis-ha-agent, redis-ha-reloader  alive. They have no port; what they watch being down
#                         (Redis, the coordinator) is reported through the topology, and must not
#                         make the swarm replace the watcher.
set -euo pipefail
cmd=$(tr '\0' ' ' </proc/1/cmdline)
case $cmd in
    *redis-ha-coordinator*)
        port=${REDIS_HA_HEALTH_PORT:-50051}
        redis-ha --timeout-ms 3000 --coordinator "http://127.0.0.1:$port" status >/dev/null
        ;;
    *redis-ha-agent* | *redis-ha-reloader*) exit 0 ;;
    *) echo "unknown program: $cmd"; exit 1 ;;
esac
