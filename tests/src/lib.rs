//! The cross-service harness of redis-ha, on the test kit (`redis-ha-testkit`: ports, real
//! `redis-server` / `redis-sentinel` / `haproxy` from the shipped configuration, waits, RESP):
//! a 3-node cluster per test, the one way to run each sidecar in-process ([`sidecars`]) and
//! as its binary ([`binaries`]), a recording relay of the agents' reports ([`relay`]), and the
//! swarm stack ([`stack`]).
//!
//! ```no_run
//! # async fn demo() {
//! use redis_ha_tests::{Cluster, ClusterOptions};
//! let mut cluster = Cluster::start(ClusterOptions::default()).await;
//! let old = cluster.master_addr_by_sentinel().await.unwrap();
//! cluster.node_mut(1).kill();
//! let new_master = cluster.wait_new_master(&old).await;
//! # }
//! ```

pub mod binaries;
pub mod cluster;
pub mod figures;
pub mod haproxy;
pub mod multinode;
pub mod multinode_faults;
pub mod otlp;
pub mod relay;
pub mod sentinel_events;
pub mod sidecars;
pub mod simulate;
pub mod stack;
pub mod stack_ops;

/// The test kit this crate is built on (ports, processes, shipped configs, waits, RESP).
pub use redis_ha_testkit as kit;

pub use cluster::{Cluster, ClusterOptions, NODES, READY_TIMEOUT};
pub use redis_ha_testkit::{
    poll_until, wait_until, ManagedProcess, PortBlock, RedisNode, RedisSpec, Sentinel, SentinelSpec,
};
