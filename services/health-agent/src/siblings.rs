//! Connections to the other Redis nodes of the group, held open before they are needed.
//!
//! When a sibling is promoted, the follow reads it (`INFO replication`, its second witness)
//! before it re-points this node's replica. On a fresh connection that read costs a name lookup,
//! a TCP connect and the AUTH handshake (on the stack about 13 ms of a 50 ms budget, during a
//! failover when every node is busy); on a held one it is a single round trip. The promotion
//! itself closes the held connection (Sentinel's `CLIENT KILL TYPE normal`): a second, bare
//! connection to each sibling is closed by the same kill ([`crate::watch::on_every_close`]), and
//! its close makes the probe's connection again at once, before the promotion is published.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis_ha_common::{HostPort, Secret};
use redis_ha_sentinel::same_node;
use tokio::sync::{Mutex as AsyncMutex, Notify};
use tokio_util::task::AbortOnDropHandle;

use crate::probe::{ObserveError, RedisProbe};
use crate::watch::on_every_close;

/// The addresses to hold connections to: every node of the topology but this one, each once.
pub fn sibling_addresses<'a>(
    nodes: impl IntoIterator<Item = &'a str>,
    own: &HostPort,
) -> Vec<HostPort> {
    let mut out: Vec<HostPort> = Vec::new();
    for addr in nodes {
        let Ok(a) = addr.parse::<HostPort>() else {
            continue;
        };
        if !same_node(&a, own) && !out.iter().any(|o| same_node(o, &a)) {
            out.push(a);
        }
    }
    out
}

type SharedProbe = Arc<AsyncMutex<RedisProbe>>;

/// A held sibling: its probe, and the task that reconnects it when the sibling closes it
/// (aborted with the entry).
struct Sibling {
    probe: SharedProbe,
    _close_watch: Option<AbortOnDropHandle<()>>,
}

/// One probe per sibling; [`Siblings::warm`] checks them, the agent's loop says when, and each
/// is made again as soon as its sibling closes the connections (a promotion).
pub struct Siblings {
    user: Option<String>,
    password: Option<Secret>,
    io_timeout: Duration,
    probes: Mutex<HashMap<HostPort, Sibling>>,
    /// A new sibling to connect to.
    added: Notify,
}

impl Siblings {
    pub fn new(user: Option<String>, password: Option<Secret>, io_timeout: Duration) -> Self {
        Self {
            user,
            password,
            io_timeout,
            probes: Mutex::new(HashMap::new()),
            added: Notify::new(),
        }
    }

    fn probes(&self) -> std::sync::MutexGuard<'_, HashMap<HostPort, Sibling>> {
        self.probes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn new_probe(&self, addr: &HostPort) -> Result<SharedProbe, ObserveError> {
        let probe = RedisProbe::with_user(
            addr.clone(),
            addr.clone(),
            self.user.as_deref(),
            self.password.as_ref(),
            self.io_timeout,
        )?;
        Ok(Arc::new(AsyncMutex::new(probe)))
    }

    /// Holds probes for exactly `addrs` (those of nodes gone from the topology are dropped).
    pub fn set(&self, addrs: &[HostPort]) {
        let added = {
            let mut probes = self.probes();
            probes.retain(|a, _| addrs.contains(a));
            let mut added = false;
            for a in addrs {
                if probes.contains_key(a) {
                    continue;
                }
                if let Ok(probe) = self.new_probe(a) {
                    let close_watch = self.close_watch(a, &probe);
                    probes.insert(
                        a.clone(),
                        Sibling {
                            probe,
                            _close_watch: close_watch,
                        },
                    );
                    added = true;
                }
            }
            added
        };
        if added {
            self.added.notify_one();
        }
    }

    /// Reconnects `probe` each time `addr` closes a bare connection of its own (the promotion's
    /// `CLIENT KILL` closed the probe's too). `None` outside a runtime (nothing to spawn on).
    fn close_watch(&self, addr: &HostPort, probe: &SharedProbe) -> Option<AbortOnDropHandle<()>> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let (addr, probe, io_timeout) = (addr.clone(), Arc::clone(probe), self.io_timeout);
        let task = runtime.spawn(async move {
            on_every_close(&addr, io_timeout, || {
                let probe = Arc::clone(&probe);
                async move {
                    // A failure only means the next use connects again.
                    let _ = probe.lock().await.ping().await;
                }
            })
            .await;
        });
        Some(AbortOnDropHandle::new(task))
    }

    /// The probe of `addr`: the held one, or a new one of its own when `addr` is no sibling
    /// (not held: it connects on first use).
    pub fn probe(&self, addr: &HostPort) -> Result<SharedProbe, ObserveError> {
        if let Some(p) = self.probes().get(addr) {
            return Ok(Arc::clone(&p.probe));
        }
        self.new_probe(addr)
    }

    /// A `PING` on every probe, each in a task of its own: connects those without a connection,
    /// and drops a connection that no longer answers (the next `PING` makes a new one). A probe
    /// in use (by the follow, or a `PING` still waiting: a dead sibling's takes the timeout) is
    /// skipped, so a dead sibling never holds up the check of a live one.
    pub fn warm(&self) {
        for p in self.probes().values() {
            if let Ok(mut probe) = Arc::clone(&p.probe).try_lock_owned() {
                tokio::spawn(async move {
                    // A failure only means the next use connects again, as it would unwarmed.
                    let _ = probe.ping().await;
                });
            }
        }
    }

    /// Resolves when a sibling was added since the last call (its connection is due at once).
    pub async fn added(&self) {
        self.added.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(s: &str) -> HostPort {
        s.parse().expect("an address")
    }

    #[test]
    fn siblings_are_the_other_nodes_once_each() {
        let own = hp("redis-1:6379");
        let got = sibling_addresses(
            [
                "redis-1:6379",
                "redis-2:6379",
                "REDIS-2:6379",
                "redis-3:6379",
                "not an address",
            ],
            &own,
        );
        assert_eq!(got, vec![hp("redis-2:6379"), hp("redis-3:6379")]);
    }

    #[test]
    fn own_node_in_another_case_is_not_a_sibling() {
        let got = sibling_addresses(["Redis-1:6379", "redis-1:6380"], &hp("redis-1:6379"));
        assert_eq!(got, vec![hp("redis-1:6380")]);
    }

    #[tokio::test]
    async fn set_keeps_exactly_the_given_siblings() {
        let s = Siblings::new(None, None, Duration::from_millis(100));
        s.set(&[hp("127.0.0.1:1"), hp("127.0.0.1:2")]);
        let first = s.probe(&hp("127.0.0.1:1")).expect("a probe");
        s.set(&[hp("127.0.0.1:1"), hp("127.0.0.1:3")]);
        let again = s.probe(&hp("127.0.0.1:1")).expect("a probe");
        assert!(Arc::ptr_eq(&first, &again), "a held probe is kept");
        let mut held: Vec<_> = s.probes().keys().map(ToString::to_string).collect();
        held.sort();
        assert_eq!(held, vec!["127.0.0.1:1", "127.0.0.1:3"]);
        // A non-sibling gets a probe of its own, not held.
        let other = s.probe(&hp("127.0.0.1:4")).expect("a probe");
        assert!(!other.lock().await.is_connected());
        assert_eq!(s.probes().len(), 2);
    }
}
