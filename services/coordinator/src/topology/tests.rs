//! Unit tests of the decision: every case of the issue, with hand-written reports.

use std::time::{Duration, Instant};

use redis_ha_proto::v1::{
    AgentReport, Health, LinkState, MasterWatch, Reach, RedisStatus, Role, SentinelEvent,
    SentinelStatus,
};

use super::*;

const G: &str = "redis-cluster";
const WALL0: i64 = 1_700_000_000_000;

/// A fixed origin so tests can say "at 4000 ms".
struct Clock(Instant);

impl Clock {
    fn new() -> Self {
        Self(Instant::now())
    }
    fn at(&self, ms: u64) -> Now {
        Now {
            at: self.0 + Duration::from_millis(ms),
            wall_ms: WALL0 + i64::try_from(ms).unwrap(),
        }
    }
}

fn addr(n: u8) -> String {
    format!("127.0.0.1:900{n}")
}

fn saddr(n: u8) -> String {
    format!("127.0.0.1:1900{n}")
}

/// One agent's observation, built field by field.
#[derive(Clone)]
struct Obs {
    id: u8,
    seq: u64,
    started: i64,
    reachable: bool,
    role: Role,
    offset: u64,
    master_of: u8,
    role_changed_at: i64,
    sentinel: bool,
    sentinel_reachable: bool,
    sentinel_master: u8,
    sentinel_epoch: u64,
    current_epoch: u64,
    flags: Vec<String>,
    failover: bool,
    events: Vec<SentinelEvent>,
    down_after_ms: u64,
    /// (watched node, what the master watch sees)
    watch: Option<(u8, Reach)>,
    /// A master's replicas as it lists them: (node, seconds since its last ack).
    sees: Vec<(u8, u64)>,
}

impl Obs {
    /// Node `id` in the starting layout: node 1 master, Sentinels at epoch 0 naming it.
    fn new(id: u8) -> Self {
        Self {
            id,
            seq: 1,
            started: WALL0 - 10_000,
            reachable: true,
            role: if id == 1 { Role::Master } else { Role::Replica },
            offset: 1000,
            master_of: 1,
            role_changed_at: 0,
            sentinel: true,
            sentinel_reachable: true,
            sentinel_master: 1,
            sentinel_epoch: 0,
            current_epoch: 0,
            flags: vec!["master".into()],
            failover: false,
            events: Vec::new(),
            down_after_ms: 5000,
            watch: Some((1, Reach::Up)),
            sees: Vec::new(),
        }
    }
    /// As a master, lists node `n` as an online replica acknowledged `lag_s` seconds ago.
    fn sees(mut self, n: u8, lag_s: u64) -> Self {
        self.sees.push((n, lag_s));
        self
    }
    fn watches(mut self, n: u8, reach: Reach) -> Self {
        self.watch = Some((n, reach));
        self
    }
    fn down_after(mut self, ms: u64) -> Self {
        self.down_after_ms = ms;
        self
    }
    fn flag(mut self, f: &str) -> Self {
        self.flags.push(f.into());
        self
    }
    fn seq(mut self, seq: u64) -> Self {
        self.seq = seq;
        self
    }
    fn master(mut self) -> Self {
        self.role = Role::Master;
        self
    }
    fn replica_of(mut self, n: u8) -> Self {
        self.role = Role::Replica;
        self.master_of = n;
        self
    }
    fn down(mut self) -> Self {
        self.reachable = false;
        self.role = Role::Unspecified;
        self
    }
    fn offset(mut self, o: u64) -> Self {
        self.offset = o;
        self
    }
    fn sentinel_names(mut self, n: u8, epoch: u64) -> Self {
        self.sentinel_master = n;
        self.sentinel_epoch = epoch;
        self.current_epoch = self.current_epoch.max(epoch);
        self
    }
    /// Its Sentinel took part in the election of `epoch` (voted or leads): its current epoch.
    fn voted(mut self, epoch: u64) -> Self {
        self.current_epoch = self.current_epoch.max(epoch);
        self
    }
    fn sentinel_down(mut self) -> Self {
        self.sentinel_reachable = false;
        self
    }
    fn event(mut self, kind: &str, payload: &str, epoch: u64) -> Self {
        self.events.push(SentinelEvent {
            kind: kind.into(),
            payload: payload.into(),
            received_at_ms: 0,
            epoch,
            sentinel: saddr(self.id),
        });
        self
    }
    fn report(&self) -> AgentReport {
        // A replica names its master and its link to it; a master neither.
        let (master_address, link) = if self.role == Role::Replica {
            (addr(self.master_of), LinkState::Up)
        } else {
            (String::new(), LinkState::Unspecified)
        };
        AgentReport {
            agent_id: format!("node-{}", self.id),
            master_group: G.into(),
            sequence: self.seq,
            agent_started_at_ms: self.started,
            observed_at_ms: 0,
            reason: "heartbeat".into(),
            redis: Some(RedisStatus {
                address: addr(self.id),
                reachable: self.reachable,
                error: if self.reachable {
                    String::new()
                } else {
                    "connection refused".into()
                },
                role: self.role as i32,
                repl_offset: self.offset,
                master_address,
                link: link as i32,
                ping_micros: 150,
                replicas: self
                    .sees
                    .iter()
                    .map(|&(n, lag_seconds)| redis_ha_proto::v1::ReplicaLink {
                        address: addr(n),
                        state: "online".into(),
                        offset: self.offset,
                        lag_seconds,
                    })
                    .collect(),
                role_changed_at_ms: self.role_changed_at,
                run_id: format!("run-{}", self.id),
                sync_in_progress: false,
            }),
            sentinel: self.sentinel.then(|| SentinelStatus {
                address: saddr(self.id),
                reachable: self.sentinel_reachable,
                error: String::new(),
                master_address: if self.sentinel_reachable {
                    addr(self.sentinel_master)
                } else {
                    String::new()
                },
                config_epoch: self.sentinel_epoch,
                master_flags: self.flags.clone(),
                quorum: 2,
                other_sentinels: 2,
                replicas: Vec::new(),
                peers: Vec::new(),
                current_epoch: self.current_epoch,
                down_after_ms: self.down_after_ms,
            }),
            events: self.events.clone(),
            failover_in_progress: self.failover,
            master_watch: self.watch.map(|(n, reach)| MasterWatch {
                address: addr(n),
                reach: reach as i32,
                evidence: match reach {
                    Reach::Gone => "connection refused".into(),
                    _ => String::new(),
                },
                since_ms: 0,
            }),
        }
    }
}

fn state() -> GroupState {
    GroupState::new(G, Settings::default())
}

fn apply(s: &mut GroupState, o: &Obs, now: Now) -> ReportOutcome {
    s.apply_report(o.report(), now)
}

/// node-1 master, node-2 and node-3 replicas, every Sentinel at epoch 0 naming node-1.
fn healthy(s: &mut GroupState, now: Now) {
    for n in 1..=3 {
        let o = Obs::new(n).offset(if n == 1 { 5000 } else { 4000 + u64::from(n) });
        assert_eq!(apply(s, &o, now), ReportOutcome::Applied);
    }
}

/// Every node reports (sequence `seq`): node `master` master, the others its replicas, every
/// Sentinel naming node `master` at `epoch`.
fn all_follow(s: &mut GroupState, master: u8, epoch: u64, seq: u64, now: Now) {
    for n in 1..=3 {
        let o = Obs::new(n).seq(seq).sentinel_names(master, epoch);
        let o = if n == master {
            o.master()
        } else {
            o.replica_of(master)
        };
        apply(s, &o, now);
    }
}

/// A group in the starting layout ([`healthy`]), reported at 0 ms.
fn healthy_state(c: &Clock) -> GroupState {
    let mut s = state();
    healthy(&mut s, c.at(0));
    s
}

/// The starting layout published at 0 ms, then node-1's Redis down at 1000 ms; its Sentinel
/// (alive) votes in the election of epoch 1.
fn master_down(c: &Clock) -> GroupState {
    let mut s = healthy_state(c);
    s.refresh(c.at(0));
    apply(&mut s, &Obs::new(1).seq(2).down().voted(1), c.at(1000));
    s
}

/// The starting layout, then node-3's Sentinel selects node-2 at epoch 1 (at 100 ms), node-1's
/// Sentinel having voted for it.
fn node_2_selected(c: &Clock) -> GroupState {
    let mut s = healthy_state(c);
    apply(&mut s, &Obs::new(1).seq(2).voted(1), c.at(100));
    let leader = Obs::new(3)
        .seq(2)
        .voted(1)
        .event("+selected-slave", &selected(2), 1);
    apply(&mut s, &leader, c.at(100));
    s
}

/// node-3's report: its Sentinel starts epoch 1 and, leading the failover, selects node-2.
fn leader_selects_2() -> Obs {
    Obs::new(3)
        .seq(2)
        .voted(1)
        .event("+new-epoch", "1", 1)
        .event("+selected-slave", &selected(2), 1)
}

/// A group where every node reported at 0 ms: node `master` master, every Sentinel naming it
/// at `epoch`.
fn following(c: &Clock, master: u8, epoch: u64) -> GroupState {
    let mut s = state();
    all_follow(&mut s, master, epoch, 1, c.at(0));
    s
}

fn node<'a>(t: &'a Topology, id: &str) -> &'a NodeView {
    t.nodes.iter().find(|n| n.node == id).unwrap()
}

fn selected(n: u8) -> String {
    format!(
        "slave {a} 127.0.0.1 900{n} @ {G} 127.0.0.1 9001",
        a = addr(n)
    )
}

fn events_of(s: &GroupState, kind: &str) -> Vec<Event> {
    s.events(0).into_iter().filter(|e| e.kind == kind).collect()
}

#[test]
fn normal_state() {
    let c = Clock::new();
    let mut s = healthy_state(&c);
    let r = s.refresh(c.at(10));
    let t = &r.topology;
    assert!(r.changed);
    assert_eq!(t.version, 1);
    assert_eq!(t.master_group, G);
    assert_eq!(t.master_address, addr(1));
    assert_eq!(t.master_node, "node-1");
    assert_eq!(t.config_epoch, 0);
    assert_eq!(t.master_source(), SOURCE_SENTINEL);
    assert!(t.master_confirmed);
    assert!(!t.failover_in_progress);
    assert!(t.split_brain.is_empty());
    assert_eq!(t.nodes.len(), 3);
    let n1 = node(t, "node-1");
    assert!(n1.is_master && n1.health == Health::Up as i32 && n1.role == Role::Master as i32);
    let n2 = node(t, "node-2");
    assert!(!n2.is_master);
    assert_eq!(n2.health, Health::Up as i32);
    assert_eq!(n2.agent_health, Health::Up as i32);
    assert_eq!(n2.link, LinkState::Up as i32);
    assert_eq!(n2.lag_bytes, 5000 - 4002);
    assert_eq!(n2.master_address, addr(1));
    assert_eq!(n2.report_age_ms, 10);
    assert_eq!(node(t, "node-3").lag_bytes, 5000 - 4003);
    assert_eq!(t.sentinels.len(), 3);
    assert!(t.sentinels.iter().all(|v| v.health == Health::Up as i32
        && v.master_address == addr(1)
        && v.config_epoch == 0));
    assert_eq!(derive(&s, c.at(10)).master_address, addr(1));

    // The first publication names the master; no switch lag for a coordinator start.
    let mc = events_of(&s, "master-changed");
    assert_eq!(mc.len(), 1);
    assert_eq!(
        mc[0].message,
        format!("none -> {} (epoch 0, source sentinel-quorum)", addr(1))
    );
    assert_eq!(mc[0].switch_lag_ms, 0);
    assert_eq!(mc[0].topology_version, 1);
    assert_eq!(events_of(&s, "agent").len(), 3);

    // Nothing changes: same version.
    let r = s.refresh(c.at(20));
    assert!(!r.changed);
    assert_eq!(r.topology.version, 1);
}

#[test]
fn empty_group_has_no_master() {
    let c = Clock::new();
    let mut s = state();
    let r = s.refresh(c.at(0));
    assert_eq!(r.topology.version, 1);
    assert_eq!(r.topology.master_address, "");
    assert_eq!(r.topology.master_source(), SOURCE_NONE);
    assert!(!r.topology.master_confirmed);
    assert!(s.events(0).is_empty());
}

#[test]
fn failover_in_progress_while_master_is_down() {
    let c = Clock::new();
    let mut s = healthy_state(&c);
    let v1 = s.refresh(c.at(0)).topology.version;

    // The master dies; the Sentinels still name it (epoch 0) and flag the failover.
    apply(&mut s, &Obs::new(1).seq(2).down(), c.at(1000));
    let mut o2 = Obs::new(2).seq(2);
    o2.failover = true;
    o2.flags = vec![
        "master".into(),
        "s_down".into(),
        "o_down".into(),
        FLAG_FAILOVER.into(),
    ];
    apply(&mut s, &o2, c.at(1000));
    let r = s.refresh(c.at(1000));
    let t = &r.topology;
    assert!(r.changed && t.version > v1);
    assert!(t.failover_in_progress);
    assert_eq!(t.master_address, addr(1));
    assert!(!t.master_confirmed, "a down master is not confirmed");
    assert_eq!(node(t, "node-1").health, Health::Down as i32);
    assert_eq!(node(t, "node-1").agent_health, Health::Up as i32);
    assert_eq!(node(t, "node-1").error, "connection refused");
    // No master offset known: no lag claimed.
    assert_eq!(node(t, "node-2").lag_bytes, 0);
    assert_eq!(events_of(&s, "failover").len(), 1);
    assert!(events_of(&s, "health")
        .iter()
        .any(|e| e.node == "node-1" && e.message.contains("UP -> DOWN")));
}

#[test]
fn promoted_before_announced() {
    let c = Clock::new();
    // The master dies; node-3's Sentinel leads epoch 1 and selects node-2.
    let mut s = master_down(&c);
    apply(&mut s, &leader_selects_2(), c.at(1100));
    let r = s.refresh(c.at(1100));
    // node-2 still says replica: the promotion waits, but the failover shows.
    assert_eq!(r.topology.master_address, addr(1));
    assert_eq!(r.topology.master_source(), SOURCE_SENTINEL);
    assert!(r.topology.failover_in_progress);
    let v_pending = r.topology.version;

    // node-2 answers role:master: published at once, before any +switch-master.
    let mut o2 = Obs::new(2).seq(2).master();
    o2.role_changed_at = WALL0 + 1150;
    apply(&mut s, &o2, c.at(1200));
    let r = s.refresh(c.at(1200));
    let t = &r.topology;
    assert!(r.changed && t.version > v_pending);
    assert_eq!(t.master_address, addr(2));
    assert_eq!(t.master_node, "node-2");
    assert_eq!(t.config_epoch, 1);
    assert_eq!(t.master_source(), SOURCE_PROMOTED);
    assert!(t.master_confirmed);
    assert!(t.split_brain.is_empty());
    assert!(!node(t, "node-1").is_master && node(t, "node-2").is_master);
    let mc = events_of(&s, "master-changed");
    let last = mc.last().unwrap();
    assert_eq!(
        last.message,
        format!("{} -> {} (epoch 1, source promoted)", addr(1), addr(2))
    );
    assert_eq!(last.switch_lag_ms, 50);
    assert_eq!(last.topology_version, t.version);
    assert_eq!(last.node, "node-2");

    // The Sentinels catch up (epoch 1 names node-2): same master, source changes.
    for n in 2..=3 {
        let mut o = Obs::new(n).seq(3).sentinel_names(2, 1);
        if n == 2 {
            o = o.master();
        } else {
            o = o.replica_of(2);
        }
        apply(&mut s, &o, c.at(2200));
    }
    let r = s.refresh(c.at(2200));
    assert_eq!(r.topology.master_address, addr(2));
    assert_eq!(r.topology.master_source(), SOURCE_SENTINEL);
    assert_eq!(r.topology.config_epoch, 1);
    assert!(!r.topology.failover_in_progress);
    assert_eq!(
        events_of(&s, "master-changed").len(),
        2,
        "one switch, one event"
    );
    let failover = events_of(&s, "failover");
    assert!(failover
        .last()
        .unwrap()
        .message
        .starts_with("failover ended"));
}

#[test]
fn promotion_ignored_while_selected_node_still_replica() {
    let c = Clock::new();
    let mut s = node_2_selected(&c);
    let t = s.refresh(c.at(100)).topology;
    assert_eq!(t.master_address, addr(1));
    assert_eq!(t.config_epoch, 0);
    assert!(
        t.failover_in_progress,
        "a pending promotion is a failover in progress"
    );
}

#[test]
fn promotion_epoch_from_current_epoch_when_event_has_none() {
    let c = Clock::new();
    let mut s = healthy_state(&c);
    let mut leader = Obs::new(3).seq(2).event("+selected-slave", &selected(2), 0);
    leader.current_epoch = 4;
    apply(&mut s, &leader, c.at(100));
    apply(&mut s, &Obs::new(1).seq(2).voted(4), c.at(100));
    apply(&mut s, &Obs::new(2).seq(2).master(), c.at(100));
    let t = s.refresh(c.at(100)).topology;
    assert_eq!(t.master_address, addr(2));
    assert_eq!(t.config_epoch, 4);
    assert_eq!(t.master_source(), SOURCE_PROMOTED);
}

#[test]
fn promotion_below_sentinel_epoch_is_ignored() {
    let c = Clock::new();
    let mut s = state();
    // The Sentinels are at epoch 2 naming node-1.
    for n in 1..=3 {
        apply(&mut s, &Obs::new(n).sentinel_names(1, 2), c.at(0));
    }
    s.refresh(c.at(0));
    // A late +selected-slave of the older epoch 1 naming node-2, and node-2 claims master.
    apply(
        &mut s,
        &Obs::new(3)
            .seq(2)
            .sentinel_names(1, 2)
            .event("+selected-slave", &selected(2), 1),
        c.at(100),
    );
    apply(
        &mut s,
        &Obs::new(2).seq(2).sentinel_names(1, 2).master(),
        c.at(100),
    );
    let t = s.refresh(c.at(100)).topology;
    assert_eq!(t.master_address, addr(1));
    assert_eq!(t.config_epoch, 2);
    assert_eq!(t.master_source(), SOURCE_SENTINEL);
    assert_eq!(t.split_brain, vec![addr(2)]);
    assert!(!t.failover_in_progress);
}

#[test]
fn promotion_at_sentinel_epoch_naming_the_same_node_is_settled() {
    let c = Clock::new();
    let mut s = following(&c, 2, 2);
    apply(
        &mut s,
        &Obs::new(3).seq(2).sentinel_names(2, 2).replica_of(2).event(
            "+selected-slave",
            &selected(2),
            2,
        ),
        c.at(100),
    );
    let t = s.refresh(c.at(100)).topology;
    assert_eq!(t.master_address, addr(2));
    assert_eq!(t.master_source(), SOURCE_SENTINEL);
    assert!(!t.failover_in_progress);
}

/// Seen live with Redis 7.0: between +promoted-slave and +failover-end the leader's SENTINEL
/// MASTER reports the NEW config epoch with the OLD master's address. That must neither hide
/// the promotion nor flag the promoted node as a split brain.
#[test]
fn leader_between_promoted_slave_and_failover_end() {
    let c = Clock::new();
    let mut s = master_down(&c);
    let mut leader = leader_selects_2()
        .event("+promoted-slave", &selected(2), 1)
        .sentinel_names(1, 1);
    leader.flags = vec!["master".into(), "o_down".into(), FLAG_FAILOVER.into()];
    apply(&mut s, &leader, c.at(1100));

    // node-2 not confirmed yet: nothing better than the Sentinels' (transitional) view.
    let t = s.refresh(c.at(1100)).topology;
    assert_eq!(t.master_address, addr(1));
    assert!(t.failover_in_progress);

    // node-2 answers role:master: it wins although the leader says (epoch 1, node-1).
    apply(&mut s, &Obs::new(2).seq(2).master(), c.at(1150));
    let t = s.refresh(c.at(1150)).topology;
    assert_eq!(t.master_address, addr(2));
    assert_eq!(t.config_epoch, 1);
    assert_eq!(t.master_source(), SOURCE_PROMOTED);
    assert!(t.split_brain.is_empty());

    // One other Sentinel switched (+switch-master): one vote each at epoch 1, no quorum; the
    // promotion stands.
    apply(
        &mut s,
        &Obs::new(2).seq(3).master().sentinel_names(2, 1),
        c.at(1200),
    );
    let t = s.refresh(c.at(1200)).topology;
    assert_eq!(t.master_address, addr(2));
    // node-1's Sentinel switched too; node-3's report is stale now: two settled votes.
    apply(
        &mut s,
        &Obs::new(2).seq(4).master().sentinel_names(2, 1),
        c.at(4100),
    );
    apply(
        &mut s,
        &Obs::new(1).seq(3).down().sentinel_names(2, 1),
        c.at(4100),
    );
    let t = s.refresh(c.at(4150)).topology;
    assert_eq!(t.master_address, addr(2), "node-3's report is stale now");
    assert_eq!(t.master_source(), SOURCE_SENTINEL);

    let mc = events_of(&s, "master-changed");
    assert_eq!(mc.len(), 2, "none -> node-1, node-1 -> node-2: {mc:?}");
    assert!(events_of(&s, "split-brain").is_empty());
}

#[test]
fn two_masters_highest_epoch_wins_other_is_split_brain() {
    let c = Clock::new();
    let mut s = state();
    // After a failover at epoch 1 node-2 is master; node-1 came back as a master (no replicaof).
    apply(&mut s, &Obs::new(1).sentinel_names(2, 1).master(), c.at(0));
    apply(&mut s, &Obs::new(2).sentinel_names(2, 1).master(), c.at(0));
    apply(
        &mut s,
        &Obs::new(3).sentinel_names(2, 1).replica_of(2),
        c.at(0),
    );
    let r = s.refresh(c.at(0));
    let t = &r.topology;
    assert_eq!(t.master_address, addr(2));
    assert_eq!(t.config_epoch, 1);
    assert!(t.master_confirmed);
    assert_eq!(t.split_brain, vec![addr(1)]);
    assert!(node(t, "node-1").split_brain && !node(t, "node-1").is_master);
    assert!(!node(t, "node-2").split_brain);
    let sb = events_of(&s, "split-brain");
    assert_eq!(sb.len(), 1);
    assert_eq!(sb[0].node, "node-1");
    assert!(
        sb[0].message.contains("claims role:master"),
        "{}",
        sb[0].message
    );

    // Fenced: node-1 becomes a replica of node-2; the split brain clears.
    apply(
        &mut s,
        &Obs::new(1).seq(2).sentinel_names(2, 1).replica_of(2),
        c.at(500),
    );
    let t = s.refresh(c.at(500)).topology;
    assert!(t.split_brain.is_empty());
    let sb = events_of(&s, "split-brain");
    assert_eq!(sb.len(), 2);
    assert!(sb[1].message.contains("no longer"), "{}", sb[1].message);
}

#[test]
fn sentinels_disagreeing_highest_epoch_wins() {
    let c = Clock::new();
    let mut s = state();
    // One Sentinel still at epoch 0 naming node-1, two at epoch 1 naming node-2.
    apply(
        &mut s,
        &Obs::new(1).sentinel_names(1, 0).replica_of(2),
        c.at(0),
    );
    apply(&mut s, &Obs::new(2).sentinel_names(2, 1).master(), c.at(0));
    apply(&mut s, &Obs::new(3).sentinel_names(2, 1), c.at(0));
    let t = s.refresh(c.at(0)).topology;
    assert_eq!(t.master_address, addr(2));
    assert_eq!(t.config_epoch, 1);
}

#[test]
fn stale_reports_are_unknown_not_healthy() {
    let c = Clock::new();
    let mut s = healthy_state(&c);
    let v1 = s.refresh(c.at(0)).topology.version;

    // node-1 and node-2 keep reporting; node-3 falls silent.
    for t in [1000, 2000, 3000, 4000] {
        apply(&mut s, &Obs::new(1).seq(t), c.at(t));
        apply(&mut s, &Obs::new(2).seq(t), c.at(t));
    }
    // The timer alone (no report from node-3) turns it UNKNOWN.
    let r = s.refresh(c.at(4000));
    let t = &r.topology;
    assert!(r.changed && t.version > v1);
    let n3 = node(t, "node-3");
    assert_eq!(n3.health, Health::Unknown as i32);
    assert_eq!(n3.agent_health, Health::Unknown as i32);
    assert_eq!(n3.report_age_ms, 4000);
    assert_eq!(n3.lag_bytes, 0);
    let s3 = t.sentinels.iter().find(|v| v.node == "node-3").unwrap();
    assert_eq!(s3.health, Health::Unknown as i32);
    assert_eq!(node(t, "node-2").health, Health::Up as i32);
    assert_eq!(t.master_address, addr(1));
    assert!(t.master_confirmed);
    assert!(events_of(&s, "health")
        .iter()
        .any(|e| e.node == "node-3" && e.message.contains("UP -> UNKNOWN")));

    // A stale master is not confirmed.
    let t = s.refresh(c.at(8000)).topology;
    assert!(!t.master_confirmed);
    assert!(t.nodes.iter().all(|n| n.health == Health::Unknown as i32));
    // ...and the last decision stays (no fresh view at all).
    assert_eq!(t.master_address, addr(1));
    assert_eq!(t.master_source(), SOURCE_LAST_KNOWN);
}

#[test]
fn stale_sentinel_with_higher_epoch_does_not_vote() {
    let c = Clock::new();
    let mut s = state();
    apply(&mut s, &Obs::new(3).sentinel_names(3, 7).master(), c.at(0));
    apply(&mut s, &Obs::new(1).seq(2), c.at(5000));
    apply(&mut s, &Obs::new(2).seq(2), c.at(5000));
    let t = s.refresh(c.at(5000)).topology;
    assert_eq!(t.master_address, addr(1));
    assert_eq!(t.config_epoch, 0);
    assert!(
        t.split_brain.is_empty(),
        "a stale claim is not a split brain"
    );
}

#[test]
fn coordinator_restart_rebuilds_from_fresh_reports() {
    let c = Clock::new();
    let mut before = following(&c, 2, 3);
    let old = before.refresh(c.at(0)).topology;

    // A new process: nothing carried over, the next round of reports rebuilds everything.
    let mut after = state();
    let t = after.refresh(c.at(10_000)).topology;
    assert_eq!(t.master_address, "");
    all_follow(&mut after, 2, 3, 99, c.at(10_000));
    let t = after.refresh(c.at(10_000)).topology;
    assert_eq!(t.master_address, old.master_address);
    assert_eq!(t.config_epoch, 3);
    assert!(t.master_confirmed);
    assert!(t.nodes.iter().all(|n| n.health == Health::Up as i32));
    assert_eq!(t.version, 2);
}

#[test]
fn floor_never_goes_back() {
    let c = Clock::new();
    let mut s = following(&c, 2, 2);
    let t = s.refresh(c.at(0)).topology;
    assert_eq!(
        (t.master_address.as_str(), t.config_epoch),
        (addr(2).as_str(), 2)
    );

    // Sentinels 2 and 3 go away; Sentinel 1 restarts from an old config naming node-1 at 0.
    apply(
        &mut s,
        &Obs::new(1).seq(2).sentinel_names(1, 0).replica_of(2),
        c.at(100),
    );
    apply(
        &mut s,
        &Obs::new(2).seq(2).master().sentinel_down(),
        c.at(100),
    );
    apply(
        &mut s,
        &Obs::new(3).seq(2).replica_of(2).sentinel_down(),
        c.at(100),
    );
    let t = s.refresh(c.at(100)).topology;
    assert_eq!(t.master_address, addr(2));
    assert_eq!(t.config_epoch, 2);
    assert_eq!(t.master_source(), SOURCE_LAST_KNOWN);
    assert_eq!(s.decided().unwrap().epoch, 2);

    // A promoted master stays when its node goes silent before the Sentinels announce it
    // (node-3's Sentinel leads epoch 5 and selects its own node; Sentinel 1 voted).
    apply(
        &mut s,
        &Obs::new(1)
            .seq(3)
            .sentinel_names(1, 0)
            .replica_of(2)
            .voted(5),
        c.at(200),
    );
    apply(
        &mut s,
        &Obs::new(3).seq(3).replica_of(2).sentinel_names(2, 2).event(
            "+selected-slave",
            &selected(3),
            5,
        ),
        c.at(200),
    );
    apply(
        &mut s,
        &Obs::new(3).seq(4).master().sentinel_names(2, 2),
        c.at(300),
    );
    let t = s.refresh(c.at(300)).topology;
    assert_eq!(
        (t.master_address.as_str(), t.config_epoch),
        (addr(3).as_str(), 5)
    );
    for t_ms in [3000, 6000] {
        apply(
            &mut s,
            &Obs::new(1).seq(t_ms).sentinel_names(2, 2).replica_of(2),
            c.at(t_ms),
        );
        apply(
            &mut s,
            &Obs::new(2).seq(t_ms).sentinel_names(2, 2).master(),
            c.at(t_ms),
        );
    }
    let t = s.refresh(c.at(6000)).topology;
    assert_eq!(
        t.master_address,
        addr(3),
        "epoch 5 stays over the Sentinels' 2"
    );
    assert_eq!(t.config_epoch, 5);
    assert_eq!(t.split_brain, vec![addr(2)]);
}

#[test]
fn unconfirmed_promotion_denied_by_its_node_is_revoked() {
    let c = Clock::new();
    let mut s = node_2_selected(&c);
    apply(&mut s, &Obs::new(2).seq(2).master(), c.at(150));
    assert_eq!(s.refresh(c.at(150)).topology.master_address, addr(2));

    // The leader died; the Sentinels (still epoch 0) turned node-2 back into a replica.
    apply(&mut s, &Obs::new(2).seq(3).replica_of(1), c.at(2000));
    let t = s.refresh(c.at(2000)).topology;
    assert_eq!(t.master_address, addr(1));
    assert_eq!(t.config_epoch, 0);
    assert!(!t.failover_in_progress);
    assert!(events_of(&s, "topology")
        .iter()
        .any(|e| e.message.contains("revoked")));
}

#[test]
fn aborted_failover_is_no_longer_pending() {
    let c = Clock::new();
    let mut s = node_2_selected(&c);
    assert!(s.refresh(c.at(100)).topology.failover_in_progress);
    apply(
        &mut s,
        &Obs::new(3).seq(3).event(
            "-failover-abort-slave-timeout",
            &format!("master {G} 127.0.0.1 9001"),
            1,
        ),
        c.at(200),
    );
    assert!(!s.refresh(c.at(200)).topology.failover_in_progress);
}

#[test]
fn lower_sequence_from_same_agent_process_is_ignored() {
    let c = Clock::new();
    let mut s = healthy_state(&c);
    assert_eq!(
        apply(&mut s, &Obs::new(2).seq(5).down(), c.at(10)),
        ReportOutcome::Applied
    );
    let late = Obs::new(2).seq(4).event("+sdown", "x", 0);
    assert_eq!(
        apply(&mut s, &late, c.at(20)),
        ReportOutcome::Ignored {
            held_started_at_ms: WALL0 - 10_000,
            held_sequence: 5
        }
    );
    // The same sequence again (a retry) is ignored too.
    assert!(matches!(
        apply(&mut s, &Obs::new(2).seq(5), c.at(20)),
        ReportOutcome::Ignored { .. }
    ));
    let t = s.refresh(c.at(30)).topology;
    assert_eq!(node(&t, "node-2").health, Health::Down as i32);
    assert!(
        events_of(&s, "sentinel").is_empty(),
        "an ignored report's events are dropped"
    );
}

#[test]
fn restarted_agent_is_accepted() {
    let c = Clock::new();
    let mut s = healthy_state(&c);
    apply(&mut s, &Obs::new(2).seq(500).down(), c.at(10));
    let mut restarted = Obs::new(2).seq(1);
    restarted.started = WALL0 + 5;
    assert_eq!(apply(&mut s, &restarted, c.at(20)), ReportOutcome::Applied);
    let t = s.refresh(c.at(20)).topology;
    assert_eq!(node(&t, "node-2").health, Health::Up as i32);
}

#[test]
fn version_unchanged_when_only_measurements_move() {
    let c = Clock::new();
    let mut s = healthy_state(&c);
    let v = s.refresh(c.at(0)).topology.version;
    for (i, t_ms) in [100u64, 200, 300].into_iter().enumerate() {
        let k = u64::try_from(i).unwrap();
        for n in 1..=3u8 {
            let mut o = Obs::new(n)
                .seq(10 + k)
                .offset(10_000 * (k + 1) + u64::from(n));
            o.seq = 10 + k;
            apply(&mut s, &o, c.at(t_ms));
        }
        let r = s.refresh(c.at(t_ms));
        assert!(!r.changed);
        assert_eq!(r.topology.version, v);
        // The measurements themselves are fresh.
        assert_eq!(
            node(&r.topology, "node-1").repl_offset,
            10_000 * (k + 1) + 1
        );
        assert_eq!(node(&r.topology, "node-2").lag_bytes, 0);
        assert_eq!(
            r.topology.updated_at_ms,
            WALL0 + i64::try_from(t_ms).unwrap()
        );
    }
    // A structural change does move it.
    apply(&mut s, &Obs::new(3).seq(100).down(), c.at(400));
    assert_eq!(s.refresh(c.at(400)).topology.version, v + 1);
}

#[test]
fn sentinel_events_are_recorded_and_the_ring_is_bounded() {
    let c = Clock::new();
    let mut s = GroupState::new(
        G,
        Settings {
            event_history: 3,
            ..Settings::default()
        },
    );
    let o = Obs::new(1)
        .event("+sdown", "master redis-cluster 127.0.0.1 9001", 0)
        .event(
            "+odown",
            "master redis-cluster 127.0.0.1 9001 #quorum 2/2",
            0,
        );
    apply(&mut s, &o, c.at(0));
    let ev = s.events(0);
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[0].kind, "sentinel");
    assert_eq!(ev[0].node, "node-1");
    assert_eq!(ev[0].message, "+sdown master redis-cluster 127.0.0.1 9001");
    assert_eq!(ev[0].at_ms, WALL0);
    assert_eq!(ev[0].topology_version, 0);

    let o = Obs::new(1)
        .seq(2)
        .event("+new-epoch", "1", 1)
        .event("+try-failover", "x", 1);
    apply(&mut s, &o, c.at(10));
    let ev = s.events(0);
    assert_eq!(ev.len(), 3, "the oldest is dropped");
    assert!(ev[0].message.starts_with("+odown"));
    assert_eq!(s.events(1).len(), 1);
    assert_eq!(s.events(1)[0].message, "+try-failover x");
}

#[test]
fn sentinel_addresses_fresh_first_deduplicated() {
    let c = Clock::new();
    let mut s = state();
    apply(&mut s, &Obs::new(1), c.at(0));
    apply(&mut s, &Obs::new(2).sentinel_down(), c.at(5000));
    apply(&mut s, &Obs::new(3), c.at(5000));
    let mut dup = Obs::new(3);
    dup.id = 4;
    let mut r = dup.report();
    r.sentinel.as_mut().unwrap().address = saddr(3);
    s.apply_report(r, c.at(5000));
    assert_eq!(
        s.sentinel_addresses(c.at(5000)),
        vec![saddr(3), saddr(1), saddr(2)]
    );
}

#[test]
fn parses_selected_slave_payloads() {
    assert_eq!(selected_replica(&selected(2), G), Some(addr(2)));
    assert_eq!(selected_replica(&selected(2), "other"), None);
    assert_eq!(selected_replica("slave x", G), None);
    assert_eq!(
        selected_replica("master redis-cluster 127.0.0.1 9001", G),
        None
    );
    assert_eq!(
        selected_replica(
            "slave 127.0.0.1:9002 127.0.0.1 notaport @ redis-cluster 127.0.0.1 9001",
            G
        ),
        None
    );
    assert_eq!(
        selected_replica("slave [::1]:9002 ::1 9002 @ redis-cluster ::1 9001", G),
        Some(addr_key("[::1]:9002"))
    );
}

#[test]
fn address_keys_compare_loosely() {
    assert_eq!(addr_key("Redis-1:9001"), "redis-1:9001");
    assert_eq!(addr_key("[::1]:9001"), addr_key("::1:9001"));
    assert_eq!(addr_key(""), "");
}

#[test]
fn a_version_keeps_its_trace_parent_and_carries_the_promotion_time() {
    let c = Clock::new();
    let mut s = state();
    assert!(
        s.set_trace_parent("00-a-b-01".into()).is_none(),
        "nothing published yet"
    );
    healthy(&mut s, c.at(0));
    let r = s.refresh(c.at(0));
    assert!(r.changed && r.topology.trace_parent.is_empty());
    assert_eq!(
        r.topology.master_role_changed_at_ms, 0,
        "master since start"
    );
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned();
    let t = s.set_trace_parent(tp.clone()).unwrap();
    assert_eq!((t.version, t.trace_parent.as_str()), (1, tp.as_str()));

    // Unchanged: the same version, with the trace of the span that published it.
    let r = s.refresh(c.at(100));
    assert!(!r.changed);
    assert_eq!(r.topology.trace_parent, tp);

    // A new version starts without one (the server sets it from its publish span).
    apply(&mut s, &Obs::new(1).seq(2).down().voted(1), c.at(1000));
    apply(&mut s, &leader_selects_2(), c.at(1100));
    let mut o2 = Obs::new(2).seq(2).master();
    o2.role_changed_at = WALL0 + 1150;
    apply(&mut s, &o2, c.at(1200));
    let r = s.refresh(c.at(1200));
    assert!(r.changed);
    assert_eq!(r.topology.master_address, addr(2));
    assert!(r.topology.trace_parent.is_empty());
    assert_eq!(r.topology.master_role_changed_at_ms, WALL0 + 1150);

    // Neither field alone is a change.
    let mut a = (*r.topology).clone();
    let b = a.clone();
    a.trace_parent = tp;
    a.master_role_changed_at_ms = 0;
    assert!(same_apart_from_measurements(&a, &b));
}

/// node-1 crashed at 1000 ms: its agent sees the port refuse, `others` is what node-2 and
/// node-3's watches see.
fn crashed(c: &Clock, others: [Reach; 2]) -> GroupState {
    let mut s = healthy_state(c);
    s.refresh(c.at(0));
    apply(
        &mut s,
        &Obs::new(1).seq(2).down().watches(1, Reach::Gone),
        c.at(1000),
    );
    for (i, reach) in others.into_iter().enumerate() {
        let n = u8::try_from(i).unwrap() + 2;
        apply(&mut s, &Obs::new(n).seq(2).watches(1, reach), c.at(1000));
    }
    s.refresh(c.at(1000));
    s
}

#[test]
fn crash_seen_by_its_own_agent_and_a_majority_is_failed_over_once() {
    let c = Clock::new();
    let mut s = crashed(&c, [Reach::Unreachable, Reach::Up]);
    let r = s.crash_failover_due(c.at(1000)).expect("due");
    assert_eq!((r.master.as_str(), r.epoch), ("127.0.0.1:9001", 0));
    assert!(
        r.evidence.contains("node-1: connection refused"),
        "{}",
        r.evidence
    );
    assert_eq!(events_of(&s, "crash-failover").len(), 1);
    // Asked once for this master and epoch, whatever comes next.
    assert_eq!(s.crash_failover_due(c.at(1001)), None);
    s.crash_failover_result(&r, "refused: INPROG", false, c.at(1002));
    assert_eq!(s.crash_failover_due(c.at(1003)), None);
    // No Sentinel answered at all: asking again cannot make a second failover.
    s.crash_failover_result(&r, "no Sentinel answered", true, c.at(1004));
    assert!(s.crash_failover_due(c.at(1005)).is_some());
}

#[test]
fn crash_rule_holds_for_a_minority_a_pause_a_running_failover_not_for_s_down() {
    let c = Clock::new();
    // Only the master's own agent.
    let mut s = crashed(&c, [Reach::Up, Reach::Up]);
    assert_eq!(s.crash_failover_due(c.at(1000)), None);
    // Paused: unreachable for everyone, gone for no one.
    let mut s = healthy_state(&c);
    s.refresh(c.at(0));
    for n in 1..=3 {
        let o = Obs::new(n).seq(2).watches(1, Reach::Unreachable);
        let o = if n == 1 { o.down() } else { o };
        apply(&mut s, &o, c.at(1000));
    }
    s.refresh(c.at(1000));
    assert_eq!(s.crash_failover_due(c.at(1000)), None);
    // A Sentinel flagging it down is detection, not a failover: the ballot decides.
    let mut s = crashed(&c, [Reach::Unreachable, Reach::Unreachable]);
    apply(
        &mut s,
        &Obs::new(3)
            .seq(3)
            .watches(1, Reach::Unreachable)
            .flag("s_down"),
        c.at(1100),
    );
    s.refresh(c.at(1100));
    assert!(s.crash_failover_due(c.at(1100)).is_some());
    // A failover runs.
    let mut s = crashed(&c, [Reach::Unreachable, Reach::Unreachable]);
    apply(
        &mut s,
        &leader_selects_2().seq(3).watches(1, Reach::Unreachable),
        c.at(1100),
    );
    s.refresh(c.at(1100));
    assert_eq!(s.crash_failover_due(c.at(1100)), None);
}

#[test]
fn crash_rule_holds_at_any_down_after_but_needs_fresh_witnesses() {
    let c = Clock::new();
    let mut s = healthy_state(&c);
    s.refresh(c.at(0));
    apply(
        &mut s,
        &Obs::new(1)
            .seq(2)
            .down()
            .watches(1, Reach::Gone)
            .down_after(1000),
        c.at(1000),
    );
    apply(
        &mut s,
        &Obs::new(2)
            .seq(2)
            .watches(1, Reach::Unreachable)
            .down_after(1000),
        c.at(1000),
    );
    s.refresh(c.at(1000));
    assert!(
        s.crash_failover_due(c.at(1000)).is_some(),
        "down-after 1000 too: the ballot keeps Sentinel's own failover out"
    );
    // The witnesses went stale: no word of theirs counts.
    let mut s = crashed(&c, [Reach::Unreachable, Reach::Unreachable]);
    s.refresh(c.at(10_000));
    assert_eq!(s.crash_failover_due(c.at(10_000)), None);
}

// ---------------------------------------------------------------- the configured node list

/// An address no node is configured at.
const FOREIGN: &str = "127.0.0.1:6666";

/// Nodes 1 to 3 at `addr(n)` with their Sentinels at `saddr(n)`, spelled as given.
fn node_list(redis: &[String], sentinels: &[String]) -> NodeList {
    let redis: Vec<HostPort> = redis.iter().map(|a| a.parse().unwrap()).collect();
    let sentinels: Vec<HostPort> = sentinels.iter().map(|a| a.parse().unwrap()).collect();
    let ids: Vec<String> = (1..=redis.len()).map(|i| format!("node-{i}")).collect();
    NodeList::with_owners(
        ids.iter()
            .zip(redis.iter().zip(&sentinels))
            .map(|(id, (r, s))| (id.as_str(), r, s)),
    )
}

/// A group restricted to nodes 1 to 3 (as every shipped configuration is).
fn restricted() -> GroupState {
    let n: Vec<u8> = (1..=3).collect();
    GroupState::new(
        G,
        Settings {
            nodes: node_list(
                &n.iter().map(|&i| addr(i)).collect::<Vec<_>>(),
                &n.iter().map(|&i| saddr(i)).collect::<Vec<_>>(),
            ),
            ..Settings::default()
        },
    )
}

/// A coordinator that hears the master's own agent alone (cut off together with its node)
/// stops calling it confirmed, and says why; once another agent is heard again, it is.
#[test]
fn a_master_heard_from_its_own_agent_alone_is_not_confirmed() {
    let c = Clock::new();
    let mut s = restricted();
    healthy(&mut s, c.at(0));
    let t = s.refresh(c.at(10)).topology;
    assert!(t.master_confirmed, "{t:?}");
    assert_eq!(t.master_unconfirmed, "");

    let later = Settings::default().stale_after.as_millis() as u64 + 500;
    apply(&mut s, &Obs::new(1).seq(2), c.at(later));
    let t = s.refresh(c.at(later)).topology;
    assert_eq!(t.master_address, addr(1), "the master stays as last known");
    assert!(!t.master_confirmed, "{t:?}");
    assert_eq!(t.master_unconfirmed, "agents-lost");

    apply(&mut s, &Obs::new(2).seq(2), c.at(later + 10));
    let t = s.refresh(c.at(later + 10)).topology;
    assert!(t.master_confirmed, "{t:?}");
    assert_eq!(t.master_unconfirmed, "");
}

#[test]
fn why_a_master_is_not_confirmed() {
    assert_eq!(unconfirmed(true, 3, 2), "");
    assert_eq!(unconfirmed(true, 2, 2), "");
    assert_eq!(unconfirmed(true, 1, 2), "agents-lost");
    assert_eq!(unconfirmed(false, 3, 2), "own-agent");
    // A single configured node (or none): its own agent is the corroboration there is.
    assert_eq!(unconfirmed(true, 1, 1), "");
}

/// `o`'s report, its Sentinel naming `master` (any address) at `epoch`.
fn sentinel_naming(o: &Obs, master: &str, epoch: u64) -> AgentReport {
    let mut r = o.report();
    let s = r.sentinel.as_mut().unwrap();
    s.master_address = master.into();
    s.config_epoch = epoch;
    s.current_epoch = epoch;
    r
}

fn kinds(found: &[Foreign]) -> Vec<(String, ForeignKind, String, bool)> {
    found
        .iter()
        .map(|f| (f.agent.clone(), f.kind, f.address.clone(), f.first))
        .collect()
}

#[test]
fn node_list_compares_as_the_project_normalizes() {
    let list = node_list(
        &["redis-1:9001".into(), "[::1]:9002".into()],
        &["sentinel-1:19001".into(), "[::1]:19002".into()],
    );
    assert!(list.is_restricted());
    // Case-insensitive host, IPv6 with or without brackets.
    for ok in [
        "redis-1:9001",
        "REDIS-1:9001",
        " redis-1:9001 ",
        "[::1]:9002",
        "::1:9002",
    ] {
        assert!(list.allows_redis(ok), "{ok}");
    }
    // Another port, another name, an IP for the name (names are not resolved), a Sentinel's
    // address as a node's, nothing.
    for refused in [
        "redis-1:9002",
        "redis-2:9001",
        "127.0.0.1:9001",
        "sentinel-1:19001",
        "",
    ] {
        assert!(!list.allows_redis(refused), "{refused}");
    }
    assert!(list.allows_sentinel("Sentinel-1:19001"));
    assert!(list.allows_sentinel("[::1]:19002"));
    assert!(!list.allows_sentinel("redis-1:9001"));
    // No list: everything goes (the behaviour before the list).
    let open = NodeList::default();
    assert!(!open.is_restricted());
    assert!(open.allows_redis(FOREIGN) && open.allows_sentinel(FOREIGN));
}

#[test]
fn a_foreign_master_named_by_a_sentinel_is_never_published() {
    let c = Clock::new();
    // Without a list the attack works: one report moves the master and the floor (no node
    // identities, no corroboration either).
    let mut open = healthy_state(&c);
    open.refresh(c.at(0));
    open.apply_report(
        sentinel_naming(&Obs::new(2).seq(2), FOREIGN, 1000),
        c.at(100),
    );
    assert_eq!(open.refresh(c.at(100)).topology.master_address, FOREIGN);
    assert!(
        open.take_foreign().is_empty(),
        "no list, nothing is foreign"
    );

    let mut s = restricted();
    healthy(&mut s, c.at(0));
    assert_eq!(s.refresh(c.at(0)).topology.master_address, addr(1));
    assert!(
        s.take_foreign().is_empty(),
        "the configured nodes are not foreign"
    );
    // node-2's Sentinel names a made-up master at epoch +1000.
    s.apply_report(
        sentinel_naming(&Obs::new(2).seq(2), FOREIGN, 1000),
        c.at(100),
    );
    let t = s.refresh(c.at(100)).topology;
    assert_eq!(t.master_address, addr(1));
    assert_eq!(t.config_epoch, 0);
    assert_eq!(t.master_source(), SOURCE_SENTINEL);
    assert_eq!(
        s.decided().map(|d| d.epoch),
        Some(0),
        "the floor did not move"
    );
    assert_eq!(
        kinds(&s.take_foreign()),
        [(
            "node-2".to_owned(),
            ForeignKind::SentinelMaster,
            FOREIGN.to_owned(),
            true
        )]
    );
    // Every Sentinel says so: no configured view is left, the last decision stays.
    for n in 1..=3 {
        s.apply_report(
            sentinel_naming(&Obs::new(n).seq(3), FOREIGN, 1000),
            c.at(200),
        );
    }
    let t = s.refresh(c.at(200)).topology;
    assert_eq!(
        (t.master_address.as_str(), t.config_epoch),
        (addr(1).as_str(), 0)
    );
    assert_eq!(t.master_source(), SOURCE_LAST_KNOWN);
    assert_eq!(s.decided().map(|d| d.epoch), Some(0));
    // Counted every time, logged once per agent and address: node-2's is not new.
    let found = s.take_foreign();
    assert_eq!(found.len(), 3);
    assert_eq!(
        found
            .iter()
            .filter(|f| f.first)
            .map(|f| f.agent.as_str())
            .collect::<Vec<_>>(),
        ["node-1", "node-3"]
    );
    // Back to a configured master: followed again.
    all_follow(&mut s, 2, 1, 4, c.at(300));
    let t = s.refresh(c.at(300)).topology;
    assert_eq!(
        (t.master_address.as_str(), t.config_epoch),
        (addr(2).as_str(), 1)
    );
    assert!(s.take_foreign().is_empty());
}

#[test]
fn a_view_from_an_unconfigured_sentinel_does_not_count() {
    let c = Clock::new();
    let mut s = restricted();
    healthy(&mut s, c.at(0));
    s.refresh(c.at(0));
    // node-3's agent reports a Sentinel at an address not in the list, naming node 2 (a
    // configured node) at a higher epoch.
    let mut r = Obs::new(3).seq(2).sentinel_names(2, 7).report();
    r.sentinel.as_mut().unwrap().address = FOREIGN.into();
    s.apply_report(r, c.at(100));
    let t = s.refresh(c.at(100)).topology;
    assert_eq!(
        (t.master_address.as_str(), t.config_epoch),
        (addr(1).as_str(), 0)
    );
    assert_eq!(
        kinds(&s.take_foreign()),
        [(
            "node-3".to_owned(),
            ForeignKind::Sentinel,
            FOREIGN.to_owned(),
            true
        )]
    );
    // Nor is it ever asked for a failover (nor sent the password).
    assert_eq!(s.sentinel_addresses(c.at(100)), vec![saddr(1), saddr(2)]);
}

#[test]
fn a_foreign_promotion_is_ignored() {
    let c = Clock::new();
    // A made-up node reports role:master at the foreign address, and a leader's
    // +selected-slave selects it at epoch 1.
    let foreign_master = || {
        let mut o = Obs::new(4).master();
        o.sentinel = false;
        let mut r = o.report();
        r.redis.as_mut().unwrap().address = FOREIGN.into();
        r
    };
    let selects_foreign = format!("slave {FOREIGN} 127.0.0.1 6666 @ {G} 127.0.0.1 9001");
    let leader = Obs::new(3)
        .seq(2)
        .event("+selected-slave", &selects_foreign, 1);

    // Without a list it is published as promoted.
    let voter = Obs::new(1).seq(2).voted(1);
    let mut open = healthy_state(&c);
    open.refresh(c.at(0));
    open.apply_report(foreign_master(), c.at(100));
    apply(&mut open, &voter, c.at(100));
    apply(&mut open, &leader, c.at(100));
    let t = open.refresh(c.at(100)).topology;
    assert_eq!((t.master_address.as_str(), t.config_epoch), (FOREIGN, 1));

    let mut s = restricted();
    healthy(&mut s, c.at(0));
    s.refresh(c.at(0));
    s.apply_report(foreign_master(), c.at(100));
    apply(&mut s, &voter, c.at(100));
    apply(&mut s, &leader, c.at(100));
    let t = s.refresh(c.at(100)).topology;
    assert_eq!(t.master_address, addr(1));
    assert_eq!(t.config_epoch, 0);
    assert_eq!(t.master_source(), SOURCE_SENTINEL);
    assert!(!t.failover_in_progress, "no promotion is pending");
    assert_eq!(s.decided().map(|d| d.epoch), Some(0));
    assert_eq!(
        kinds(&s.take_foreign()),
        [
            (
                "node-4".to_owned(),
                ForeignKind::Node,
                FOREIGN.to_owned(),
                true
            ),
            (
                "node-3".to_owned(),
                ForeignKind::Promotion,
                FOREIGN.to_owned(),
                true
            ),
        ]
    );
    // The made-up node shows, with why it is never master; claiming role:master, it is in
    // split brain.
    let n4 = node(&t, "node-4");
    assert!(!n4.is_master);
    assert!(n4.error.contains("not a configured node"), "{}", n4.error);
    assert_eq!(t.split_brain, [FOREIGN.to_owned()]);
    assert!(node(&t, "node-2").error.is_empty());
}

#[test]
fn configured_nodes_still_fail_over_early_and_by_the_sentinels() {
    let c = Clock::new();
    let mut s = restricted();
    healthy(&mut s, c.at(0));
    s.refresh(c.at(0));
    apply(&mut s, &Obs::new(1).seq(2).down(), c.at(1000));
    apply(&mut s, &leader_selects_2(), c.at(1100));
    // node-2's own Sentinel voted for node-3's: the epoch's second witness.
    apply(&mut s, &Obs::new(2).seq(2).master().voted(1), c.at(1200));
    let t = s.refresh(c.at(1200)).topology;
    assert_eq!(
        (t.master_address.as_str(), t.config_epoch),
        (addr(2).as_str(), 1)
    );
    assert_eq!(t.master_source(), SOURCE_PROMOTED);
    all_follow(&mut s, 2, 1, 3, c.at(1300));
    let t = s.refresh(c.at(1300)).topology;
    assert_eq!(t.master_source(), SOURCE_SENTINEL);
    assert_eq!(t.master_address, addr(2));
    assert!(s.take_foreign().is_empty());
}

#[test]
fn configured_host_names_match_in_any_case() {
    let c = Clock::new();
    let mut s = GroupState::new(
        G,
        Settings {
            nodes: node_list(
                &(1..=3)
                    .map(|n| format!("redis-{n}:900{n}"))
                    .collect::<Vec<_>>(),
                &(1..=3)
                    .map(|n| format!("sentinel-{n}:1900{n}"))
                    .collect::<Vec<_>>(),
            ),
            ..Settings::default()
        },
    );
    for n in 1..=3u8 {
        let mut r = sentinel_naming(&Obs::new(n), "REDIS-1:9001", 0);
        r.redis.as_mut().unwrap().address = format!("Redis-{n}:900{n}");
        r.sentinel.as_mut().unwrap().address = format!("SENTINEL-{n}:1900{n}");
        s.apply_report(r, c.at(0));
    }
    let t = s.refresh(c.at(0)).topology;
    assert_eq!(addr_key(&t.master_address), "redis-1:9001");
    assert_eq!(t.master_node, "node-1");
    assert!(s.take_foreign().is_empty());
    assert_eq!(s.sentinel_addresses(c.at(0)).len(), 3);
}

// ---- Corroboration (issue #11 item 2) and nothing sticks (item 3).

fn witness(agent: &str, node: u8, master: bool, epoch: Option<u64>) -> Testimony {
    Testimony {
        agent: agent.into(),
        node: addr(node),
        node_is_master: master,
        sentinel_epoch: epoch,
    }
}

#[test]
fn the_rule_needs_the_promoted_node_itself_and_another_agents_epoch() {
    let leader = witness("node-3", 3, false, Some(5));
    let promoted = witness("node-2", 2, true, Some(5));
    let old_voter = witness("node-1", 1, false, Some(4));
    // The leader's selection, the promoted node's role, the promoted node's Sentinel voted.
    assert!(corroborated_promotion(
        5,
        &addr(2),
        ["node-3"],
        &[leader.clone(), promoted.clone()]
    ));
    // The promoted node does not say master: no.
    let not_yet = witness("node-2", 2, false, Some(5));
    assert!(!corroborated_promotion(
        5,
        &addr(2),
        ["node-3"],
        &[leader.clone(), not_yet]
    ));
    // The leader beside the promoted node: its own epoch is no second source...
    let leader_and_promoted = witness("node-2", 2, true, Some(5));
    assert!(!corroborated_promotion(
        5,
        &addr(2),
        ["node-2"],
        &[leader_and_promoted.clone(), old_voter.clone()]
    ));
    // ...a voter at that epoch is.
    assert!(corroborated_promotion(
        5,
        &addr(2),
        ["node-2"],
        &[leader_and_promoted, witness("node-1", 1, false, Some(5))]
    ));
    // Nobody else has reached the epoch: no, whoever says master.
    assert!(!corroborated_promotion(
        5,
        &addr(2),
        ["node-3"],
        &[
            witness("node-3", 3, false, Some(5)),
            witness("node-2", 2, true, Some(4))
        ]
    ));
    assert!(epoch_witnessed(5, "node-3", &[promoted]));
    assert!(!epoch_witnessed(5, "node-3", &[leader]));
    assert!(!epoch_witnessed(
        5,
        "node-3",
        &[witness("node-1", 1, false, None)]
    ));
}

/// The first three of the issue: a lone Sentinel view at epoch + 1000 naming a configured
/// replica, its node claiming master, and forged `+selected-slave`s, from one agent.
#[test]
fn one_agent_alone_names_no_master_and_raises_no_floor() {
    let c = Clock::new();
    let mut s = restricted();
    all_follow(&mut s, 1, 2, 1, c.at(0));
    let before = s.refresh(c.at(0)).topology;
    assert_eq!(before.config_epoch, 2);

    for round in 0..3u64 {
        let seq = 10 + round;
        let liar = Obs::new(2)
            .seq(seq)
            .master()
            .sentinel_names(2, 1002)
            .event("+selected-slave", &selected(2), 1002)
            .event("+selected-slave", &selected(3), 1003);
        apply(&mut s, &liar, c.at(100 + round));
        let t = s.refresh(c.at(100 + round)).topology;
        assert_eq!(
            (t.master_address.as_str(), t.config_epoch, t.master_source()),
            (addr(1).as_str(), 2, SOURCE_SENTINEL)
        );
        assert!(
            !t.failover_in_progress,
            "an unwitnessed promotion is no failover"
        );
        assert_eq!(
            t.split_brain,
            vec![addr(2)],
            "its own node looks wrong, nothing else"
        );
        assert_eq!(s.decided().unwrap().epoch, 2);

        let found: Vec<(ClaimKind, u64, bool)> = s
            .take_uncorroborated()
            .into_iter()
            .map(|u| (u.kind, u.epoch, u.first))
            .collect();
        let first = round == 0;
        assert_eq!(
            found,
            vec![
                (ClaimKind::SentinelView, 1002, first),
                (ClaimKind::Promotion, 1002, first),
                (ClaimKind::Promotion, 1003, first),
            ],
            "counted every time, logged the first time"
        );
    }
    // Node-3 (honest) says replica: a selection of it never promotes it either.
    let t = s.refresh(c.at(6000)).topology;
    assert_eq!(t.config_epoch, 2);
}

#[test]
fn an_agent_cannot_speak_for_another_nodes_role() {
    let c = Clock::new();
    let mut s = restricted();
    healthy(&mut s, c.at(0));
    s.refresh(c.at(0));
    apply(&mut s, &Obs::new(1).seq(2).down(), c.at(1000));
    // node-3's Sentinel leads and selects node-2, and node-3's agent also claims to be
    // node-2, a master. Node-2's own agent says replica.
    apply(&mut s, &leader_selects_2(), c.at(1100));
    let mut impostor = Obs::new(2).seq(2).master().voted(1).report();
    impostor.agent_id = "node-3".into();
    impostor.sequence = 3;
    s.apply_report(impostor, c.at(1150));
    apply(&mut s, &Obs::new(2).seq(2).voted(1), c.at(1150));
    let t = s.refresh(c.at(1150)).topology;
    assert_eq!(
        (t.master_address.as_str(), t.config_epoch),
        (addr(1).as_str(), 0)
    );
}

#[test]
fn the_leader_beside_the_promoted_node_needs_a_voter() {
    let c = Clock::new();
    let mut s = restricted();
    healthy(&mut s, c.at(0));
    s.refresh(c.at(0));
    apply(&mut s, &Obs::new(1).seq(2).down(), c.at(1000));
    // node-2's own Sentinel leads epoch 1 and selects node-2, which turns master.
    let leader = Obs::new(2)
        .seq(2)
        .voted(1)
        .event("+new-epoch", "1", 1)
        .event("+selected-slave", &selected(2), 1)
        .master();
    apply(&mut s, &leader, c.at(1100));
    let t = s.refresh(c.at(1100)).topology;
    assert_eq!(t.master_address, addr(1), "one agent's word only");
    assert!(!t.failover_in_progress);
    // node-3's Sentinel voted for it (its current epoch is 1): corroborated, published.
    apply(&mut s, &Obs::new(3).seq(2).voted(1), c.at(1110));
    let t = s.refresh(c.at(1110)).topology;
    assert_eq!(
        (t.master_address.as_str(), t.config_epoch, t.master_source()),
        (addr(2).as_str(), 1, SOURCE_PROMOTED)
    );
}

/// After a crash failover only the leader knows the new config epoch, but the ballot's voters
/// reached it (they voted): their agents corroborate the epoch, the promoted node its role.
#[test]
fn a_crash_failover_is_corroborated_by_the_ballots_voters() {
    let c = Clock::new();
    let mut s = restricted();
    healthy(&mut s, c.at(0));
    s.refresh(c.at(0));
    apply(&mut s, &Obs::new(1).seq(2).down().voted(1), c.at(100));
    let leader = Obs::new(3)
        .seq(2)
        .voted(1)
        .event("+selected-slave", &selected(2), 1);
    apply(&mut s, &leader, c.at(150));
    apply(&mut s, &Obs::new(2).seq(2).master(), c.at(200));
    let t = s.refresh(c.at(200)).topology;
    assert_eq!(
        (t.master_address.as_str(), t.config_epoch),
        (addr(2).as_str(), 1)
    );
    assert!(
        s.take_uncorroborated().is_empty(),
        "a real failover is no claim to count"
    );
}

#[test]
fn a_contested_epoch_promotes_no_one_early() {
    let c = Clock::new();
    let mut s = restricted();
    healthy(&mut s, c.at(0));
    s.refresh(c.at(0));
    apply(&mut s, &Obs::new(1).seq(2).down().voted(1), c.at(1000));
    apply(&mut s, &leader_selects_2(), c.at(1100));
    // node-2 claims node-2 is selected, node-3 that node-3 is; both say master.
    apply(
        &mut s,
        &Obs::new(2)
            .seq(2)
            .voted(1)
            .master()
            .event("+selected-slave", &selected(3), 1),
        c.at(1150),
    );
    apply(&mut s, &Obs::new(3).seq(3).voted(1).master(), c.at(1150));
    let t = s.refresh(c.at(1150)).topology;
    assert_eq!(t.master_address, addr(1), "{t:?}");
    // The Sentinels' quorum settles it.
    all_follow(&mut s, 2, 1, 4, c.at(2000));
    let t = s.refresh(c.at(2000)).topology;
    assert_eq!(
        (t.master_address.as_str(), t.config_epoch, t.master_source()),
        (addr(2).as_str(), 1, SOURCE_SENTINEL)
    );
}

/// Two agents lied together (beyond what corroboration guards against): the floor went to
/// epoch 1000. Once the quorum of Sentinels names the real master at epoch 2 for the
/// failover-timeout, the floor comes down to it.
#[test]
fn a_floor_the_sentinels_contradict_for_the_failover_timeout_comes_down() {
    let c = Clock::new();
    let mut s = restricted();
    all_follow(&mut s, 1, 2, 1, c.at(0));
    s.refresh(c.at(0));
    for n in 2..=3 {
        apply(
            &mut s,
            &Obs::new(n).seq(2).sentinel_names(2, 1000),
            c.at(100),
        );
    }
    let t = s.refresh(c.at(100)).topology;
    assert_eq!(
        (t.master_address.as_str(), t.config_epoch),
        (addr(2).as_str(), 1000)
    );

    // The truth again, from every agent.
    all_follow(&mut s, 1, 2, 3, c.at(200));
    let t = s.refresh(c.at(200)).topology;
    assert_eq!(
        (t.master_address.as_str(), t.config_epoch, t.master_source()),
        (addr(2).as_str(), 1000, SOURCE_LAST_KNOWN),
        "the floor holds within the failover-timeout"
    );
    all_follow(&mut s, 1, 2, 4, c.at(9_000));
    let t = s.refresh(c.at(10_199)).topology;
    assert_eq!(t.config_epoch, 1000, "not yet");
    let t = s.refresh(c.at(10_200)).topology;
    assert_eq!(
        (t.master_address.as_str(), t.config_epoch, t.master_source()),
        (addr(1).as_str(), 2, SOURCE_SENTINEL)
    );
    assert_eq!(s.decided().unwrap().epoch, 2);
    let withdrawn: Vec<Event> = events_of(&s, "topology")
        .into_iter()
        .filter(|e| e.message.contains("withdrawn"))
        .collect();
    assert_eq!(withdrawn.len(), 1, "{withdrawn:?}");
    assert!(withdrawn[0].message.contains("epoch 1000"), "{withdrawn:?}");

    // The real failovers below the forged epoch still switch early.
    apply(
        &mut s,
        &Obs::new(1).seq(5).down().sentinel_names(1, 2).voted(3),
        c.at(10_300),
    );
    apply(
        &mut s,
        &Obs::new(3)
            .seq(5)
            .sentinel_names(1, 2)
            .voted(3)
            .event("+selected-slave", &selected(2), 3),
        c.at(10_300),
    );
    apply(
        &mut s,
        &Obs::new(2).seq(5).master().sentinel_names(1, 2),
        c.at(10_350),
    );
    let t = s.refresh(c.at(10_350)).topology;
    assert_eq!(
        (t.master_address.as_str(), t.config_epoch, t.master_source()),
        (addr(2).as_str(), 3, SOURCE_PROMOTED)
    );
}

/// A corroborated promotion the Sentinels never confirm (the failover stalled after the
/// promotion) is withdrawn after the failover-timeout and not learned again.
#[test]
fn an_unconfirmed_promotion_is_withdrawn_after_the_failover_timeout() {
    let c = Clock::new();
    let mut s = restricted();
    healthy(&mut s, c.at(0));
    s.refresh(c.at(0));
    apply(&mut s, &leader_selects_2(), c.at(100));
    apply(&mut s, &Obs::new(2).seq(2).master().voted(1), c.at(150));
    let t = s.refresh(c.at(150)).topology;
    assert_eq!(
        (t.master_address.as_str(), t.config_epoch),
        (addr(2).as_str(), 1)
    );
    // The Sentinels keep naming node-1 at epoch 0; node-2 stays master.
    for at in [2000u64, 4000, 6000, 8000, 10_000] {
        apply(&mut s, &Obs::new(1).seq(at), c.at(at));
        apply(&mut s, &Obs::new(2).seq(at).master().voted(1), c.at(at));
        apply(&mut s, &Obs::new(3).seq(at).voted(1), c.at(at));
        let t = s.refresh(c.at(at)).topology;
        assert_eq!(t.master_address, addr(2), "at {at} ms");
    }
    let at = 10_150;
    apply(&mut s, &Obs::new(2).seq(at).master().voted(1), c.at(at));
    // The same selection again changes nothing: withdrawn.
    apply(&mut s, &leader_selects_2().seq(at), c.at(at));
    let t = s.refresh(c.at(at)).topology;
    assert_eq!(
        (t.master_address.as_str(), t.config_epoch, t.master_source()),
        (addr(1).as_str(), 0, SOURCE_SENTINEL)
    );
    assert_eq!(t.split_brain, vec![addr(2)]);
    // A new failover (a new epoch) is followed as usual.
    apply(
        &mut s,
        &Obs::new(3)
            .seq(at + 1)
            .voted(2)
            .event("+selected-slave", &selected(2), 2),
        c.at(at + 10),
    );
    apply(&mut s, &Obs::new(1).seq(at + 1).voted(2), c.at(at + 10));
    let t = s.refresh(c.at(at + 10)).topology;
    assert_eq!(
        (t.master_address.as_str(), t.config_epoch),
        (addr(2).as_str(), 2)
    );
}

mod single_agent {
    use super::*;
    use proptest::prelude::*;

    /// Anything one agent may report.
    #[derive(Clone, Debug)]
    struct Lie {
        reachable: bool,
        role: Role,
        sentinel_reachable: bool,
        sentinel_master: u8,
        config_epoch: u64,
        current_epoch: u64,
        failover_flag: bool,
        /// (kind, selected node, epoch)
        events: Vec<(u8, u8, u64)>,
    }

    fn lie() -> impl Strategy<Value = Lie> {
        (
            any::<bool>(),
            prop_oneof![
                Just(Role::Master),
                Just(Role::Replica),
                Just(Role::Unspecified)
            ],
            any::<bool>(),
            1u8..=4,
            prop_oneof![0u64..6, 0u64..2000],
            prop_oneof![0u64..6, 0u64..2000],
            any::<bool>(),
            proptest::collection::vec((0u8..4, 1u8..=4, prop_oneof![0u64..6, 0u64..2000]), 0..4),
        )
            .prop_map(
                |(
                    reachable,
                    role,
                    sentinel_reachable,
                    sentinel_master,
                    config_epoch,
                    current_epoch,
                    failover_flag,
                    events,
                )| Lie {
                    reachable,
                    role,
                    sentinel_reachable,
                    sentinel_master,
                    config_epoch,
                    current_epoch,
                    failover_flag,
                    events,
                },
            )
    }

    fn report(liar: u8, seq: u64, l: &Lie) -> AgentReport {
        let mut o = Obs::new(liar).seq(seq);
        o.reachable = l.reachable;
        o.role = l.role;
        o.sentinel_reachable = l.sentinel_reachable;
        o.sentinel_master = l.sentinel_master;
        o.sentinel_epoch = l.config_epoch;
        o.current_epoch = l.current_epoch;
        if l.failover_flag {
            o.flags.push(FLAG_FAILOVER.into());
        }
        for &(kind, n, epoch) in &l.events {
            let kind = [
                "+selected-slave",
                "+failover-state-send-slaveof-noone",
                "-failover-abort-no-good-slave",
                "+switch-master",
            ][usize::from(kind)];
            o = o.event(kind, &selected(n), epoch);
        }
        o.report()
    }

    proptest! {
        /// The rule: one agent, whatever it reports, can at most make its own node
        /// look down (or in split brain); it never changes the published master or raises
        /// the floor. node-1 is master at epoch 2, the two other agents keep reporting so.
        #[test]
        fn no_single_agents_reports_change_the_master_or_raise_the_floor(
            liar in 1u8..=3,
            lies in proptest::collection::vec(lie(), 1..12),
        ) {
            let c = Clock::new();
            let mut s = restricted();
            all_follow(&mut s, 1, 2, 1, c.at(0));
            s.refresh(c.at(0));
            for (i, l) in lies.iter().enumerate() {
                let at = 500 * (i as u64 + 1);
                let seq = 10 + i as u64;
                for n in (1..=3u8).filter(|&n| n != liar) {
                    let o = Obs::new(n).seq(seq).sentinel_names(1, 2);
                    let o = if n == 1 { o.master() } else { o.replica_of(1) };
                    apply(&mut s, &o, c.at(at));
                }
                s.apply_report(report(liar, seq, l), c.at(at));
                let t = s.refresh(c.at(at)).topology;
                prop_assert_eq!(&t.master_address, &addr(1));
                prop_assert_eq!(t.config_epoch, 2);
                prop_assert_eq!(s.decided().map(|d| d.epoch), Some(2));
            }
        }
    }
}

// ---------------------------------------------------------------- the read endpoint

/// node-1 master at offset 5000 listing both replicas (ack lags `lag_2`, `lag_3` s), the
/// replicas at offsets `5000 - behind_2` and `5000 - behind_3`, all reported at `ms`.
fn readers_layout(s: &mut GroupState, seq: u64, lags: [u64; 2], behind: [u64; 2], ms: Now) {
    let master = Obs::new(1)
        .seq(seq)
        .offset(5000)
        .sees(2, lags[0])
        .sees(3, lags[1]);
    apply(s, &master, ms);
    for (i, n) in [2u8, 3].into_iter().enumerate() {
        apply(s, &Obs::new(n).seq(seq).offset(5000 - behind[i]), ms);
    }
}

fn read_limits(bytes: u64, seconds: u64) -> GroupState {
    GroupState::new(
        G,
        Settings {
            read_limits: ReadLimits {
                max_lag_bytes: bytes,
                max_lag_seconds: seconds,
            },
            ..Settings::default()
        },
    )
}

#[test]
fn linked_replicas_within_the_limits_serve_reads() {
    let c = Clock::new();
    let mut s = read_limits(1000, 4);
    readers_layout(&mut s, 1, [0, 1], [10, 0], c.at(0));
    let t = s.refresh(c.at(0)).topology;
    assert_eq!(t.readers, [addr(2), addr(3)]);
    for id in ["node-2", "node-3"] {
        let n = node(&t, id);
        assert!(n.serves_reads, "{id}: {n:?}");
        assert_eq!(n.read_note, "");
    }
    assert_eq!(node(&t, "node-3").ack_lag_seconds, 1);
    let m = node(&t, "node-1");
    assert!(
        !m.serves_reads,
        "the master is the fallback, never a reader"
    );
    assert_eq!(m.read_note, "");
}

#[test]
fn a_down_replica_or_one_the_master_does_not_list_serves_no_reads() {
    let c = Clock::new();
    let mut s = read_limits(1000, 4);
    readers_layout(&mut s, 1, [0, 0], [0, 0], c.at(0));
    assert_eq!(s.refresh(c.at(0)).topology.readers.len(), 2);
    // node-3 paused: its agent cannot reach it; the master lists only node-2 now.
    apply(&mut s, &Obs::new(3).seq(2).down(), c.at(500));
    let t = s.refresh(c.at(500)).topology;
    assert_eq!(t.readers, [addr(2)]);
    assert_eq!(node(&t, "node-3").read_note, "down");
    assert!(!node(&t, "node-3").serves_reads);
    apply(
        &mut s,
        &Obs::new(1).seq(2).offset(5000).sees(3, 0),
        c.at(600),
    );
    apply(&mut s, &Obs::new(3).seq(3).offset(5000), c.at(600));
    let t = s.refresh(c.at(600)).topology;
    assert_eq!(t.readers, [addr(3)]);
    assert_eq!(node(&t, "node-2").read_note, "not-seen-by-master");
}

#[test]
fn lag_takes_a_replica_out_and_it_comes_back_within_half_the_limit() {
    let c = Clock::new();
    let mut s = read_limits(1000, 4);
    readers_layout(&mut s, 1, [0, 0], [0, 0], c.at(0));
    let v1 = s.refresh(c.at(0)).topology.version;
    // Lag inside the limits moves nothing: no new version.
    readers_layout(&mut s, 2, [3, 0], [900, 0], c.at(100));
    let r = s.refresh(c.at(100));
    assert!(!r.changed, "a lag inside the limits is a measurement");
    assert_eq!(r.topology.version, v1);
    // Over the byte limit: out, with a new version.
    readers_layout(&mut s, 3, [0, 0], [1001, 0], c.at(200));
    let t = s.refresh(c.at(200)).topology;
    assert!(t.version > v1);
    assert_eq!(t.readers, [addr(3)]);
    assert_eq!(node(&t, "node-2").read_note, "lag-bytes");
    // Back under the limit but above half of it: still out.
    readers_layout(&mut s, 4, [0, 0], [600, 0], c.at(300));
    assert_eq!(s.refresh(c.at(300)).topology.readers, [addr(3)]);
    readers_layout(&mut s, 5, [0, 0], [400, 0], c.at(400));
    assert_eq!(s.refresh(c.at(400)).topology.readers, [addr(2), addr(3)]);
    // Seconds since the last ack, as the master reports them.
    readers_layout(&mut s, 6, [0, 5], [0, 0], c.at(500));
    let t = s.refresh(c.at(500)).topology;
    assert_eq!(t.readers, [addr(2)]);
    assert_eq!(node(&t, "node-3").read_note, "lag-seconds");
}

#[test]
fn no_readers_without_a_confirmed_master_or_from_another_master() {
    let c = Clock::new();
    let mut s = read_limits(1000, 4);
    readers_layout(&mut s, 1, [0, 0], [0, 0], c.at(0));
    assert_eq!(s.refresh(c.at(0)).topology.readers.len(), 2);
    // The master's agent goes silent: no offset to measure against.
    apply(&mut s, &Obs::new(2).seq(2).offset(5000), c.at(3500));
    apply(&mut s, &Obs::new(3).seq(2).offset(5000), c.at(3500));
    let t = s.refresh(c.at(3500)).topology;
    assert!(t.readers.is_empty(), "{:?}", t.readers);
    assert_eq!(node(&t, "node-2").read_note, "no-master");
    // A replica of another node (re-pointed during a failover) is not a reader of this one.
    readers_layout(&mut s, 3, [0, 0], [0, 0], c.at(4000));
    apply(&mut s, &Obs::new(3).seq(4).replica_of(2), c.at(4000));
    let t = s.refresh(c.at(4000)).topology;
    assert_eq!(t.readers, [addr(2)]);
    assert_eq!(node(&t, "node-3").read_note, "other-master");
}

#[test]
fn an_unconfigured_node_never_serves_reads() {
    let c = Clock::new();
    let one = HostPort::new("127.0.0.1", 9001);
    let two = HostPort::new("127.0.0.1", 9002);
    let s1 = HostPort::new("127.0.0.1", 19001);
    let s2 = HostPort::new("127.0.0.1", 19002);
    let mut s = GroupState::new(
        G,
        Settings {
            nodes: NodeList::with_owners([("node-1", &one, &s1), ("node-2", &two, &s2)]),
            ..Settings::default()
        },
    );
    readers_layout(&mut s, 1, [0, 0], [0, 0], c.at(0));
    let t = s.refresh(c.at(0)).topology;
    assert_eq!(t.readers, [addr(2)]);
    assert_eq!(node(&t, "node-3").read_note, "not-configured");
}
