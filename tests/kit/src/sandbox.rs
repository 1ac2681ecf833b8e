//! One test's place: a reserved port block and a temp dir, handing out ports in order and
//! starting the kit's processes in it. Declare it first in a test, so it drops last (after
//! every process it started).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU16, Ordering};

use tempfile::TempDir;

use crate::haproxy::{Haproxy, HaproxySpec};
use crate::ports::{PortBlock, BLOCK_SIZE};
use crate::redis::{RedisNode, RedisSpec};
use crate::sentinel::{Sentinel, SentinelSpec};

#[derive(Debug)]
pub struct Sandbox {
    ports: PortBlock,
    next: AtomicU16,
    dir: TempDir,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("redis-ha-test-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temp dir: {e}"));
        Self {
            ports: PortBlock::allocate(BLOCK_SIZE),
            next: AtomicU16::new(0),
            dir,
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `<dir>/<name>`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The next unused port of the block (nothing listens on it until the test starts
    /// something there; no other test can take it meanwhile).
    pub fn port(&self) -> u16 {
        self.ports.port(self.next.fetch_add(1, Ordering::Relaxed))
    }

    /// A `redis-server` on the next port, named after it, a replica of `replica_of` if given.
    pub async fn redis(&self, replica_of: Option<u16>) -> RedisNode {
        let port = self.port();
        let mut spec = RedisSpec::new(&format!("redis-{port}"), port);
        spec.replica_of = replica_of;
        self.redis_with(spec).await
    }

    pub async fn redis_with(&self, spec: RedisSpec) -> RedisNode {
        RedisNode::start(spec, self.dir()).await
    }

    /// A `redis-sentinel` on the next port watching `group` at `master_port` (see
    /// [`SentinelSpec::new`] for its timings), with `quorum`.
    pub async fn sentinel(&self, group: &str, master_port: u16, quorum: u32) -> Sentinel {
        let port = self.port();
        let spec =
            SentinelSpec::new(&format!("sentinel-{port}"), port, group, master_port).quorum(quorum);
        Sentinel::start(spec, self.dir()).await
    }

    /// HAProxy with the shipped configuration on the next three ports (frontend, read
    /// frontend, stats),
    /// server `redis-N` = 127.0.0.1:`nodes[N-1]`.
    pub async fn haproxy(&self, nodes: &[u16]) -> Haproxy {
        let frontend = self.port();
        let read_frontend = self.port();
        let stats = self.port();
        let spec = HaproxySpec {
            name: format!("haproxy-{frontend}"),
            frontend,
            read_frontend,
            stats,
            socket: self.path(&format!("haproxy-{frontend}.sock")),
            nodes: nodes.iter().map(|p| format!("127.0.0.1:{p}")).collect(),
            no_check: false,
        };
        Haproxy::start_shipped(&spec, self.dir()).await
    }
}
