//! The decision logic: from the agents' latest reports to one topology per master group.
//!
//! Pure code: no I/O, no clock reads; the caller passes the time in ([`Now`]). The server
//! keeps one [`GroupState`] per master group behind a mutex, feeds it reports
//! ([`GroupState::apply_report`]) and re-derives on every report and on a timer
//! ([`GroupState::refresh`]), publishing whenever the version moves.
//!
//! Who is master, in order:
//! 1. only fresh reports count (younger than `stale_after`);
//! 2. the Sentinels' view: the master the fresh reachable Sentinels name, by the one rule of
//!    [`redis_ha_sentinel::named_master`] with quorum 2, one vote per agent (highest
//!    `config_epoch`; at one epoch more votes, more settled votes, the smallest address);
//! 3. early promotion: a failover leader's `+selected-slave` for a higher epoch whose node
//!    already reports `role:master`, corroborated by a second agent, wins over the Sentinels'
//!    (older) view — this is what lets the proxy switch before `+switch-master`;
//! 4. with no view at all the last decision is kept ("last-known");
//! 5. a floor: the published epoch never goes back, except to the master a quorum of Sentinels
//!    has named for longer than `failover_timeout` (an unconfirmed promotion, or an epoch the
//!    Sentinels never reached, is withdrawn then: nothing sticks).
//!
//! Corroboration: reports are evidence, not orders. In step 2 a (config epoch, master) pair
//! counts only when the Sentinels of two different agents name it (one vote per agent); in
//! step 3 a promotion counts only when the selected node's *own* agent (its configured owner)
//! says `role:master` and the Sentinel of an agent other than the one that reported the
//! `+selected-slave` has reached the promotion's epoch (voters move their current epoch when
//! they vote for the leader, before it selects a replica). So one agent, whatever it reports,
//! can neither name a master nor raise the floor ([`corroborated_promotion`],
//! [`epoch_witnessed`]); claims of an epoch nobody else has reached are counted per report and
//! logged once ([`GroupState::take_uncorroborated`]).
//!
//! A master is only ever a configured node ([`NodeList`]): a Sentinel view naming another
//! address (or coming from a Sentinel not in the list) and a promotion selecting another
//! address are left out of steps 2 and 3, so they can neither be published nor move the
//! floor. Each such sighting is reported once per report ([`GroupState::take_foreign`]).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis_ha_common::HostPort;
use redis_ha_proto::v1::{
    AgentReport, Event, Health, LinkState, MasterSource, NodeView, Reach, ReplicaLink, Role,
    SentinelEvent, SentinelStatus, SentinelView, Topology,
};

use crate::crash::{decide as decide_crash, CrashInput, CrashSettings, Verdict, Witness};
use crate::readers::{self, MasterSees, ReadCandidate, ReadLimits, ReadNote};
use redis_ha_sentinel::events::{InstanceType, Payload};
use redis_ha_sentinel::reply::FLAG_FAILOVER_IN_PROGRESS;
use redis_ha_sentinel::{named_master, parse_event, MasterView};

/// `master_source`: named by the Sentinels' highest config epoch.
pub const SOURCE_SENTINEL: MasterSource = MasterSource::SentinelQuorum;
/// `master_source`: selected by the failover leader and confirmed `role:master`, before the
/// Sentinels announced it.
pub const SOURCE_PROMOTED: MasterSource = MasterSource::Promoted;
/// `master_source`: nobody fresh names a master (or only an older epoch): the last decision.
pub const SOURCE_LAST_KNOWN: MasterSource = MasterSource::LastKnown;
/// `master_source`: no master known.
pub const SOURCE_NONE: MasterSource = MasterSource::None;

/// Sentinel flag (in `SentinelStatus.master_flags`) set while it runs a failover.
const FLAG_FAILOVER: &str = FLAG_FAILOVER_IN_PROGRESS;
/// A promotion that neither completes nor aborts stops counting as "in progress" after this
/// (a leader that died mid-failover publishes no abort).
const PROMOTION_PENDING_LIMIT: Duration = Duration::from_secs(60);
/// Promotions remembered at most (one per failover epoch; old ones are useless).
const MAX_PROMOTIONS: usize = 32;
/// Independent agents needed to accept a new master or epoch (see the module documentation).
pub const CORROBORATION: usize = 2;
/// Selections remembered per failover epoch (one per reporting agent).
const MAX_SELECTIONS: usize = 16;

/// The time of a derivation: a monotonic instant for ages and staleness (immune to wall-clock
/// jumps) and the wall clock for the timestamps that go on the wire.
#[derive(Clone, Copy, Debug)]
pub struct Now {
    pub at: Instant,
    pub wall_ms: i64,
}

impl Now {
    /// The current time.
    pub fn system() -> Self {
        Self {
            at: Instant::now(),
            wall_ms: redis_ha_common::time::now_ms(),
        }
    }
}

/// The configured nodes: their Redis and Sentinel addresses, compared by [`addr_key`]
/// (case-insensitive host, IPv6 with or without brackets; names are not resolved). Empty:
/// unrestricted, every reported address is accepted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeList {
    redis: BTreeSet<String>,
    sentinels: BTreeSet<String>,
    /// Redis address → the id of the agent that owns the node, when configured.
    owners: BTreeMap<String, String>,
}

impl NodeList {
    /// The list of these (Redis, Sentinel) address pairs.
    pub fn new<'a>(nodes: impl IntoIterator<Item = (&'a HostPort, &'a HostPort)>) -> Self {
        let mut list = Self::default();
        for (redis, sentinel) in nodes {
            list.redis.insert(addr_key(&redis.to_string()));
            list.sentinels.insert(addr_key(&sentinel.to_string()));
        }
        list
    }

    /// The list of these (agent id, Redis address, Sentinel address) nodes: as [`NodeList::new`],
    /// and only the node's own agent (its id) speaks for its role.
    pub fn with_owners<'a>(
        nodes: impl IntoIterator<Item = (&'a str, &'a HostPort, &'a HostPort)>,
    ) -> Self {
        let mut list = Self::default();
        for (id, redis, sentinel) in nodes {
            let key = addr_key(&redis.to_string());
            list.redis.insert(key.clone());
            list.sentinels.insert(addr_key(&sentinel.to_string()));
            if !id.trim().is_empty() {
                list.owners.insert(key, id.to_owned());
            }
        }
        list
    }

    /// May `agent` speak for the role of the node at (normalized) `key`? Its configured owner
    /// only; anyone when no owner is configured for it.
    pub fn owns(&self, agent: &str, key: &str) -> bool {
        self.owners.get(key).is_none_or(|owner| owner == agent)
    }

    /// How many independent agents must agree before a master or an epoch is accepted: two;
    /// one in a group of a single configured node (nobody to corroborate it) and without a
    /// list (the old, unrestricted behaviour: no node identities to hold reports against).
    pub fn corroboration(&self) -> usize {
        if self.redis.len() <= 1 {
            1
        } else {
            CORROBORATION
        }
    }

    /// Does `agent` count as one of the group's agents? Any agent without configured owners;
    /// with them, an owner of a node.
    pub fn is_agent(&self, agent: &str) -> bool {
        self.owners.is_empty() || self.owners.values().any(|o| o == agent)
    }

    /// False when no node is configured (every address is accepted).
    pub fn is_restricted(&self) -> bool {
        !self.redis.is_empty()
    }

    /// May the node at `addr` be master?
    pub fn allows_redis(&self, addr: &str) -> bool {
        !self.is_restricted() || self.redis.contains(&addr_key(addr))
    }

    /// Is `addr` a configured Sentinel (one whose view counts, one the coordinator may ask)?
    pub fn allows_sentinel(&self, addr: &str) -> bool {
        !self.is_restricted() || self.sentinels.contains(&addr_key(addr))
    }
}

/// What names an address outside the node list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ForeignKind {
    /// The agent's own Redis address.
    Node,
    /// The agent's Sentinel's address.
    Sentinel,
    /// The master the agent's Sentinel names.
    SentinelMaster,
    /// The replica a `+selected-slave` (or `+failover-state-send-slaveof-noone`) selects.
    Promotion,
}

impl ForeignKind {
    /// The metric label and log field.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Node => "node",
            Self::Sentinel => "sentinel",
            Self::SentinelMaster => "sentinel-master",
            Self::Promotion => "promotion",
        }
    }
}

/// An applied report named an address outside the node list (ignored for deciding the master).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Foreign {
    pub agent: String,
    pub kind: ForeignKind,
    /// As the report spelled it.
    pub address: String,
    /// The first time this agent named this address so: to be logged (later ones only counted).
    pub first: bool,
}

/// (agent, kind, address) sightings remembered for "log once"; beyond, sightings are only counted.
const MAX_FOREIGN_LOGGED: usize = 1024;

/// Per-group tuning, from the configuration.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Reports older than this are stale: their node is UNKNOWN and they do not vote.
    pub stale_after: Duration,
    /// Events kept in the ring.
    pub event_history: usize,
    pub crash: CrashSettings,
    /// The configured nodes: the only possible masters and the only Sentinels that count.
    pub nodes: NodeList,
    /// Sentinel's `failover-timeout`: a floor the quorum of Sentinels contradicts (names a
    /// lower epoch) for this long is withdrawn.
    pub failover_timeout: Duration,
    /// Which replicas serve the read endpoint ([`crate::readers`]).
    pub read_limits: ReadLimits,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            stale_after: Duration::from_millis(3000),
            event_history: 256,
            crash: CrashSettings::default(),
            nodes: NodeList::default(),
            failover_timeout: Duration::from_millis(10_000),
            read_limits: ReadLimits::default(),
        }
    }
}

/// A crash failover to ask a Sentinel for ([`GroupState::crash_failover_due`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrashRequest {
    pub master: String,
    pub epoch: u64,
    /// Why, for the log and the event.
    pub evidence: String,
}

/// A master decision: which node, at which config epoch, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub epoch: u64,
    pub master_address: String,
    pub source: MasterSource,
}

/// What happened to a report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReportOutcome {
    Applied,
    /// Not newer than the report already held for this agent (lower or equal sequence from the
    /// same agent process, or an older agent process): ignored, its events too.
    Ignored {
        held_started_at_ms: i64,
        held_sequence: u64,
    },
}

/// The result of a refresh: the topology (with its version) and whether the version moved.
#[derive(Clone, Debug)]
pub struct Refresh {
    pub topology: Arc<Topology>,
    pub changed: bool,
}

#[derive(Clone, Debug)]
struct AgentEntry {
    report: AgentReport,
    received: Instant,
}

#[derive(Clone, Debug)]
struct Promotion {
    /// Reporting agent → the replica its Sentinel's `+selected-slave` selected (normalized).
    by: BTreeMap<String, String>,
    learned: Instant,
}

impl Promotion {
    /// The selected replica, unless the reports disagree (a contested epoch promotes no one
    /// early: the Sentinels' quorum decides it).
    fn address(&self) -> Option<&str> {
        let mut it = self.by.values();
        let first = it.next()?;
        it.all(|a| a == first).then_some(first.as_str())
    }
}

/// One fresh agent's evidence for the corroboration rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Testimony {
    pub agent: String,
    /// Its node's normalized address.
    pub node: String,
    /// Its node is reachable and says role:master, and the agent is the node's configured
    /// owner (another agent cannot speak for a node's role).
    pub node_is_master: bool,
    /// The highest epoch its configured, reachable Sentinel has reached (current or config
    /// epoch); `None` without one.
    pub sentinel_epoch: Option<u64>,
}

/// Has the Sentinel of an agent other than `claimant` reached `epoch`? A Sentinel's epoch
/// moves only when it takes part in an election (its vote) or learns a newer configuration,
/// so this is a second, independent witness that a failover at `epoch` exists.
pub fn epoch_witnessed(epoch: u64, claimant: &str, testimony: &[Testimony]) -> bool {
    testimony
        .iter()
        .any(|t| t.agent != claimant && t.sentinel_epoch.is_some_and(|e| e >= epoch))
}

/// The corroboration rule of an early promotion: `selected` (normalized), selected for `epoch`
/// by the Sentinels of the `claimants` (the agents that reported the `+selected-slave`), is
/// accepted only when its own agent says role:master and the epoch is witnessed by an agent
/// other than a claimant ([`epoch_witnessed`]). Two different agents either way: the leader's
/// and the promoted node's, or, when the leader sits beside the promoted node, the leader's
/// and a voter's.
pub fn corroborated_promotion<'a>(
    epoch: u64,
    selected: &str,
    claimants: impl IntoIterator<Item = &'a str>,
    testimony: &[Testimony],
) -> bool {
    testimony
        .iter()
        .any(|t| t.node == selected && t.node_is_master)
        && claimants
            .into_iter()
            .any(|c| epoch_witnessed(epoch, c, testimony))
}

/// What a claim that nobody corroborates said.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ClaimKind {
    /// The agent's Sentinel names a master at an epoch no other agent's Sentinel reached.
    SentinelView,
    /// A `+selected-slave` for such an epoch.
    Promotion,
}

impl ClaimKind {
    /// The metric label and log field.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SentinelView => "sentinel-view",
            Self::Promotion => "promotion",
        }
    }
}

/// A report claimed a new epoch (above the floor) that no other agent's Sentinel has reached:
/// ignored for deciding the master, counted and logged once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uncorroborated {
    pub agent: String,
    pub kind: ClaimKind,
    pub epoch: u64,
    pub address: String,
    /// The first time this agent claimed this (kind, epoch, address): to be logged.
    pub first: bool,
}

/// The floor is above what the quorum of Sentinels names: since when, and what they name.
#[derive(Clone, Debug, PartialEq, Eq)]
struct BelowFloor {
    epoch: u64,
    master: String,
    since: Instant,
}

/// Everything the coordinator knows about one master group.
#[derive(Debug)]
pub struct GroupState {
    name: String,
    settings: Settings,
    /// Latest report per agent id.
    agents: BTreeMap<String, AgentEntry>,
    /// Failover epoch → the replica the leader selected.
    promotions: BTreeMap<u64, Promotion>,
    /// The floor: the newest decision taken; never replaced by a lower epoch.
    decided: Option<Decision>,
    /// The newest decision the Sentinels themselves made: where a revoked promotion falls back.
    sentinel_decided: Option<Decision>,
    events: VecDeque<Event>,
    version: u64,
    /// The last derived topology (its version is `version`).
    published: Option<Arc<Topology>>,
    /// The master and epoch of the last crash failover requested: never twice for one.
    crash_requested: Option<(String, u64)>,
    /// Foreign addresses found in reports since the last [`GroupState::take_foreign`].
    foreign: Vec<Foreign>,
    /// (agent, kind, normalized address) already reported as `first`.
    foreign_logged: BTreeSet<(String, ForeignKind, String)>,
    /// Uncorroborated claims since the last [`GroupState::take_uncorroborated`].
    uncorroborated: Vec<Uncorroborated>,
    /// (agent, kind, epoch, normalized address) already reported as `first`.
    uncorroborated_logged: BTreeSet<(String, ClaimKind, u64, String)>,
    /// Since when the quorum of Sentinels names a lower epoch than the floor.
    below_floor: Option<BelowFloor>,
    /// Epochs whose promotions were withdrawn (never confirmed within failover-timeout): they
    /// are not learned again. Only those epochs: a forged epoch must not disable the early
    /// switch of the real ones below it.
    withdrawn: BTreeSet<u64>,
}

/// Why the floor is dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Revoke {
    /// A promotion the promoted node itself now denies (reports role:replica) and the
    /// Sentinels never confirmed: back to the Sentinels' last decision.
    Denied(Decision),
    /// The quorum of Sentinels has named `to`, below the floor, for longer than
    /// failover-timeout: the floor comes down to it.
    Expired { floor: Decision, to: Decision },
}

/// What one derivation found, beyond the topology itself.
#[derive(Debug)]
struct Derivation {
    topology: Topology,
    /// A decision newer than (or as new as) the floor: becomes the floor.
    adopt: Option<Decision>,
    /// The floor is dropped: see [`Revoke`].
    revoke: Option<Revoke>,
    /// The Sentinels' view (E_s and the master they name there): promotions below it, or
    /// at it naming the same node, are settled.
    sentinel_epoch: Option<u64>,
    sentinel_master: String,
}

impl GroupState {
    pub fn new(name: impl Into<String>, settings: Settings) -> Self {
        Self {
            name: name.into(),
            settings,
            agents: BTreeMap::new(),
            promotions: BTreeMap::new(),
            decided: None,
            sentinel_decided: None,
            events: VecDeque::new(),
            version: 0,
            published: None,
            crash_requested: None,
            foreign: Vec::new(),
            foreign_logged: BTreeSet::new(),
            uncorroborated: Vec::new(),
            uncorroborated_logged: BTreeSet::new(),
            below_floor: None,
            withdrawn: BTreeSet::new(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The current topology version (0 before the first refresh).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The floor: the newest master decision, if any.
    pub fn decided(&self) -> Option<&Decision> {
        self.decided.as_ref()
    }

    /// Sentinel addresses the agents reported, fresh and reachable ones first; only
    /// configured ones (see [`NodeList`]): the coordinator never asks, nor sends the password
    /// to, another address.
    pub fn sentinel_addresses(&self, now: Now) -> Vec<String> {
        let mut good = Vec::new();
        let mut other = Vec::new();
        for entry in self.agents.values() {
            let Some(s) = entry.report.sentinel.as_ref() else {
                continue;
            };
            if s.address.trim().is_empty() || !self.settings.nodes.allows_sentinel(&s.address) {
                continue;
            }
            if self.is_fresh(entry, now) && s.reachable {
                good.push(s.address.clone());
            } else {
                other.push(s.address.clone());
            }
        }
        let mut seen = BTreeSet::new();
        good.into_iter()
            .chain(other)
            .filter(|a| seen.insert(addr_key(a)))
            .collect()
    }

    /// The addresses outside the node list found in the reports applied since the last call
    /// (one entry per report and address), for the metrics and the log.
    pub fn take_foreign(&mut self) -> Vec<Foreign> {
        std::mem::take(&mut self.foreign)
    }

    /// The claims of a new epoch no other agent corroborated, found in the reports applied
    /// since the last call (one entry per report and claim), for the metrics and the log.
    pub fn take_uncorroborated(&mut self) -> Vec<Uncorroborated> {
        std::mem::take(&mut self.uncorroborated)
    }

    /// Records that `agent` claimed `epoch` (above the floor) for `address` and no other
    /// agent's Sentinel has reached it.
    fn note_uncorroborated(&mut self, agent: &str, kind: ClaimKind, epoch: u64, address: &str) {
        let key = (agent.to_owned(), kind, epoch, addr_key(address));
        let first = !self.uncorroborated_logged.contains(&key)
            && self.uncorroborated_logged.len() < MAX_FOREIGN_LOGGED
            && self.uncorroborated_logged.insert(key);
        self.uncorroborated.push(Uncorroborated {
            agent: agent.to_owned(),
            kind,
            epoch,
            address: address.to_owned(),
            first,
        });
    }

    /// The evidence of the fresh agents other than `except` (the one whose report is being
    /// applied), for [`epoch_witnessed`].
    fn others_testimony(&self, except: &str, now: Now) -> Vec<Testimony> {
        let fresh: Vec<&AgentEntry> = self
            .agents
            .values()
            .filter(|e| e.report.agent_id != except && self.is_fresh(e, now))
            .collect();
        self.testimony(&fresh)
    }

    /// Each fresh agent's evidence for the corroboration rule.
    fn testimony(&self, fresh: &[&AgentEntry]) -> Vec<Testimony> {
        let nodes = &self.settings.nodes;
        fresh
            .iter()
            .map(|e| {
                let agent = e.report.agent_id.clone();
                let redis = e.report.redis.as_ref();
                let node = redis.map(|r| addr_key(&r.address)).unwrap_or_default();
                let node_is_master = !node.is_empty()
                    && nodes.owns(&agent, &node)
                    && redis.is_some_and(|r| r.reachable && r.role == Role::Master as i32);
                let sentinel_epoch = e
                    .report
                    .sentinel
                    .as_ref()
                    .filter(|s| s.reachable && nodes.allows_sentinel(&s.address))
                    .map(|s| s.current_epoch.max(s.config_epoch));
                Testimony {
                    agent,
                    node,
                    node_is_master,
                    sentinel_epoch,
                }
            })
            .collect()
    }

    /// Records that `agent` named `address` (outside the node list) as `kind`.
    fn note_foreign(&mut self, agent: &str, kind: ForeignKind, address: &str) {
        let key = (agent.to_owned(), kind, addr_key(address));
        let first = !self.foreign_logged.contains(&key)
            && self.foreign_logged.len() < MAX_FOREIGN_LOGGED
            && self.foreign_logged.insert(key);
        self.foreign.push(Foreign {
            agent: agent.to_owned(),
            kind,
            address: address.to_owned(),
            first,
        });
    }

    /// Notes every address of `report` outside the node list (its events' are noted as they
    /// are taken).
    fn note_foreign_addresses(&mut self, report: &AgentReport) {
        let nodes = &self.settings.nodes;
        let mut found = Vec::new();
        if let Some(r) = &report.redis {
            if !r.address.trim().is_empty() && !nodes.allows_redis(&r.address) {
                found.push((ForeignKind::Node, r.address.clone()));
            }
        }
        if let Some(s) = &report.sentinel {
            if !s.address.trim().is_empty() && !nodes.allows_sentinel(&s.address) {
                found.push((ForeignKind::Sentinel, s.address.clone()));
            }
            if !s.master_address.trim().is_empty() && !nodes.allows_redis(&s.master_address) {
                found.push((ForeignKind::SentinelMaster, s.master_address.clone()));
            }
        }
        for (kind, address) in found {
            self.note_foreign(&report.agent_id, kind, &address);
        }
    }

    /// The last `limit` events (0 = all kept), oldest first.
    pub fn events(&self, limit: usize) -> Vec<Event> {
        let skip = if limit == 0 {
            0
        } else {
            self.events.len().saturating_sub(limit)
        };
        self.events.iter().skip(skip).cloned().collect()
    }

    /// Takes an agent's report if it is newer than the one held: a higher
    /// `agent_started_at_ms` (the agent restarted), or the same and a higher `sequence`.
    /// A stale held report is replaced by anything, so an agent whose clock went back after
    /// a restart is not locked out. Records the report's Sentinel events and learns
    /// promotions from `+selected-slave`.
    pub fn apply_report(&mut self, report: AgentReport, now: Now) -> ReportOutcome {
        if let Some(held) = self.agents.get(&report.agent_id) {
            let newer = report.agent_started_at_ms > held.report.agent_started_at_ms
                || (report.agent_started_at_ms == held.report.agent_started_at_ms
                    && report.sequence > held.report.sequence);
            if !newer && self.is_fresh(held, now) {
                return ReportOutcome::Ignored {
                    held_started_at_ms: held.report.agent_started_at_ms,
                    held_sequence: held.report.sequence,
                };
            }
        }
        let current_epoch = report
            .sentinel
            .as_ref()
            .map(|s| s.current_epoch)
            .unwrap_or(0);
        self.note_foreign_addresses(&report);
        // Claims of a new epoch nobody else has reached (only once a floor exists: right
        // after a start every first report would look so).
        let floor = self
            .decided
            .as_ref()
            .map(|d| d.epoch)
            .filter(|_| self.settings.nodes.corroboration() >= 2);
        let others = self.others_testimony(&report.agent_id, now);
        if let (Some(floor), Some(s)) = (floor, report.sentinel.as_ref()) {
            if s.reachable
                && s.config_epoch > floor
                && self.settings.nodes.allows_sentinel(&s.address)
                && self.settings.nodes.allows_redis(&s.master_address)
                && !epoch_witnessed(s.config_epoch, &report.agent_id, &others)
            {
                let (agent, epoch, address) = (
                    report.agent_id.clone(),
                    s.config_epoch,
                    s.master_address.clone(),
                );
                self.note_uncorroborated(&agent, ClaimKind::SentinelView, epoch, &address);
            }
        }
        for ev in &report.events {
            self.take_sentinel_event(&report.agent_id, ev, current_epoch, &others, now);
        }
        let mut report = report;
        // The events are in the ring now; holding them again in the report only costs memory.
        report.events.clear();
        self.agents.insert(
            report.agent_id.clone(),
            AgentEntry {
                report,
                received: now.at,
            },
        );
        ReportOutcome::Applied
    }

    fn take_sentinel_event(
        &mut self,
        agent: &str,
        ev: &SentinelEvent,
        current_epoch: u64,
        others: &[Testimony],
        now: Now,
    ) {
        let at_ms = if ev.received_at_ms > 0 {
            ev.received_at_ms
        } else {
            now.wall_ms
        };
        let message = if ev.payload.is_empty() {
            ev.kind.clone()
        } else {
            format!("{} {}", ev.kind, ev.payload)
        };
        self.push_event(Event {
            at_ms,
            kind: "sentinel".into(),
            node: agent.to_owned(),
            message,
            topology_version: self.version,
            switch_lag_ms: 0,
        });

        let epoch = if ev.epoch > 0 {
            ev.epoch
        } else {
            current_epoch
        };
        if epoch == 0 {
            return;
        }
        // Both events name the replica the leader picked; the second is a fallback in case
        // the agent missed the first.
        if ev.kind == "+selected-slave" || ev.kind == "+failover-state-send-slaveof-noone" {
            if let Some(address) = selected_replica(&ev.payload, &self.name) {
                if !self.settings.nodes.allows_redis(&address) {
                    // Not a configured node: never a promotion.
                    self.note_foreign(agent, ForeignKind::Promotion, &address);
                    return;
                }
                let floor = self.decided.as_ref().map(|d| d.epoch);
                let settled = floor.is_some_and(|f| epoch < f) || self.withdrawn.contains(&epoch);
                let counted = self.settings.nodes.corroboration() >= 2;
                if counted
                    && floor.is_some_and(|f| epoch > f)
                    && !epoch_witnessed(epoch, agent, others)
                {
                    self.note_uncorroborated(agent, ClaimKind::Promotion, epoch, &address);
                }
                if !settled {
                    let p = self.promotions.entry(epoch).or_insert(Promotion {
                        by: BTreeMap::new(),
                        learned: now.at,
                    });
                    if p.by.len() < MAX_SELECTIONS || p.by.contains_key(agent) {
                        p.by.insert(agent.to_owned(), address);
                    }
                    while self.promotions.len() > MAX_PROMOTIONS {
                        self.promotions.pop_first();
                    }
                }
            }
        } else if ev.kind.starts_with("-failover-abort")
            && event_group_matches(&ev.kind, &ev.payload, &self.name)
        {
            // That failover will not promote anyone: stop waiting for it (only for the
            // selection this agent reported: one agent cannot cancel another's).
            let is_floor = self.decided.as_ref().is_some_and(|d| d.epoch == epoch);
            if !is_floor {
                if let Some(p) = self.promotions.get_mut(&epoch) {
                    p.by.remove(agent);
                    if p.by.is_empty() {
                        self.promotions.remove(&epoch);
                    }
                }
            }
        }
    }

    fn push_event(&mut self, event: Event) {
        while self.events.len() >= self.settings.event_history.max(1) {
            self.events.pop_front();
        }
        self.events.push_back(event);
    }

    fn is_fresh(&self, entry: &AgentEntry, now: Now) -> bool {
        now.at.saturating_duration_since(entry.received) < self.settings.stale_after
    }

    /// The crash-failover rule ([`crate::crash::decide`]) on the published topology and the
    /// fresh reports: `Some` when a Sentinel must be asked for the failover now. Recorded, so
    /// the same master at the same epoch is never asked for twice.
    pub fn crash_failover_due(&mut self, now: Now) -> Option<CrashRequest> {
        let (input, evidence) = self.crash_input(now)?;
        match decide_crash(&input, &self.settings.crash) {
            Verdict::Failover => {
                self.crash_requested = Some((input.master.clone(), input.epoch));
                let unreachable = input
                    .witnesses
                    .iter()
                    .filter(|w| w.watches_master && w.reach != Reach::Up)
                    .count();
                let message = format!(
                    "crash failover: master {} is gone ({evidence}), {unreachable} of {} agents cannot reach it; asking a Sentinel for the failover now",
                    input.master, input.agents
                );
                self.push_event(Event {
                    at_ms: now.wall_ms,
                    kind: "crash-failover".into(),
                    node: self
                        .entry_for(&input.master, now)
                        .map(|e| e.report.agent_id.clone())
                        .unwrap_or_default(),
                    message,
                    topology_version: self.version,
                    switch_lag_ms: 0,
                });
                Some(CrashRequest {
                    master: input.master,
                    epoch: input.epoch,
                    evidence,
                })
            }
            Verdict::Hold(_) => None,
        }
    }

    /// Records how a crash-failover request ended, in the event ring. `retry`: no Sentinel
    /// answered at all, so asking again cannot start a second failover.
    /// Records an operator command's outcome (`kind`: "switchover") in the event history.
    pub fn note_event(&mut self, kind: &str, node: &str, message: String, now: Now) {
        self.push_event(Event {
            at_ms: now.wall_ms,
            kind: kind.to_owned(),
            node: node.to_owned(),
            message,
            topology_version: self.version,
            switch_lag_ms: 0,
        });
    }

    pub fn crash_failover_result(
        &mut self,
        request: &CrashRequest,
        outcome: &str,
        retry: bool,
        now: Now,
    ) {
        if retry && self.crash_requested.as_ref() == Some(&(request.master.clone(), request.epoch))
        {
            self.crash_requested = None;
        }
        self.push_event(Event {
            at_ms: now.wall_ms,
            kind: "crash-failover".into(),
            node: String::new(),
            message: format!(
                "crash failover of master {} (epoch {}): {outcome}",
                request.master, request.epoch
            ),
            topology_version: self.version,
            switch_lag_ms: 0,
        });
    }

    /// The facts of the crash rule, and the master's own agent's evidence; `None` before the
    /// first derivation.
    fn crash_input(&self, now: Now) -> Option<(CrashInput, String)> {
        let t = self.published.as_deref()?;
        let master = if t.master_address.trim().is_empty() {
            String::new()
        } else {
            addr_key(&t.master_address)
        };
        let fresh: Vec<&AgentEntry> = self
            .agents
            .values()
            .filter(|e| self.is_fresh(e, now))
            .collect();
        // Only the configured Sentinels' epochs count (see [`NodeList`]).
        let sentinels: Vec<&SentinelStatus> = fresh
            .iter()
            .filter_map(|e| e.report.sentinel.as_ref())
            .filter(|s| s.reachable && self.settings.nodes.allows_sentinel(&s.address))
            .collect();
        let mut evidence = String::new();
        let witnesses = fresh
            .iter()
            .filter_map(|e| {
                let w = e.report.master_watch.as_ref()?;
                let own_node = e
                    .report
                    .redis
                    .as_ref()
                    .is_some_and(|r| addr_key(&r.address) == master);
                let watches_master = !master.is_empty() && addr_key(&w.address) == master;
                if own_node && watches_master && w.reach() == Reach::Gone {
                    evidence = format!("{}: {}", e.report.agent_id, w.evidence);
                }
                Some(Witness {
                    agent: e.report.agent_id.clone(),
                    own_node,
                    watches_master,
                    reach: w.reach(),
                })
            })
            .collect();
        let replica_up = fresh.iter().any(|e| {
            e.report
                .redis
                .as_ref()
                .is_some_and(|r| r.reachable && r.role == Role::Replica as i32)
        });
        let newer_epoch = sentinels.iter().any(|s| s.current_epoch > t.config_epoch);
        let input = CrashInput {
            newer_epoch,
            already_requested: self
                .crash_requested
                .as_ref()
                .is_some_and(|(m, ep)| *m == master && *ep == t.config_epoch),
            master,
            epoch: t.config_epoch,
            source: t.master_source(),
            failover_in_progress: t.failover_in_progress,
            agents: self.agents.len(),
            witnesses,
            replica_up,
        };
        Some((input, evidence))
    }

    /// Re-derives the topology at `now`, moves the floor, bumps the version when anything but
    /// the measurement fields changed, and records the change events.
    pub fn refresh(&mut self, now: Now) -> Refresh {
        let mut d = self.decide(now);

        if let Some(revoke) = d.revoke.take() {
            let message = match revoke {
                Revoke::Denied(revoked) => {
                    self.promotions.remove(&revoked.epoch);
                    self.decided = self.sentinel_decided.clone();
                    format!(
                        "promotion of {} at epoch {} revoked: it reports role:replica and the Sentinels never confirmed it",
                        revoked.master_address, revoked.epoch
                    )
                }
                Revoke::Expired { floor, to } => {
                    // Whatever was promoted above the quorum's epoch was never confirmed:
                    // withdrawn, and not learned again.
                    let above: Vec<u64> = self
                        .promotions
                        .keys()
                        .copied()
                        .filter(|&e| e > to.epoch)
                        .collect();
                    self.withdrawn.extend(above);
                    while self.withdrawn.len() > MAX_PROMOTIONS {
                        self.withdrawn.pop_first();
                    }
                    self.promotions.retain(|&e, _| e <= to.epoch);
                    self.decided = Some(to.clone());
                    self.sentinel_decided = Some(to.clone());
                    self.below_floor = None;
                    format!(
                        "{} at epoch {} withdrawn: a quorum of Sentinels has named {} at epoch {} for longer than the failover-timeout ({} ms)",
                        floor.master_address,
                        floor.epoch,
                        to.master_address,
                        to.epoch,
                        self.settings.failover_timeout.as_millis()
                    )
                }
            };
            self.push_event(Event {
                at_ms: now.wall_ms,
                kind: "topology".into(),
                node: String::new(),
                message,
                topology_version: self.version,
                switch_lag_ms: 0,
            });
            // Again without the revoked promotion, so nothing of it shows.
            d = self.decide(now);
        }
        if let Some(adopt) = d.adopt {
            if adopt.source == SOURCE_SENTINEL
                && self
                    .sentinel_decided
                    .as_ref()
                    .is_none_or(|s| adopt.epoch >= s.epoch)
            {
                self.sentinel_decided = Some(adopt.clone());
            }
            self.decided = Some(adopt);
        }
        self.track_below_floor(d.sentinel_epoch, &d.sentinel_master, now);
        self.prune_promotions(d.sentinel_epoch, &d.sentinel_master, now);

        let mut topology = d.topology;
        let previous = self.published.clone();
        let changed = previous
            .as_deref()
            .is_none_or(|p| !same_apart_from_measurements(p, &topology));
        if changed {
            self.version += 1;
        } else if let Some(p) = &previous {
            // The same version keeps the trace of the span that published it.
            topology.trace_parent = p.trace_parent.clone();
        }
        topology.version = self.version;
        if changed {
            let empty = Topology::default();
            self.record_changes(previous.as_deref().unwrap_or(&empty), &topology, now);
        }
        let topology = Arc::new(topology);
        self.published = Some(Arc::clone(&topology));
        Refresh { topology, changed }
    }

    /// Records the W3C `traceparent` of the span that publishes the current version (see
    /// `Topology.trace_parent`) and returns the topology with it.
    pub fn set_trace_parent(&mut self, trace_parent: String) -> Option<Arc<Topology>> {
        let current = self.published.as_deref()?;
        if current.trace_parent == trace_parent {
            return self.published.clone();
        }
        let mut t = current.clone();
        t.trace_parent = trace_parent;
        let t = Arc::new(t);
        self.published = Some(Arc::clone(&t));
        Some(t)
    }

    /// Starts (or keeps, or ends) the clock of a quorum of Sentinels naming a lower epoch than
    /// the floor; without a quorum view it is left as it is.
    fn track_below_floor(&mut self, sentinel_epoch: Option<u64>, sentinel_master: &str, now: Now) {
        let (Some(es), Some(floor)) = (sentinel_epoch, self.decided.as_ref()) else {
            return;
        };
        if es >= floor.epoch {
            self.below_floor = None;
            return;
        }
        let same = self
            .below_floor
            .as_ref()
            .is_some_and(|b| b.epoch == es && b.master == sentinel_master);
        if !same {
            self.below_floor = Some(BelowFloor {
                epoch: es,
                master: sentinel_master.to_owned(),
                since: now.at,
            });
        }
    }

    /// Drops promotions that can no longer matter: settled by the Sentinels, below the
    /// floor, or pending for too long. The one the floor stands on is kept, so the decision
    /// keeps its source until the Sentinels catch up.
    fn prune_promotions(&mut self, sentinel_epoch: Option<u64>, sentinel_master: &str, now: Now) {
        let floor = self.decided.as_ref().map(|d| d.epoch).unwrap_or(0);
        let es = sentinel_epoch.unwrap_or(0);
        self.promotions.retain(|&epoch, p| {
            let unsettled = match p.address() {
                Some(a) => unsettled_promotion(epoch, a, es, sentinel_master),
                None => epoch > es,
            };
            if !unsettled || epoch < floor {
                return false;
            }
            epoch == floor || now.at.saturating_duration_since(p.learned) < PROMOTION_PENDING_LIMIT
        });
    }

    fn record_changes(&mut self, old: &Topology, new: &Topology, now: Now) {
        let version = new.version;
        let mut out: Vec<Event> = Vec::new();
        let mut event = |kind: &str, node: &str, message: String, switch_lag_ms: u64| {
            out.push(Event {
                at_ms: now.wall_ms,
                kind: kind.into(),
                node: node.into(),
                message,
                topology_version: version,
                switch_lag_ms,
            })
        };

        if addr_key(&old.master_address) != addr_key(&new.master_address) {
            let lag = if old.master_address.is_empty() || new.master_address.is_empty() {
                // No switch happened (coordinator start, or the master is lost).
                0
            } else {
                self.role_changed_at(&new.master_address)
                    .filter(|&t| t > 0 && t <= now.wall_ms)
                    .map(|t| u64::try_from(now.wall_ms - t).unwrap_or(0))
                    .unwrap_or(0)
            };
            event(
                "master-changed",
                &new.master_node,
                format!(
                    "{} -> {} (epoch {}, source {})",
                    or_none(&old.master_address),
                    or_none(&new.master_address),
                    new.config_epoch,
                    new.master_source()
                ),
                lag,
            );
        }

        let old_split: BTreeSet<&str> = old.split_brain.iter().map(String::as_str).collect();
        let new_split: BTreeSet<&str> = new.split_brain.iter().map(String::as_str).collect();
        for addr in new_split.difference(&old_split) {
            event(
                "split-brain",
                node_of(new, addr),
                format!(
                    "{addr} claims role:master but the master is {} (epoch {})",
                    or_none(&new.master_address),
                    new.config_epoch
                ),
                0,
            );
        }
        for addr in old_split.difference(&new_split) {
            event(
                "split-brain",
                node_of(old, addr),
                format!("{addr} no longer claims role:master"),
                0,
            );
        }

        for n in &new.nodes {
            match old.nodes.iter().find(|o| o.node == n.node) {
                None => event(
                    "agent",
                    &n.node,
                    format!(
                        "{} reporting: redis {} is {}",
                        n.node,
                        or_none(&n.address),
                        health_name(n.health)
                    ),
                    0,
                ),
                Some(o) if o.health != n.health => event(
                    "health",
                    &n.node,
                    format!(
                        "redis {} on {}: {} -> {}",
                        or_none(&n.address),
                        n.node,
                        health_name(o.health),
                        health_name(n.health)
                    ),
                    0,
                ),
                Some(_) => {}
            }
        }
        for s in &new.sentinels {
            if let Some(o) = old.sentinels.iter().find(|o| o.node == s.node) {
                if o.health != s.health {
                    event(
                        "health",
                        &s.node,
                        format!(
                            "sentinel {} on {}: {} -> {}",
                            or_none(&s.address),
                            s.node,
                            health_name(o.health),
                            health_name(s.health)
                        ),
                        0,
                    );
                }
            }
        }

        if old.failover_in_progress != new.failover_in_progress {
            let message = if new.failover_in_progress {
                "failover started".to_owned()
            } else {
                format!(
                    "failover ended: master {} (epoch {})",
                    or_none(&new.master_address),
                    new.config_epoch
                )
            };
            event("failover", "", message, 0);
        }

        for e in out {
            self.push_event(e);
        }
    }

    fn role_changed_at(&self, address: &str) -> Option<i64> {
        let key = addr_key(address);
        self.agents
            .values()
            .filter_map(|e| e.report.redis.as_ref())
            .find(|r| addr_key(&r.address) == key)
            .map(|r| r.role_changed_at_ms)
    }

    /// The derivation itself; see [`derive`]. Each step is one of the numbered rules of the
    /// module documentation.
    fn decide(&self, now: Now) -> Derivation {
        // 1. Only fresh reports count.
        let fresh: Vec<&AgentEntry> = self
            .agents
            .values()
            .filter(|e| self.is_fresh(e, now))
            .collect();

        let testimony = self.testimony(&fresh);

        // 2. The Sentinels' view.
        let sentinel_view = sentinels_view(
            &fresh,
            &self.settings.nodes,
            self.settings.nodes.corroboration(),
        );
        let sentinel_epoch = sentinel_view.as_ref().map(|(e, _)| *e);
        let sentinel_master = sentinel_view
            .as_ref()
            .map(|(_, m)| addr_key(m))
            .unwrap_or_default();
        let es = sentinel_epoch.unwrap_or(0);

        // 3. Early promotion, 4. otherwise the Sentinels.
        let quorum_decision = sentinel_view.map(|(epoch, master_address)| Decision {
            epoch,
            master_address,
            source: SOURCE_SENTINEL,
        });
        let candidate = self
            .early_promotion(&testimony, es, &sentinel_master)
            .or_else(|| quorum_decision.clone());

        // 5. The floor.
        let (decision, adopt, revoke) =
            self.against_the_floor(candidate, quorum_decision.as_ref(), &fresh, now);
        let (master_address, config_epoch, master_source) = match &decision {
            Some(d) => (d.master_address.clone(), d.epoch, d.source),
            None => (String::new(), 0, SOURCE_NONE),
        };

        // 6. The master's own report.
        let master = self.master_facts(&master_address, &fresh, now);

        // 7./8. Nodes, split brain and the replicas that serve reads.
        let (nodes, split_brain) = self.node_views(&master, now);
        let readers = nodes
            .iter()
            .filter(|n| n.serves_reads)
            .map(|n| n.address.clone())
            .collect();

        // 9. Failover in progress.
        let final_epoch = decision.as_ref().map(|d| d.epoch).unwrap_or(0);
        let failover_in_progress =
            self.failover_in_progress(&fresh, &testimony, es, final_epoch, now);

        // 10. Sentinels and what each believes.
        let sentinels = self.sentinel_views(now);

        Derivation {
            topology: Topology {
                master_group: self.name.clone(),
                version: 0,
                updated_at_ms: now.wall_ms,
                master_address,
                master_node: master.node,
                config_epoch,
                master_source: master_source as i32,
                failover_in_progress,
                nodes,
                sentinels,
                split_brain,
                master_confirmed: master.confirmed,
                master_unconfirmed: master.unconfirmed.to_owned(),
                // Set by the server for the span that publishes the version.
                trace_parent: String::new(),
                master_role_changed_at_ms: master.role_changed_at_ms,
                readers,
            },
            adopt,
            revoke,
            sentinel_epoch,
            sentinel_master,
        }
    }

    /// Step 3, early promotion: the newest failover epoch above the Sentinels' view (`es`, naming
    /// `sentinel_master`) whose selected replica already answers role:master. The same epoch
    /// counts too when the Sentinels name another node there: that is the leader between
    /// +promoted-slave and +failover-end (new epoch, old address).
    ///
    /// Only corroborated promotions ([`corroborated_promotion`]) above the floor (or the floor
    /// itself): a new master needs a new epoch.
    fn early_promotion(
        &self,
        testimony: &[Testimony],
        es: u64,
        sentinel_master: &str,
    ) -> Option<Decision> {
        let floor = self.decided.as_ref();
        let alone = self.settings.nodes.corroboration() < 2;
        self.promotions
            .iter()
            .rev()
            .filter_map(|(&epoch, p)| p.address().map(|a| (epoch, p, a)))
            .filter(|&(epoch, _, a)| unsettled_promotion(epoch, a, es, sentinel_master))
            .filter(|&(epoch, _, a)| {
                // Without corroboration (one node, no list), as before: the leader alone may
                // have put its (new epoch, old master) view in the floor.
                alone
                    || floor.is_none_or(|f| {
                        epoch > f.epoch || (epoch == f.epoch && addr_key(&f.master_address) == a)
                    })
            })
            .find(|&(epoch, p, a)| {
                if alone {
                    testimony.iter().any(|t| t.node == a && t.node_is_master)
                } else {
                    corroborated_promotion(epoch, a, p.by.keys().map(String::as_str), testimony)
                }
            })
            .map(|(epoch, _, a)| Decision {
                epoch,
                master_address: self.address_as_reported(a).unwrap_or_else(|| a.to_owned()),
                source: SOURCE_PROMOTED,
            })
    }

    /// Step 5, the floor: a candidate older than the floor gives way to it ("last-known"); the floor
    /// is dropped when it is an unconfirmed promotion its own node now denies (back to the
    /// Sentinels' last decision), or when the quorum of Sentinels (`quorum`) has named a lower
    /// epoch for longer than failover-timeout (down to theirs). Returns the decision, the
    /// decision to adopt as the new floor, and why the floor was dropped.
    fn against_the_floor(
        &self,
        candidate: Option<Decision>,
        quorum: Option<&Decision>,
        fresh: &[&AgentEntry],
        now: Now,
    ) -> (Option<Decision>, Option<Decision>, Option<Revoke>) {
        let es = quorum.map_or(0, |q| q.epoch);
        let mut revoke = None;
        let mut floor = self.decided.clone();
        if let Some(f) = &self.decided {
            let unconfirmed = f.source == SOURCE_PROMOTED && es < f.epoch;
            if unconfirmed
                && reports_role(
                    fresh,
                    &self.settings.nodes,
                    &addr_key(&f.master_address),
                    Role::Replica,
                )
            {
                revoke = Some(Revoke::Denied(f.clone()));
                floor = self.sentinel_decided.clone();
            } else if let (Some(q), Some(b)) = (quorum, &self.below_floor) {
                let expired = q.epoch < f.epoch
                    && b.epoch == q.epoch
                    && b.master == addr_key(&q.master_address)
                    && now.at.saturating_duration_since(b.since) >= self.settings.failover_timeout;
                if expired {
                    revoke = Some(Revoke::Expired {
                        floor: f.clone(),
                        to: q.clone(),
                    });
                    floor = Some(q.clone());
                }
            }
        }
        let (decision, adopt) = match (candidate, floor) {
            (Some(c), Some(f)) if c.epoch < f.epoch => (
                Some(Decision {
                    source: SOURCE_LAST_KNOWN,
                    ..f
                }),
                None,
            ),
            (Some(c), _) => (Some(c.clone()), Some(c)),
            (None, Some(f)) => (
                Some(Decision {
                    source: SOURCE_LAST_KNOWN,
                    ..f
                }),
                None,
            ),
            (None, None) => (None, None),
        };
        (decision, adopt, revoke)
    }

    /// Step 6: what the master's own report says.
    fn master_facts(&self, master_address: &str, fresh: &[&AgentEntry], now: Now) -> MasterFacts {
        let key = addr_key(master_address);
        if key.is_empty() {
            return MasterFacts {
                unconfirmed: "no-master",
                ..MasterFacts::default()
            };
        }
        let entry = self.entry_for(&key, now);
        let agents: BTreeSet<&str> = fresh
            .iter()
            .map(|e| e.report.agent_id.as_str())
            .filter(|a| self.settings.nodes.is_agent(a))
            .collect();
        let unconfirmed = unconfirmed(
            reports_role(fresh, &self.settings.nodes, &key, Role::Master),
            agents.len(),
            self.settings.nodes.corroboration(),
        );
        let confirmed = unconfirmed.is_empty();
        // The master's own, fresh view of its replicas (the read endpoint's lag in seconds).
        let own = fresh.iter().find(|e| {
            self.settings.nodes.owns(&e.report.agent_id, &key)
                && e.report.redis.as_ref().is_some_and(|r| {
                    r.reachable && r.role == Role::Master as i32 && addr_key(&r.address) == key
                })
        });
        MasterFacts {
            replicas: own
                .and_then(|e| e.report.redis.as_ref())
                .map(|r| r.replicas.clone())
                .unwrap_or_default(),
            node: entry.map(|e| e.report.agent_id.clone()).unwrap_or_default(),
            confirmed,
            unconfirmed,
            // When the master's agent saw it turn master: watchers measure their switch lag
            // from it.
            role_changed_at_ms: entry
                .and_then(|e| e.report.redis.as_ref())
                .map(|r| r.role_changed_at_ms)
                .unwrap_or(0),
            offset: entry
                .filter(|e| self.is_fresh(e, now))
                .and_then(|e| e.report.redis.as_ref())
                .filter(|r| r.reachable && r.role == Role::Master as i32)
                .map(|r| r.repl_offset),
            key,
        }
    }

    /// Steps 7 and 8: every node as the topology shows it, and the addresses in split brain (fresh,
    /// reachable, claiming role:master, not the master).
    fn node_views(&self, master: &MasterFacts, now: Now) -> (Vec<NodeView>, Vec<String>) {
        let has_master = !master.key.is_empty();
        let serving_before: BTreeSet<String> = self
            .published
            .as_deref()
            .map(|t| t.readers.iter().map(|a| addr_key(a)).collect())
            .unwrap_or_default();
        let mut nodes = Vec::with_capacity(self.agents.len());
        let mut split_brain = Vec::new();
        for (id, entry) in &self.agents {
            let is_fresh = self.is_fresh(entry, now);
            let redis = entry.report.redis.clone().unwrap_or_default();
            let key = addr_key(&redis.address);
            let health = if !is_fresh {
                Health::Unknown
            } else if !redis.reachable {
                Health::Down
            } else {
                Health::Up
            };
            let is_master = has_master && key == master.key;
            let claims_master = is_fresh && redis.reachable && redis.role == Role::Master as i32;
            let is_split = has_master && claims_master && !is_master && !key.is_empty();
            if is_split {
                split_brain.push(redis.address.clone());
            }
            // Shown, so the operator sees why it is never master.
            let error = if key.is_empty() || self.settings.nodes.allows_redis(&redis.address) {
                redis.error
            } else {
                let note = format!("{} is not a configured node: never master", redis.address);
                if redis.error.is_empty() {
                    note
                } else {
                    format!("{}; {note}", redis.error)
                }
            };
            let lag_bytes = match master.offset {
                Some(mo) if is_fresh && redis.reachable && redis.role == Role::Replica as i32 => {
                    mo.saturating_sub(redis.repl_offset)
                }
                _ => 0,
            };
            let master_sees = master
                .replicas
                .iter()
                .find(|r| !key.is_empty() && addr_key(&r.address) == key)
                .map(|r| MasterSees {
                    // The fast ROLE poll leaves the state empty (ROLE has none) until the next
                    // INFO: listed is linked.
                    online: r.state.is_empty() || r.state == "online",
                    ack_lag_seconds: r.lag_seconds,
                });
            let candidate = ReadCandidate {
                configured: !key.is_empty()
                    && self.settings.nodes.allows_redis(&redis.address)
                    && self.settings.nodes.owns(id, &key),
                up: is_fresh && redis.reachable,
                replica: redis.role == Role::Replica as i32,
                master_known: has_master && master.confirmed && master.offset.is_some(),
                of_master: has_master && addr_key(&redis.master_address) == master.key,
                link_up: redis.link == LinkState::Up as i32,
                syncing: redis.sync_in_progress,
                master_sees,
                lag_bytes,
                serving: serving_before.contains(&key),
            };
            let note = if is_master {
                // The master is the endpoint's fallback, never one of its readers.
                ReadNote::NotReplica
            } else {
                readers::verdict(&candidate, self.settings.read_limits)
            };
            // Every node but the master says why it does not serve reads (a down one: `down`).
            let read_note = if is_master {
                String::new()
            } else {
                note.as_str().to_owned()
            };
            nodes.push(NodeView {
                node: id.clone(),
                address: redis.address,
                health: health as i32,
                role: redis.role,
                is_master,
                lag_bytes,
                link: redis.link,
                master_address: redis.master_address,
                repl_offset: redis.repl_offset,
                ping_micros: redis.ping_micros,
                report_age_ms: age_ms(entry, now),
                split_brain: is_split,
                agent_health: (if is_fresh {
                    Health::Up
                } else {
                    Health::Unknown
                }) as i32,
                error,
                serves_reads: note == ReadNote::Serves,
                ack_lag_seconds: master_sees.map_or(0, |s| s.ack_lag_seconds),
                read_note,
            });
        }
        (nodes, split_brain)
    }

    /// Step 9, failover in progress: an agent or a Sentinel says so, or a promotion above both the
    /// Sentinels' epoch `es` and the decision's is pending.
    /// A promotion counts only when another agent's Sentinel has reached its epoch.
    fn failover_in_progress(
        &self,
        fresh: &[&AgentEntry],
        testimony: &[Testimony],
        es: u64,
        final_epoch: u64,
        now: Now,
    ) -> bool {
        let alone = self.settings.nodes.corroboration() < 2;
        let pending_promotion = self.promotions.iter().any(|(&epoch, p)| {
            epoch > es
                && epoch > final_epoch
                && now.at.saturating_duration_since(p.learned) < PROMOTION_PENDING_LIMIT
                && (alone || p.by.keys().any(|c| epoch_witnessed(epoch, c, testimony)))
        });
        pending_promotion
            || fresh.iter().any(|e| {
                e.report.failover_in_progress
                    || e.report
                        .sentinel
                        .as_ref()
                        .is_some_and(|s| s.reachable && runs_failover(s))
            })
    }

    /// Step 10: each agent's Sentinel and what it believes.
    fn sentinel_views(&self, now: Now) -> Vec<SentinelView> {
        self.agents
            .iter()
            .filter_map(|(id, entry)| {
                let s = entry.report.sentinel.as_ref()?;
                let health = if !self.is_fresh(entry, now) {
                    Health::Unknown
                } else if !s.reachable {
                    Health::Down
                } else {
                    Health::Up
                };
                Some(SentinelView {
                    node: id.clone(),
                    address: s.address.clone(),
                    health: health as i32,
                    master_address: s.master_address.clone(),
                    config_epoch: s.config_epoch,
                    master_flags: s.master_flags.clone(),
                    error: s.error.clone(),
                })
            })
            .collect()
    }

    /// The agent whose node has this (normalized) address, the freshest first.
    fn entry_for(&self, key: &str, now: Now) -> Option<&AgentEntry> {
        self.agents
            .values()
            .filter(|e| {
                e.report
                    .redis
                    .as_ref()
                    .is_some_and(|r| addr_key(&r.address) == key)
            })
            .max_by_key(|e| (self.is_fresh(e, now), e.received))
    }

    /// The address string the node's own agent uses, so the published master matches the
    /// node list exactly.
    fn address_as_reported(&self, key: &str) -> Option<String> {
        self.agents
            .values()
            .filter_map(|e| e.report.redis.as_ref())
            .find(|r| addr_key(&r.address) == key)
            .map(|r| r.address.clone())
    }
}

/// A promotion still ahead of the Sentinels: a higher epoch than theirs, or their epoch
/// while they still name another master (the leader between +promoted-slave and
/// +failover-end reports the new epoch with the old address).
fn unsettled_promotion(epoch: u64, selected: &str, es: u64, sentinel_master: &str) -> bool {
    epoch > es || (epoch == es && addr_key(selected) != sentinel_master)
}

/// What the master's own report says (all empty without a master).
#[derive(Debug, Default)]
struct MasterFacts {
    /// The master's normalized address; empty without a master.
    key: String,
    /// The agent reporting it.
    node: String,
    /// It is fresh, reachable and says role:master, and enough agents are heard ([`unconfirmed`]).
    confirmed: bool,
    /// Why not confirmed ([`unconfirmed`]); "no-master" without a master.
    unconfirmed: &'static str,
    role_changed_at_ms: i64,
    /// Its replication offset, when it is fresh and says role:master.
    offset: Option<u64>,
    /// Its replicas as its own fresh report lists them.
    replicas: Vec<ReplicaLink>,
}

/// The rule for `master_confirmed`: the master's own agent reports it fresh, reachable and
/// role:master (`own_says_master`), and fresh reports come from at least `needed` agents (the
/// corroboration every decision needs). A coordinator cut off together with the master's node
/// hears its agent alone: it must not go on calling that master confirmed (switchovers refuse,
/// `redis-ha status` and the deploy's health check say so). Returns why not, as the stable word of
/// `Topology.master_unconfirmed`; empty when confirmed.
pub fn unconfirmed(own_says_master: bool, fresh_agents: usize, needed: usize) -> &'static str {
    if !own_says_master {
        redis_ha_proto::unconfirmed::OWN_AGENT
    } else if fresh_agents < needed {
        redis_ha_proto::unconfirmed::AGENTS_LOST
    } else {
        ""
    }
}

/// Is the node at (normalized) `key` fresh, reachable and saying `role`, by its own agent (its
/// configured owner, see [`NodeList::owns`])?
fn reports_role(fresh: &[&AgentEntry], nodes: &NodeList, key: &str, role: Role) -> bool {
    fresh.iter().any(|e| {
        nodes.owns(&e.report.agent_id, key)
            && e.report.redis.as_ref().is_some_and(|r| {
                r.reachable && r.role == role as i32 && addr_key(&r.address) == key
            })
    })
}

/// True while this Sentinel runs a failover of the group.
fn runs_failover(s: &SentinelStatus) -> bool {
    s.master_flags.iter().any(|f| f == FLAG_FAILOVER)
}

/// Step 2, the Sentinels' view: the master the fresh, reachable Sentinels name, by the one rule of
/// [`named_master`] with `quorum` (two: a pair named by one agent's Sentinel alone does not
/// count; highest config epoch; at one epoch more votes, more settled votes, the smallest
/// address). One vote per agent, so no agent votes twice whatever Sentinel address it
/// reports. A Sentinel running a failover is not settled: the leader's config epoch moves at
/// +promoted-slave while its SENTINEL MASTER still names the old master until +failover-end.
/// Only configured Sentinels naming a configured node count (`nodes`). Returns the epoch and
/// the master's address.
fn sentinels_view(fresh: &[&AgentEntry], nodes: &NodeList, quorum: usize) -> Option<(u64, String)> {
    let views: Vec<MasterView> = fresh
        .iter()
        .filter_map(|e| {
            let s = e.report.sentinel.as_ref().filter(|s| {
                s.reachable
                    && nodes.allows_sentinel(&s.address)
                    && nodes.allows_redis(&s.master_address)
            })?;
            let master: HostPort = s.master_address.parse().ok()?;
            // One vote per agent (independence is a different agent).
            let sentinel = HostPort::new(format!("agent/{}", e.report.agent_id), 0);
            Some(MasterView {
                sentinel,
                master,
                config_epoch: s.config_epoch,
                settled: !runs_failover(s),
            })
        })
        .collect();
    named_master(&views, quorum.max(1)).map(|n| (n.config_epoch, n.master.to_string()))
}

/// The topology of `state` at `now`, without a version (the caller assigns versions; see
/// [`GroupState::refresh`]).
pub fn derive(state: &GroupState, now: Now) -> Topology {
    state.decide(now).topology
}

/// True when the two differ at most in the measurement fields (offsets, lag, ping, ages,
/// timestamps, version, trace), which move all the time under load and must not wake watchers.
pub fn same_apart_from_measurements(a: &Topology, b: &Topology) -> bool {
    strip_measurements(a) == strip_measurements(b)
}

fn strip_measurements(t: &Topology) -> Topology {
    let mut t = t.clone();
    t.version = 0;
    t.updated_at_ms = 0;
    // Neither is a change of its own: the trace belongs to a version, and the role-change time
    // of the master moves only with the master (or resets when its agent restarts).
    t.trace_parent.clear();
    t.master_role_changed_at_ms = 0;
    for n in &mut t.nodes {
        n.repl_offset = 0;
        n.lag_bytes = 0;
        n.ping_micros = 0;
        n.report_age_ms = 0;
        n.ack_lag_seconds = 0;
    }
    t
}

fn age_ms(entry: &AgentEntry, now: Now) -> u64 {
    u64::try_from(now.at.saturating_duration_since(entry.received).as_millis()).unwrap_or(u64::MAX)
}

/// A comparable form of a `host:port` address: lower-case host, IPv6 with or without
/// brackets alike. Empty stays empty.
pub fn addr_key(addr: &str) -> String {
    let addr = addr.trim();
    match addr.rsplit_once(':') {
        Some((host, port)) => {
            let host = host.trim_start_matches('[').trim_end_matches(']');
            format!("{}:{}", host.to_ascii_lowercase(), port)
        }
        None => addr.to_ascii_lowercase(),
    }
}

/// The replica named by a `+selected-slave` (or `+failover-state-send-slaveof-noone`) payload:
/// `slave <ip>:<port> <ip> <port> @ <group> <mip> <mport>`. None when malformed or for
/// another group.
pub fn selected_replica(payload: &str, group: &str) -> Option<String> {
    let ev = parse_event("+selected-slave", payload).ok()?;
    match &ev.payload {
        Payload::Instance { instance, .. }
            if instance.kind == InstanceType::Slave && ev.master_group() == Some(group) =>
        {
            Some(addr_key(&instance.addr.to_string()))
        }
        _ => None,
    }
}

/// False only when the payload of the `kind` event names a different master group.
fn event_group_matches(kind: &str, payload: &str, group: &str) -> bool {
    parse_event(kind, payload).map_or(true, |ev| ev.master_group().is_none_or(|g| g == group))
}

fn or_none(s: &str) -> &str {
    if s.is_empty() {
        "none"
    } else {
        s
    }
}

fn node_of<'a>(t: &'a Topology, addr: &str) -> &'a str {
    t.nodes
        .iter()
        .find(|n| n.address == addr)
        .map(|n| n.node.as_str())
        .unwrap_or("")
}

fn health_name(h: i32) -> &'static str {
    match Health::try_from(h) {
        Ok(Health::Up) => "UP",
        Ok(Health::Down) => "DOWN",
        Ok(Health::Unknown) => "UNKNOWN",
        _ => "UNSPECIFIED",
    }
}

#[cfg(test)]
mod tests;
