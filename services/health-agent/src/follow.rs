//! Following a promotion: re-point this node (a replica) at the master the coordinator
//! publishes, as soon as the promotion is established, instead of waiting for Sentinel.
//!
//! Why: with `min-replicas-to-write` a promoted master refuses writes (`NOREPLICAS`) until a
//! replica follows it, and Sentinel re-points the remaining replicas only after its next INFO
//! poll of the promoted node, about a second later. Sentinel's own later `REPLICAOF` to the same
//! master is a no-op, so the two never fight.
//!
//! The decision is a pure function of the coordinator's topology and what this agent saw
//! itself; it needs two independent witnesses for a new master: the promoted node's own agent
//! (through `master_confirmed`), and either this agent's own Sentinel, which must have reached
//! the topology's epoch, or the promoted node itself as this agent reads it: a master whose
//! `master_replid2` is the replication history this replica follows, i.e. a sibling promoted
//! from the same stream (a forced failover's leader is the only Sentinel at the new epoch for a
//! second or two; a stray or restarted old master never continues the replica's history). One
//! wrong report cannot move replicas.

use std::time::{Duration, Instant};

use redis_ha_common::HostPort;
use redis_ha_proto::v1::{MasterSource, Role};
use redis_ha_sentinel::same_node;

/// The part of the coordinator's topology the decision reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedMaster {
    pub master: HostPort,
    pub config_epoch: u64,
    pub source: MasterSource,
    /// The master's own agent reports it reachable and `role:master`.
    pub confirmed: bool,
}

/// What the decision needs.
#[derive(Debug, Clone, Copy)]
pub struct FollowInput<'a> {
    /// The address the Sentinels know this node by.
    pub own_addr: &'a HostPort,
    /// This node's role at its last poll (`Unspecified` when unreachable).
    pub own_role: Role,
    /// The master this node follows at its last poll (`None` when not known).
    pub own_master: Option<&'a HostPort>,
    /// The coordinator's master; `None` when there is no live topology watch.
    pub published: Option<&'a PublishedMaster>,
    /// The highest epoch this agent's own Sentinel took part in (or named).
    pub own_sentinel_epoch: u64,
    /// The promoted master this agent last re-pointed the node at (`None`: none since start).
    pub followed: Option<&'a HostPort>,
    /// This agent read the published master itself: `role:master`, continuing this replica's
    /// replication history ([`crate::redis_parse::ReplicationInfo::continued_by`]).
    pub sibling_promoted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowDecision {
    Keep,
    /// `REPLICAOF` this master (the published one, at this config epoch).
    ReplicaOf(HostPort, u64),
}

/// Re-point only a replica following another node, at a confirmed master the failover leader
/// promoted, at an epoch this node's own Sentinel has reached. The Sentinels' quorum master is
/// followed only to undo this agent's own follow of a promotion the coordinator withdrew: otherwise
/// the node is Sentinel's to re-point, and a topology that lags behind Sentinel's reconfiguration
/// must not pull the node back. A node that says `role:master` is never touched here: fencing
/// deals with strays.
pub fn decide(input: &FollowInput<'_>) -> FollowDecision {
    match candidate(input) {
        Some(p) if p.config_epoch <= input.own_sentinel_epoch || input.sibling_promoted => {
            FollowDecision::ReplicaOf(p.master.clone(), p.config_epoch)
        }
        _ => FollowDecision::Keep,
    }
}

/// Everything but the second witness holds: the caller may read the published master itself
/// (`sibling_promoted`) and decide again.
pub fn awaits_witness(input: &FollowInput<'_>) -> bool {
    candidate(input).is_some() && decide(input) == FollowDecision::Keep
}

/// The published master, when every condition but the second witness holds.
fn candidate<'a>(input: &FollowInput<'a>) -> Option<&'a PublishedMaster> {
    let p = input.published?;
    let follows_our_choice = match (input.own_master, input.followed) {
        (Some(m), Some(f)) => same_node(m, f),
        _ => false,
    };
    let trusted_source = match p.source {
        MasterSource::Promoted => true,
        MasterSource::SentinelQuorum => follows_our_choice,
        _ => false,
    };
    let already_following = input.own_master.is_some_and(|m| same_node(m, &p.master));
    if !trusted_source
        || !p.confirmed
        || same_node(&p.master, input.own_addr)
        || input.own_role != Role::Replica
        || already_following
    {
        return None;
    }
    Some(p)
}

/// No second `REPLICAOF` for the same (master, epoch) within `cooldown`: the poll that shows
/// the first one may not have come yet.
#[derive(Debug, Clone)]
pub struct FollowCooldown {
    cooldown: Duration,
    last: Option<(HostPort, u64, Instant)>,
}

impl FollowCooldown {
    pub fn new(cooldown: Duration) -> Self {
        Self {
            cooldown,
            last: None,
        }
    }

    /// True when `decision` is a repeat of the last action within the cooldown.
    pub fn suppressed(&self, decision: &FollowDecision, now: Instant) -> bool {
        match (decision, &self.last) {
            (FollowDecision::ReplicaOf(m, e), Some((lm, le, at))) => {
                same_node(m, lm) && e == le && now.saturating_duration_since(*at) < self.cooldown
            }
            _ => false,
        }
    }

    /// Records that `master` at `epoch` was followed at `now`.
    pub fn acted(&mut self, master: &HostPort, epoch: u64, now: Instant) {
        self.last = Some((master.clone(), epoch, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(port: u16) -> HostPort {
        HostPort::new("127.0.0.1", port)
    }

    fn published(port: u16, epoch: u64, source: MasterSource, confirmed: bool) -> PublishedMaster {
        PublishedMaster {
            master: hp(port),
            config_epoch: epoch,
            source,
            confirmed,
        }
    }

    /// Replica 9003 (its Sentinel at epoch 5) following `own_master`.
    fn replica<'a>(
        own: &'a HostPort,
        own_master: &'a HostPort,
        p: &'a PublishedMaster,
        followed: Option<&'a HostPort>,
    ) -> FollowInput<'a> {
        FollowInput {
            own_addr: own,
            own_role: Role::Replica,
            own_master: Some(own_master),
            published: Some(p),
            own_sentinel_epoch: 5,
            followed,
            sibling_promoted: false,
        }
    }

    #[test]
    fn every_branch() {
        use MasterSource::{LastKnown, Promoted, SentinelQuorum, Unspecified};
        let follow = Some((9002, 5));
        let old = Some(9001);
        // (case, published (port, epoch, source, confirmed), own role, own master, expected
        // (port, epoch)); this node is 9003, its Sentinel is at epoch 5, and it followed no
        // promotion yet (see `withdrawn_promotion_is_undone` for the quorum's master after one).
        #[rustfmt::skip]
        let cases = [
            ("promoted, confirmed, epoch reached", Some((9002, 5, Promoted, true)), Role::Replica, old, follow),
            ("sentinel quorum, no follow of ours to undo: Sentinel's to re-point", Some((9002, 5, SentinelQuorum, true)), Role::Replica, old, None),
            ("own sentinel ahead of the epoch", Some((9002, 4, Promoted, true)), Role::Replica, old, Some((9002, 4))),
            ("replica whose master is not known", Some((9002, 5, Promoted, true)), Role::Replica, None, follow),
            ("no topology watch", None, Role::Replica, old, None),
            ("not confirmed by its own agent", Some((9002, 5, Promoted, false)), Role::Replica, old, None),
            ("last-known source", Some((9002, 5, LastKnown, true)), Role::Replica, old, None),
            ("unspecified source", Some((9002, 5, Unspecified, true)), Role::Replica, old, None),
            ("no master", Some((9002, 5, MasterSource::None, true)), Role::Replica, old, None),
            ("epoch beyond this agent's Sentinel (one witness only)", Some((9002, 6, Promoted, true)), Role::Replica, old, None),
            ("the published master is this node", Some((9003, 5, Promoted, true)), Role::Replica, old, None),
            ("already following it", Some((9002, 5, Promoted, true)), Role::Replica, Some(9002), None),
            ("this node says master", Some((9002, 5, Promoted, true)), Role::Master, None, None),
            ("this node unreachable", Some((9002, 5, Promoted, true)), Role::Unspecified, old, None),
        ];
        let own = hp(9003);
        for (case, p, own_role, own_master, want) in cases {
            let p =
                p.map(|(port, epoch, source, confirmed)| published(port, epoch, source, confirmed));
            let own_master = own_master.map(hp);
            let got = decide(&FollowInput {
                own_addr: &own,
                own_role,
                own_master: own_master.as_ref(),
                published: p.as_ref(),
                own_sentinel_epoch: 5,
                followed: None,
                sibling_promoted: false,
            });
            let want = want.map_or(FollowDecision::Keep, |(port, epoch)| {
                FollowDecision::ReplicaOf(hp(port), epoch)
            });
            assert_eq!(got, want, "{case}");
        }
    }

    /// A promotion the coordinator withdraws: the quorum's (confirmed) master is followed again,
    /// so this node never stays with the withdrawn one.
    #[test]
    fn withdrawn_promotion_is_undone() {
        use MasterSource::{LastKnown, Promoted, SentinelQuorum};
        let own = hp(9003);
        let old = hp(9001);
        let promoted = hp(9002);
        // 1. Promoted 9002 at epoch 5: follow it (the agent remembers it followed 9002).
        let p = published(9002, 5, Promoted, true);
        assert_eq!(
            decide(&replica(&own, &old, &p, None)),
            FollowDecision::ReplicaOf(hp(9002), 5)
        );
        let followed = Some(&promoted);
        // 2. Withdrawn: the coordinator falls back to its last decision (9001, epoch 4) before
        //    the Sentinels confirm anything: nothing moves on a last-known master.
        let last = published(9001, 4, LastKnown, true);
        assert_eq!(
            decide(&replica(&own, &promoted, &last, followed)),
            FollowDecision::Keep
        );
        // 3. The quorum names 9001 again, its agent does not confirm it yet: wait.
        let unconfirmed = published(9001, 4, SentinelQuorum, false);
        assert_eq!(
            decide(&replica(&own, &promoted, &unconfirmed, followed)),
            FollowDecision::Keep
        );
        // 4. Confirmed: back to 9001.
        let quorum = published(9001, 4, SentinelQuorum, true);
        assert_eq!(
            decide(&replica(&own, &promoted, &quorum, followed)),
            FollowDecision::ReplicaOf(hp(9001), 4)
        );
        // 5. Once following it, nothing more to do.
        assert_eq!(
            decide(&replica(&own, &old, &quorum, followed)),
            FollowDecision::Keep
        );
        // The withdrawn master, now demoted to a replica of 9001 by fencing, is left alone too.
        assert_eq!(
            decide(&replica(&promoted, &old, &quorum, None)),
            FollowDecision::Keep
        );
    }

    /// The quorum's master moves only a node that follows this agent's own choice: when Sentinel
    /// re-pointed the node meanwhile (a later failover, or a topology lagging behind Sentinel),
    /// the agent keeps out of its way.
    #[test]
    fn quorum_master_never_pulls_back_sentinels_reconfiguration() {
        let own = hp(9003);
        let ours = hp(9002);
        let sentinels = hp(9004);
        let quorum = published(9001, 4, MasterSource::SentinelQuorum, true);
        assert_eq!(
            decide(&replica(&own, &sentinels, &quorum, Some(&ours))),
            FollowDecision::Keep
        );
        assert_eq!(
            decide(&replica(&own, &sentinels, &quorum, None)),
            FollowDecision::Keep
        );
    }

    /// A forced failover: only its leader Sentinel is at the new epoch. The promoted node read
    /// by this agent, continuing this replica's history, is the second witness.
    #[test]
    fn a_promoted_sibling_is_the_second_witness_when_the_own_sentinel_lags() {
        let own = hp(9003);
        let old = hp(9001);
        let p = published(9002, 6, MasterSource::Promoted, true);
        let mut input = replica(&own, &old, &p, None);
        assert_eq!(decide(&input), FollowDecision::Keep, "one witness only");
        assert!(awaits_witness(&input));
        input.sibling_promoted = true;
        assert_eq!(decide(&input), FollowDecision::ReplicaOf(hp(9002), 6));
        assert!(!awaits_witness(&input));
        // No witness is looked for when something else is missing.
        let unconfirmed = published(9002, 6, MasterSource::Promoted, false);
        let input = replica(&own, &old, &unconfirmed, None);
        assert!(!awaits_witness(&input));
        let mut input = replica(&own, &old, &unconfirmed, None);
        input.sibling_promoted = true;
        assert_eq!(decide(&input), FollowDecision::Keep);
    }

    #[test]
    fn cooldown_only_for_the_same_master_and_epoch() {
        let t0 = Instant::now();
        let mut c = FollowCooldown::new(Duration::from_secs(1));
        let d = FollowDecision::ReplicaOf(hp(9002), 5);
        assert!(!c.suppressed(&d, t0));
        c.acted(&hp(9002), 5, t0);
        assert!(c.suppressed(&d, t0 + Duration::from_millis(999)));
        assert!(!c.suppressed(&d, t0 + Duration::from_secs(1)));
        assert!(!c.suppressed(&FollowDecision::ReplicaOf(hp(9002), 6), t0));
        assert!(!c.suppressed(&FollowDecision::ReplicaOf(hp(9001), 5), t0));
        assert!(!c.suppressed(&FollowDecision::Keep, t0));
    }
}
