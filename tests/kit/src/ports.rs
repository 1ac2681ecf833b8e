//! Blocks of loopback ports reserved across test processes.
//!
//! Tests run in parallel as separate processes (cargo nextest) or threads (cargo test), so a
//! free port can't be found by asking the kernel for port 0 once per process: two tests could
//! get overlapping ports after one of them released a probe socket. Instead every block of 32
//! ports is guarded by an exclusive `flock` on `/tmp/redis-ha-test-ports/<base>.lock`, held for
//! the block's lifetime (the kernel drops it when the process dies, even on SIGKILL).

use std::fs::{File, OpenOptions};
use std::net::TcpListener;
use std::path::PathBuf;

use nix::fcntl::{Flock, FlockArg};
use rand::Rng;

/// Ports per block; bases are aligned to it.
pub const BLOCK_SIZE: u16 = 32;

/// Bases are taken below Linux's default ephemeral range (32768-60999), so an outgoing
/// connection of some other program can't grab one of our ports between the check and the bind.
const FIRST_BASE: u16 = 20_000;
const END: u16 = 32_768;

const LOCK_DIR: &str = "/tmp/redis-ha-test-ports";

/// A reserved block of consecutive loopback ports.
#[derive(Debug)]
pub struct PortBlock {
    base: u16,
    len: u16,
    _lock: Flock<File>,
}

impl PortBlock {
    /// Reserves a block of at least `n` ports (`n` <= 32). Panics when none is found after many tries.
    pub fn allocate(n: u16) -> Self {
        assert!(
            (1..=BLOCK_SIZE).contains(&n),
            "a port block holds 1..={BLOCK_SIZE} ports"
        );
        std::fs::create_dir_all(LOCK_DIR)
            .unwrap_or_else(|e| panic!("cannot create {LOCK_DIR}: {e}"));
        let first_block = FIRST_BASE.div_ceil(BLOCK_SIZE);
        let blocks = END / BLOCK_SIZE - first_block;
        let mut rng = rand::rng();
        for _ in 0..500 {
            let base = (first_block + rng.random_range(0..blocks)) * BLOCK_SIZE;
            if let Some(lock) = try_lock(base) {
                if (base..base + BLOCK_SIZE).all(port_is_free) {
                    return Self {
                        base,
                        len: BLOCK_SIZE,
                        _lock: lock,
                    };
                }
            }
        }
        panic!("no free block of {BLOCK_SIZE} loopback ports found in {FIRST_BASE}..{END}");
    }

    /// The `i`-th port of the block (0-based).
    pub fn port(&self, i: u16) -> u16 {
        assert!(
            i < self.len,
            "port index {i} outside the block of {}",
            self.len
        );
        self.base + i
    }

    pub fn base(&self) -> u16 {
        self.base
    }
}

/// Binds 127.0.0.1:`port` for a server run in the test process, waiting while the socket of a
/// previous server on that port is still going away.
pub async fn bind(port: u16) -> tokio::net::TcpListener {
    crate::wait::wait_until(
        &format!("port {port} to bind"),
        crate::wait::TIMEOUT,
        || tokio::net::TcpListener::bind(("127.0.0.1", port)),
    )
    .await
}

fn try_lock(base: u16) -> Option<Flock<File>> {
    let path: PathBuf = [LOCK_DIR, &format!("{base}.lock")].iter().collect();
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .ok()?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).ok()
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_do_not_overlap_and_ports_bind() {
        let a = PortBlock::allocate(32);
        let b = PortBlock::allocate(8);
        assert_ne!(a.base(), b.base());
        assert_eq!(a.base() % BLOCK_SIZE, 0);
        assert!(a.base() >= FIRST_BASE && a.port(31) < END);
        // A held block is refused to another locker (flock is per open file, so even in-process).
        assert!(try_lock(a.base()).is_none());
        let base = a.base();
        drop(a);
        assert!(try_lock(base).is_some());
        assert!(port_is_free(b.port(3)));
    }
}
