//! The redis-ha test kit: what every crate's process tests share, and nothing of the sidecars.
//!
//! - [`ports`]: blocks of loopback ports reserved across test processes;
//! - [`process`]: a child process killed when its handle drops (also when the test panics);
//! - [`redis`], [`sentinel`], [`haproxy`]: real `redis-server`, `redis-sentinel` and `haproxy`
//!   processes started from the shipped configuration ([`conf`]: the templates
//!   `deploy/up.sh --local` renders, read from the repository at run time);
//! - [`client`]: RESP through the `redis` crate;
//! - [`wait`]: the one way to wait, [`wait_until`];
//! - [`sandbox`]: one test's port block and temp dir, starting the processes above in it;
//! - [`coordinator`]: the coordinator's gRPC API as tests read it (the generated client only);
//! - [`fake`]: TCP servers that answer garbage, half a reply, nothing, or close mid-reply, for
//!   the hostile-input tests;
//! - [`partition`]: one port cut off on loopback (iptables), and a client that still reaches it;
//!   or one process group's connections to a port reset or dropped.
//! - [`rig`]: a multi-node swarm on this machine (extra dockerds in network namespaces).
//! - [`silence`]: a TCP forwarder whose established connections go silent on demand (a host
//!   cut off) while new ones pass (its name now leads elsewhere).
//!
//! ```no_run
//! # async fn demo() {
//! use redis_ha_testkit::{PortBlock, RedisNode, RedisSpec};
//! let ports = PortBlock::allocate(2);
//! let dir = tempfile_dir();
//! let master = RedisNode::start(RedisSpec::new("node-1", ports.port(0)), &dir).await;
//! let replica =
//!     RedisNode::start(RedisSpec::new("node-2", ports.port(1)).replica_of(master.port()), &dir)
//!         .await;
//! replica.wait_synced_to(master.port()).await;
//! # }
//! # fn tempfile_dir() -> std::path::PathBuf { std::env::temp_dir() }
//! ```

pub mod client;
pub mod conf;
pub mod coordinator;
pub mod fake;
pub mod haproxy;
pub mod partition;
pub mod ports;
pub mod process;
pub mod redis;
pub mod rig;
pub mod sandbox;
pub mod sentinel;
pub mod silence;
pub mod tls;
pub mod wait;

pub use client::QueryError;
pub use haproxy::{Haproxy, HaproxySpec};
pub use partition::{GroupCut, Partition, SourceBoundClient};
pub use ports::PortBlock;
pub use process::ManagedProcess;
pub use redis::{RedisNode, RedisSpec};
pub use sandbox::Sandbox;
pub use sentinel::{Sentinel, SentinelSpec};
pub use wait::{poll_until, wait_until, TIMEOUT};
