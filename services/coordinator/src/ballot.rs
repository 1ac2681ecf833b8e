//! The election a crash failover holds before it forces one.
//!
//! `SENTINEL FAILOVER` makes one Sentinel fail over without asking the others for their votes.
//! Meanwhile the others may detect the crash themselves (at down-after 1000 within a second)
//! and start their own election: the same crash failed over twice, maybe onto two replicas and
//! at the same epoch. So the coordinator first runs the election Sentinel would have run, for
//! the Sentinel it is going to ask (the *candidate*), with Sentinel's own vote request
//! (`SENTINEL IS-MASTER-DOWN-BY-ADDR <master> <epoch> <candidate's run id>`):
//!
//! 1. **Poll** every Sentinel: what it names as master, its flags, TILT, its run id, its last
//!    vote (the same request at epoch 0 votes nothing).
//! 2. **Plan** ([`plan`]): every Sentinel the candidate knows answered, all name the crashed
//!    master at its epoch, none runs a failover or is in TILT; the ballot's epoch is one above
//!    every config epoch and every vote seen.
//! 3. **Vote** at that epoch for the candidate, on every other Sentinel. A Sentinel votes only
//!    if it has not voted in that epoch or later and its own epoch is not higher; one that voted
//!    for another Sentinel does not start a failover of its own for twice the failover-timeout
//!    (Sentinel's rule for an election it lost). [`tally`]: all votes must be the candidate's.
//!    A Sentinel already in an election of its own has voted in that epoch or later and
//!    refuses: then nothing is forced and that Sentinel's failover is the one.
//! 4. **Force** on the candidate: it starts its failover at its own epoch + 1, which is the
//!    ballot's epoch (it had seen no later one): the state a won election leaves, its own vote
//!    requests during the failover answered with the votes already cast for it.
//! 5. **Follow**: a voter's hello message can reach the candidate between steps 3 and 4 and move
//!    its epoch to the ballot's, so that its failover runs one above; the coordinator, polling it,
//!    sees its own vote at that epoch and votes the voters at it too
//!    ([`crate::failover::voters_behind`]), so they still witness the promotion's epoch.
//!
//! So one crash failover is one failover, at one epoch unless that race moved it by one.

use redis_ha_sentinel::{BallotPoll, Vote};

use crate::topology::addr_key;

/// One Sentinel's answers to the poll.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Polled {
    /// The address the coordinator reached it at.
    pub sentinel: String,
    /// What it said (`tilt`: it would accept `SENTINEL FAILOVER` and act on nothing until TILT
    /// ends, ~30 s).
    pub answers: BallotPoll,
}

/// Who is asked, and the epoch of the ballot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Index into the poll.
    pub candidate: usize,
    pub epoch: u64,
}

/// Why no ballot is held: the crash failover is not started, Sentinel's own detection follows.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotHeld {
    #[error("no Sentinel answered")]
    NoAnswer,
    #[error("Sentinel {sentinel} now names {named} at epoch {epoch} (not {master} at {expected})")]
    MasterChanged {
        sentinel: String,
        named: String,
        epoch: u64,
        master: String,
        expected: u64,
    },
    #[error("Sentinel {sentinel} flags the master {flag}: its own failover is under way")]
    FailoverRunning { sentinel: String, flag: String },
    #[error("Sentinel {sentinel} is in TILT: it would accept the failover and act on nothing")]
    Tilt { sentinel: String },
    #[error("{answered} of the {known} Sentinels the candidate knows answered: an unasked one could start its own failover")]
    MissingVoters { answered: usize, known: usize },
    #[error("two of the Sentinels asked share the run id {run_id}")]
    DuplicateRunId { run_id: String },
}

/// Step 2 (module docs): whether the crashed `master` at `epoch` may be put to a ballot, and
/// how. The candidate is the first Sentinel polled.
pub fn plan(master: &str, epoch: u64, polled: &[Polled]) -> Result<Plan, NotHeld> {
    if polled.is_empty() {
        return Err(NotHeld::NoAnswer);
    }
    for p in polled {
        let named = addr_key(&p.answers.master.address.to_string());
        if named != master || p.answers.master.config_epoch != epoch {
            return Err(NotHeld::MasterChanged {
                sentinel: p.sentinel.clone(),
                named,
                epoch: p.answers.master.config_epoch,
                master: master.to_owned(),
                expected: epoch,
            });
        }
        if p.answers.master.failover_in_progress() {
            return Err(NotHeld::FailoverRunning {
                sentinel: p.sentinel.clone(),
                flag: redis_ha_sentinel::reply::FLAG_FAILOVER_IN_PROGRESS.to_owned(),
            });
        }
        if p.answers.tilt {
            return Err(NotHeld::Tilt {
                sentinel: p.sentinel.clone(),
            });
        }
    }
    let mut ids: Vec<&str> = polled.iter().map(|p| p.answers.run_id.as_str()).collect();
    ids.sort_unstable();
    if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
        return Err(NotHeld::DuplicateRunId {
            run_id: w[0].to_owned(),
        });
    }
    // Every Sentinel that could run an election must vote: the candidate's peers and itself.
    let known = polled
        .iter()
        .map(|p| p.answers.master.other_sentinels as usize + 1)
        .max()
        .unwrap_or(1);
    if polled.len() < known {
        return Err(NotHeld::MissingVoters {
            answered: polled.len(),
            known,
        });
    }
    let highest = polled
        .iter()
        .map(|p| {
            p.answers
                .master
                .config_epoch
                .max(p.answers.last_vote.leader_epoch)
        })
        .max()
        .unwrap_or(epoch);
    Ok(Plan {
        candidate: 0,
        epoch: highest.saturating_add(1),
    })
}

/// Why the ballot was lost.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Lost {
    #[error("Sentinel {sentinel} did not vote: {error}")]
    NoVote { sentinel: String, error: String },
    #[error("Sentinel {sentinel} voted for {leader} at epoch {leader_epoch}, not for {candidate} at {epoch}")]
    VotedOtherwise {
        sentinel: String,
        leader: String,
        leader_epoch: u64,
        candidate: String,
        epoch: u64,
    },
}

/// Step 3 (module docs): the ballot is won only with every other Sentinel's vote for
/// `candidate` in `epoch`; the first vote that is not says why.
pub fn tally(
    candidate: &str,
    epoch: u64,
    votes: &[(String, Result<Vote, String>)],
) -> Result<(), Lost> {
    for (sentinel, vote) in votes {
        match vote {
            Err(error) => {
                return Err(Lost::NoVote {
                    sentinel: sentinel.clone(),
                    error: error.clone(),
                })
            }
            Ok(v) if v.leader.as_deref() == Some(candidate) && v.leader_epoch == epoch => {}
            Ok(v) => {
                return Err(Lost::VotedOtherwise {
                    sentinel: sentinel.clone(),
                    leader: v.leader.clone().unwrap_or_else(|| "nobody".into()),
                    leader_epoch: v.leader_epoch,
                    candidate: candidate.to_owned(),
                    epoch,
                })
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use redis_ha_common::HostPort;
    use redis_ha_sentinel::SentinelMaster;

    const MASTER: &str = "127.0.0.1:7001";

    fn polled(n: u16, epoch: u64, vote_epoch: u64) -> Polled {
        Polled {
            sentinel: format!("127.0.0.1:{}", 26000 + n),
            answers: BallotPoll {
                master: SentinelMaster {
                    address: HostPort::new("127.0.0.1", 7001),
                    flags: vec!["master".into()],
                    config_epoch: epoch,
                    quorum: 2,
                    other_sentinels: 2,
                    known_replicas: 2,
                    down_after_ms: 5000,
                    failover_timeout_ms: 10000,
                },
                tilt: false,
                run_id: format!("id-{n}"),
                last_vote: Vote {
                    down: false,
                    leader: Some("id-1".into()),
                    leader_epoch: vote_epoch,
                },
            },
        }
    }

    fn three() -> Vec<Polled> {
        vec![polled(1, 4, 4), polled(2, 4, 4), polled(3, 4, 3)]
    }

    #[test]
    fn the_ballot_is_above_every_epoch_and_vote() {
        assert_eq!(
            plan(MASTER, 4, &three()),
            Ok(Plan {
                candidate: 0,
                epoch: 5
            })
        );
        // A vote in an election that came to nothing (epoch 6) still counts.
        let mut p = three();
        p[2].answers.last_vote.leader_epoch = 6;
        assert_eq!(plan(MASTER, 4, &p).map(|p| p.epoch), Ok(7));
    }

    #[test]
    fn no_ballot_when_a_sentinel_is_elsewhere_or_busy() {
        assert_eq!(plan(MASTER, 4, &[]), Err(NotHeld::NoAnswer));
        let mut p = three();
        p[1].answers.master.config_epoch = 5;
        assert!(matches!(
            plan(MASTER, 4, &p),
            Err(NotHeld::MasterChanged { epoch: 5, .. })
        ));
        let mut p = three();
        p[2].answers.master.address = HostPort::new("127.0.0.1", 7002);
        assert!(matches!(
            plan(MASTER, 4, &p),
            Err(NotHeld::MasterChanged { .. })
        ));
        let mut p = three();
        p[1].answers
            .master
            .flags
            .push("failover_in_progress".into());
        assert!(matches!(
            plan(MASTER, 4, &p),
            Err(NotHeld::FailoverRunning { .. })
        ));
        let mut p = three();
        p[0].answers.tilt = true;
        assert!(matches!(plan(MASTER, 4, &p), Err(NotHeld::Tilt { .. })));
    }

    #[test]
    fn down_flags_do_not_stop_the_ballot() {
        // s_down / o_down are detection, not an election: the ballot finds out whether one began.
        let mut p = three();
        p[1].answers
            .master
            .flags
            .extend(["s_down".into(), "o_down".into()]);
        p[1].answers.last_vote.down = true;
        assert!(plan(MASTER, 4, &p).is_ok());
    }

    #[test]
    fn every_sentinel_that_could_elect_itself_must_answer() {
        let p = three();
        assert_eq!(
            plan(MASTER, 4, &p[..2]),
            Err(NotHeld::MissingVoters {
                answered: 2,
                known: 3
            })
        );
        let mut p = three();
        p[2].answers.run_id = "id-1".into();
        assert!(matches!(
            plan(MASTER, 4, &p),
            Err(NotHeld::DuplicateRunId { .. })
        ));
    }

    fn vote(leader: &str, epoch: u64) -> Result<Vote, String> {
        Ok(Vote {
            down: true,
            leader: Some(leader.into()),
            leader_epoch: epoch,
        })
    }

    #[test]
    fn won_only_with_every_vote() {
        let all = |v: Vec<Result<Vote, String>>| -> Vec<(String, Result<Vote, String>)> {
            v.into_iter()
                .enumerate()
                .map(|(n, v)| (format!("s{n}"), v))
                .collect()
        };
        assert_eq!(
            tally("id-1", 5, &all(vec![vote("id-1", 5), vote("id-1", 5)])),
            Ok(())
        );
        // Already in its own election at that epoch: it keeps its vote.
        assert!(matches!(
            tally("id-1", 5, &all(vec![vote("id-1", 5), vote("id-2", 5)])),
            Err(Lost::VotedOtherwise { .. })
        ));
        // Its own epoch was higher: the reply shows its older vote.
        assert!(matches!(
            tally("id-1", 5, &all(vec![vote("id-1", 4)])),
            Err(Lost::VotedOtherwise {
                leader_epoch: 4,
                ..
            })
        ));
        let none = Ok(Vote {
            down: false,
            leader: None,
            leader_epoch: 0,
        });
        assert!(tally("id-1", 5, &all(vec![none])).is_err());
        assert!(matches!(
            tally(
                "id-1",
                5,
                &all(vec![vote("id-1", 5), Err("timeout".into())])
            ),
            Err(Lost::NoVote { .. })
        ));
    }

    proptest! {
        /// The ballot's epoch is above anything any Sentinel has voted in or configured, so a
        /// Sentinel that grants it cannot already be bound to another candidate there.
        #[test]
        fn ballot_epoch_is_fresh(epochs in proptest::collection::vec((0u64..50, 0u64..50), 1..6)) {
            let base = epochs[0].0;
            let p: Vec<Polled> = epochs.iter().enumerate().map(|(n, (_, v))| {
                let mut p = polled(n as u16, base, *v);
                p.answers.master.other_sentinels = (epochs.len() - 1) as u32;
                p
            }).collect();
            let plan = plan(MASTER, base, &p).expect("a ballot");
            for q in &p {
                prop_assert!(plan.epoch > q.answers.master.config_epoch);
                prop_assert!(plan.epoch > q.answers.last_vote.leader_epoch);
            }
        }
    }
}
