//! Process-test harness for redis-ha: real `redis-server` / `redis-sentinel` processes on
//! reserved loopback ports, one port block and one temp dir per test, every child killed
//! when its handle drops (also when the test panics), and the sidecars run in-process.
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
pub mod haproxy;
pub mod otlp;
pub mod ports;
pub mod process;
pub mod redis;
pub mod sentinel;
pub mod sidecars;
pub mod simulate;
pub mod stack;
pub mod wait;

pub use cluster::{Cluster, ClusterOptions, NODES, READY_TIMEOUT};
pub use ports::PortBlock;
pub use process::ManagedProcess;
pub use redis::{RedisNode, RedisSpec};
pub use sentinel::{Sentinel, SentinelSpec};
pub use wait::{try_wait_for, wait_for};
