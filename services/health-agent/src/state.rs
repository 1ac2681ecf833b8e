//! What the agent currently knows, shared by its loops (Redis poll, Sentinel poll, Sentinel
//! events, reporter). Every method is synchronous and short: the lock is never held across
//! an await.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use redis_ha_common::HostPort;
use redis_ha_proto::v1::{RedisStatus, Role, SentinelEvent, SentinelStatus};

use crate::failover::FailoverTracker;
use crate::probe::{unreachable_redis, unreachable_sentinel, ObserveError, RedisObservation};
use crate::redis_parse::RoleReply;
use crate::sentinel_parse::SentinelObservation;
use redis_ha_sentinel::same_node;
use redis_ha_sentinel::{EventKind, ParsedEvent};

/// Most events kept while the coordinator cannot be reached.
pub const EVENT_QUEUE_CAPACITY: usize = 512;

/// Why a report is sent (`AgentReport.reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    Heartbeat,
    /// The Sentinel's master, epoch or reachability changed.
    SentinelChange,
    /// Sentinel events (or the agent's own `fenced` / `hung-restart` / `role-change` events)
    /// are queued.
    Event,
    /// The node became reachable or unreachable.
    ReachabilityChange,
    /// The master watch saw the published master go (or come back).
    MasterWatch,
    RoleChange,
    Startup,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Heartbeat => "heartbeat",
            Reason::SentinelChange => "sentinel-change",
            Reason::Event => "event",
            Reason::ReachabilityChange => "reachability-change",
            Reason::MasterWatch => "master-watch",
            Reason::RoleChange => "role-change",
            Reason::Startup => "startup",
        }
    }
}

/// Events waiting for a successful report, oldest first, bounded.
#[derive(Debug)]
pub struct EventQueue {
    events: VecDeque<SentinelEvent>,
    capacity: usize,
}

impl EventQueue {
    pub fn new(capacity: usize) -> Self {
        Self {
            events: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Appends; returns how many of the oldest events were dropped to make room.
    pub fn push(&mut self, ev: SentinelEvent) -> usize {
        self.events.push_back(ev);
        self.trim()
    }

    /// Takes everything for a report.
    pub fn take(&mut self) -> Vec<SentinelEvent> {
        self.events.drain(..).collect()
    }

    /// Puts back the events of a report that failed, ahead of newer ones; returns how many
    /// of the oldest were dropped.
    pub fn put_back(&mut self, failed: Vec<SentinelEvent>) -> usize {
        for ev in failed.into_iter().rev() {
            self.events.push_front(ev);
        }
        self.trim()
    }

    fn trim(&mut self) -> usize {
        let mut dropped = 0;
        while self.events.len() > self.capacity {
            self.events.pop_front();
            dropped += 1;
        }
        dropped
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

/// What a Sentinel event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventOutcome {
    /// Queued for the next report.
    pub queued: bool,
    pub failover_changed: bool,
    pub dropped: usize,
    /// The epoch stamped into the event.
    pub epoch: u64,
}

/// The agent's knowledge.
#[derive(Debug)]
pub struct State {
    pub node_id: String,
    pub master_group: String,
    pub announce_addr: HostPort,
    pub sentinel_addr: HostPort,

    pub redis: RedisStatus,
    /// The role last seen while the node answered (kept while it does not).
    pub last_role: Option<Role>,
    pub redis_observed: bool,

    pub sentinel: SentinelStatus,
    /// The master the Sentinel named at its last successful poll, with epoch and time.
    pub sentinel_master: Option<(HostPort, u64, Instant)>,
    pub sentinel_observed: bool,

    pub failover: FailoverTracker,
    /// Highest epoch seen in `+new-epoch` / `+vote-for-leader` (or a config epoch).
    pub current_epoch: u64,
    pub events: EventQueue,
    /// The strongest reason for the next report, if one is due before the heartbeat.
    pub pending: Option<Reason>,
    /// When a `+selected-slave` / `+promoted-slave` / `+switch-master` last named this node.
    pub named_at: Option<Instant>,
    /// The span of the latest Sentinel event and when it came, so the reports it causes (and
    /// the other reports of the same failover) join the same trace.
    pub event_span: Option<(tracing::Span, Instant)>,
    /// While a failover is in progress: its span, the parent of its Sentinel events, so the
    /// whole failover as this agent saw it is one trace.
    pub failover_span: Option<tracing::Span>,
    /// What the master watch sees of the published master.
    pub master_watch: crate::watch::WatchState,
    /// Until when the watched master counts as just lost (fast `ROLE` polling).
    pub master_lost_until: Option<Instant>,
}

impl State {
    pub fn new(
        node_id: String,
        master_group: String,
        announce_addr: HostPort,
        sentinel_addr: HostPort,
        failover_timeout: Duration,
    ) -> Self {
        let not_yet = "not observed yet".to_owned();
        Self {
            redis: RedisStatus {
                address: announce_addr.to_string(),
                error: not_yet.clone(),
                ..RedisStatus::default()
            },
            sentinel: SentinelStatus {
                address: sentinel_addr.to_string(),
                error: not_yet,
                ..SentinelStatus::default()
            },
            node_id,
            master_group,
            announce_addr,
            sentinel_addr,
            last_role: None,
            redis_observed: false,
            sentinel_master: None,
            sentinel_observed: false,
            failover: FailoverTracker::new(failover_timeout),
            current_epoch: 0,
            events: EventQueue::new(EVENT_QUEUE_CAPACITY),
            pending: Some(Reason::Startup),
            named_at: None,
            event_span: None,
            failover_span: None,
            master_watch: crate::watch::WatchState::default(),
            master_lost_until: None,
        }
    }

    /// Asks for a report before the next heartbeat (the strongest reason wins).
    pub fn want_report(&mut self, reason: Reason) {
        self.pending = Some(self.pending.map_or(reason, |p| p.max(reason)));
    }

    fn agent_event(&mut self, kind: &str, payload: String, now_ms: i64) -> usize {
        self.events.push(SentinelEvent {
            kind: kind.to_owned(),
            payload,
            received_at_ms: now_ms,
            epoch: self.current_epoch,
            sentinel: String::new(),
        })
    }

    /// Records a new Redis status; returns the report reason when the role or reachability
    /// changed (`Startup` for the very first status). A role change is also queued as an agent event `role-change`.
    pub fn set_redis(&mut self, mut status: RedisStatus, now_ms: i64) -> Option<Reason> {
        let first = !self.redis_observed;
        self.redis_observed = true;
        let mut reason = None;
        status.role_changed_at_ms = self.redis.role_changed_at_ms;
        if status.reachable {
            let role = status.role();
            if let Some(prev) = self.last_role.filter(|p| *p != role) {
                status.role_changed_at_ms = now_ms;
                reason = Some(Reason::RoleChange);
                let payload = format!(
                    "{} {} -> {}",
                    self.announce_addr,
                    role_name(prev),
                    role_name(role)
                );
                self.agent_event("role-change", payload, now_ms);
            }
            self.last_role = Some(role);
        }
        if !first && reason.is_none() && self.redis.reachable != status.reachable {
            reason = Some(Reason::ReachabilityChange);
        }
        if first {
            // The start-up report waits for this first look.
            reason = Some(Reason::Startup);
        }
        self.redis = status;
        if let Some(r) = reason {
            self.want_report(r);
        }
        reason
    }

    /// A full Redis poll's result.
    pub fn apply_redis(
        &mut self,
        result: &Result<RedisObservation, ObserveError>,
        now_ms: i64,
    ) -> Option<Reason> {
        let status = result.as_ref().map(|o| o.to_status(&self.announce_addr));
        self.set_polled_redis(status, now_ms)
    }

    /// A fast `ROLE` poll's result, merged into the last full status.
    pub fn apply_role(
        &mut self,
        result: &Result<RoleReply, ObserveError>,
        now_ms: i64,
    ) -> Option<Reason> {
        let status = result.as_ref().map(|role| {
            let mut s = self.redis.clone();
            role.merge_into(&mut s);
            s.reachable = true;
            s.error.clear();
            s
        });
        self.set_polled_redis(status, now_ms)
    }

    /// A Redis poll's status, or the error that made it fail (the node then counts as
    /// unreachable).
    fn set_polled_redis(
        &mut self,
        status: Result<RedisStatus, &ObserveError>,
        now_ms: i64,
    ) -> Option<Reason> {
        let status = status.unwrap_or_else(|e| unreachable_redis(&self.announce_addr, e));
        self.set_redis(status, now_ms)
    }

    /// A Sentinel poll's result, `now` being when the poll started; returns (report reason when
    /// what the Sentinel names changed, whether the failover state flipped).
    pub fn apply_sentinel(
        &mut self,
        result: &Result<SentinelObservation, ObserveError>,
        now: Instant,
    ) -> (Option<Reason>, bool) {
        let first = !self.sentinel_observed;
        self.sentinel_observed = true;
        let mut failover_changed = false;
        let status = match result {
            Ok(o) => {
                failover_changed = self
                    .failover
                    .on_master_flag(o.master.failover_in_progress(), now);
                self.current_epoch = self.current_epoch.max(o.master.config_epoch);
                self.sentinel_master = Some((o.master.address.clone(), o.master.config_epoch, now));
                o.to_status(&self.sentinel_addr)
            }
            Err(e) => {
                self.sentinel_master = None;
                unreachable_sentinel(&self.sentinel_addr, e)
            }
        };
        let changed = !first
            && (status.reachable != self.sentinel.reachable
                || status.master_address != self.sentinel.master_address
                || status.config_epoch != self.sentinel.config_epoch);
        self.sentinel = status;
        self.sentinel.current_epoch = self.current_epoch;
        let reason = if first {
            // The start-up report waits for this first look.
            Some(Reason::Startup)
        } else {
            changed.then_some(Reason::SentinelChange)
        };
        if let Some(r) = reason {
            self.want_report(r);
        }
        (reason, failover_changed)
    }

    /// The Sentinel's named master and epoch when its answer is younger than `max_age`.
    pub fn fresh_sentinel_master(
        &self,
        now: Instant,
        max_age: Duration,
    ) -> Option<(&HostPort, u64)> {
        self.sentinel_master
            .as_ref()
            .filter(|(_, _, at)| now.saturating_duration_since(*at) <= max_age)
            .map(|(m, e, _)| (m, *e))
    }

    /// True when an event named this node as the new master within `window`.
    pub fn recently_named(&self, now: Instant, window: Duration) -> bool {
        self.named_at
            .is_some_and(|t| now.saturating_duration_since(t) < window)
    }

    /// Applies one Sentinel event. Hello messages and events of other master groups are
    /// ignored; an unparsable payload is still queued (the kind is known from the channel).
    pub fn apply_event(
        &mut self,
        channel: &str,
        payload: &str,
        parsed: Option<&ParsedEvent>,
        now: Instant,
        now_ms: i64,
    ) -> EventOutcome {
        let kind = parsed
            .map(|p| p.kind.clone())
            .unwrap_or_else(|| EventKind::from_channel(channel));
        if kind == EventKind::Hello {
            return EventOutcome::default();
        }
        if let Some(group) = parsed.and_then(ParsedEvent::master_group) {
            if group != self.master_group {
                return EventOutcome::default();
            }
        }
        if let Some(e) = parsed.and_then(ParsedEvent::epoch) {
            self.current_epoch = self.current_epoch.max(e);
            self.sentinel.current_epoch = self.current_epoch;
        }
        match (&kind, parsed.and_then(ParsedEvent::named_master)) {
            (_, Some(addr)) if same_node(addr, &self.announce_addr) => self.named_at = Some(now),
            // A later failover named another node: ours is history, and this node claiming
            // master now (say, restarted from a stale config) is a stray to fence.
            (_, Some(_)) | (EventKind::FailoverAbort(_), _) => self.named_at = None,
            _ => {}
        }
        let failover_changed = self.failover.on_event(&kind, now);
        let epoch = parsed
            .and_then(ParsedEvent::epoch)
            .unwrap_or(self.current_epoch);
        let dropped = self.events.push(SentinelEvent {
            kind: kind.channel(),
            payload: payload.to_owned(),
            received_at_ms: now_ms,
            epoch,
            sentinel: self.sentinel_addr.to_string(),
        });
        self.want_report(Reason::Event);
        EventOutcome {
            queued: true,
            failover_changed,
            dropped,
            epoch,
        }
    }

    /// Records a fencing demotion as an agent event `fenced`.
    pub fn fenced(&mut self, master: &HostPort, epoch: u64, now_ms: i64) -> usize {
        self.replicaof_event(
            "fenced",
            "demoted",
            master,
            "Sentinel config epoch",
            epoch,
            now_ms,
        )
    }

    /// Records that this replica was re-pointed at a promoted master as agent event `followed`.
    pub fn followed(&mut self, master: &HostPort, epoch: u64, now_ms: i64) -> usize {
        let why = "published at config epoch";
        self.replicaof_event("followed", "re-pointed", master, why, epoch, now_ms)
    }

    /// A `REPLICAOF` this agent sent, as agent event `kind`, reported at once.
    fn replicaof_event(
        &mut self,
        kind: &str,
        what: &str,
        master: &HostPort,
        why: &str,
        epoch: u64,
        now_ms: i64,
    ) -> usize {
        let payload = format!(
            "{} {what}: REPLICAOF {master} ({why} {epoch})",
            self.announce_addr
        );
        let dropped = self.agent_event(kind, payload, now_ms);
        self.want_report(Reason::Event);
        dropped
    }

    /// The master this node follows at its last poll, when it is a replica that says which.
    pub fn own_master(&self) -> Option<HostPort> {
        if self.redis.master_address.is_empty() {
            return None;
        }
        self.redis.master_address.parse().ok()
    }

    /// Records a restart of the hung node's container as an agent event `hung-restart`.
    pub fn hung_restarted(&mut self, container: &str, hung_for: Duration, now_ms: i64) -> usize {
        let payload = format!(
            "{} restarted: container {container} did not answer for {} ms",
            self.announce_addr,
            hung_for.as_millis()
        );
        let dropped = self.agent_event("hung-restart", payload, now_ms);
        self.want_report(Reason::Event);
        dropped
    }
}

fn role_name(r: Role) -> &'static str {
    match r {
        Role::Master => "master",
        Role::Replica => "replica",
        Role::Unspecified => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redis_parse::{parse_info_replication, RoleReplica};
    use redis_ha_sentinel::parse_event;

    fn state() -> State {
        State::new(
            "node-2".into(),
            "redis-cluster".into(),
            HostPort::new("10.0.0.2", 9002),
            HostPort::new("10.0.0.2", 19002),
            Duration::from_secs(20),
        )
    }

    fn replica_obs() -> RedisObservation {
        RedisObservation {
            ping_micros: 120,
            replication: parse_info_replication(
                "role:slave\r\nmaster_host:10.0.0.1\r\nmaster_port:9001\r\nmaster_link_status:up\r\nslave_repl_offset:10\r\n",
            )
            .unwrap(),
            role: RoleReply::Replica {
                master_address: "10.0.0.1:9001".into(),
                state: "connected".into(),
                offset: 10,
            },
            run_id: "r1".into(),
        }
    }

    /// Event payloads about this group.
    const MASTER_1: &str = "master redis-cluster 10.0.0.1 9001";
    const SELECTED_2: &str = "slave 10.0.0.2:9002 10.0.0.2 9002 @ redis-cluster 10.0.0.1 9001";
    const SWITCH_1_TO_2: &str = "redis-cluster 10.0.0.1 9001 10.0.0.2 9002";
    const SWITCH_2_TO_3: &str = "redis-cluster 10.0.0.2 9002 10.0.0.3 9003";

    fn event(st: &mut State, ch: &str, payload: &str, now: Instant) -> EventOutcome {
        let parsed = parse_event(ch, payload).ok();
        st.apply_event(ch, payload, parsed.as_ref(), now, 1)
    }

    #[test]
    fn queue_is_bounded_and_keeps_order() {
        let mut q = EventQueue::new(3);
        let ev = |n: i64| SentinelEvent {
            received_at_ms: n,
            ..SentinelEvent::default()
        };
        assert_eq!(q.push(ev(1)), 0);
        q.push(ev(2));
        let taken = q.take();
        assert!(q.is_empty());
        q.push(ev(3));
        q.push(ev(4));
        assert_eq!(q.put_back(taken), 1, "the oldest goes");
        let order: Vec<i64> = q.take().iter().map(|e| e.received_at_ms).collect();
        assert_eq!(order, vec![2, 3, 4]);
    }

    #[test]
    fn role_change_is_noticed_once_with_a_time() {
        let mut st = state();
        assert_eq!(
            st.apply_redis(&Ok(replica_obs()), 100),
            Some(Reason::Startup),
            "first sight"
        );
        assert_eq!(st.redis.role(), Role::Replica);
        assert_eq!(st.redis.role_changed_at_ms, 0);
        st.pending = None;

        let promoted = RoleReply::Master {
            offset: 11,
            replicas: vec![RoleReplica {
                address: "10.0.0.3:9003".into(),
                offset: 11,
            }],
        };
        assert_eq!(
            st.apply_role(&Ok(promoted.clone()), 200),
            Some(Reason::RoleChange)
        );
        assert_eq!(st.redis.role(), Role::Master);
        assert_eq!(st.redis.role_changed_at_ms, 200);
        assert_eq!(st.redis.run_id, "r1", "kept from the full poll");
        assert_eq!(st.pending, Some(Reason::RoleChange));
        let evs = st.events.take();
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].kind, "role-change");
        assert_eq!(evs[0].payload, "10.0.0.2:9002 replica -> master");

        assert_eq!(st.apply_role(&Ok(promoted), 300), None);
        assert_eq!(st.redis.role_changed_at_ms, 200);
    }

    #[test]
    fn reachability_changes_and_role_survives_an_outage() {
        let mut st = state();
        st.apply_redis(&Ok(replica_obs()), 100);
        let down = ObserveError::Connect {
            peer: "redis",
            addr: "10.0.0.2:9002".into(),
            reason: "Connection refused".into(),
        };
        assert_eq!(
            st.apply_redis(&Err(down.clone()), 200),
            Some(Reason::ReachabilityChange)
        );
        assert!(!st.redis.reachable);
        assert_eq!(st.redis.role(), Role::Unspecified);
        assert!(st.redis.error.contains("Connection refused"));
        assert_eq!(st.apply_redis(&Err(down), 300), None);
        assert_eq!(
            st.apply_redis(&Ok(replica_obs()), 400),
            Some(Reason::ReachabilityChange),
            "back with the same role"
        );
        assert_eq!(st.redis.role_changed_at_ms, 0);
    }

    #[test]
    fn events_are_filtered_stamped_and_drive_failover() {
        let t0 = Instant::now();
        let mut st = state();
        st.pending = None;
        let other = event(&mut st, "+sdown", "master other-group 10.9.9.9 6379", t0);
        assert!(!other.queued);
        assert!(!event(&mut st, "__sentinel__:hello", "a,b,c", t0).queued);
        assert!(st.events.is_empty());
        assert_eq!(st.pending, None);

        let odown = event(
            &mut st,
            "+odown",
            "master redis-cluster 10.0.0.1 9001 #quorum 2/2",
            t0,
        );
        assert!(odown.queued && odown.failover_changed);
        assert!(st.failover.in_progress(t0));
        assert_eq!(st.pending, Some(Reason::Event));

        let ne = event(&mut st, "+new-epoch", "5", t0);
        assert_eq!(ne.epoch, 5);
        assert_eq!(st.current_epoch, 5);
        assert_eq!(st.sentinel.current_epoch, 5);
        let sel = event(&mut st, "+selected-slave", SELECTED_2, t0);
        assert_eq!(sel.epoch, 5, "stamped with the current epoch");
        assert!(st.recently_named(t0, Duration::from_secs(20)));

        let sw = event(&mut st, "+switch-master", SWITCH_1_TO_2, t0);
        assert!(sw.failover_changed);
        assert!(!st.failover.in_progress(t0));

        let evs = st.events.take();
        let kinds: Vec<&str> = evs.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(
            kinds,
            vec!["+odown", "+new-epoch", "+selected-slave", "+switch-master"]
        );
        assert!(evs.iter().all(|e| e.sentinel == "10.0.0.2:19002"));
    }

    #[test]
    fn unparsable_events_are_still_queued() {
        let t0 = Instant::now();
        let mut st = state();
        let out = event(&mut st, "+odown", "garbage", t0);
        assert!(out.queued && out.failover_changed);
        assert_eq!(st.events.take()[0].payload, "garbage");
    }

    /// Feeds `steps` (channel, payload, whether this node then counts as recently named) in
    /// order.
    fn named_after(steps: &[(&str, &str, bool)]) {
        let t0 = Instant::now();
        let mut st = state();
        for (channel, payload, named) in steps {
            event(&mut st, channel, payload, t0);
            let now = st.recently_named(t0, Duration::from_secs(20));
            assert_eq!(now, *named, "after {channel} {payload}");
        }
    }

    #[test]
    fn a_later_failover_to_another_node_forgets_the_selection() {
        // This node dies; the next failover names node 3. Restarted from a stale config, this
        // node must be fenceable at once, not after the window.
        named_after(&[
            ("+switch-master", SWITCH_1_TO_2, true),
            ("+switch-master", SWITCH_2_TO_3, false),
        ]);
    }

    #[test]
    fn abort_forgets_the_selection() {
        named_after(&[
            ("+selected-slave", SELECTED_2, true),
            ("-failover-abort-not-elected", MASTER_1, false),
        ]);
    }

    #[test]
    fn sentinel_changes_ask_for_a_report() {
        use redis_ha_sentinel::SentinelMaster;
        let t0 = Instant::now();
        let mut st = state();
        let obs = |port: u16, epoch: u64, flags: &[&str]| SentinelObservation {
            master: SentinelMaster {
                address: HostPort::new("10.0.0.1", port),
                flags: flags.iter().map(|s| (*s).to_owned()).collect(),
                config_epoch: epoch,
                quorum: 2,
                other_sentinels: 2,
                known_replicas: 0,
                down_after_ms: 0,
                failover_timeout_ms: 0,
            },
            replicas: vec![],
            peers: vec![],
        };
        assert_eq!(
            st.apply_sentinel(&Ok(obs(9001, 0, &["master"])), t0),
            (Some(Reason::Startup), false),
            "the first look lets the start-up report go"
        );
        assert_eq!(
            st.apply_sentinel(&Ok(obs(9001, 0, &["master"])), t0),
            (None, false)
        );
        assert_eq!(
            st.apply_sentinel(&Ok(obs(9001, 1, &["master", "failover_in_progress"])), t0),
            (Some(Reason::SentinelChange), true)
        );
        assert_eq!(st.current_epoch, 1);
        assert_eq!(
            st.fresh_sentinel_master(t0, Duration::from_secs(1)),
            Some((&HostPort::new("10.0.0.1", 9001), 1))
        );
        assert_eq!(
            st.fresh_sentinel_master(t0 + Duration::from_secs(2), Duration::from_secs(1)),
            None
        );
        let err = ObserveError::Timeout {
            peer: "sentinel",
            addr: "x:1".into(),
            command: "SENTINEL MASTER redis-cluster".into(),
            timeout_ms: 1000,
        };
        assert_eq!(
            st.apply_sentinel(&Err(err), t0).0,
            Some(Reason::SentinelChange)
        );
        assert!(!st.sentinel.reachable);
        assert_eq!(st.fresh_sentinel_master(t0, Duration::from_secs(1)), None);
    }

    #[test]
    fn strongest_reason_wins() {
        let mut st = state();
        st.pending = None;
        st.want_report(Reason::Event);
        st.want_report(Reason::Heartbeat);
        assert_eq!(st.pending, Some(Reason::Event));
        st.want_report(Reason::RoleChange);
        assert_eq!(st.pending, Some(Reason::RoleChange));
    }

    #[test]
    fn hung_restart_is_an_agent_event() {
        let mut st = state();
        st.pending = None;
        st.current_epoch = 3;
        assert_eq!(
            st.hung_restarted("abc123", Duration::from_millis(10500), 7),
            0
        );
        assert_eq!(st.pending, Some(Reason::Event));
        let evs = st.events.take();
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].kind, "hung-restart");
        assert_eq!(
            evs[0].payload,
            "10.0.0.2:9002 restarted: container abc123 did not answer for 10500 ms"
        );
        assert_eq!((evs[0].epoch, evs[0].received_at_ms), (3, 7));
        assert!(evs[0].sentinel.is_empty());
    }
}
