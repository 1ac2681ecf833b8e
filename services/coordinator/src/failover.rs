//! Asking Sentinels for a failover: the operator's ([`request_failover`]: `SENTINEL FAILOVER
//! <group>` sent to the first Sentinel that answers) and the crash failover's
//! ([`forced_after_ballot`]: the election of [`crate::ballot`] first, then the failover forced on
//! the Sentinel elected).

use std::fmt;
use std::time::Duration;

use redis_ha_common::{HostPort, Secret};
use redis_ha_sentinel::{BallotPoll, SentinelClient, SentinelError};

/// Why no Sentinel started the failover.
#[derive(Debug, thiserror::Error)]
pub enum FailoverError {
    /// No agent has reported a Sentinel for this group yet.
    #[error("no Sentinel is known for master group {group:?}: no agent has reported one")]
    NoSentinel { group: String },
    /// A Sentinel answered and said no (failover in progress, no good replica, unknown group ...).
    #[error("{}", join(.refusals))]
    Refused { refusals: Vec<Attempt> },
    /// No Sentinel could be reached.
    #[error("no Sentinel reachable: {}", join(.failures))]
    Unreachable { failures: Vec<Attempt> },
}

/// One Sentinel's answer.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub sentinel: String,
    pub error: String,
}

impl fmt::Display for Attempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sentinel {}: {}", self.sentinel, self.error)
    }
}

fn join(attempts: &[Attempt]) -> String {
    attempts
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Error codes after which asking another Sentinel would be wrong (it would start a second
/// failover) or pointless (the same replicas are just as bad for every Sentinel).
const FINAL_CODES: [&str; 2] = ["INPROG", "NOGOODSLAVE"];

/// Asks each Sentinel in turn; returns the one that accepted.
pub async fn request_failover(
    sentinels: &[String],
    group: &str,
    password: Option<&Secret>,
    io_timeout: Duration,
) -> Result<String, FailoverError> {
    if sentinels.is_empty() {
        return Err(FailoverError::NoSentinel {
            group: group.to_owned(),
        });
    }
    let mut refusals = Vec::new();
    let mut failures = Vec::new();
    for sentinel in sentinels {
        match ask(sentinel, group, password, io_timeout).await {
            Ok(()) => return Ok(sentinel.clone()),
            Err(Outcome::Unreachable(error)) => {
                tracing::warn!(sentinel = %sentinel, %error, "failover: Sentinel unreachable");
                failures.push(Attempt {
                    sentinel: sentinel.clone(),
                    error,
                });
            }
            Err(Outcome::Refused { error, last }) => {
                tracing::warn!(sentinel = %sentinel, %error, "failover: Sentinel refused");
                refusals.push(Attempt {
                    sentinel: sentinel.clone(),
                    error,
                });
                if last {
                    break;
                }
            }
        }
    }
    if refusals.is_empty() {
        Err(FailoverError::Unreachable { failures })
    } else {
        Err(FailoverError::Refused { refusals })
    }
}

enum Outcome {
    Unreachable(String),
    Refused { error: String, last: bool },
}

async fn ask(
    sentinel: &str,
    group: &str,
    password: Option<&Secret>,
    io_timeout: Duration,
) -> Result<(), Outcome> {
    let hp: HostPort = sentinel
        .parse()
        .map_err(|e| Outcome::Unreachable(format!("bad address: {e}")))?;
    let mut client = SentinelClient::new(hp, password, io_timeout).map_err(|e| classify(&e))?;
    client.failover(group).await.map_err(|e| classify(&e))
}

/// Network trouble means "try the next Sentinel"; an answer means the Sentinel decided.
fn classify(e: &SentinelError) -> Outcome {
    match e.server_code() {
        Some(code) => Outcome::Refused {
            error: e.cause(),
            last: FINAL_CODES.contains(&code),
        },
        None => Outcome::Unreachable(e.cause()),
    }
}

/// Connections to the Sentinels the crash failover asks, kept open between crashes (and
/// pinged by the coordinator's timer) so that a crash costs no connect and no AUTH.
#[derive(Default)]
pub struct SentinelLinks {
    clients: std::collections::BTreeMap<String, SentinelClient>,
}

impl SentinelLinks {
    /// A client for `addr` in the set (made when missing; nothing is sent).
    fn ensure(
        &mut self,
        addr: &str,
        password: Option<&Secret>,
        io_timeout: Duration,
    ) -> Result<(), String> {
        if self.clients.contains_key(addr) {
            return Ok(());
        }
        let hp: HostPort = addr.parse().map_err(|e| format!("bad address: {e}"))?;
        let c = SentinelClient::new(hp, password, io_timeout).map_err(|e| e.cause())?;
        self.clients.insert(addr.to_owned(), c);
        Ok(())
    }

    /// Keeps exactly `addrs` and pings each (connecting when needed); errors are the next
    /// crash's concern, not this call's.
    pub async fn keep_warm(
        &mut self,
        addrs: &[String],
        password: Option<&Secret>,
        io_timeout: Duration,
    ) {
        self.clients.retain(|a, _| addrs.contains(a));
        for a in addrs {
            if let Err(error) = self.ensure(a, password, io_timeout) {
                tracing::debug!(sentinel = %a, %error, "crash failover: no link to this Sentinel");
            }
        }
        let pings = self.clients.iter_mut().map(|(a, c)| async move {
            if let Err(e) = c.query(&redis::cmd("PING"), "PING").await {
                tracing::debug!(sentinel = %a, error = %e.cause(), "crash failover: Sentinel link not answering");
            }
        });
        futures::future::join_all(pings).await;
    }
}

/// Why a crash failover was not forced.
#[derive(Debug, thiserror::Error)]
pub enum CrashFailoverError {
    /// No Sentinel answered the poll: nothing was changed anywhere, asking again is safe.
    #[error("no Sentinel answered: {}", join(.failures))]
    Unreachable { failures: Vec<Attempt> },
    #[error("no ballot: {0}")]
    NotHeld(#[from] crate::ballot::NotHeld),
    #[error("ballot lost: {0}")]
    Lost(#[from] crate::ballot::Lost),
    /// The published master is not a `host:port`.
    #[error("the crashed master's address {0} cannot be asked about")]
    BadMaster(String),
    /// The elected Sentinel refused or did not answer `SENTINEL FAILOVER`.
    #[error("the elected Sentinel {sentinel} did not fail over: {error}")]
    Refused { sentinel: String, error: String },
}

/// What a ballot is held about: `master` (as published, at `epoch`) of `group`, asked of
/// `sentinels`; the same for a crash, the operator's failover and a switchover.
#[derive(Clone, Copy)]
pub struct BallotRequest<'a> {
    pub sentinels: &'a [String],
    pub group: &'a str,
    pub master: &'a str,
    pub epoch: u64,
    pub password: Option<&'a Secret>,
    pub io_timeout: Duration,
}

/// The master's address, and a link to every Sentinel (the ones that cannot be opened, as
/// failed attempts): the first step of every ballot.
fn open_links(
    links: &mut SentinelLinks,
    req: &BallotRequest<'_>,
) -> Result<(HostPort, Vec<Attempt>), CrashFailoverError> {
    let BallotRequest {
        sentinels,
        master,
        password,
        io_timeout,
        ..
    } = *req;
    let master_hp: HostPort = master
        .parse()
        .map_err(|e| CrashFailoverError::BadMaster(format!("{master:?}: {e}")))?;
    let failures = sentinels
        .iter()
        .filter_map(|s| {
            links
                .ensure(s, password, io_timeout)
                .err()
                .map(|error| Attempt {
                    sentinel: s.clone(),
                    error,
                })
        })
        .collect();
    Ok((master_hp, failures))
}

/// The crash failover of `master` at `epoch` ([`crate::ballot`]): poll every Sentinel, hold the
/// ballot, force the failover on the Sentinel elected.
pub async fn forced_after_ballot(
    links: &mut SentinelLinks,
    req: &BallotRequest<'_>,
) -> Result<Forced, CrashFailoverError> {
    let BallotRequest {
        sentinels,
        group,
        master,
        epoch,
        ..
    } = *req;
    let (master_hp, mut failures) = open_links(links, req)?;
    let mut clients: Vec<(&String, &mut SentinelClient)> = links
        .clients
        .iter_mut()
        .filter(|(addr, _)| sentinels.contains(addr))
        .collect();
    let polls = futures::future::join_all(
        clients
            .iter_mut()
            .map(|(_, c)| async { c.ballot_poll(group, &master_hp).await }),
    )
    .await;
    let mut answered = Vec::new();
    let mut polled = Vec::new();
    for ((addr, client), result) in clients.into_iter().zip(polls) {
        match result {
            Ok(p) => {
                polled.push(crate::ballot::Polled {
                    sentinel: addr.clone(),
                    answers: p,
                });
                answered.push(client);
            }
            Err(e) => failures.push(Attempt {
                sentinel: addr.clone(),
                error: e.cause(),
            }),
        }
    }
    if polled.is_empty() {
        return Err(CrashFailoverError::Unreachable { failures });
    }
    let plan = crate::ballot::plan(master, epoch, &polled)?;
    let candidate = polled[plan.candidate].answers.run_id.clone();
    // The candidate does not vote: its failover takes the ballot's epoch as its own.
    let votes = futures::future::join_all(
        answered
            .iter_mut()
            .zip(&polled)
            .enumerate()
            .filter(|(i, _)| *i != plan.candidate)
            .map(|(_, (c, p))| {
                let candidate = candidate.as_str();
                async move {
                    let vote = c
                        .vote(&p.answers.master.address, plan.epoch, candidate)
                        .await
                        .map_err(|e| e.cause());
                    (p.sentinel.clone(), vote)
                }
            }),
    )
    .await;
    crate::ballot::tally(&candidate, plan.epoch, &votes)?;
    let elected = polled[plan.candidate].sentinel.clone();
    let voters = votes.iter().map(|(addr, _)| addr.clone()).collect();
    answered[plan.candidate]
        .failover(group)
        .await
        .map_err(|e| CrashFailoverError::Refused {
            sentinel: elected.clone(),
            error: e.cause(),
        })?;
    Ok(Forced {
        sentinel: elected,
        ballot: plan.epoch,
        failover_timeout: Duration::from_millis(
            polled[plan.candidate].answers.master.failover_timeout_ms,
        ),
        run_id: candidate,
        voters,
        master: polled[plan.candidate].answers.master.address.clone(),
    })
}

/// The ballot's first two steps only (poll every Sentinel, [`crate::ballot::plan`]): whether
/// [`forced_after_ballot`] could hold it now. Nothing is voted or changed.
pub async fn preflight_ballot(
    links: &mut SentinelLinks,
    req: &BallotRequest<'_>,
) -> Result<(), CrashFailoverError> {
    let BallotRequest {
        sentinels,
        group,
        master,
        epoch,
        ..
    } = *req;
    let (master_hp, mut failures) = open_links(links, req)?;
    let mut polled = Vec::new();
    for (addr, c) in links
        .clients
        .iter_mut()
        .filter(|(a, _)| sentinels.contains(a))
    {
        match c.ballot_poll(group, &master_hp).await {
            Ok(p) => polled.push(crate::ballot::Polled {
                sentinel: addr.clone(),
                answers: p,
            }),
            Err(e) => failures.push(Attempt {
                sentinel: addr.clone(),
                error: e.cause(),
            }),
        }
    }
    if polled.is_empty() || !failures.is_empty() {
        return Err(CrashFailoverError::Unreachable { failures });
    }
    crate::ballot::plan(master, epoch, &polled)?;
    Ok(())
}

/// What the operator's `Failover` does after trying the ballot ([`forced_after_ballot`] on the
/// published master): the ballot is preferred because its voters' epochs corroborate the
/// promotion (the early switch, README "How the master is decided"), which a plain
/// `SENTINEL FAILOVER` (no election) leaves to `+switch-master`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManualNext {
    /// The ballot was won and the elected Sentinel accepted.
    Accepted { sentinel: String, ballot: u64 },
    /// No ballot could be held over every Sentinel (one unreachable or silent, the published
    /// master unknown to them): nothing was changed, the plain request follows.
    Plain,
    /// Asking anyway would start a second failover or one that does nothing: refused.
    Refuse { reason: String },
}

/// The rule for [`ManualNext`].
pub fn manual_after_ballot(result: &Result<Forced, CrashFailoverError>) -> ManualNext {
    use crate::ballot::NotHeld;
    match result {
        Ok(f) => ManualNext::Accepted {
            sentinel: f.sentinel.clone(),
            ballot: f.ballot,
        },
        Err(CrashFailoverError::Unreachable { .. } | CrashFailoverError::BadMaster(_)) => {
            ManualNext::Plain
        }
        Err(CrashFailoverError::NotHeld(
            NotHeld::NoAnswer | NotHeld::MissingVoters { .. } | NotHeld::MasterChanged { .. },
        )) => ManualNext::Plain,
        // A failover running, a Sentinel in TILT, an election lost to another Sentinel, a
        // duplicate run id, the elected one refusing (no good replica ...): the same request
        // without the ballot would fare no better, or start a second failover.
        Err(
            e @ (CrashFailoverError::NotHeld(
                NotHeld::FailoverRunning { .. }
                | NotHeld::Tilt { .. }
                | NotHeld::DuplicateRunId { .. },
            )
            | CrashFailoverError::Lost(_)
            | CrashFailoverError::Refused { .. }),
        ) => ManualNext::Refuse {
            reason: e.to_string(),
        },
    }
}

/// A forced crash failover, accepted.
#[derive(Debug, Clone)]
pub struct Forced {
    /// The elected Sentinel.
    pub sentinel: String,
    /// The ballot's epoch.
    pub ballot: u64,
    /// Its failover-timeout (0 when it did not say).
    pub failover_timeout: Duration,
    /// Its run id (the voters' candidate).
    pub run_id: String,
    /// The Sentinels that voted for it at `ballot`.
    pub voters: Vec<String>,
    /// The crashed master as the Sentinels know it (what the votes name).
    pub master: HostPort,
}

/// What became of a forced crash failover ([`see_through`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeenThrough {
    /// The elected Sentinel names another master now.
    Promoted { master: String, retries: u32 },
    /// It kept aborting (or could not be asked) until the window closed: Sentinel's own
    /// detection takes over once the votes' hold ends.
    GaveUp { retries: u32, last: String },
}

/// How often the elected Sentinel is asked how its failover goes.
/// (20 ms: the voters must be at the failover's epoch before its promotion, two Sentinel
/// ticks after the request, see [`voters_behind`].)
const SEE_THROUGH_POLL: Duration = Duration::from_millis(20);
/// The least time between the accepted request and the first one after its abort.
const FIRST_RETRY_PACE: Duration = Duration::from_millis(200);
/// The most time between two accepted requests.
const MAX_RETRY_PACE: Duration = Duration::from_secs(2);

/// The least time after the last accepted request before asking again, when `retries` requests
/// were accepted since the first. Why so soon: the usual abort (no good replica, below) is over
/// within a Sentinel tick or two, and every 100 ms of waiting is 100 ms of failed writes.
/// Why doubling: each accepted request is a new epoch, so a failover that keeps aborting for
/// another reason costs a handful of epochs over the window, not one per poll. A request the
/// Sentinel refuses (`NOGOODSLAVE`: it checks its replicas before it takes one) starts nothing
/// and is not paced.
pub fn retry_pace(retries: u32) -> Duration {
    FIRST_RETRY_PACE
        .saturating_mul(2u32.saturating_pow(retries.min(16)))
        .min(MAX_RETRY_PACE)
}

/// The epoch the voters must vote at too, if any: the elected Sentinel's own vote (it votes for
/// itself at its failover's epoch in the first tick of that failover, before it selects a
/// replica) is above the epoch the voters last voted at for it. Why: `SENTINEL FAILOVER` runs at
/// the Sentinel's epoch + 1, and a voter's hello message that reaches it between the ballot and
/// the request moves its epoch to the ballot's first, so the failover runs one above the ballot
/// (seen on the stack in 1 of 21 kills). No other agent's Sentinel is then at the promotion's
/// epoch, and the coordinator, which wants a second witness of it (README, corroboration),
/// published the promotion only when the new epoch spread, ~0.6 s later. A retry's new epoch is
/// the same case. Voting them at the failover's own epoch, for the Sentinel that runs it, is the
/// election it would have won; a voter that voted for another Sentinel at that epoch refuses.
pub fn voters_behind(voted_at: u64, elected: &BallotPoll, run_id: &str) -> Option<u64> {
    let v = &elected.last_vote;
    (v.leader.as_deref() == Some(run_id) && v.leader_epoch > voted_at).then_some(v.leader_epoch)
}

/// Votes `voters` at `epoch` for the elected Sentinel; returns how many voted for it.
async fn vote_again(
    forced: &Forced,
    epoch: u64,
    password: Option<&Secret>,
    io_timeout: Duration,
) -> usize {
    let votes = futures::future::join_all(forced.voters.iter().map(|addr| async move {
        let hp = addr.parse::<HostPort>().map_err(|e| e.to_string())?;
        let mut c = SentinelClient::new(hp, password, io_timeout).map_err(|e| e.cause())?;
        c.vote(&forced.master, epoch, &forced.run_id)
            .await
            .map_err(|e| e.cause())
    }))
    .await;
    votes
        .iter()
        .filter(|v| {
            v.as_ref().is_ok_and(|v| {
                v.leader.as_deref() == Some(forced.run_id.as_str()) && v.leader_epoch == epoch
            })
        })
        .count()
}

/// Follows the forced failover on the elected Sentinel until it names another master, and asks
/// again when it aborted (`failover_in_progress` gone, still the crashed master): right after a
/// crash a Sentinel may abort with no good replica (on the swarm the dead master's name resolves
/// elsewhere at once, the Sentinel "fixes" the replicas' configuration and its own links to them
/// drop with it; they are made again at its next tick), and the Sentinels that voted for it
/// start no failover of their own for twice the failover-timeout. Asked again within one
/// failover-timeout of the ballot (they stay held for two), paced by [`retry_pace`]; each
/// accepted request is a new epoch of the same Sentinel, and none promoted before.
/// `retried` is told of each accepted new request.
pub async fn see_through(
    forced: &Forced,
    group: &str,
    master: &str,
    password: Option<&Secret>,
    io_timeout: Duration,
    window: Duration,
    mut retried: impl FnMut(u32, &str),
) -> SeenThrough {
    let started = tokio::time::Instant::now();
    let mut voted_at = forced.ballot;
    let mut client = match forced
        .sentinel
        .parse::<HostPort>()
        .map_err(|e| format!("bad address: {e}"))
        .and_then(|hp| SentinelClient::new(hp, password, io_timeout).map_err(|e| e.cause()))
    {
        Ok(c) => c,
        Err(last) => return SeenThrough::GaveUp { retries: 0, last },
    };
    let mut retries = 0;
    let mut last_accepted = started;
    let mut last = String::from("no answer yet");
    loop {
        tokio::time::sleep(SEE_THROUGH_POLL).await;
        match client.ballot_poll(group, &forced.master).await {
            Err(e) => last = e.cause(),
            Ok(p) => {
                if let Some(epoch) = voters_behind(voted_at, &p, &forced.run_id) {
                    voted_at = epoch;
                    let n = vote_again(forced, epoch, password, io_timeout).await;
                    tracing::info!(sentinel = %forced.sentinel, ballot = forced.ballot, epoch, voted = n, of = forced.voters.len(),
                        "crash failover: the elected Sentinel's failover runs above the ballot's epoch; its voters voted at it too");
                }
                let m = p.master;
                let named = crate::topology::addr_key(&m.address.to_string());
                if named != master {
                    return SeenThrough::Promoted {
                        master: named,
                        retries,
                    };
                }
                if !m.failover_in_progress() && last_accepted.elapsed() >= retry_pace(retries) {
                    if started.elapsed() >= window {
                        return SeenThrough::GaveUp {
                            retries,
                            last: format!("aborted, and the ballot's hold is running out ({last})"),
                        };
                    }
                    match client.failover(group).await {
                        Ok(()) => {
                            last_accepted = tokio::time::Instant::now();
                            retries += 1;
                            retried(retries, "aborted; asked again");
                        }
                        // Refused (no good replica yet) or unanswered: nothing started, asked
                        // again at the next poll.
                        Err(e) => last = e.cause(),
                    }
                }
            }
        }
        if started.elapsed() >= window.saturating_mul(2) {
            return SeenThrough::GaveUp { retries, last };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forced() -> Forced {
        Forced {
            sentinel: "s1:26379".into(),
            ballot: 7,
            failover_timeout: Duration::from_secs(10),
            run_id: "r1".into(),
            voters: vec!["s2:26379".into(), "s3:26379".into()],
            master: HostPort::new("m", 6379),
        }
    }

    fn elected_voted(leader: Option<&str>, epoch: u64) -> BallotPoll {
        BallotPoll {
            master: redis_ha_sentinel::SentinelMaster {
                address: HostPort::new("m", 6379),
                flags: vec!["master".into()],
                config_epoch: 6,
                quorum: 2,
                other_sentinels: 2,
                known_replicas: 2,
                down_after_ms: 1000,
                failover_timeout_ms: 10_000,
            },
            tilt: false,
            run_id: "r1".into(),
            last_vote: redis_ha_sentinel::Vote {
                down: false,
                leader: leader.map(str::to_owned),
                leader_epoch: epoch,
            },
        }
    }

    #[test]
    fn voters_follow_the_elected_sentinels_own_epoch_only() {
        let f = forced();
        // Its failover at the ballot's epoch (the usual case), or not started yet: nothing.
        assert_eq!(
            voters_behind(f.ballot, &elected_voted(Some("r1"), 7), "r1"),
            None
        );
        assert_eq!(voters_behind(f.ballot, &elected_voted(None, 0), "r1"), None);
        assert_eq!(
            voters_behind(f.ballot, &elected_voted(Some("r1"), 6), "r1"),
            None
        );
        // One above: its epoch moved before the request; the voters follow, once.
        assert_eq!(
            voters_behind(f.ballot, &elected_voted(Some("r1"), 8), "r1"),
            Some(8)
        );
        assert_eq!(voters_behind(8, &elected_voted(Some("r1"), 8), "r1"), None);
        // A vote for another Sentinel is not its own failover: never followed.
        assert_eq!(
            voters_behind(f.ballot, &elected_voted(Some("r2"), 9), "r1"),
            None
        );
    }

    #[test]
    fn the_operators_failover_prefers_the_ballot_and_never_forces_a_second_failover() {
        use crate::ballot::{Lost, NotHeld};
        assert_eq!(
            manual_after_ballot(&Ok(forced())),
            ManualNext::Accepted {
                sentinel: "s1:26379".into(),
                ballot: 7
            }
        );
        // Nothing was changed: the plain request follows.
        let plain = [
            CrashFailoverError::Unreachable { failures: vec![] },
            CrashFailoverError::BadMaster("x".into()),
            CrashFailoverError::NotHeld(NotHeld::NoAnswer),
            CrashFailoverError::NotHeld(NotHeld::MissingVoters {
                answered: 2,
                known: 3,
            }),
            CrashFailoverError::NotHeld(NotHeld::MasterChanged {
                sentinel: "s1".into(),
                named: "b:1".into(),
                epoch: 3,
                master: "a:1".into(),
                expected: 2,
            }),
        ];
        for e in plain {
            assert_eq!(manual_after_ballot(&Err(e)), ManualNext::Plain);
        }
        // A failover under way, TILT, a lost election, a refusal: no second request.
        let refused = [
            CrashFailoverError::NotHeld(NotHeld::FailoverRunning {
                sentinel: "s2".into(),
                flag: "failover_in_progress".into(),
            }),
            CrashFailoverError::NotHeld(NotHeld::Tilt {
                sentinel: "s2".into(),
            }),
            CrashFailoverError::NotHeld(NotHeld::DuplicateRunId { run_id: "r".into() }),
            CrashFailoverError::Lost(Lost::NoVote {
                sentinel: "s3".into(),
                error: "timeout".into(),
            }),
            CrashFailoverError::Refused {
                sentinel: "s1".into(),
                error: "NOGOODSLAVE".into(),
            },
        ];
        for e in refused {
            let text = e.to_string();
            assert_eq!(
                manual_after_ballot(&Err(e)),
                ManualNext::Refuse { reason: text }
            );
        }
    }

    #[test]
    fn retries_come_soon_then_ever_less_often() {
        assert_eq!(retry_pace(0), Duration::from_millis(200));
        assert_eq!(retry_pace(1), Duration::from_millis(400));
        assert_eq!(retry_pace(2), Duration::from_millis(800));
        assert_eq!(retry_pace(3), Duration::from_millis(1600));
        assert_eq!(retry_pace(4), MAX_RETRY_PACE);
        assert_eq!(retry_pace(u32::MAX), MAX_RETRY_PACE);
        // Within the stack's failover-timeout, a failover that keeps aborting costs a handful
        // of epochs.
        let window = Duration::from_secs(30);
        let (mut at, mut n) = (Duration::ZERO, 0);
        while at < window {
            at += retry_pace(n);
            n += 1;
        }
        assert!(n <= 18, "{n} requests in {window:?}");
    }

    #[tokio::test]
    async fn no_sentinel_known() {
        let e = request_failover(&[], "g", None, Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(matches!(e, FailoverError::NoSentinel { .. }));
        assert!(e.to_string().contains("\"g\""), "{e}");
    }

    #[tokio::test]
    async fn closed_port_is_unreachable() {
        // Bind then drop: the port is very likely closed right after.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let e = request_failover(
            &[addr.clone(), "not an address".into()],
            "g",
            None,
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        match e {
            FailoverError::Unreachable { failures } => {
                assert_eq!(failures.len(), 2);
                assert_eq!(failures[0].sentinel, addr);
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn silent_listener_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        // Accept and keep the sockets open without answering.
        let holder = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let e = request_failover(&[addr], "g", None, Duration::from_millis(300))
            .await
            .unwrap_err();
        assert!(matches!(e, FailoverError::Unreachable { .. }), "{e:?}");
        holder.abort();
    }
}
