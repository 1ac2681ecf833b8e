//! Fencing: a node that says `role:master` while the Sentinel quorum (the highest config
//! epoch, as this node's Sentinel reports it) names another master is a split brain. After a
//! grace period the agent demotes it with `REPLICAOF <quorum master>`.
//!
//! The decision is a pure function of what the agent knows; the caller measures how long
//! the mismatch has lasted with [`MismatchTimer`].

use std::time::{Duration, Instant};

use redis_ha_common::HostPort;
use redis_ha_proto::v1::Role;
use redis_ha_sentinel::same_node;

/// What the decision needs.
#[derive(Debug, Clone, Copy)]
pub struct FencingInput<'a> {
    /// This node's role, as its last poll saw it (`Unspecified` when unreachable).
    pub own_role: Role,
    /// The address the Sentinels know this node by.
    pub own_addr: &'a HostPort,
    /// The master the Sentinel names for the group, with its config epoch; `None` when the
    /// Sentinel is unreachable or its answer is stale (never fence on old news).
    pub sentinel_master: Option<(&'a HostPort, u64)>,
    pub failover_in_progress: bool,
    /// This node was named by a recent `+selected-slave` / `+promoted-slave` / `+switch-master`.
    pub recently_named: bool,
    /// How long the mismatch has lasted so far.
    pub mismatch_for: Duration,
    pub grace: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FencingDecision {
    Keep,
    /// Demote this node: `REPLICAOF` this master.
    Demote(HostPort),
}

/// The quorum's master when this node is a stray master right now (grace not considered).
pub fn stray_master<'a>(input: &FencingInput<'a>) -> Option<&'a HostPort> {
    if input.own_role != Role::Master || input.failover_in_progress || input.recently_named {
        return None;
    }
    let (master, _epoch) = input.sentinel_master?;
    (!same_node(master, input.own_addr)).then_some(master)
}

/// Keep, or demote once the mismatch has persisted for the grace period.
pub fn decide(input: &FencingInput<'_>) -> FencingDecision {
    match stray_master(input) {
        Some(master) if input.mismatch_for >= input.grace => {
            FencingDecision::Demote(master.clone())
        }
        _ => FencingDecision::Keep,
    }
}

/// Measures how long a mismatch has lasted; any moment without one restarts it.
#[derive(Debug, Default, Clone)]
pub struct MismatchTimer {
    since: Option<Instant>,
}

impl MismatchTimer {
    pub fn update(&mut self, mismatch: bool, now: Instant) -> Duration {
        if mismatch {
            now.saturating_duration_since(*self.since.get_or_insert(now))
        } else {
            self.since = None;
            Duration::ZERO
        }
    }

    pub fn reset(&mut self) {
        self.since = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Duration = Duration::from_secs(3);

    fn me() -> HostPort {
        HostPort::new("10.0.0.1", 9001)
    }

    fn other() -> HostPort {
        HostPort::new("10.0.0.2", 9002)
    }

    fn input<'a>(own: &'a HostPort, quorum: &'a HostPort) -> FencingInput<'a> {
        FencingInput {
            own_role: Role::Master,
            own_addr: own,
            sentinel_master: Some((quorum, 4)),
            failover_in_progress: false,
            recently_named: false,
            mismatch_for: GRACE,
            grace: GRACE,
        }
    }

    #[test]
    fn stray_master_is_demoted_after_the_grace() {
        let (me, other) = (me(), other());
        assert_eq!(
            decide(&input(&me, &other)),
            FencingDecision::Demote(other.clone())
        );
        let early = FencingInput {
            mismatch_for: GRACE - Duration::from_millis(1),
            ..input(&me, &other)
        };
        assert_eq!(stray_master(&early), Some(&other));
        assert_eq!(decide(&early), FencingDecision::Keep);
    }

    #[test]
    fn the_named_master_is_kept() {
        let me = me();
        assert_eq!(decide(&input(&me, &me)), FencingDecision::Keep);
        let shouting = HostPort::new("REDIS-1", 9001);
        let lower = HostPort::new("redis-1", 9001);
        assert_eq!(decide(&input(&lower, &shouting)), FencingDecision::Keep);
        let other_port = HostPort::new("10.0.0.1", 9002);
        assert_eq!(
            decide(&input(&me, &other_port)),
            FencingDecision::Demote(other_port.clone())
        );
    }

    #[test]
    fn replicas_and_unreachable_nodes_are_kept() {
        let (me, other) = (me(), other());
        for role in [Role::Replica, Role::Unspecified] {
            let i = FencingInput {
                own_role: role,
                ..input(&me, &other)
            };
            assert_eq!(decide(&i), FencingDecision::Keep, "{role:?}");
        }
    }

    /// Each of these holds the demotion, however long the mismatch has lasted.
    #[test]
    fn never_during_a_failover_just_after_being_named_or_without_a_sentinel_answer() {
        let (me, other) = (me(), other());
        let long = Duration::from_secs(3600);
        type Set = fn(&mut FencingInput<'_>);
        let cases: [(&str, Set); 3] = [
            ("during a failover", |i| i.failover_in_progress = true),
            ("just selected or switched to", |i| i.recently_named = true),
            ("without a fresh Sentinel answer", |i| {
                i.sentinel_master = None
            }),
        ];
        for (case, set) in cases {
            let mut i = FencingInput {
                mismatch_for: long,
                ..input(&me, &other)
            };
            set(&mut i);
            assert_eq!(decide(&i), FencingDecision::Keep, "{case}");
        }
    }

    /// The agent asks its peers before demoting and follows [`redis_ha_sentinel::named_master`]
    /// with quorum 1 over its own and the peers' views.
    #[test]
    fn the_peers_views_decide_by_the_one_rule() {
        use redis_ha_sentinel::{named_master, MasterView};
        let view = |sentinel: u16, master: HostPort, epoch: u64| MasterView {
            sentinel: HostPort::new("10.0.0.9", sentinel),
            master,
            config_epoch: epoch,
            settled: true,
        };
        let pick =
            |views: &[MasterView]| named_master(views, 1).map(|n| (n.master, n.config_epoch));
        assert_eq!(pick(&[]), None);
        let third = HostPort::new("10.0.0.3", 9003);
        let views = [view(1, me(), 3), view(2, other(), 5), view(3, third, 4)];
        assert_eq!(pick(&views), Some((other(), 5)), "the highest epoch");
        // One view each at one epoch: the smallest address, whichever Sentinel is listed
        // first (it used to be this node's own Sentinel's view).
        let tie = [view(1, me(), 5), view(2, other(), 5)];
        assert_eq!(pick(&tie), Some((me(), 5)));
        let tie = [view(2, other(), 5), view(1, me(), 5)];
        assert_eq!(pick(&tie), Some((me(), 5)));
        // Own Sentinel names another node, both peers this one, at one epoch: the majority
        // wins, so this node stays master (the first-listed rule would have demoted it).
        let views = [view(1, other(), 5), view(2, me(), 5), view(3, me(), 5)];
        assert_eq!(pick(&views), Some((me(), 5)));
    }

    #[test]
    fn mismatch_timer_restarts_on_any_gap() {
        let t0 = Instant::now();
        let mut t = MismatchTimer::default();
        assert_eq!(t.update(true, t0), Duration::ZERO);
        assert_eq!(t.update(true, t0 + GRACE), GRACE);
        assert_eq!(t.update(false, t0 + GRACE), Duration::ZERO);
        assert_eq!(
            t.update(true, t0 + GRACE + Duration::from_secs(1)),
            Duration::ZERO
        );
        assert_eq!(
            t.update(true, t0 + GRACE + Duration::from_secs(2)),
            Duration::from_secs(1)
        );
        t.reset();
        assert_eq!(t.update(true, t0 + GRACE * 2), Duration::ZERO);
    }
}
