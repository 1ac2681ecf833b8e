#!/bin/bash
# Entrypoint of a redis-ha Sentinel. `redis-ha-node sentinel-config` rebuilds the Sentinel's
# config in its data volume (the template rendered again, the password lines, the state saved
# last time; services/node/src/sentinel_conf.rs) and prints its path; then redis-sentinel runs
# on it (Sentinel needs a writable config: it rewrites it).
#
# Settings (all read by redis-ha-node; `redis-ha-node sentinel-config --help` lists them):
#   REDIS_HA_NODE (required), REDIS_HA_PORT, REDIS_HA_ANNOUNCE_HOST, REDIS_HA_GROUP,
#   REDIS_HA_INITIAL_MASTER, REDIS_HA_QUORUM, REDIS_HA_DOWN_AFTER_MS,
#   REDIS_HA_FAILOVER_TIMEOUT_MS, REDIS_HA_SENTINELS, REDIS_HA_TEMPLATE, REDIS_HA_DATA_DIR,
#   REDIS_HA_SECRETS_DIR (sentinel_password, redis_sentinel_password: a missing one makes it
#   refuse to start, naming the file), REDIS_HA_SENTINEL_WAIT
#
# No wait for the names to resolve: a swarm task's name exists only once the task is healthy,
# and Sentinel 7 starts with names that do not resolve yet (it retries them, and with
# announce-hostnames it keeps the names in its rewritten file). Waiting here would hold back the
# Redis nodes, which ask the Sentinels who the master is before they start.
set -euo pipefail
umask 077
conf=$(redis-ha-node sentinel-config)
exec redis-sentinel "$conf"
