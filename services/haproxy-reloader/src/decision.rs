//! Who should get the traffic, from either source (the coordinator's topology stream or the
//! Sentinels directly), and which of the two to believe.
//!
//! The rule: the highest Sentinel config epoch wins. A decision with a lower epoch than the one
//! applied is stale (a coordinator that lags or restarted, a Sentinel that has not heard of the
//! failover) and is ignored, so a correct state is never undone. At an equal epoch the
//! coordinator's stream is followed in order (it knows more: the node ids, confirmation by the
//! node's own role); the Sentinels' view at an equal epoch is taken only when nothing names a
//! master or it agrees.
//!
//! One exception, the revocation: the coordinator publishes a "promoted" master at a new epoch
//! before the Sentinels announce it, and takes it back (publishing the Sentinels' older epoch)
//! when the promoted node turns into a replica again and the Sentinels never confirmed that
//! epoch. Its floor never goes back otherwise (but for the failover-timeout rule below), so a
//! lower epoch on the *same* stream, later in version order, after an unconfirmed promotion,
//! can only be that revocation: it is taken. A lower epoch from any other stream (a reconnection, a restarted
//! coordinator whose versions start over) or after the Sentinels confirmed the promotion is
//! still ignored.
//!
//! Nothing sticks: when a quorum of Sentinels keeps naming a lower epoch than the decision in
//! force (an unconfirmed promotion, an epoch the Sentinels never reached, whatever the
//! coordinator said) for longer than the Sentinels' `failover-timeout`, their decision is
//! taken: the floor comes down to it ([`Arbiter::offer_at`]). The Sentinels' decisions are
//! themselves a quorum's (`sentinel_quorum`, a majority of the listed Sentinels), never one
//! Sentinel's.
//!
//! Before all of that, the node list ([`Arbiter::new`]): a decision whose master is not a
//! configured node is ignored whatever its epoch, and nodes at other addresses are left out
//! of every decision, so no HAProxy server is ever readied on, or moved to, such an address.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis_ha_common::HostPort;
use redis_ha_proto::v1::{MasterSource, Topology};

static STREAM_SESSIONS: AtomicU64 = AtomicU64::new(1);

/// A new id for one `WatchTopology` stream (one connection to one coordinator process), unique
/// in this process: decisions carry it, so the arbiter knows which ones come from the same
/// stream, in order.
pub fn next_stream_session() -> u64 {
    STREAM_SESSIONS.fetch_add(1, Ordering::Relaxed)
}

/// Where a decision comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A topology from the coordinator's `WatchTopology` stream.
    Coordinator {
        /// The stream it came on ([`next_stream_session`]).
        session: u64,
        version: u64,
        /// `Topology.master_source`: a `Promoted` master is tentative (the failover leader
        /// selected it before the Sentinels announced it), the coordinator may revoke it.
        master_source: MasterSource,
    },
    /// `SENTINEL MASTER` agreed by a quorum of Sentinels.
    Sentinel { agreeing: usize },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Coordinator {
                session,
                version,
                master_source,
            } => write!(
                f,
                "coordinator v{version} ({master_source}, stream {session})"
            ),
            Self::Sentinel { agreeing } => write!(f, "sentinels ({agreeing} agreeing)"),
        }
    }
}

/// A node of the decision: its id when known, and its address as the Sentinels know it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub node: Option<String>,
    pub address: HostPort,
}

/// The routing decision for one master group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub source: Source,
    pub config_epoch: u64,
    /// `None`: no master known (keep the current routing).
    pub master: Option<Target>,
    /// Every node known (for server addresses).
    pub nodes: Vec<Target>,
    /// `Topology.readers`: the replicas the read backend spreads reads over (the coordinator's
    /// rule, `redis_ha_coordinator::readers`). Empty: the read backend falls back to the master
    /// (always so for the Sentinels' decisions, and once the coordinator's stream is broken:
    /// a list nobody keeps up to date is not followed).
    pub readers: Vec<Target>,
    /// `Topology.trace_parent`: the coordinator span that published the topology (empty when
    /// unknown); applying the decision continues that trace.
    pub trace_parent: String,
    /// `Topology.master_role_changed_at_ms`: when the master turned master, as its agent saw it
    /// (0 = unknown), for the switch lag.
    pub master_role_changed_at_ms: i64,
}

impl Decision {
    /// Same routing (master and addresses), whatever the source.
    pub fn same_routing(&self, other: &Decision) -> bool {
        self.config_epoch == other.config_epoch
            && self.master == other.master
            && self.nodes == other.nodes
    }

    pub fn master_address(&self) -> Option<&HostPort> {
        self.master.as_ref().map(|m| &m.address)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecisionError {
    #[error("topology v{version} for group {group:?}: master address {address:?}: {reason}")]
    BadMasterAddress {
        group: String,
        version: u64,
        address: String,
        reason: String,
    },
}

/// Reads a topology received on stream `session`. Nodes with an unparseable address are left
/// out (logged by the caller through the returned list); an unparseable master address is an
/// error.
pub fn from_topology(t: &Topology, session: u64) -> Result<(Decision, Vec<String>), DecisionError> {
    let mut skipped = Vec::new();
    let master = if t.master_address.trim().is_empty() {
        None
    } else {
        let address: HostPort =
            t.master_address
                .parse()
                .map_err(
                    |e: redis_ha_common::addr::AddrError| DecisionError::BadMasterAddress {
                        group: t.master_group.clone(),
                        version: t.version,
                        address: t.master_address.clone(),
                        reason: e.to_string(),
                    },
                )?;
        Some(Target {
            node: (!t.master_node.is_empty()).then(|| t.master_node.clone()),
            address,
        })
    };
    let mut readers = Vec::new();
    for r in &t.readers {
        match r.parse::<HostPort>() {
            Ok(address) => readers.push(Target {
                node: t
                    .nodes
                    .iter()
                    .find(|n| n.address == *r && !n.node.is_empty())
                    .map(|n| n.node.clone()),
                address,
            }),
            Err(e) => skipped.push(format!("reader {r:?}: {e}")),
        }
    }
    let mut nodes = Vec::new();
    for n in &t.nodes {
        if n.address.is_empty() {
            continue;
        }
        match n.address.parse::<HostPort>() {
            Ok(address) => nodes.push(Target {
                node: (!n.node.is_empty()).then(|| n.node.clone()),
                address,
            }),
            Err(e) => skipped.push(format!("node {:?}: {e}", n.node)),
        }
    }
    Ok((
        Decision {
            source: Source::Coordinator {
                session,
                version: t.version,
                master_source: t.master_source(),
            },
            config_epoch: t.config_epoch,
            master,
            nodes,
            readers,
            trace_parent: t.trace_parent.clone(),
            master_role_changed_at_ms: t.master_role_changed_at_ms,
        },
        skipped,
    ))
}

/// What the arbiter did with an offered decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Taken; the routing changed.
    Changed,
    /// Taken (or equal); the routing is the same.
    Unchanged,
    /// Refused, with the reason.
    Ignored(String),
}

/// The decision in force is a promotion the Sentinels have not confirmed: the stream that
/// published it may still revoke it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tentative {
    session: u64,
    epoch: u64,
    /// The last version taken from that stream at that epoch: a revocation comes after it.
    version: u64,
}

/// An address outside the node list that an offered decision named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Foreign {
    /// `coordinator` or `sentinel`.
    pub source: &'static str,
    /// `master` (the decision was ignored) or `node` (the node was left out).
    pub kind: &'static str,
    pub address: HostPort,
    /// The first time this address was named so: to be logged (later ones only counted).
    pub first: bool,
}

/// (kind, host lower-cased, port) sightings remembered for "log once".
const MAX_FOREIGN_LOGGED: usize = 1024;

/// The Sentinels' `failover-timeout` when none is configured.
pub const DEFAULT_FAILOVER_TIMEOUT: Duration = Duration::from_secs(10);

/// A quorum of Sentinels names a lower epoch than the decision in force: what, since when.
#[derive(Clone, Debug, PartialEq, Eq)]
struct BelowFloor {
    epoch: u64,
    master: Option<HostPort>,
    since: Instant,
}

/// Keeps the decision in force.
#[derive(Debug, Default)]
pub struct Arbiter {
    current: Option<Decision>,
    /// The last node list the coordinator gave: Sentinel decisions name addresses only, this
    /// lets them be placed on the right server and keeps the other servers' addresses.
    known_nodes: Vec<Target>,
    tentative: Option<Tentative>,
    /// The configured nodes' addresses; empty: every address is followed.
    allowed: Vec<HostPort>,
    /// What the last offer named outside `allowed`.
    foreign: Vec<Foreign>,
    foreign_logged: std::collections::BTreeSet<(&'static str, String, u16)>,
    /// Since when the Sentinels' quorum names a lower epoch than the decision in force.
    below: Option<BelowFloor>,
    /// `None`: [`DEFAULT_FAILOVER_TIMEOUT`].
    failover_timeout: Option<Duration>,
}

impl Arbiter {
    /// An arbiter that follows only masters at these addresses (compared by
    /// [`redis_ha_sentinel::same_node`]) and leaves other nodes out; empty: no restriction.
    pub fn new(allowed: Vec<HostPort>) -> Self {
        Self {
            allowed,
            ..Self::default()
        }
    }

    /// The same, with the Sentinels' `failover-timeout` (see the module documentation).
    pub fn with_failover_timeout(mut self, failover_timeout: Duration) -> Self {
        self.failover_timeout = Some(failover_timeout);
        self
    }

    fn failover_timeout(&self) -> Duration {
        self.failover_timeout.unwrap_or(DEFAULT_FAILOVER_TIMEOUT)
    }

    /// Is `address` a configured node (or is there no list)?
    pub fn allows(&self, address: &HostPort) -> bool {
        self.allowed.is_empty()
            || self
                .allowed
                .iter()
                .any(|a| redis_ha_sentinel::same_node(a, address))
    }

    /// The addresses outside the node list the last [`Arbiter::offer`] named.
    pub fn foreign(&self) -> &[Foreign] {
        &self.foreign
    }

    fn note_foreign(&mut self, source: &Source, kind: &'static str, address: &HostPort) {
        let key = (kind, address.host.to_ascii_lowercase(), address.port);
        let first = !self.foreign_logged.contains(&key)
            && self.foreign_logged.len() < MAX_FOREIGN_LOGGED
            && self.foreign_logged.insert(key);
        self.foreign.push(Foreign {
            source: match source {
                Source::Coordinator { .. } => "coordinator",
                Source::Sentinel { .. } => "sentinel",
            },
            kind,
            address: address.clone(),
            first,
        });
    }

    /// Leaves the nodes outside the list out of `d`; `Err` with the reason when its master is
    /// outside it.
    fn restrict(&mut self, d: &mut Decision) -> Result<(), String> {
        if self.allowed.is_empty() {
            return Ok(());
        }
        if let Some(m) = d.master.clone() {
            if !self.allows(&m.address) {
                self.note_foreign(&d.source, "master", &m.address);
                return Err(format!(
                    "master {} (epoch {}) is not a configured node",
                    m.address, d.config_epoch
                ));
            }
        }
        let (kept, left): (Vec<Target>, Vec<Target>) = std::mem::take(&mut d.nodes)
            .into_iter()
            .partition(|n| self.allows(&n.address));
        for n in &left {
            self.note_foreign(&d.source, "node", &n.address);
        }
        d.nodes = kept;
        let (kept, left): (Vec<Target>, Vec<Target>) = std::mem::take(&mut d.readers)
            .into_iter()
            .partition(|n| self.allows(&n.address));
        for n in &left {
            self.note_foreign(&d.source, "reader", &n.address);
        }
        d.readers = kept;
        Ok(())
    }

    pub fn current(&self) -> Option<&Decision> {
        self.current.as_ref()
    }

    /// Forgets the readers of the decision in force (the coordinator's stream broke: nobody
    /// keeps the list up to date any more, so the read backend falls back to the master).
    /// True when there were any.
    pub fn clear_readers(&mut self) -> bool {
        self.current
            .as_mut()
            .is_some_and(|c| !std::mem::take(&mut c.readers).is_empty())
    }

    /// True while the decision in force is an unconfirmed promotion the coordinator may revoke.
    pub fn is_tentative(&self) -> bool {
        self.tentative.is_some()
    }

    /// [`Arbiter::offer_at`] now.
    pub fn offer(&mut self, d: Decision) -> Verdict {
        self.offer_at(d, Instant::now())
    }

    /// Offers `d`, received at `now` (the clock of the failover-timeout).
    pub fn offer_at(&mut self, mut d: Decision, now: Instant) -> Verdict {
        self.foreign.clear();
        if let Err(reason) = self.restrict(&mut d) {
            return Verdict::Ignored(reason);
        }
        if matches!(d.source, Source::Coordinator { .. }) && !d.nodes.is_empty() {
            self.known_nodes = d.nodes.clone();
        }
        if matches!(d.source, Source::Sentinel { .. }) && d.nodes.is_empty() {
            d.nodes = self.known_nodes.clone();
            // The address the Sentinels name tells which node it is.
            if let Some(m) = d.master.as_mut() {
                if m.node.is_none() {
                    m.node = d
                        .nodes
                        .iter()
                        .find(|n| n.address == m.address)
                        .and_then(|n| n.node.clone());
                }
            }
        }
        let Some(cur_epoch) = self.current.as_ref().map(|c| c.config_epoch) else {
            self.take(d);
            return Verdict::Changed;
        };
        if matches!(d.source, Source::Sentinel { .. }) && d.config_epoch >= cur_epoch {
            self.below = None;
        }
        if d.config_epoch < cur_epoch && self.withdraws(&d, now) {
            let changed = self.current.as_ref().is_none_or(|cur| {
                tracing::warn!(
                    withdrawn_epoch = cur.config_epoch,
                    withdrawn_master = %cur.master_address().map_or_else(|| "none".to_owned(), ToString::to_string),
                    epoch = d.config_epoch,
                    master = %d.master_address().map_or_else(|| "none".to_owned(), ToString::to_string),
                    failover_timeout_ms = self.failover_timeout().as_millis(),
                    "a quorum of Sentinels has named a lower epoch for longer than the failover-timeout: the decision in force is withdrawn"
                );
                !cur.same_routing(&d)
            });
            self.below = None;
            self.take(d);
            return if changed {
                Verdict::Changed
            } else {
                Verdict::Unchanged
            };
        }
        let Some(cur) = &self.current else {
            self.take(d);
            return Verdict::Changed;
        };
        if d.config_epoch < cur.config_epoch {
            if !self.revokes(&d) {
                return Verdict::Ignored(format!(
                    "stale: epoch {} < applied epoch {} ({})",
                    d.config_epoch, cur.config_epoch, cur.source
                ));
            }
            tracing::info!(
                revoked_epoch = cur.config_epoch,
                revoked_master = %cur.master_address().map_or_else(|| "none".to_owned(), ToString::to_string),
                epoch = d.config_epoch,
                source = %d.source,
                "the coordinator revoked an unconfirmed promotion: following it back to a lower epoch"
            );
        } else if d.config_epoch == cur.config_epoch && matches!(d.source, Source::Sentinel { .. })
        {
            match (cur.master_address(), d.master_address()) {
                (_, None) => return Verdict::Unchanged,
                (None, Some(_)) => {}
                (Some(a), Some(b)) if a == b => {
                    if matches!(cur.source, Source::Coordinator { .. }) {
                        // Agrees with the coordinator, which knows more: keep its decision,
                        // now confirmed by the Sentinels (no longer revocable).
                        self.tentative = None;
                        return Verdict::Unchanged;
                    }
                }
                (Some(a), Some(b)) => {
                    return Verdict::Ignored(format!(
                        "sentinels name {b} at epoch {}, the applied decision ({}) names {a}",
                        d.config_epoch, cur.source
                    ))
                }
            }
        }
        let changed = !cur.same_routing(&d);
        self.take(d);
        if changed {
            Verdict::Changed
        } else {
            Verdict::Unchanged
        }
    }

    /// Is `d` (a lower epoch than the decision in force) the Sentinels' quorum naming it for
    /// longer than the failover-timeout? Starts or keeps the clock otherwise.
    fn withdraws(&mut self, d: &Decision, now: Instant) -> bool {
        if !matches!(d.source, Source::Sentinel { .. }) || d.master.is_none() {
            return false;
        }
        let master = d.master_address().cloned();
        match &self.below {
            Some(b) if b.epoch == d.config_epoch && b.master == master => {
                now.saturating_duration_since(b.since) >= self.failover_timeout()
            }
            _ => {
                self.below = Some(BelowFloor {
                    epoch: d.config_epoch,
                    master,
                    since: now,
                });
                false
            }
        }
    }

    /// Is `d` (a lower epoch than the decision in force) the revocation of that decision by
    /// the stream that published it as an unconfirmed promotion?
    fn revokes(&self, d: &Decision) -> bool {
        let (Some(t), Some(cur)) = (self.tentative, &self.current) else {
            return false;
        };
        let Source::Coordinator {
            session, version, ..
        } = &d.source
        else {
            return false;
        };
        cur.config_epoch == t.epoch
            && d.config_epoch < t.epoch
            && *session == t.session
            && *version > t.version
    }

    /// Puts `d` in force and tracks whether it is a revocable promotion.
    fn take(&mut self, d: Decision) {
        self.tentative = match &d.source {
            Source::Coordinator {
                session,
                version,
                master_source,
            } if *master_source == MasterSource::Promoted => Some(Tentative {
                session: *session,
                epoch: d.config_epoch,
                version: *version,
            }),
            // The Sentinels confirmed it (or the coordinator moved on to their view): final.
            Source::Coordinator { master_source, .. }
                if *master_source == MasterSource::SentinelQuorum =>
            {
                None
            }
            // "last-known" / "none": the coordinator keeps its decision (its agents went quiet
            // for a moment); still revocable by the same stream, at the same epoch.
            Source::Coordinator {
                session, version, ..
            } => self
                .tentative
                .filter(|t| t.session == *session && t.epoch == d.config_epoch)
                .map(|t| Tentative {
                    version: *version,
                    ..t
                }),
            Source::Sentinel { .. } => None,
        };
        self.current = Some(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis_ha_proto::v1::NodeView;

    fn topo(version: u64, epoch: u64, master: &str) -> Topology {
        Topology {
            master_group: "redis-cluster".into(),
            version,
            master_address: master.into(),
            master_node: match master {
                "" => String::new(),
                m => format!("node-{}", &m[m.len() - 1..]),
            },
            config_epoch: epoch,
            master_source: MasterSource::SentinelQuorum as i32,
            nodes: (1..=3)
                .map(|n| NodeView {
                    node: format!("node-{n}"),
                    address: format!("10.0.0.{n}:900{n}"),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    /// A "sentinel-quorum" topology on stream 1.
    fn coord(version: u64, epoch: u64, master: &str) -> Decision {
        from_topology(&topo(version, epoch, master), 1).unwrap().0
    }

    /// A topology on stream `session` with this `master_source`.
    fn on(session: u64, version: u64, epoch: u64, master: &str, source: MasterSource) -> Decision {
        let mut t = topo(version, epoch, master);
        t.set_master_source(source);
        from_topology(&t, session).unwrap().0
    }

    const PROMOTED: MasterSource = MasterSource::Promoted;
    const QUORUM: MasterSource = MasterSource::SentinelQuorum;
    const LAST_KNOWN: MasterSource = MasterSource::LastKnown;
    const M1: &str = "10.0.0.1:9001";
    const M2: &str = "10.0.0.2:9002";
    const M3: &str = "10.0.0.3:9003";

    fn master_of(a: &Arbiter) -> (u64, Option<HostPort>) {
        let d = a.current().unwrap();
        (d.config_epoch, d.master_address().cloned())
    }

    fn hp(s: &str) -> Option<HostPort> {
        Some(s.parse().unwrap())
    }

    fn sentinel(epoch: u64, master: &str) -> Decision {
        Decision {
            source: Source::Sentinel { agreeing: 2 },
            config_epoch: epoch,
            master: Some(Target {
                node: None,
                address: master.parse().unwrap(),
            }),
            nodes: vec![],
            readers: vec![],
            trace_parent: String::new(),
            master_role_changed_at_ms: 0,
        }
    }

    /// What the arbiter should do with an offered decision.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Then {
        Changed,
        Unchanged,
        Ignored,
    }
    use Then::{Changed, Ignored, Unchanged};

    /// Offers `d` and checks what the arbiter did with it.
    #[track_caller]
    fn step(a: &mut Arbiter, d: Decision, then: Then) {
        let shown = format!("{} at epoch {}", d.source, d.config_epoch);
        let v = a.offer(d);
        let got = match &v {
            Verdict::Changed => Changed,
            Verdict::Unchanged => Unchanged,
            Verdict::Ignored(_) => Ignored,
        };
        assert_eq!(got, then, "{shown}: {v:?}");
    }

    /// An arbiter that followed stream 1 to `M1` at epoch 0 (version 1), then to the
    /// unconfirmed promotion of `m` at epoch 1 (version `version`).
    fn promoted(m: &str, version: u64) -> Arbiter {
        let mut a = Arbiter::default();
        step(&mut a, on(1, 1, 0, M1, QUORUM), Changed);
        step(&mut a, on(1, version, 1, m, PROMOTED), Changed);
        assert!(a.is_tentative());
        a
    }

    #[test]
    fn reads_a_topology() {
        let (d, skipped) = from_topology(&topo(7, 2, "10.0.0.2:9002"), 1).unwrap();
        assert!(skipped.is_empty());
        assert_eq!(d.config_epoch, 2);
        assert_eq!(
            d.master,
            Some(Target {
                node: Some("node-2".into()),
                address: HostPort::new("10.0.0.2", 9002)
            })
        );
        assert_eq!(d.nodes.len(), 3);
        let (none, _) = from_topology(&topo(8, 2, ""), 1).unwrap();
        assert_eq!(none.master, None);
        let mut bad = topo(9, 2, "10.0.0.2:9002");
        bad.master_address = "nonsense".into();
        assert!(from_topology(&bad, 1).is_err());
        let mut bad_node = topo(9, 2, "10.0.0.2:9002");
        bad_node.nodes[0].address = "x".into();
        let (d, skipped) = from_topology(&bad_node, 1).unwrap();
        assert_eq!((d.nodes.len(), skipped.len()), (2, 1));
    }

    #[test]
    fn lower_epoch_is_ignored() {
        let mut a = Arbiter::default();
        step(&mut a, coord(1, 1, M1), Changed);
        step(&mut a, coord(2, 2, M2), Changed);
        // A stale stream (e.g. a restarted coordinator that has not caught up).
        step(&mut a, coord(1, 1, M1), Ignored);
        step(&mut a, sentinel(1, M1), Ignored);
        assert_eq!(
            a.current().unwrap().master_address(),
            Some(&HostPort::new("10.0.0.2", 9002))
        );
    }

    #[test]
    fn coordinator_down_sentinels_take_over_with_a_higher_epoch() {
        let mut a = Arbiter::default();
        step(&mut a, coord(5, 1, M1), Changed);
        step(&mut a, sentinel(2, M3), Changed);
        let cur = a.current().unwrap();
        // Placed through the coordinator's last node list.
        assert_eq!(cur.master.as_ref().unwrap().node.as_deref(), Some("node-3"));
        assert_eq!(cur.nodes.len(), 3);
        // The coordinator comes back with its old view: ignored.
        step(&mut a, coord(6, 1, M1), Ignored);
        // It catches up.
        step(&mut a, coord(7, 2, M3), Unchanged);
    }

    #[test]
    fn sentinels_at_equal_epoch_do_not_override_the_coordinator() {
        let mut a = Arbiter::default();
        // "promoted" published before the Sentinels switch, at the same epoch.
        step(&mut a, coord(3, 4, M2), Changed);
        step(&mut a, sentinel(4, M1), Ignored);
        step(&mut a, sentinel(4, M2), Unchanged);
        assert!(matches!(
            a.current().unwrap().source,
            Source::Coordinator { .. }
        ));
    }

    #[test]
    fn sentinels_fill_in_when_nothing_names_a_master() {
        let mut a = Arbiter::default();
        step(&mut a, coord(3, 4, ""), Changed);
        step(&mut a, sentinel(4, M2), Changed);
        // Completed from the coordinator's node list: the same routing as its next
        // topology.
        step(&mut a, coord(4, 4, M2), Unchanged);
        // The coordinator at the same epoch is followed in order.
        step(&mut a, coord(5, 4, ""), Changed);
        assert_eq!(a.current().unwrap().master, None);
    }

    #[test]
    fn first_decision_is_taken_whatever_its_source() {
        let mut a = Arbiter::default();
        step(&mut a, sentinel(0, M1), Changed);
        step(&mut a, coord(1, 0, M1), Changed);
    }

    #[test]
    fn a_revocation_on_the_same_stream_is_followed() {
        // The failover leader selected node-3 and it answers role:master: epoch 1, tentative.
        let mut a = promoted(M3, 2);
        // Its agent went quiet a moment: the coordinator keeps the promotion as last-known.
        step(&mut a, on(1, 3, 1, M3, LAST_KNOWN), Unchanged);
        assert!(a.is_tentative());
        // node-3 says replica again, the Sentinels never left epoch 0: revoked.
        step(&mut a, on(1, 4, 0, M1, QUORUM), Changed);
        assert_eq!(master_of(&a), (0, hp(M1)));
        assert!(!a.is_tentative());
        // The Sentinels agree with the revocation.
        step(&mut a, sentinel(0, M1), Unchanged);
        // A later failover at epoch 1 (same or another node) is followed as usual.
        step(&mut a, on(1, 5, 1, M2, PROMOTED), Changed);
        assert_eq!(master_of(&a), (1, hp(M2)));
    }

    #[test]
    fn a_revocation_falls_back_to_whatever_the_coordinator_has() {
        let mut a = Arbiter::default();
        step(&mut a, on(4, 1, 2, M1, QUORUM), Changed);
        step(&mut a, on(4, 2, 3, M2, PROMOTED), Changed);
        // The coordinator's floor below the promotion is "last-known" (Sentinels quiet).
        step(&mut a, on(4, 3, 2, M1, LAST_KNOWN), Changed);
        assert_eq!(master_of(&a), (2, hp(M1)));
    }

    #[test]
    fn a_stale_stream_is_still_ignored() {
        let mut a = promoted(M3, 7);
        // A restarted coordinator (new stream, versions starting over) that has not
        // heard of the promotion: ignored, whatever its version.
        step(&mut a, on(2, 1, 0, M1, QUORUM), Ignored);
        step(&mut a, on(2, 9, 0, M1, QUORUM), Ignored);
        step(&mut a, on(2, 10, 0, M1, LAST_KNOWN), Ignored);
        // Out of order on the promotion's own stream (never happens, never believed).
        step(&mut a, on(1, 6, 0, M1, QUORUM), Ignored);
        step(&mut a, on(1, 7, 0, M1, QUORUM), Ignored);
        // The Sentinels' own older view neither.
        step(&mut a, sentinel(0, M1), Ignored);
        assert_eq!(master_of(&a), (1, hp(M3)));
        assert!(a.is_tentative());
        // The new stream catches up at epoch 1 without the promotion ("last-known" of
        // another stream): no longer revocable by anyone, stream 1 included.
        step(&mut a, on(2, 11, 1, M3, LAST_KNOWN), Unchanged);
        assert!(!a.is_tentative());
        step(&mut a, on(1, 8, 0, M1, QUORUM), Ignored);
        step(&mut a, on(2, 12, 0, M1, QUORUM), Ignored);
        assert_eq!(master_of(&a), (1, hp(M3)));
    }

    #[test]
    fn a_reconnected_stream_that_still_holds_the_promotion_may_revoke_it() {
        let mut a = promoted(M3, 2);
        // Reconnected to the same coordinator: it re-asserts the promotion on the new
        // stream.
        step(&mut a, on(2, 2, 1, M3, PROMOTED), Unchanged);
        // The old stream's messages no longer count.
        step(&mut a, on(1, 3, 0, M1, QUORUM), Ignored);
        step(&mut a, on(2, 3, 0, M1, QUORUM), Changed);
        assert_eq!(master_of(&a), (0, hp(M1)));
    }

    #[test]
    fn a_sentinel_decision_at_a_higher_epoch_is_never_undone() {
        let mut a = promoted(M2, 2);
        // The coordinator is cut off; the Sentinels fail over again, to epoch 2.
        step(&mut a, sentinel(2, M3), Changed);
        assert!(!a.is_tentative());
        // The same stream, later, at a lower epoch: it is not revoking the decision in
        // force.
        step(&mut a, on(1, 3, 0, M1, QUORUM), Ignored);
        step(&mut a, on(1, 4, 1, M1, QUORUM), Ignored);
        assert_eq!(master_of(&a), (2, hp(M3)));
    }

    #[test]
    fn a_promotion_confirmed_by_the_sentinels_stays() {
        // Confirmed through the coordinator.
        let mut a = promoted(M2, 2);
        step(&mut a, on(1, 3, 1, M2, QUORUM), Unchanged);
        assert!(!a.is_tentative());
        step(&mut a, on(1, 4, 0, M1, QUORUM), Ignored);
        assert_eq!(master_of(&a), (1, hp(M2)));

        // Confirmed by the Sentinels followed directly: the coordinator's decision stays in
        // force (it knows more) but is final.
        let mut b = promoted(M2, 2);
        step(&mut b, sentinel(1, M2), Unchanged);
        assert!(matches!(
            b.current().unwrap().source,
            Source::Coordinator { .. }
        ));
        assert!(!b.is_tentative());
        step(&mut b, on(1, 3, 0, M1, QUORUM), Ignored);
        assert_eq!(master_of(&b), (1, hp(M2)));

        // Sentinels naming another node at that epoch confirm nothing.
        let mut c = promoted(M2, 2);
        step(&mut c, sentinel(1, M1), Ignored);
        assert!(c.is_tentative());
    }

    /// An address no node is configured at.
    const FOREIGN: &str = "10.9.9.9:6666";

    /// An arbiter restricted to `M1`..`M3`.
    fn restricted() -> Arbiter {
        Arbiter::new([M1, M2, M3].iter().map(|a| a.parse().unwrap()).collect())
    }

    fn foreign_of(a: &Arbiter) -> Vec<(&'static str, &'static str, String, bool)> {
        a.foreign()
            .iter()
            .map(|f| (f.source, f.kind, f.address.to_string(), f.first))
            .collect()
    }

    #[test]
    fn a_foreign_master_is_ignored_whatever_its_epoch_and_source() {
        // Without a list it is followed (the behaviour before the list).
        let mut open = Arbiter::default();
        step(&mut open, coord(1, 0, M1), Changed);
        step(&mut open, coord(2, 1000, FOREIGN), Changed);
        assert!(open.foreign().is_empty());

        let mut a = restricted();
        step(&mut a, coord(1, 0, M1), Changed);
        assert!(a.foreign().is_empty());
        step(&mut a, coord(2, 1000, FOREIGN), Ignored);
        assert_eq!(master_of(&a), (0, hp(M1)));
        assert_eq!(
            foreign_of(&a),
            [("coordinator", "master", FOREIGN.to_owned(), true)]
        );
        // Counted again, logged once.
        step(&mut a, coord(3, 1000, FOREIGN), Ignored);
        assert_eq!(
            foreign_of(&a),
            [("coordinator", "master", FOREIGN.to_owned(), false)]
        );
        step(&mut a, sentinel(1000, FOREIGN), Ignored);
        assert_eq!(
            foreign_of(&a),
            [("sentinel", "master", FOREIGN.to_owned(), false)]
        );
        assert_eq!(master_of(&a), (0, hp(M1)));
        // The epoch never rose: a real failover at epoch 1 is followed from either source.
        step(&mut a, sentinel(1, M2), Changed);
        assert_eq!(master_of(&a), (1, hp(M2)));
        step(&mut a, coord(4, 2, M3), Changed);
        assert_eq!(master_of(&a), (2, hp(M3)));
        assert!(a.foreign().is_empty());
    }

    #[test]
    fn foreign_nodes_are_left_out_of_every_decision() {
        let mut a = restricted();
        let mut t = topo(1, 0, M2);
        // A fourth node at an address not in the list, and node-3 moved to one.
        t.nodes.push(NodeView {
            node: "node-4".into(),
            address: FOREIGN.into(),
            ..Default::default()
        });
        t.nodes[2].address = "10.9.9.9:9003".into();
        step(&mut a, from_topology(&t, 1).unwrap().0, Changed);
        let cur = a.current().unwrap();
        let kept: Vec<String> = cur.nodes.iter().map(|n| n.address.to_string()).collect();
        assert_eq!(kept, [M1, M2]);
        assert_eq!(
            foreign_of(&a),
            [
                ("coordinator", "node", "10.9.9.9:9003".to_owned(), true),
                ("coordinator", "node", FOREIGN.to_owned(), true),
            ]
        );
        // A Sentinel decision is completed from the (restricted) node list only.
        step(&mut a, sentinel(1, M1), Changed);
        let cur = a.current().unwrap();
        assert_eq!(cur.nodes.len(), 2);
        assert_eq!(cur.master.as_ref().unwrap().node.as_deref(), Some("node-1"));
    }

    #[test]
    fn configured_addresses_compare_as_the_project_normalizes() {
        let a = Arbiter::new(vec![
            "redis-1:9001".parse().unwrap(),
            "[::1]:9002".parse().unwrap(),
        ]);
        for ok in ["REDIS-1:9001", "redis-1:9001", "[::1]:9002"] {
            assert!(a.allows(&ok.parse().unwrap()), "{ok}");
        }
        // Names are not resolved: an IP is another address than a name.
        for refused in [
            "redis-1:9002",
            "redis-2:9001",
            "127.0.0.1:9001",
            "[::2]:9002",
        ] {
            assert!(!a.allows(&refused.parse().unwrap()), "{refused}");
        }
        assert!(Arbiter::default().allows(&FOREIGN.parse().unwrap()));
    }

    /// Offers `d` at `ms` after `t0` and returns what the arbiter did.
    fn at(a: &mut Arbiter, t0: Instant, ms: u64, d: Decision) -> Then {
        match a.offer_at(d, t0 + Duration::from_millis(ms)) {
            Verdict::Changed => Changed,
            Verdict::Unchanged => Unchanged,
            Verdict::Ignored(_) => Ignored,
        }
    }

    /// Issue #11 item 3: whatever the coordinator said (here epoch 1000 naming node 2, as a
    /// forged topology did), a quorum of Sentinels naming node 1 at epoch 2 for longer than the
    /// failover-timeout brings the decision back down to theirs.
    #[test]
    fn a_decision_the_sentinels_contradict_for_the_failover_timeout_is_withdrawn() {
        let t0 = Instant::now();
        let mut a = Arbiter::default().with_failover_timeout(Duration::from_millis(5000));
        assert_eq!(at(&mut a, t0, 0, on(1, 1, 2, M1, QUORUM)), Changed);
        assert_eq!(at(&mut a, t0, 10, on(1, 2, 1000, M2, QUORUM)), Changed);
        // The Sentinels' lower epoch is ignored within the failover-timeout...
        for ms in [1000, 2000, 4999] {
            assert_eq!(at(&mut a, t0, ms, sentinel(2, M1)), Ignored, "at {ms} ms");
        }
        assert_eq!(master_of(&a), (1000, hp(M2)));
        // ...and taken once they have named it for that long.
        assert_eq!(at(&mut a, t0, 6000, sentinel(2, M1)), Changed);
        assert_eq!(master_of(&a), (2, hp(M1)));
        assert!(!a.is_tentative());
        // The coordinator, once it withdrew its own floor, agrees at that epoch.
        assert_eq!(at(&mut a, t0, 6100, on(1, 3, 2, M1, QUORUM)), Unchanged);
    }

    #[test]
    fn the_withdrawal_clock_restarts_when_the_sentinels_change_their_answer() {
        let t0 = Instant::now();
        let mut a = Arbiter::default().with_failover_timeout(Duration::from_millis(5000));
        assert_eq!(at(&mut a, t0, 0, on(1, 1, 1000, M2, QUORUM)), Changed);
        assert_eq!(at(&mut a, t0, 1000, sentinel(2, M1)), Ignored);
        // Another answer: a new clock.
        assert_eq!(at(&mut a, t0, 4000, sentinel(3, M3)), Ignored);
        assert_eq!(at(&mut a, t0, 8000, sentinel(3, M3)), Ignored);
        // The Sentinels reached the decision's epoch meanwhile: no clock at all.
        assert_eq!(at(&mut a, t0, 8500, sentinel(1000, M2)), Unchanged);
        assert_eq!(at(&mut a, t0, 9500, sentinel(3, M3)), Ignored);
        assert_eq!(at(&mut a, t0, 14_000, sentinel(3, M3)), Ignored);
        assert_eq!(at(&mut a, t0, 14_500, sentinel(3, M3)), Changed);
        assert_eq!(master_of(&a), (3, hp(M3)));
    }

    /// A promotion the coordinator published is confirmed by the Sentinels in a second or two;
    /// their older view meanwhile changes nothing.
    #[test]
    fn a_confirmed_promotion_is_not_withdrawn() {
        let t0 = Instant::now();
        let mut a = Arbiter::default().with_failover_timeout(Duration::from_millis(5000));
        assert_eq!(at(&mut a, t0, 0, on(1, 1, 0, M1, QUORUM)), Changed);
        assert_eq!(at(&mut a, t0, 100, on(1, 2, 1, M2, PROMOTED)), Changed);
        assert_eq!(at(&mut a, t0, 1000, sentinel(0, M1)), Ignored);
        assert_eq!(at(&mut a, t0, 2000, sentinel(1, M2)), Unchanged);
        assert_eq!(at(&mut a, t0, 9000, sentinel(0, M1)), Ignored);
        assert_eq!(master_of(&a), (1, hp(M2)));
    }

    #[test]
    fn readers_come_with_their_node_ids_and_only_from_the_node_list() {
        let mut a = restricted();
        let mut t = topo(1, 0, M1);
        t.readers = vec![
            M2.into(),
            M3.into(),
            FOREIGN.into(),
            "not an address".into(),
        ];
        let (d, skipped) = from_topology(&t, 1).unwrap();
        assert_eq!(skipped.len(), 1, "{skipped:?}");
        assert_eq!(
            d.readers
                .iter()
                .map(|r| r.node.as_deref())
                .collect::<Vec<_>>(),
            [Some("node-2"), Some("node-3"), None]
        );
        step(&mut a, d, Changed);
        let cur = a.current().unwrap();
        let readers: Vec<String> = cur.readers.iter().map(|r| r.address.to_string()).collect();
        assert_eq!(readers, [M2, M3], "the foreign one left out");
        assert!(foreign_of(&a)
            .iter()
            .any(|f| f.1 == "reader" && f.2 == FOREIGN));
        // Same routing, other readers: taken, the routing unchanged.
        let mut t = topo(2, 0, M1);
        t.readers = vec![];
        step(&mut a, from_topology(&t, 1).unwrap().0, Unchanged);
        assert!(a.current().unwrap().readers.is_empty());
        // The Sentinels' decisions carry none; the stream breaking forgets them.
        let mut t = topo(3, 0, M1);
        t.readers = vec![M2.into()];
        step(&mut a, from_topology(&t, 1).unwrap().0, Unchanged);
        assert!(sentinel(0, M1).readers.is_empty());
        assert!(a.clear_readers());
        assert!(a.current().unwrap().readers.is_empty());
        assert!(!a.clear_readers(), "nothing left to forget");
    }
}
