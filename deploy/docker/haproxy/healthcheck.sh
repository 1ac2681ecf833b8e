#!/bin/bash
# HEALTHCHECK of the HAProxy image: the stats frontend accepts a connection (it runs in the same
# process as the client frontend; probing port 9000 would open a client session every time).
set -euo pipefail
bind=${REDIS_HA_STATS_BIND:-127.0.0.1:8404}
host=${bind%:*}
port=${bind##*:}
[[ -n $host && $host != "*" && $host != "0.0.0.0" ]] || host=127.0.0.1
timeout 2 bash -c "exec 3<>/dev/tcp/$host/$port"
