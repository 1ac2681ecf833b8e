#!/bin/bash
# Entrypoint of a redis-ha Redis node. `redis-ha-node redis-config` decides the node's role
# (ask the Sentinels and the peers; the rule: services/node/src/role.rs, README "Identity") and
# writes its config into the data volume (mode 600: the ACL users and their passwords go there,
# never into a command line or the environment), printing the file's path; then redis-server
# runs on it. A missing secret file (REDIS_HA_SECRETS_DIR/<name>, services/node/src/acl.rs) makes
# it refuse to start, naming the file.
#
# Settings (all read by redis-ha-node; `redis-ha-node redis-config --help` lists them):
#   REDIS_HA_NODE (required), REDIS_HA_PORT, REDIS_HA_ANNOUNCE_HOST, REDIS_HA_GROUP,
#   REDIS_HA_INITIAL_MASTER, REDIS_HA_QUORUM, REDIS_HA_SENTINELS, REDIS_HA_PEERS,
#   REDIS_HA_CONFIG, REDIS_HA_DATA_DIR, REDIS_HA_SECRETS_DIR, REDIS_HA_SENTINEL_WAIT,
#   REDIS_HA_DOWN_AFTER_MS (the node's min-replicas-max-lag follows it), REDIS_HA_MAXMEMORY
#
# redis-server runs under `redis-ha-node redis-run`, which holds back a stop signal while this
# node is the master and asks the coordinator to move the master away without losing a write
# first (README "Graceful stop"; its settings: `redis-ha-node redis-run --help`).
set -euo pipefail
umask 077
conf=$(redis-ha-node redis-config)
exec redis-ha-node redis-run -- redis-server "$conf"
