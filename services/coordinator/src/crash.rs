//! Crash failover: when the master's process is gone, ask a Sentinel for the failover at once
//! instead of waiting for its down-after.
//!
//! Sentinel cannot tell a crash from a hang or a partition, so it waits `down-after` (5 s by
//! default) of silence. The agents can: a crashed process closes its connections and its port
//! refuses new ones; on a swarm, Docker announces the container's death. The rule, all of it:
//!
//! - the master's **own agent** says the process is *gone* (refused on its port, or its
//!   container died) — a paused, hung, slow or cut-off master is at most *unreachable*;
//! - a **majority of the group's agents** (the master's own included) cannot reach it, so one
//!   agent's broken view cannot trigger it;
//! - the Sentinels agree on that master (source: Sentinel quorum) and **no failover is running**;
//! - a replica answers (else Sentinel has no one to promote);
//! - at most **one request per master and config epoch**: a refusal is not retried, Sentinel's
//!   own detection still follows.
//!
//! Whether a Sentinel has begun a failover of its own meanwhile (it may flag the master down
//! well before down-after ends, and at a short down-after fail over within a second) is not
//! guessed from its flags: the ballot held right before the request ([`crate::ballot`]) finds
//! out, and keeps the others from starting one.
//!
//! [`decide`] is that rule on plain facts; [`crate::topology::GroupState`] gathers them.

use redis_ha_proto::v1::{MasterSource, Reach};

/// Tuning, from the coordinator's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrashSettings {
    pub enabled: bool,
}

impl Default for CrashSettings {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// One fresh agent's word on the master.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Witness {
    pub agent: String,
    /// This agent's node is the master.
    pub own_node: bool,
    /// Its master watch looks at the master in question (not at an older or newer one).
    pub watches_master: bool,
    pub reach: Reach,
}

/// The facts the rule needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrashInput {
    /// The published master (normalized address); empty without one.
    pub master: String,
    pub epoch: u64,
    pub source: MasterSource,
    pub failover_in_progress: bool,
    /// Agents the group has (fresh or not): the majority is counted against it.
    pub agents: usize,
    pub witnesses: Vec<Witness>,
    /// A fresh agent reports its node reachable as a replica.
    pub replica_up: bool,
    /// A crash failover was already requested for this master at this epoch.
    pub already_requested: bool,
    /// A fresh Sentinel has taken part in an epoch above the master's (a failover started).
    pub newer_epoch: bool,
}

/// Why no failover is requested.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hold {
    Disabled,
    NoMaster,
    AlreadyRequested,
    FailoverRunning,
    NotSentinelsMaster(MasterSource),
    /// The master's own agent does not say its process is gone.
    NotGone,
    NoMajority {
        unreachable: usize,
        needed: usize,
    },
    NoReplica,
}

/// The verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Failover,
    Hold(Hold),
}

/// The rule (module docs).
pub fn decide(input: &CrashInput, settings: &CrashSettings) -> Verdict {
    let hold = |h| Verdict::Hold(h);
    if !settings.enabled {
        return hold(Hold::Disabled);
    }
    if input.master.is_empty() {
        return hold(Hold::NoMaster);
    }
    if input.already_requested {
        return hold(Hold::AlreadyRequested);
    }
    if input.failover_in_progress || input.newer_epoch {
        return hold(Hold::FailoverRunning);
    }
    if input.source != MasterSource::SentinelQuorum {
        return hold(Hold::NotSentinelsMaster(input.source));
    }
    let about_master = || input.witnesses.iter().filter(|w| w.watches_master);
    if !about_master().any(|w| w.own_node && w.reach == Reach::Gone) {
        return hold(Hold::NotGone);
    }
    let mut unreachable: Vec<&str> = about_master()
        .filter(|w| matches!(w.reach, Reach::Gone | Reach::Unreachable))
        .map(|w| w.agent.as_str())
        .collect();
    unreachable.sort_unstable();
    unreachable.dedup();
    let needed = input.agents.max(input.witnesses.len()) / 2 + 1;
    if unreachable.len() < needed {
        return hold(Hold::NoMajority {
            unreachable: unreachable.len(),
            needed,
        });
    }
    if !input.replica_up {
        return hold(Hold::NoReplica);
    }
    Verdict::Failover
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_newer_epoch_is_a_failover_running() {
        let mut i = crashed();
        i.newer_epoch = true;
        assert_eq!(decide(&i, &s()), Verdict::Hold(Hold::FailoverRunning));
    }

    fn witness(agent: &str, own: bool, reach: Reach) -> Witness {
        Witness {
            agent: agent.into(),
            own_node: own,
            watches_master: true,
            reach,
        }
    }

    /// A crashed master as three agents see it.
    fn crashed() -> CrashInput {
        CrashInput {
            master: "127.0.0.1:7001".into(),
            epoch: 0,
            source: MasterSource::SentinelQuorum,
            failover_in_progress: false,
            agents: 3,
            witnesses: vec![
                witness("node-1", true, Reach::Gone),
                witness("node-2", false, Reach::Gone),
                witness("node-3", false, Reach::Unreachable),
            ],
            replica_up: true,
            already_requested: false,
            newer_epoch: false,
        }
    }

    fn s() -> CrashSettings {
        CrashSettings::default()
    }

    #[test]
    fn a_crash_seen_by_the_own_agent_and_a_majority_fails_over() {
        assert_eq!(decide(&crashed(), &s()), Verdict::Failover);
        // The own agent and one more are enough of three.
        let mut i = crashed();
        i.witnesses[2].reach = Reach::Up;
        assert_eq!(decide(&i, &s()), Verdict::Failover);
    }

    #[test]
    fn a_paused_or_hung_master_is_never_gone() {
        let mut i = crashed();
        i.witnesses[0].reach = Reach::Unreachable;
        assert_eq!(decide(&i, &s()), Verdict::Hold(Hold::NotGone));
    }

    #[test]
    fn another_agent_saying_gone_is_not_the_own_agent() {
        let mut i = crashed();
        i.witnesses[0].reach = Reach::Up;
        assert_eq!(decide(&i, &s()), Verdict::Hold(Hold::NotGone));
        // ... nor is the own agent silent (stale: not a witness).
        i.witnesses.remove(0);
        assert_eq!(decide(&i, &s()), Verdict::Hold(Hold::NotGone));
    }

    #[test]
    fn a_master_cut_off_from_one_agent_only_holds() {
        let mut i = crashed();
        i.witnesses[1].reach = Reach::Up;
        i.witnesses[2].reach = Reach::Up;
        assert_eq!(
            decide(&i, &s()),
            Verdict::Hold(Hold::NoMajority {
                unreachable: 1,
                needed: 2
            })
        );
    }

    #[test]
    fn the_majority_counts_agents_not_reports_and_not_other_masters() {
        let mut i = crashed();
        i.witnesses[2].reach = Reach::Up;
        // node-2 watches an older master: its word is not about this one.
        i.witnesses[1].watches_master = false;
        assert!(matches!(
            decide(&i, &s()),
            Verdict::Hold(Hold::NoMajority { .. })
        ));
        // The own agent twice is still one agent.
        i.witnesses.push(witness("node-1", true, Reach::Gone));
        assert!(matches!(
            decide(&i, &s()),
            Verdict::Hold(Hold::NoMajority { .. })
        ));
        // Stale agents still count against the majority: 2 of 5 is not enough.
        let mut i = crashed();
        i.agents = 5;
        i.witnesses[2].reach = Reach::Up;
        assert!(matches!(
            decide(&i, &s()),
            Verdict::Hold(Hold::NoMajority { needed: 3, .. })
        ));
    }

    #[test]
    fn never_beside_a_failover_or_another_master() {
        let mut i = crashed();
        i.failover_in_progress = true;
        assert_eq!(decide(&i, &s()), Verdict::Hold(Hold::FailoverRunning));
        let mut i = crashed();
        i.source = MasterSource::Promoted;
        assert_eq!(
            decide(&i, &s()),
            Verdict::Hold(Hold::NotSentinelsMaster(MasterSource::Promoted))
        );
    }

    #[test]
    fn once_per_master_and_epoch() {
        let mut i = crashed();
        i.already_requested = true;
        assert_eq!(decide(&i, &s()), Verdict::Hold(Hold::AlreadyRequested));
    }

    #[test]
    fn no_replica_no_master_disabled() {
        let mut i = crashed();
        i.replica_up = false;
        assert_eq!(decide(&i, &s()), Verdict::Hold(Hold::NoReplica));
        let mut i = crashed();
        i.master.clear();
        assert_eq!(decide(&i, &s()), Verdict::Hold(Hold::NoMaster));
        let off = CrashSettings { enabled: false };
        assert_eq!(decide(&crashed(), &off), Verdict::Hold(Hold::Disabled));
    }

    fn reach() -> impl Strategy<Value = Reach> {
        prop_oneof![
            Just(Reach::Unspecified),
            Just(Reach::Up),
            Just(Reach::Unreachable),
            Just(Reach::Gone)
        ]
    }

    proptest! {
        /// Whatever the others say, no failover without the own agent's "gone", and never on
        /// fewer than a majority of the agents.
        #[test]
        fn needs_the_own_agent_and_a_majority(
            own in reach(),
            others in proptest::collection::vec(reach(), 0..6),
            extra_agents in 0usize..4,
        ) {
            let mut i = crashed();
            i.witnesses = vec![witness("own", true, own)];
            for (n, r) in others.iter().enumerate() {
                i.witnesses.push(witness(&format!("other-{n}"), false, *r));
            }
            i.agents = i.witnesses.len() + extra_agents;
            let down = i.witnesses.iter().filter(|w| matches!(w.reach, Reach::Gone | Reach::Unreachable)).count();
            if decide(&i, &s()) == Verdict::Failover {
                prop_assert_eq!(own, Reach::Gone);
                prop_assert!(down * 2 > i.agents);
            }
        }
    }
}
