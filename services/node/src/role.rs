//! The role a Redis node takes when its container starts: a pure function of what the node
//! found (its previous config, its data directory) and what the Sentinels and its peers said.
//!
//! The rule, in order ([`decide_redis_role`]):
//! 1. **A quorum of Sentinels names a master** ([`named_master`] with the configured quorum):
//!    follow it. When it names this node, the node starts as master, except when its data
//!    directory is empty while the group shows it has held data (a Sentinel at config epoch > 0
//!    or knowing replicas, a peer with a replication offset > 0, this node's own previous
//!    config): a rescheduled task on a fresh volume would otherwise become an empty master and
//!    wipe its replicas by full resync. It then starts as a replica of the best peer (below), and
//!    the Sentinels, seeing their master report `role:slave`, fail over to a replica with data.
//!    Nor does it start as master while a Sentinel that answered is failing it over
//!    ([`failover_under_way`]): a master that came back (the swarm restarted its task) while its
//!    failover still ran would acknowledge writes that the promotion then discards. The node
//!    waits for that failover to end (promoted: it follows the new master; aborted: it is the
//!    master again); if the wait runs out first it starts as a replica of the best peer.
//! 2. **The cluster has never started** ([`never_started`]): every configured Sentinel answered
//!    with config epoch 0 and no known replicas, this node has no previous config and an empty
//!    data directory, and no peer that answered reports a replication offset > 0. The initial
//!    master starts as master, every other node as its replica. (Normally step 1 already says
//!    the same: a new cluster's Sentinels all monitor the initial master at epoch 0.)
//! 3. **No quorum answered within the wait: never a master.** A replica of the last master this
//!    node knew (its previous config's `replicaof`); else of the best peer (one that reports
//!    `role:master`, then the highest offset); else of the initial master, unless that is this
//!    node. A node that is the initial master, was master last time (or has no previous
//!    config) and finds no peer has no safe role: starting as master could be a second master
//!    or an empty one, and `replicaof` itself is invalid. It refuses to start
//!    ([`NoSafeRole`]); the swarm starts it again after its restart delay, by when the
//!    Sentinels usually answer.

use std::fmt;

use redis_ha_common::HostPort;
use redis_ha_sentinel::{named_master, same_node, MasterView};

/// One Sentinel's answer to `SENTINEL MASTER <group>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentinelAnswer {
    pub view: MasterView,
    /// `num-slaves`: the replicas this Sentinel knows (it remembers them across restarts).
    pub known_replicas: u32,
}

/// A peer Redis that answered `INFO replication`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerState {
    pub addr: HostPort,
    /// It reports `role:master`.
    pub is_master: bool,
    /// `master_repl_offset`: > 0 once it has replicated or accepted anything.
    pub repl_offset: u64,
}

/// This node's config from its previous run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Previous {
    /// No previous config: the node has never started on this volume.
    None,
    /// It had no `replicaof`: it was master.
    Master,
    /// Its last `replicaof` (Sentinel rewrites it at every reconfiguration).
    ReplicaOf(HostPort),
}

/// Everything the decision depends on.
#[derive(Clone, Debug)]
pub struct RoleInput {
    /// This node's announced address.
    pub me: HostPort,
    /// Other spellings of this node's host (its interface addresses): a Sentinel may name it so.
    pub my_hosts: Vec<String>,
    pub initial_master: HostPort,
    pub quorum: usize,
    /// How many Sentinels are configured (all of them must answer for "never started").
    pub sentinels_configured: usize,
    pub answers: Vec<SentinelAnswer>,
    pub previous: Previous,
    /// No RDB or AOF file in the data directory.
    pub data_empty: bool,
    /// The peers that answered.
    pub peers: Vec<PeerState>,
}

/// What shows that the group has held data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Evidence {
    SentinelEpoch { sentinel: HostPort, epoch: u64 },
    KnownReplicas { sentinel: HostPort, replicas: u32 },
    PeerOffset { peer: HostPort, offset: u64 },
    PreviousConfig,
}

impl fmt::Display for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SentinelEpoch { sentinel, epoch } => {
                write!(f, "Sentinel {sentinel} is at config epoch {epoch}")
            }
            Self::KnownReplicas { sentinel, replicas } => {
                write!(f, "Sentinel {sentinel} knows {replicas} replica(s)")
            }
            Self::PeerOffset { peer, offset } => {
                write!(f, "peer {peer} has replication offset {offset}")
            }
            Self::PreviousConfig => f.write_str("this node has a config from a previous run"),
        }
    }
}

/// Why a node starts as it does (the log line says it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// `votes` Sentinels (>= quorum) name this master at `config_epoch`.
    Quorum { config_epoch: u64, votes: usize },
    /// The Sentinels name this node but its data directory is empty and the group held data.
    EmptyDataDir { evidence: Evidence },
    /// The cluster has never started (see [`never_started`]).
    NeverStarted,
    /// No quorum within the wait: the master of this node's previous config.
    LastKnownMaster,
    /// No quorum within the wait and no usable last master: the best peer that answered.
    BestPeer,
    /// No quorum within the wait, no last master, no peer: the initial master.
    InitialMaster,
    /// The Sentinels name this node but `sentinel` is failing it over: not a master until
    /// that ends (the wait ran out first).
    FailoverUnderWay { sentinel: HostPort },
}

/// The decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartRole {
    Master { reason: Reason },
    Replica { of: HostPort, reason: Reason },
}

/// No role is safe: see the module documentation, step 3.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "no quorum of Sentinels answered, this node is the initial master {me} without a master to \
     follow, and no peer answered: starting as master could make a second (or an empty) master"
)]
pub struct NoSafeRole {
    pub me: HostPort,
}

impl RoleInput {
    fn is_me(&self, a: &HostPort) -> bool {
        same_node(a, &self.me)
            || (a.port == self.me.port
                && self
                    .my_hosts
                    .iter()
                    .any(|h| h.eq_ignore_ascii_case(&a.host)))
    }
}

/// The first sign that the group has held data, if any.
pub fn held_data(input: &RoleInput) -> Option<Evidence> {
    let answers = &input.answers;
    answers
        .iter()
        .find(|a| a.view.config_epoch > 0)
        .map(|a| Evidence::SentinelEpoch {
            sentinel: a.view.sentinel.clone(),
            epoch: a.view.config_epoch,
        })
        .or_else(|| {
            answers
                .iter()
                .find(|a| a.known_replicas > 0)
                .map(|a| Evidence::KnownReplicas {
                    sentinel: a.view.sentinel.clone(),
                    replicas: a.known_replicas,
                })
        })
        .or_else(|| {
            input
                .peers
                .iter()
                .find(|p| p.repl_offset > 0)
                .map(|p| Evidence::PeerOffset {
                    peer: p.addr.clone(),
                    offset: p.repl_offset,
                })
        })
        .or_else(|| (input.previous != Previous::None).then_some(Evidence::PreviousConfig))
}

/// True when the cluster has provably never started: every configured Sentinel answered (one
/// vote per Sentinel), none is past config epoch 0 or knows a replica, no peer reports data, and
/// this node has neither a previous config nor data. A missing answer is not proof.
pub fn never_started(input: &RoleInput) -> bool {
    let mut sentinels: Vec<(String, u16)> = input
        .answers
        .iter()
        .map(|a| {
            (
                a.view.sentinel.host.to_ascii_lowercase(),
                a.view.sentinel.port,
            )
        })
        .collect();
    sentinels.sort();
    sentinels.dedup();
    input.sentinels_configured > 0
        && sentinels.len() >= input.sentinels_configured
        && input.data_empty
        && held_data(input).is_none()
}

/// The peer to follow without a quorum: one that reports `role:master`, then the highest offset,
/// then the smallest address (so the answer does not depend on the order of the answers).
fn best_peer(input: &RoleInput) -> Option<&PeerState> {
    input
        .peers
        .iter()
        .filter(|p| !input.is_me(&p.addr))
        .max_by(|a, b| {
            (a.is_master, a.repl_offset)
                .cmp(&(b.is_master, b.repl_offset))
                .then_with(|| b.addr.cmp(&a.addr))
        })
}

/// A replica of the best peer, else of the initial master unless that is this node.
fn replica_of_a_peer(input: &RoleInput, reason: Option<Reason>) -> Result<StartRole, NoSafeRole> {
    if let Some(p) = best_peer(input) {
        return Ok(StartRole::Replica {
            of: p.addr.clone(),
            reason: reason.unwrap_or(Reason::BestPeer),
        });
    }
    if !input.is_me(&input.initial_master) {
        return Ok(StartRole::Replica {
            of: input.initial_master.clone(),
            reason: reason.unwrap_or(Reason::InitialMaster),
        });
    }
    Err(NoSafeRole {
        me: input.me.clone(),
    })
}

/// The role this node starts in (the rule is in the module documentation).
pub fn decide_redis_role(input: &RoleInput) -> Result<StartRole, NoSafeRole> {
    let views: Vec<MasterView> = input.answers.iter().map(|a| a.view.clone()).collect();
    // 1. a quorum names a master.
    if let Some(n) = named_master(&views, input.quorum) {
        let reason = Reason::Quorum {
            config_epoch: n.config_epoch,
            votes: n.votes,
        };
        if !input.is_me(&n.master) {
            return Ok(StartRole::Replica {
                of: n.master,
                reason,
            });
        }
        if input.data_empty {
            if let Some(evidence) = held_data(input) {
                return replica_of_a_peer(input, Some(Reason::EmptyDataDir { evidence }));
            }
        }
        if let Some(sentinel) = failover_under_way(input) {
            return replica_of_a_peer(input, Some(Reason::FailoverUnderWay { sentinel }));
        }
        return Ok(StartRole::Master { reason });
    }
    // 2. a cluster that has never started.
    if never_started(input) {
        return Ok(if input.is_me(&input.initial_master) {
            StartRole::Master {
                reason: Reason::NeverStarted,
            }
        } else {
            StartRole::Replica {
                of: input.initial_master.clone(),
                reason: Reason::NeverStarted,
            }
        });
    }
    // 3. no quorum: never a master.
    if let Previous::ReplicaOf(m) = &input.previous {
        if !input.is_me(m) {
            return Ok(StartRole::Replica {
                of: m.clone(),
                reason: Reason::LastKnownMaster,
            });
        }
    }
    replica_of_a_peer(input, None)
}

/// The first Sentinel that answered with a failover of the group under way
/// (`failover_in_progress`), if any.
pub fn failover_under_way(input: &RoleInput) -> Option<HostPort> {
    input
        .answers
        .iter()
        .find(|a| !a.view.settled)
        .map(|a| a.view.sentinel.clone())
}

/// True when waiting longer cannot change the decision: a quorum names a master, and, when
/// that is this node, no Sentinel that answered is failing it over.
pub fn settled(input: &RoleInput) -> bool {
    let views: Vec<MasterView> = input.answers.iter().map(|a| a.view.clone()).collect();
    match named_master(&views, input.quorum) {
        None => false,
        Some(n) => !input.is_me(&n.master) || failover_under_way(input).is_none(),
    }
}

impl fmt::Display for StartRole {
    /// The log line of the decision.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, reason) = match self {
            Self::Master { reason } => ("master".to_owned(), reason),
            Self::Replica { of, reason } => (format!("replica of {of}"), reason),
        };
        write!(f, "starting as {what}: ")?;
        match reason {
            Reason::Quorum {
                config_epoch,
                votes,
            } => write!(
                f,
                "{votes} Sentinel(s), at least the quorum, name this master at config epoch {config_epoch}"
            ),
            Reason::EmptyDataDir { evidence } => write!(
                f,
                "the Sentinels name this node master, but its data directory is empty and the \
                 group has held data ({evidence}): an empty master would wipe its replicas"
            ),
            Reason::NeverStarted => f.write_str(
                "the cluster has never started (every Sentinel at config epoch 0 without \
                 replicas, no data here or on any peer)",
            ),
            Reason::LastKnownMaster => f.write_str(
                "no quorum of Sentinels answered within the wait: the master of the previous config",
            ),
            Reason::BestPeer => f.write_str(
                "no quorum of Sentinels answered within the wait and no last master: the best peer",
            ),
            Reason::InitialMaster => f.write_str(
                "no quorum of Sentinels answered within the wait, no last master, no peer: the initial master",
            ),
            Reason::FailoverUnderWay { sentinel } => write!(
                f,
                "the Sentinels name this node master, but {sentinel} was still failing it over \
                 when the wait ran out: as master it could acknowledge writes the promotion \
                 discards"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(host: &str, port: u16) -> HostPort {
        HostPort::new(host, port)
    }

    fn answer(sentinel: u16, master: &str, port: u16, epoch: u64, replicas: u32) -> SentinelAnswer {
        SentinelAnswer {
            view: MasterView {
                sentinel: hp("sentinel", sentinel),
                master: hp(master, port),
                config_epoch: epoch,
                settled: true,
            },
            known_replicas: replicas,
        }
    }

    /// The three Sentinels' answers, all naming `master` at `epoch` with `replicas` known.
    fn all_name(master: &str, port: u16, epoch: u64, replicas: u32) -> Vec<SentinelAnswer> {
        (1..=3)
            .map(|s| answer(s, master, port, epoch, replicas))
            .collect()
    }

    fn peer(host: &str, port: u16, is_master: bool, offset: u64) -> PeerState {
        PeerState {
            addr: hp(host, port),
            is_master,
            repl_offset: offset,
        }
    }

    /// Node `n` (redis-n:900n) of a three-node group with three Sentinels, quorum 2, initial
    /// master redis-1:9001, nothing answered yet, data present, previous config as master.
    fn node(n: u16) -> RoleInput {
        RoleInput {
            me: hp(&format!("redis-{n}"), 9000 + n),
            my_hosts: vec![format!("10.0.0.{n}")],
            initial_master: hp("redis-1", 9001),
            quorum: 2,
            sentinels_configured: 3,
            answers: vec![],
            previous: Previous::Master,
            data_empty: false,
            peers: vec![],
        }
    }

    /// Node `n` on a fresh volume: no previous config, no data.
    fn fresh(n: u16) -> RoleInput {
        RoleInput {
            previous: Previous::None,
            data_empty: true,
            ..node(n)
        }
    }

    /// The decision as (the master followed, `None` for master; why). Panics on [`NoSafeRole`].
    fn decided(i: &RoleInput) -> (Option<(String, u16)>, Reason) {
        match decide_redis_role(i) {
            Ok(StartRole::Master { reason }) => (None, reason),
            Ok(StartRole::Replica { of, reason }) => (Some((of.host, of.port)), reason),
            Err(e) => panic!("no role for {i:?}: {e}"),
        }
    }

    fn of(host: &str, port: u16) -> Option<(String, u16)> {
        Some((host.to_owned(), port))
    }

    #[test]
    fn never_master_while_a_sentinel_fails_it_over() {
        // The swarm restarted redis-1's task while sentinel 2 still runs its failover: the
        // quorum (still) names redis-1, which must not take writes the promotion discards.
        let mut i = node(1);
        i.answers = all_name("redis-1", 9001, 0, 2);
        i.answers[1].view.settled = false;
        i.peers = vec![
            peer("redis-2", 9002, false, 900),
            peer("redis-3", 9003, false, 1000),
        ];
        assert!(!settled(&i), "keeps asking while the failover runs");
        assert_eq!(failover_under_way(&i), Some(hp("sentinel", 2)));
        assert_eq!(
            decided(&i),
            (
                of("redis-3", 9003),
                Reason::FailoverUnderWay {
                    sentinel: hp("sentinel", 2)
                }
            )
        );
        // The failover aborted (no promotion): master again, settled.
        i.answers[1].view.settled = true;
        assert!(settled(&i));
        assert!(matches!(decided(&i), (None, Reason::Quorum { .. })));
        // Promoted: the quorum names redis-3 at a new epoch; a replica of it even while one
        // Sentinel has not finished (its failover concerns another master now).
        i.answers = all_name("redis-3", 9003, 1, 2);
        i.answers[0].view.settled = false;
        assert!(settled(&i));
        assert_eq!(
            decided(&i),
            (
                of("redis-3", 9003),
                Reason::Quorum {
                    config_epoch: 1,
                    votes: 3
                }
            )
        );
        // No peer to follow and still failed over when the wait ran out: no safe role.
        let mut i = node(1);
        i.answers = all_name("redis-1", 9001, 0, 2);
        i.answers[0].view.settled = false;
        assert!(decide_redis_role(&i).is_err());
    }

    #[test]
    fn follows_the_master_a_quorum_names_itself_included() {
        let two = vec![
            answer(1, "redis-2", 9002, 3, 2),
            answer(3, "REDIS-2", 9002, 3, 2),
        ];
        let quorum = Reason::Quorum {
            config_epoch: 3,
            votes: 2,
        };
        let mut i = node(1);
        i.answers = two.clone();
        // (named_master keeps the smallest spelling of a host.)
        assert_eq!(decided(&i), (of("REDIS-2", 9002), quorum.clone()));
        assert!(settled(&i));
        // Named itself (the host's case aside): master.
        let mut i = node(2);
        i.answers = two;
        assert_eq!(decided(&i), (None, quorum));
        // By one of its interface addresses too.
        i.answers = all_name("10.0.0.2", 9002, 3, 2);
        assert_eq!(decided(&i).0, None);
        // The same address on another port is another node.
        i.answers = all_name("10.0.0.2", 9003, 3, 2);
        assert_eq!(decided(&i).0, of("10.0.0.2", 9003));
    }

    #[test]
    fn one_sentinel_is_not_a_quorum() {
        // The bash entrypoint followed the first Sentinel that answered: one stale Sentinel
        // naming this node must not make it master.
        let mut i = node(1);
        i.previous = Previous::ReplicaOf(hp("redis-2", 9002));
        i.answers = vec![answer(1, "redis-1", 9001, 5, 2)];
        assert_eq!(decided(&i), (of("redis-2", 9002), Reason::LastKnownMaster));
        assert!(!settled(&i));
    }

    #[test]
    fn without_quorum_an_old_master_never_starts_as_master() {
        // It was master (no replicaof in its previous config), no Sentinel answers.
        let mut i = node(2);
        // No peer: the initial master.
        assert_eq!(decided(&i), (of("redis-1", 9001), Reason::InitialMaster));
        // A peer that reports role:master is preferred, then the highest offset.
        i.peers = vec![
            peer("redis-3", 9003, false, 900),
            peer("redis-1", 9001, true, 100),
        ];
        assert_eq!(decided(&i), (of("redis-1", 9001), Reason::BestPeer));
        i.peers[1].is_master = false;
        assert_eq!(decided(&i), (of("redis-3", 9003), Reason::BestPeer));
    }

    #[test]
    fn the_initial_master_without_quorum_and_peers_has_no_safe_role() {
        let mut i = node(1);
        let none = Err(NoSafeRole {
            me: hp("redis-1", 9001),
        });
        assert_eq!(decide_redis_role(&i), none);
        // A previous replicaof naming itself (invalid) is no last master either.
        i.previous = Previous::ReplicaOf(hp("redis-1", 9001));
        assert_eq!(decide_redis_role(&i), none);
        // Two Sentinels of three at epoch 0 is not proof of a never-started cluster.
        let mut i = fresh(1);
        i.quorum = 3;
        i.answers = all_name("redis-1", 9001, 0, 0);
        i.answers.pop();
        assert!(!never_started(&i));
        assert_eq!(decide_redis_role(&i), none);
        // A peer that answered is followed instead.
        i.peers = vec![peer("redis-2", 9002, false, 0)];
        assert_eq!(decided(&i), (of("redis-2", 9002), Reason::BestPeer));
    }

    #[test]
    fn a_never_started_cluster_starts_on_the_initial_master() {
        let new_cluster = |n| RoleInput {
            answers: all_name("redis-1", 9001, 0, 0),
            peers: vec![peer("redis-2", 9002, true, 0)],
            ..fresh(n)
        };
        let i = new_cluster(1);
        assert!(never_started(&i));
        let quorum = Reason::Quorum {
            config_epoch: 0,
            votes: 3,
        };
        assert_eq!(decided(&i), (None, quorum.clone()));
        assert_eq!(decided(&new_cluster(3)), (of("redis-1", 9001), quorum));
        // Without a quorum (quorum above the answers that agree), all three answering at
        // epoch 0 still proves it.
        let mut i = new_cluster(1);
        i.quorum = 4;
        assert_eq!(decided(&i), (None, Reason::NeverStarted));
        let mut i = new_cluster(2);
        i.quorum = 4;
        assert_eq!(decided(&i), (of("redis-1", 9001), Reason::NeverStarted));
        // The same Sentinel three times is one answer.
        let mut i = new_cluster(1);
        i.answers = (0..3).map(|_| answer(1, "redis-1", 9001, 0, 0)).collect();
        assert!(!never_started(&i));
    }

    #[test]
    fn each_sign_of_data_means_the_cluster_has_started() {
        let base = RoleInput {
            answers: all_name("redis-1", 9001, 0, 0),
            ..fresh(1)
        };
        assert!(never_started(&base));
        assert_eq!(held_data(&base), None);
        let mut i = base.clone();
        i.answers[2].view.config_epoch = 1;
        let at = hp("sentinel", 3);
        assert_eq!(
            held_data(&i),
            Some(Evidence::SentinelEpoch {
                sentinel: at,
                epoch: 1
            })
        );
        let mut i = base.clone();
        i.answers[1].known_replicas = 1;
        assert!(!never_started(&i));
        let mut i = base.clone();
        i.peers = vec![peer("redis-2", 9002, false, 1)];
        assert!(!never_started(&i));
        let mut i = base.clone();
        i.previous = Previous::Master;
        assert_eq!(held_data(&i), Some(Evidence::PreviousConfig));
        let mut i = base.clone();
        i.data_empty = false;
        assert!(!never_started(&i));
    }

    #[test]
    fn an_empty_data_dir_never_makes_a_master_of_a_group_that_held_data() {
        // (node, what the Sentinels say, the peers) → the master followed and the evidence.
        let cases = [
            // Rescheduled on a fresh volume: the Sentinels still name it (epoch 0, but they
            // know two replicas); the peer with the most data is followed.
            (
                1,
                all_name("redis-1", 9001, 0, 2),
                vec![
                    peer("redis-2", 9002, false, 5000),
                    peer("redis-3", 9003, false, 4000),
                ],
                of("redis-2", 9002),
                Evidence::KnownReplicas {
                    sentinel: hp("sentinel", 1),
                    replicas: 2,
                },
            ),
            // Epoch > 0 is evidence on its own; with no peer answering: the initial master.
            (
                2,
                all_name("redis-2", 9002, 4, 0),
                vec![],
                of("redis-1", 9001),
                Evidence::SentinelEpoch {
                    sentinel: hp("sentinel", 1),
                    epoch: 4,
                },
            ),
        ];
        for (n, answers, peers, want, evidence) in cases {
            let i = RoleInput {
                answers,
                peers,
                ..fresh(n)
            };
            assert_eq!(decided(&i), (want, Reason::EmptyDataDir { evidence }));
        }
        // A peer's offset alone is evidence.
        let mut i = fresh(1);
        i.answers = all_name("redis-1", 9001, 0, 0);
        i.peers = vec![peer("redis-3", 9003, false, 7)];
        assert_eq!(decided(&i).0, of("redis-3", 9003));
        // The initial master on a fresh volume, named by a quorum that has moved on, no peer:
        // nothing is safe.
        let mut i = fresh(1);
        i.answers = all_name("redis-1", 9001, 2, 0);
        assert!(decide_redis_role(&i).is_err());
        // With data it is the master the quorum names.
        i.data_empty = false;
        assert_eq!(decided(&i).0, None);
    }

    #[test]
    fn a_node_never_follows_itself() {
        // Whatever it is given, a replica's master is never this node.
        for n in 1..=3 {
            let me = hp(&format!("redis-{n}"), 9000 + n);
            for previous in [
                Previous::None,
                Previous::Master,
                Previous::ReplicaOf(me.clone()),
            ] {
                for data_empty in [false, true] {
                    for answers in [vec![], all_name("redis-1", 9001, 1, 1)] {
                        let i = RoleInput {
                            previous: previous.clone(),
                            data_empty,
                            peers: vec![peer(&me.host, me.port, true, 99)],
                            answers,
                            ..node(n)
                        };
                        if let Ok(StartRole::Replica { of, .. }) = decide_redis_role(&i) {
                            assert!(!i.is_me(&of), "node {n} follows itself: {i:?}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_log_line_says_why() {
        let r = StartRole::Replica {
            of: hp("redis-2", 9002),
            reason: Reason::EmptyDataDir {
                evidence: Evidence::PeerOffset {
                    peer: hp("redis-3", 9003),
                    offset: 12,
                },
            },
        };
        let line = r.to_string();
        assert!(
            line.starts_with("starting as replica of redis-2:9002: "),
            "{line}"
        );
        assert!(
            line.contains("redis-3:9003 has replication offset 12"),
            "{line}"
        );
    }
}
