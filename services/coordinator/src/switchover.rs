//! The switchover: the master moved on purpose without losing an acknowledged write.
//!
//! A plain `SENTINEL FAILOVER` promotes a replica while the old master still acknowledges
//! writes; Sentinel demotes it a second or more later and those writes are discarded. Here:
//!
//! 1. **Plan** ([`choose`]): the published master, confirmed, no failover running, no split
//!    brain; the target is `--to` or the most caught-up healthy replica linked to the master.
//! 2. **Steer Sentinel**: it picks by `replica-priority`, then by the offset it last read, then
//!    by run id, so every other replica gets `replica-priority 0` (never chosen) and the
//!    switchover waits until every Sentinel reports that ([`priorities_seen`]: Sentinel reads a
//!    replica's INFO every 10 s) before anything is paused.
//! 3. **Pre-flight**: the crash failover's ballot can be held (every Sentinel answers, names
//!    this master at its epoch, none runs a failover, none is in TILT).
//! 4. **Pause** writes on the master: `CLIENT PAUSE <max-pause> WRITE`, so a coordinator that
//!    dies here leaves nothing paused for longer than that.
//! 5. **Catch up** ([`catch_up`]): the target's `slave_repl_offset` reaches the master's
//!    `master_repl_offset` read after the pause (every acknowledged write is below it), with
//!    [`PROMOTION_RESERVE`] of the pause left for the promotion; else abort.
//! 6. **Fail over**: the ballot and `SENTINEL FAILOVER` on the elected Sentinel (the voters'
//!    epochs corroborate the promotion, so HAProxy follows at `role:master`, not a second
//!    later at `+switch-master`). From here there is no going back ([`promoting`]).
//! 7. **Demote** the old master, still paused, with `REPLICAOF <target>`: nothing it
//!    acknowledged is missing on the target, and it can acknowledge nothing more. The other
//!    replicas are re-pointed at once too (the new master's `min-replicas-to-write`).
//! 8. **Unpause** once the coordinator publishes the target ([`may_unpause`]), so clients
//!    blocked on the old master are cut by HAProxy once and reconnect to the new one; restore
//!    the priorities (`CONFIG SET` and `CONFIG REWRITE`: Sentinel rewrites the config of a
//!    replica it re-points, and a 0 must not stay in a file).
//!
//! Any failure before step 6 unpauses the master, which stays master ([`Failure::Aborted`]).

use std::net::IpAddr;
use std::time::Duration;

use redis::Value;
use redis_ha_common::redis_client::{info_fields, text, LinkError, RedisLink};
use redis_ha_common::{HostPort, Secret};
use redis_ha_proto::v1::{Health, LinkState, Role, Topology};
use redis_ha_sentinel::{SentinelClient, SentinelReplica};
use redis_ha_tls::Identity;
use tokio::time::Instant;

use crate::failover::{forced_after_ballot, preflight_ballot, BallotRequest, SentinelLinks};
use crate::topology::addr_key;

/// `--max-pause` when the request gives none.
pub const DEFAULT_MAX_PAUSE: Duration = Duration::from_millis(1000);
/// Shorter than this cannot hold a Sentinel promotion (its timer runs at 10-19 Hz and a
/// forced failover needs 2-3 of its ticks).
pub const MIN_MAX_PAUSE: Duration = Duration::from_millis(400);
/// Longer than this is an outage, not a switchover.
pub const MAX_MAX_PAUSE: Duration = Duration::from_secs(30);
/// The part of the pause kept for the promotion once the target caught up: measured here,
/// `SENTINEL FAILOVER` to `role:master` on the target took 150-300 ms.
pub const PROMOTION_RESERVE: Duration = Duration::from_millis(300);
/// How long the switchover waits for every Sentinel to report the priorities (it reads a
/// replica's INFO every 10 s; twice that and some).
pub const PRIORITY_WAIT: Duration = Duration::from_secs(25);
/// While promoting, the pause is extended in steps of this (never past the failover-timeout),
/// so a coordinator that dies mid-way leaves at most this much pause behind.
pub const PAUSE_STEP: Duration = Duration::from_millis(600);
/// ... once less than this is left of it: one poll of the target (or of the Sentinel) must fit
/// in the rest. With 100 ms, on a loaded machine a pause once ran out mid-poll and the old master
/// acknowledged writes that the promotion then discarded (the stack benchmark, 6 writes).
pub const PAUSE_MARGIN: Duration = Duration::from_millis(400);
/// Offsets and roles are polled this often while writes are paused.
const FAST_POLL: Duration = Duration::from_millis(2);
/// How long the coordinator's own publication of the new master may take (it needs the new
/// master's agent to report `role:master`; that agent polls every 10 ms during a failover).
const PUBLISH_WAIT: Duration = Duration::from_millis(2000);
/// After the publication, the reloaders' time to apply it to HAProxy before the old master's
/// clients are released.
const UNPAUSE_GRACE: Duration = Duration::from_millis(100);
const PRIORITY_POLL: Duration = Duration::from_millis(250);

/// A node taking part, by its id and address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub node: String,
    pub address: String,
}

/// Who is master, who becomes master, who must not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    pub master: Member,
    pub target: Member,
    /// The other replicas (given `replica-priority 0` for the switchover).
    pub others: Vec<Member>,
    /// The config epoch of the master (the ballot's starting point).
    pub epoch: u64,
}

/// Why the switchover was not started: nothing was changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no master is published for this group")]
    NoMaster,
    #[error("the master {0} is not confirmed (by its own agent, with a second agent heard)")]
    NotConfirmed(String),
    #[error("a failover is already in progress")]
    FailoverRunning,
    #[error("a switchover is already running")]
    AlreadyRunning,
    #[error("split brain: {0:?} claim master")]
    SplitBrain(Vec<String>),
    #[error("no node {to:?} in this group (nodes: {known})")]
    UnknownNode { to: String, known: String },
    #[error("{0} is the master already")]
    TargetIsMaster(String),
    #[error("{node} cannot be the new master: {why}")]
    TargetNotReady { node: String, why: String },
    #[error("no healthy replica linked to the master {0}")]
    NoHealthyReplica(String),
    #[error("--max-pause {ms} ms is outside {min}..={max} ms")]
    MaxPause { ms: u64, min: u64, max: u64 },
    #[error(
        "the coordinator has no Redis user for the switchover (redis_user / redis_password_file)"
    )]
    NoCredentials,
    #[error("{0}")]
    Redis(String),
    #[error("the Sentinels did not report the replica priorities within {}s: {last}", PRIORITY_WAIT.as_secs())]
    PrioritiesNotSeen { last: String },
    #[error("no ballot can be held: {0}")]
    Ballot(String),
}

/// How a switchover ended when it did not move the master.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("switchover refused: {0}")]
    Refused(#[from] Refusal),
    /// Writes were paused, then resumed on the old master, which stays master.
    #[error("switchover aborted: {reason}; the master {master} was unpaused after {pause_ms} ms and stays master")]
    Aborted {
        reason: String,
        master: String,
        pause_ms: u64,
        steps: Vec<String>,
    },
    /// Past the point of no return (the Sentinel accepted the failover) something went wrong.
    #[error("switchover failed after the failover was asked: {reason} (writes resumed after {pause_ms} ms; check `redis-ha status`)")]
    Unsettled {
        reason: String,
        pause_ms: u64,
        steps: Vec<String>,
    },
}

/// A switchover carried out.
#[derive(Clone, Debug)]
pub struct Done {
    pub old_master: String,
    pub new_master: String,
    pub sentinel: String,
    pub epoch: u64,
    pub pause: Duration,
    pub steps: Vec<String>,
    /// Problems that did not stop it (a priority not restored ...).
    pub warnings: Vec<String>,
}

/// The `--max-pause` of a request (0: the default), checked.
pub fn max_pause(ms: u64) -> Result<Duration, Refusal> {
    let d = if ms == 0 {
        DEFAULT_MAX_PAUSE
    } else {
        Duration::from_millis(ms)
    };
    if d < MIN_MAX_PAUSE || d > MAX_MAX_PAUSE {
        return Err(Refusal::MaxPause {
            ms,
            min: MIN_MAX_PAUSE.as_millis() as u64,
            max: MAX_MAX_PAUSE.as_millis() as u64,
        });
    }
    Ok(d)
}

/// Step 1 (module docs): the master, the target (`to`: a node id or an address; `None`: the
/// healthy replica linked to the master with the highest offset, the smallest node id among
/// equals) and the others, from the published topology.
pub fn choose(t: &Topology, to: Option<&str>) -> Result<Choice, Refusal> {
    if t.master_address.trim().is_empty() {
        return Err(Refusal::NoMaster);
    }
    let master_key = addr_key(&t.master_address);
    if !t.master_confirmed {
        return Err(Refusal::NotConfirmed(t.master_address.clone()));
    }
    if t.failover_in_progress {
        return Err(Refusal::FailoverRunning);
    }
    if !t.split_brain.is_empty() {
        return Err(Refusal::SplitBrain(t.split_brain.clone()));
    }
    let member = |n: &redis_ha_proto::v1::NodeView| Member {
        node: n.node.clone(),
        address: n.address.clone(),
    };
    let master = t
        .nodes
        .iter()
        .find(|n| addr_key(&n.address) == master_key)
        .map(member)
        .unwrap_or_else(|| Member {
            node: t.master_node.clone(),
            address: t.master_address.clone(),
        });
    let not_ready = |n: &redis_ha_proto::v1::NodeView| -> Option<String> {
        if n.health() != Health::Up {
            Some(format!("its health is {:?}", n.health()))
        } else if n.role() != Role::Replica {
            Some(format!("its role is {:?}", n.role()))
        } else if addr_key(&n.master_address) != master_key {
            Some(format!(
                "it replicates {:?}, not the master",
                n.master_address
            ))
        } else if n.link() != LinkState::Up {
            Some("its link to the master is down".to_owned())
        } else {
            None
        }
    };
    let target = match to.map(str::trim).filter(|s| !s.is_empty()) {
        Some(to) => {
            let found = t
                .nodes
                .iter()
                .find(|n| n.node == to || addr_key(&n.address) == addr_key(to))
                .ok_or_else(|| Refusal::UnknownNode {
                    to: to.to_owned(),
                    known: t
                        .nodes
                        .iter()
                        .map(|n| format!("{} ({})", n.node, n.address))
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
            if addr_key(&found.address) == master_key {
                return Err(Refusal::TargetIsMaster(found.node.clone()));
            }
            if let Some(why) = not_ready(found) {
                return Err(Refusal::TargetNotReady {
                    node: found.node.clone(),
                    why,
                });
            }
            member(found)
        }
        None => t
            .nodes
            .iter()
            .filter(|n| addr_key(&n.address) != master_key && not_ready(n).is_none())
            .max_by(|a, b| {
                a.repl_offset
                    .cmp(&b.repl_offset)
                    .then_with(|| b.node.cmp(&a.node))
            })
            .map(member)
            .ok_or_else(|| Refusal::NoHealthyReplica(t.master_address.clone()))?,
    };
    let others = t
        .nodes
        .iter()
        .filter(|n| {
            let k = addr_key(&n.address);
            k != master_key && k != addr_key(&target.address)
        })
        .map(member)
        .collect();
    Ok(Choice {
        master,
        target,
        others,
        epoch: t.config_epoch,
    })
}

/// For a node's graceful stop (`away_from`): why there is nothing to hand over (`node` is not
/// the published master), or `None` when it is the master.
pub fn not_master(t: &Topology, node: &str) -> Option<String> {
    let master_key = addr_key(&t.master_address);
    let is_master = !t.master_address.trim().is_empty()
        && (t.master_node == node
            || t.nodes
                .iter()
                .any(|n| n.node == node && addr_key(&n.address) == master_key));
    (!is_master).then(|| {
        format!(
            "{node} is not the master ({}): nothing to hand over",
            if t.master_address.is_empty() {
                "no master published"
            } else {
                t.master_address.as_str()
            }
        )
    })
}

/// Step 2 (module docs): whether one Sentinel's `SENTINEL REPLICAS` shows the target
/// promotable (priority above 0, link up, not down) and every other replica at priority 0.
/// `Err` says what is still missing.
pub fn priorities_seen(
    sentinel: &str,
    replicas: &[SentinelReplica],
    target: &str,
    others: &[String],
) -> Result<(), String> {
    let find = |addr: &str| {
        replicas
            .iter()
            .find(|r| addr_key(&r.address.to_string()) == addr_key(addr))
    };
    let t = find(target).ok_or_else(|| format!("Sentinel {sentinel} does not list {target}"))?;
    if t.priority.unwrap_or(0) == 0 {
        return Err(format!(
            "Sentinel {sentinel} still reads replica-priority {:?} for the target {target}",
            t.priority
        ));
    }
    if let Some(f) = t
        .flags
        .iter()
        .find(|f| matches!(f.as_str(), "s_down" | "o_down" | "disconnected"))
    {
        return Err(format!("Sentinel {sentinel} flags the target {target} {f}"));
    }
    if t.master_link_status != "ok" {
        return Err(format!(
            "Sentinel {sentinel} reads the target's link as {:?}",
            t.master_link_status
        ));
    }
    for o in others {
        match find(o) {
            // Not listed: it cannot be chosen either.
            None => {}
            Some(r) if r.priority == Some(0) => {}
            Some(r) => {
                return Err(format!(
                    "Sentinel {sentinel} still reads replica-priority {:?} for {o}",
                    r.priority
                ))
            }
        }
    }
    Ok(())
}

/// Step 5 (module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CatchUp {
    /// The target has every byte the master had when writes stopped.
    Ready,
    Wait,
    /// Not caught up with the promotion's share of the pause left.
    TooSlow {
        behind: u64,
    },
}

/// Whether the target at `target_offset` has caught up with the paused master's
/// `master_offset`, `elapsed` into a pause of `max_pause`.
pub fn catch_up(
    master_offset: u64,
    target_offset: u64,
    elapsed: Duration,
    max_pause: Duration,
) -> CatchUp {
    if target_offset >= master_offset {
        CatchUp::Ready
    } else if elapsed + PROMOTION_RESERVE >= max_pause {
        CatchUp::TooSlow {
            behind: master_offset - target_offset,
        }
    } else {
        CatchUp::Wait
    }
}

/// What the switchover sees after the failover was asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromotionView {
    /// The target answers `ROLE` master.
    pub target_is_master: bool,
    /// The elected Sentinel's `SENTINEL MASTER`: the master it names (canonical address) and
    /// whether its failover runs; `None` when it did not answer.
    pub sentinel: Option<(String, bool)>,
    /// Since the pause began.
    pub elapsed: Duration,
    /// When the current pause ends (since the pause began).
    pub paused_until: Duration,
    /// The Sentinels' failover-timeout: the longest the promotion may take.
    pub failover_timeout: Duration,
}

/// Step 6-7 (module docs): the next thing to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PromotionStep {
    /// `REPLICAOF` the old master to this address (the target, or whoever the Sentinel
    /// promoted instead, since that one is the master now).
    Demote(String),
    Wait,
    /// Pause the old master again, until this long after the pause began.
    Extend(Duration),
    /// The failover ended without a promotion: the old master stays master.
    Abort(String),
}

pub fn promoting(v: &PromotionView, old_master: &str, target: &str) -> PromotionStep {
    if v.target_is_master {
        return PromotionStep::Demote(target.to_owned());
    }
    if let Some((named, running)) = &v.sentinel {
        if named != old_master {
            return PromotionStep::Demote(named.clone());
        }
        if !running {
            return PromotionStep::Abort(
                "the Sentinel's failover ended without promoting anyone".to_owned(),
            );
        }
    }
    if v.elapsed >= v.failover_timeout {
        return PromotionStep::Abort(format!(
            "no promotion within the failover-timeout ({} ms)",
            v.failover_timeout.as_millis()
        ));
    }
    match keep_paused(v.elapsed, v.paused_until, v.failover_timeout) {
        Some(until) => PromotionStep::Extend(until),
        None => PromotionStep::Wait,
    }
}

/// Past the point of no return the old master must not take a write beside a new one: the new
/// end of its pause when less than [`PAUSE_MARGIN`] is left (never past the failover-timeout).
pub fn keep_paused(
    elapsed: Duration,
    paused_until: Duration,
    failover_timeout: Duration,
) -> Option<Duration> {
    (elapsed + PAUSE_MARGIN >= paused_until && paused_until < failover_timeout)
        .then(|| (elapsed + PAUSE_STEP).min(failover_timeout))
}

/// Step 8 (module docs): unpause once the coordinator publishes the new master (HAProxy then
/// cuts the clients on the old one once), or once `elapsed` reaches `limit`.
pub fn may_unpause(published: &str, new_master: &str, elapsed: Duration, limit: Duration) -> bool {
    addr_key(published) == addr_key(new_master) || elapsed >= limit
}

/// What the switchover needs from the coordinator.
pub struct Context<'a> {
    pub group: &'a str,
    pub sentinels: &'a [String],
    pub sentinel_password: Option<&'a Secret>,
    pub redis_user: Option<&'a str>,
    pub redis_password: Option<&'a Secret>,
    pub io_timeout: Duration,
    pub failover_timeout: Duration,
    pub links: &'a mut SentinelLinks,
    /// The master the coordinator publishes now.
    pub published: &'a (dyn Fn() -> String + Send + Sync),
    /// Where the master is reached instead of by its name: a stopping master's handover
    /// ([`reach_stopping_master`]).
    pub master_at: Option<IpAddr>,
}

/// The address of a stopping master's Redis: its name's host replaced by the address its
/// handover call came from (`redis-ha-node redis-run` runs beside Redis, in its container).
/// A rolling `docker service update` takes the task's name out of Docker's DNS before the
/// SIGTERM, so by the time the handover is asked the name resolves no more; the container,
/// and its address, stay until Redis exits. `None` when `address` is not `host:port`.
pub fn reach_stopping_master(address: &str, peer: IpAddr) -> Option<HostPort> {
    let hp: HostPort = address.parse().ok()?;
    Some(HostPort {
        host: peer.to_string(),
        port: hp.port,
    })
}

/// Whose address a handover call's source is: the stopping node's own, when the caller is
/// that node's agent identity (the certificate its Redis container holds), or any caller when
/// the coordinator runs without certificates (only `redis-ha-node` asks for a handover). An
/// operator calls from elsewhere: `None`, as for a plain switchover (`away_from` empty).
pub fn handover_from(who: Option<&Identity>, away_from: &str, peer: IpAddr) -> Option<IpAddr> {
    if away_from.is_empty() {
        return None;
    }
    match who {
        None => Some(peer),
        Some(Identity::Agent { node }) if node == away_from => Some(peer),
        Some(_) => None,
    }
}

/// The rule for a handover whose master is not confirmed by its own agent (which reaches it
/// by name, gone from DNS as above): the stopping node's Redis, reached at the address the
/// call came from, answering `role:master` confirms it. Anything else leaves the topology as
/// it is (and `choose` refuses as for any unconfirmed master).
pub fn confirm_stopping_master(t: &mut Topology, answers_master: bool) {
    // Only its own agent's word is replaced: a coordinator that hears too few agents
    // (AGENTS_LOST) stays unconfirmed.
    if answers_master
        && !t.master_address.trim().is_empty()
        && t.master_unconfirmed == redis_ha_proto::unconfirmed::OWN_AGENT
    {
        t.master_confirmed = true;
        t.master_unconfirmed.clear();
    }
}

/// Whether the Redis at `addr` answers `ROLE` with `master` (any failure: no).
pub async fn answers_master(
    addr: HostPort,
    user: Option<&str>,
    password: Option<&Secret>,
    timeout: Duration,
) -> bool {
    let Ok(link) = RedisLink::new_as("redis", addr.clone(), user, password, timeout) else {
        return false;
    };
    let mut node = Node {
        link,
        address: addr.to_string(),
    };
    node.is_master().await.unwrap_or(false)
}

/// One node's Redis link, its INFO replication read as fields.
struct Node {
    link: RedisLink,
    address: String,
}

impl Node {
    fn new(ctx: &Context<'_>, address: &str) -> Result<Self, Refusal> {
        Self::at(ctx, address, None)
    }

    /// `address` (its name in the steps), connected at `ip` instead of its host when given.
    fn at(ctx: &Context<'_>, address: &str, ip: Option<IpAddr>) -> Result<Self, Refusal> {
        let hp = match ip {
            Some(ip) => reach_stopping_master(address, ip),
            None => address.parse().ok(),
        }
        .ok_or_else(|| Refusal::Redis(format!("bad address {address:?}: not host:port")))?;
        let link = RedisLink::new_as(
            "redis",
            hp,
            ctx.redis_user,
            ctx.redis_password,
            ctx.io_timeout,
        )
        .map_err(|e| Refusal::Redis(e.cause()))?;
        Ok(Self {
            link,
            address: address.to_owned(),
        })
    }

    async fn run(&mut self, cmd: &redis::Cmd, label: &str) -> Result<Value, String> {
        self.link
            .query(cmd, label)
            .await
            .map_err(|e: LinkError| format!("{}: {}", self.address, e.cause()))
    }

    async fn info(&mut self) -> Result<std::collections::BTreeMap<String, String>, String> {
        let v = self
            .run(redis::cmd("INFO").arg("replication"), "INFO replication")
            .await?;
        let t = text(&v).ok_or_else(|| format!("{}: INFO replied {v:?}", self.address))?;
        Ok(info_fields(&t)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect())
    }

    async fn number(&mut self, field: &str) -> Result<u64, String> {
        let info = self.info().await?;
        info.get(field)
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| format!("{}: INFO replication has no {field}", self.address))
    }

    async fn is_master(&mut self) -> Result<bool, String> {
        let v = self.run(&redis::cmd("ROLE"), "ROLE").await?;
        Ok(match &v {
            Value::Array(items) => items.first().and_then(text).as_deref() == Some("master"),
            _ => false,
        })
    }

    async fn pause(&mut self, d: Duration) -> Result<(), String> {
        let ms = d.as_millis().max(1) as u64;
        self.run(
            redis::cmd("CLIENT").arg("PAUSE").arg(ms).arg("WRITE"),
            "CLIENT PAUSE",
        )
        .await
        .map(|_| ())
    }

    async fn unpause(&mut self) -> Result<(), String> {
        self.run(redis::cmd("CLIENT").arg("UNPAUSE"), "CLIENT UNPAUSE")
            .await
            .map(|_| ())
    }

    async fn set_priority(&mut self, p: u32, rewrite: bool) -> Result<(), String> {
        self.run(
            redis::cmd("CONFIG")
                .arg("SET")
                .arg("replica-priority")
                .arg(p),
            "CONFIG SET replica-priority",
        )
        .await?;
        if rewrite {
            self.run(redis::cmd("CONFIG").arg("REWRITE"), "CONFIG REWRITE")
                .await?;
        }
        Ok(())
    }
}

/// A log of what was done, each step stamped with the time since the switchover began.
struct Steps {
    started: Instant,
    list: Vec<String>,
}

impl Steps {
    fn note(&mut self, s: impl Into<String>) {
        let s = s.into();
        tracing::info!(step = %s, "switchover");
        self.list
            .push(format!("+{} ms {s}", self.started.elapsed().as_millis()));
    }
}

/// Carries out a switchover of `choice` (see the module docs) with writes paused at most
/// `max_pause` (unless the Sentinel accepted the failover and the promotion takes longer: then
/// the pause lasts until the old master is a replica, never a write beside the new master).
pub async fn run(ctx: Context<'_>, choice: &Choice, max_pause: Duration) -> Result<Done, Failure> {
    if ctx.redis_password.is_none() && ctx.redis_user.is_some() {
        return Err(Refusal::NoCredentials.into());
    }
    let mut steps = Steps {
        started: Instant::now(),
        list: Vec::new(),
    };
    let mut others = Vec::new();
    for o in &choice.others {
        others.push(Node::new(&ctx, &o.address)?);
    }
    let mut saved: Vec<(usize, u32)> = Vec::new();
    let result =
        steer_and_switch(ctx, choice, max_pause, &mut steps, &mut others, &mut saved).await;
    // The other replicas get their priority back whatever happened.
    let mut warnings = Vec::new();
    for (i, p) in saved {
        let node = &mut others[i];
        match node.set_priority(p, true).await {
            Ok(()) => steps.note(format!("{}: replica-priority {p} restored", node.address)),
            Err(e) => {
                tracing::warn!(error = %e, "switchover: replica-priority not restored");
                warnings.push(format!(
                    "replica-priority of {} not restored to {p}: {e} (CONFIG SET replica-priority {p} on it)",
                    node.address
                ));
            }
        }
    }
    match result {
        Ok(mut done) => {
            done.steps = steps.list;
            done.warnings = warnings;
            Ok(done)
        }
        Err(Failure::Aborted {
            reason,
            master,
            pause_ms,
            ..
        }) => Err(Failure::Aborted {
            reason,
            master,
            pause_ms,
            steps: steps.list,
        }),
        Err(Failure::Unsettled {
            reason, pause_ms, ..
        }) => Err(Failure::Unsettled {
            reason,
            pause_ms,
            steps: steps.list,
        }),
        Err(e) => Err(e),
    }
}

async fn steer_and_switch(
    ctx: Context<'_>,
    choice: &Choice,
    max_pause: Duration,
    steps: &mut Steps,
    others: &mut [Node],
    saved: &mut Vec<(usize, u32)>,
) -> Result<Done, Failure> {
    let master_addr = addr_key(&choice.master.address);
    let target_addr = addr_key(&choice.target.address);
    let mut master = Node::at(&ctx, &choice.master.address, ctx.master_at)?;
    let mut target = Node::new(&ctx, &choice.target.address)?;

    // The target must be promotable by its own word too.
    let info = target.info().await.map_err(Refusal::Redis)?;
    if info.get("slave_priority").map(String::as_str) == Some("0") {
        return Err(Refusal::TargetNotReady {
            node: choice.target.node.clone(),
            why: "its replica-priority is 0 (Sentinel never promotes it)".into(),
        }
        .into());
    }
    if info.get("master_link_status").map(String::as_str) != Some("up") {
        return Err(Refusal::TargetNotReady {
            node: choice.target.node.clone(),
            why: "its link to the master is not up".into(),
        }
        .into());
    }
    // Step 1b, a stopping master reached by address only: the replicas follow that address.
    if let Some(at) = ctx
        .master_at
        .and_then(|ip| reach_stopping_master(&choice.master.address, ip))
    {
        follow_by_address(&mut target, &at, steps).await?;
        for node in others.iter_mut() {
            // One that does not answer is left to the Sentinels, as in step 2.
            if node.info().await.is_ok() {
                follow_by_address(node, &at, steps).await?;
            }
        }
    }
    // Step 2: the others out of Sentinel's choice.
    let mut pending: Vec<usize> = (0..others.len()).collect();
    out_of_choice(others, &mut pending, saved, steps).await?;
    for &i in &pending {
        // Not promotable for Sentinel either while it does not answer; taken out of the
        // choice as soon as it does (a node restarting: the wait below retries it).
        steps.note(format!("{}: does not answer yet", others[i].address));
    }
    wait_priorities(
        &ctx,
        &choice.target.address,
        others,
        &mut pending,
        saved,
        steps,
    )
    .await?;
    steps.note("every Sentinel reads the priorities");
    // Step 3.
    let ballot = BallotRequest {
        sentinels: ctx.sentinels,
        group: ctx.group,
        master: &master_addr,
        epoch: choice.epoch,
        password: ctx.sentinel_password,
        io_timeout: ctx.io_timeout,
    };
    preflight_ballot(ctx.links, &ballot)
        .await
        .map_err(|e| Refusal::Ballot(e.to_string()))?;

    // Step 4: from here every exit unpauses (or demotes first).
    master.pause(max_pause).await.map_err(Refusal::Redis)?;
    let paused = Instant::now();
    steps.note(format!(
        "{master_addr}: writes paused (at most {} ms)",
        max_pause.as_millis()
    ));
    // Step 5.
    let master_offset = match master.number("master_repl_offset").await {
        Ok(o) => o,
        Err(e) => return Err(abort(&mut master, paused, e).await),
    };
    loop {
        let t = match target.number("slave_repl_offset").await {
            Ok(o) => o,
            Err(e) => return Err(abort(&mut master, paused, format!("target: {e}")).await),
        };
        match catch_up(master_offset, t, paused.elapsed(), max_pause) {
            CatchUp::Ready => break,
            CatchUp::Wait => tokio::time::sleep(FAST_POLL).await,
            CatchUp::TooSlow { behind } => {
                return Err(abort(
                    &mut master,
                    paused,
                    format!(
                        "the target {target_addr} is still {behind} bytes behind with {} ms of the --max-pause {} ms left for the promotion",
                        max_pause.saturating_sub(paused.elapsed()).as_millis(),
                        max_pause.as_millis()
                    ),
                )
                .await)
            }
        }
    }
    steps.note(format!(
        "{target_addr}: caught up at offset {master_offset}"
    ));

    // Step 6: the point of no return is the Sentinel's acceptance.
    let forced = match forced_after_ballot(ctx.links, &ballot).await {
        Ok(f) => f,
        Err(e) => {
            return Err(abort(&mut master, paused, format!("failover not started: {e}")).await)
        }
    };
    steps.note(format!(
        "Sentinel {} accepted the failover (ballot epoch {})",
        forced.sentinel, forced.ballot
    ));
    let failover_timeout = if forced.failover_timeout.is_zero() {
        ctx.failover_timeout
    } else {
        forced.failover_timeout
    };
    let mut elected = forced
        .sentinel
        .parse::<HostPort>()
        .ok()
        .and_then(|hp| SentinelClient::new(hp, ctx.sentinel_password, ctx.io_timeout).ok());
    let mut paused_until = max_pause;
    if paused.elapsed() >= paused_until {
        // The ballot outlasted the pause: the old master may have acknowledged writes since,
        // which the promotion discards. Said, not hidden.
        tracing::warn!(
            pause_ms = paused.elapsed().as_millis() as u64,
            "switchover: the pause ran out before the failover was accepted; writes in between may be lost"
        );
        steps.note(format!(
            "the pause ran out before the failover was accepted ({} ms): writes the old master took since may be lost",
            paused.elapsed().as_millis()
        ));
    }
    // The ballot may have used most of the pause: extended now, before the first poll.
    if let Some(until) = keep_paused(paused.elapsed(), paused_until, failover_timeout) {
        let left = until.saturating_sub(paused.elapsed());
        if let Err(e) = master.pause(left).await {
            tracing::warn!(error = %e, "switchover: the pause could not be extended");
        }
        paused_until = until;
        steps.note(format!("pause extended to {} ms", until.as_millis()));
    }
    let mut polls: u32 = 0;
    let new_master = loop {
        let target_is_master = target.is_master().await.unwrap_or(false);
        // The Sentinel every tenth poll: the target's role is the fast signal.
        let sentinel = match (&mut elected, polls % 10) {
            (Some(c), 9) => c
                .master(ctx.group)
                .await
                .ok()
                .map(|m| (addr_key(&m.address.to_string()), m.failover_in_progress())),
            _ => None,
        };
        polls = polls.wrapping_add(1);
        let view = PromotionView {
            target_is_master,
            sentinel,
            elapsed: paused.elapsed(),
            paused_until,
            failover_timeout,
        };
        match promoting(&view, &master_addr, &target_addr) {
            PromotionStep::Demote(to) => break to,
            PromotionStep::Wait => tokio::time::sleep(FAST_POLL).await,
            PromotionStep::Extend(until) => {
                let left = until.saturating_sub(paused.elapsed());
                if let Err(e) = master.pause(left).await {
                    tracing::warn!(error = %e, "switchover: the pause could not be extended");
                }
                paused_until = until;
                steps.note(format!("pause extended to {} ms", until.as_millis()));
            }
            PromotionStep::Abort(reason) => {
                let _ = master.unpause().await;
                return Err(Failure::Unsettled {
                    reason,
                    pause_ms: paused.elapsed().as_millis() as u64,
                    steps: Vec::new(),
                });
            }
        }
    };
    steps.note(format!("{new_master}: role master"));
    if new_master != target_addr {
        steps.note(format!(
            "the Sentinel promoted {new_master}, not the target {target_addr}"
        ));
    }
    // Step 7.
    let hp: HostPort = new_master.parse().map_err(|e| Failure::Unsettled {
        reason: format!("bad address {new_master}: {e}"),
        pause_ms: paused.elapsed().as_millis() as u64,
        steps: Vec::new(),
    })?;
    let demoted = master
        .run(
            redis::cmd("REPLICAOF").arg(&hp.host).arg(hp.port),
            "REPLICAOF",
        )
        .await;
    match &demoted {
        Ok(_) => steps.note(format!("{master_addr}: REPLICAOF {new_master}")),
        // Sentinel converts it as soon as it reaches it; until then the pause holds it.
        Err(e) => steps.note(format!("{master_addr}: REPLICAOF failed: {e}")),
    }
    // The other replicas too, at once: the new master takes writes (min-replicas-to-write)
    // only once a replica acknowledges it, and waiting for Sentinel's or the agents'
    // re-pointing costs client errors. Each has at most what the paused master had, which
    // the new master has: a partial resync.
    for node in others.iter_mut() {
        if addr_key(&node.address) == new_master {
            continue;
        }
        match node
            .run(
                redis::cmd("REPLICAOF").arg(&hp.host).arg(hp.port),
                "REPLICAOF",
            )
            .await
        {
            Ok(_) => steps.note(format!("{}: REPLICAOF {new_master}", node.address)),
            Err(e) => steps.note(format!(
                "{}: REPLICAOF failed ({e}); Sentinel re-points it",
                node.address
            )),
        }
    }
    // Step 8: the old master is a replica; kept paused until the new master is published
    // and HAProxy had a moment to apply it, so a client blocked there is cut once and
    // reconnects to the new master rather than meeting READONLY on the old one. Nothing can
    // be lost any more: a pause only ever extends, and the replication stream still applies
    // once it ends.
    if demoted.is_ok() {
        let _ = master.pause(PUBLISH_WAIT + UNPAUSE_GRACE).await;
    }
    let demoted_at = paused.elapsed();
    let mut writable = None;
    while paused.elapsed() < demoted_at + PUBLISH_WAIT {
        let published = (ctx.published)();
        if may_unpause(&published, &new_master, Duration::ZERO, Duration::MAX) {
            writable = Some(paused.elapsed());
            break;
        }
        tokio::time::sleep(FAST_POLL).await;
    }
    match writable {
        Some(at) => steps.note(format!(
            "{new_master}: published as master ({} ms into the pause)",
            at.as_millis()
        )),
        None => steps.note(format!(
            "{new_master}: not published within {} ms",
            PUBLISH_WAIT.as_millis()
        )),
    }
    if demoted.is_err() {
        // Not a replica: keep it paused until the Sentinels convert it, at most the
        // failover-timeout (the pause then ends by itself).
        let _ = master
            .pause(failover_timeout.saturating_sub(paused.elapsed()))
            .await;
        return Err(Failure::Unsettled {
            reason: format!(
                "{new_master} is master but {master_addr} could not be made its replica; it stays paused until the Sentinels convert it"
            ),
            pause_ms: paused.elapsed().as_millis() as u64,
            steps: Vec::new(),
        });
    }
    tokio::time::sleep(UNPAUSE_GRACE).await;
    let unpaused = master.unpause().await;
    match unpaused {
        Ok(_) => steps.note(format!("{master_addr}: unpaused (a replica now)")),
        Err(e) => steps.note(format!(
            "{master_addr}: CLIENT UNPAUSE failed ({e}); the pause ends by itself"
        )),
    }
    // Writes stopped from the pause until the new master was published.
    let pause = writable.unwrap_or_else(|| paused.elapsed());
    Ok(Done {
        old_master: master_addr,
        new_master,
        sentinel: forced.sentinel,
        epoch: forced.ballot,
        pause,
        steps: Vec::new(),
        warnings: Vec::new(),
    })
}

/// How long a replica re-pointed at the stopping master's address may take to be linked again.
const RELINK_WAIT: Duration = Duration::from_secs(5);

/// Step 1b: `node` follows the stopping master at its address `at` rather than by its name.
/// Why: the swarm took the name out of DNS, and the Sentinels, resolving it again on every
/// INFO of a replica, see the replica follow "another" master and fix that (`+fix-slave-config`:
/// `REPLICAOF` the same name, then `CLIENT KILL TYPE normal` on the replica, which cuts the other
/// Sentinels' links to it; a failover whose leader just lost its link to the target ends with
/// `-failover-abort-no-good-slave`). An address compares equal to the master's as the Sentinels
/// resolved it while the name was there, and a replica whose master changed is left alone for
/// the failover-timeout anyway. The replica resyncs partially (the same history); one at a time,
/// so the master never lacks a replica for `min-replicas-to-write`. Nothing is paused yet: a
/// replica that does not link again refuses the switchover.
async fn follow_by_address(
    node: &mut Node,
    at: &HostPort,
    steps: &mut Steps,
) -> Result<(), Refusal> {
    node.run(
        redis::cmd("REPLICAOF").arg(&at.host).arg(at.port),
        "REPLICAOF",
    )
    .await
    .map_err(Refusal::Redis)?;
    let started = Instant::now();
    loop {
        let info = node.info().await.map_err(Refusal::Redis)?;
        let linked = info.get("master_link_status").map(String::as_str) == Some("up")
            && info.get("master_host").map(String::as_str) == Some(at.host.as_str());
        if linked {
            break;
        }
        if started.elapsed() > RELINK_WAIT {
            return Err(Refusal::Redis(format!(
                "{}: not linked to the stopping master at {at} within {} s",
                node.address,
                RELINK_WAIT.as_secs()
            )));
        }
        tokio::time::sleep(FAST_POLL * 5).await;
    }
    steps.note(format!(
        "{}: follows the stopping master at its address {at} (its name may be gone from DNS)",
        node.address
    ));
    Ok(())
}

/// Unpauses the master after a failure before the failover was asked: it stays master.
async fn abort(master: &mut Node, paused: Instant, reason: String) -> Failure {
    let unpaused = master.unpause().await;
    let pause_ms = paused.elapsed().as_millis() as u64;
    let reason = match unpaused {
        Ok(()) => reason,
        Err(e) => format!("{reason}; CLIENT UNPAUSE failed too ({e}): the pause ends by itself"),
    };
    tracing::warn!(%reason, pause_ms, "switchover aborted; the master was unpaused");
    Failure::Aborted {
        reason,
        master: master.address.clone(),
        pause_ms,
        steps: Vec::new(),
    }
}

/// Step 2 for the replicas in `pending` (indexes into `others`): `replica-priority 0` on each
/// that answers (its old priority in `saved`, restored at the end); those that do not answer
/// stay in `pending`.
async fn out_of_choice(
    others: &mut [Node],
    pending: &mut Vec<usize>,
    saved: &mut Vec<(usize, u32)>,
    steps: &mut Steps,
) -> Result<(), Refusal> {
    let mut still = Vec::new();
    for &i in pending.iter() {
        let node = &mut others[i];
        let Ok(info) = node.info().await else {
            still.push(i);
            continue;
        };
        let old: u32 = info
            .get("slave_priority")
            .and_then(|p| p.parse().ok())
            .unwrap_or(100);
        if old != 0 {
            node.set_priority(0, false).await.map_err(Refusal::Redis)?;
            saved.push((i, old));
            steps.note(format!("{}: replica-priority 0 (was {old})", node.address));
        }
    }
    *pending = still;
    Ok(())
}

/// Waits until every Sentinel reads the priorities ([`priorities_seen`]) of `target` and of
/// the other replicas `nodes`, taking those still `pending` out of the choice as they answer.
async fn wait_priorities(
    ctx: &Context<'_>,
    target: &str,
    nodes: &mut [Node],
    pending: &mut Vec<usize>,
    saved: &mut Vec<(usize, u32)>,
    steps: &mut Steps,
) -> Result<(), Refusal> {
    let others: Vec<String> = nodes.iter().map(|n| n.address.clone()).collect();
    let others = others.as_slice();
    let started = Instant::now();
    let mut clients = Vec::new();
    for s in ctx.sentinels {
        let hp: HostPort = s
            .parse()
            .map_err(|e| Refusal::Ballot(format!("bad Sentinel address {s}: {e}")))?;
        let c = SentinelClient::new(hp, ctx.sentinel_password, ctx.io_timeout)
            .map_err(|e| Refusal::Ballot(e.cause()))?;
        clients.push((s.clone(), c));
    }
    if clients.is_empty() {
        return Err(Refusal::Ballot("no Sentinel known".into()));
    }
    loop {
        let mut last = Ok(());
        for (s, c) in &mut clients {
            let r = match c.replicas(ctx.group).await {
                Ok(replicas) => priorities_seen(s, &replicas, target, others),
                // Nothing is paused yet: refuse now rather than wait for a Sentinel that may
                // not come back (a teardown, a partition).
                Err(e) => {
                    return Err(Refusal::Ballot(format!("Sentinel {s}: {}", e.cause())));
                }
            };
            if r.is_err() {
                last = r;
                break;
            }
        }
        match last {
            Ok(()) => return Ok(()),
            Err(last) if started.elapsed() >= PRIORITY_WAIT => {
                return Err(Refusal::PrioritiesNotSeen { last })
            }
            Err(_) => {
                if !pending.is_empty() {
                    out_of_choice(nodes, pending, saved, steps).await?;
                }
                tokio::time::sleep(PRIORITY_POLL).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis_ha_proto::v1::NodeView;

    fn node(i: u16, role: Role, offset: u64) -> NodeView {
        NodeView {
            node: format!("node-{i}"),
            address: format!("127.0.0.1:700{i}"),
            health: Health::Up as i32,
            role: role as i32,
            is_master: role == Role::Master,
            link: if role == Role::Replica {
                LinkState::Up as i32
            } else {
                LinkState::Unspecified as i32
            },
            master_address: if role == Role::Replica {
                "127.0.0.1:7001".into()
            } else {
                String::new()
            },
            repl_offset: offset,
            ..NodeView::default()
        }
    }

    fn topology() -> Topology {
        Topology {
            master_group: "g".into(),
            master_address: "127.0.0.1:7001".into(),
            master_node: "node-1".into(),
            master_confirmed: true,
            config_epoch: 4,
            nodes: vec![
                node(1, Role::Master, 100),
                node(2, Role::Replica, 90),
                node(3, Role::Replica, 95),
            ],
            ..Topology::default()
        }
    }

    #[test]
    fn the_most_caught_up_linked_replica_is_chosen_unless_told() {
        let c = choose(&topology(), None).expect("a choice");
        assert_eq!(c.master.node, "node-1");
        assert_eq!(c.target.node, "node-3");
        assert_eq!(
            c.others.iter().map(|m| m.node.as_str()).collect::<Vec<_>>(),
            ["node-2"]
        );
        assert_eq!(c.epoch, 4);
        // Equal offsets: the smallest node id, whatever the order.
        let mut t = topology();
        t.nodes[2].repl_offset = 90;
        t.nodes.reverse();
        assert_eq!(choose(&t, None).expect("choice").target.node, "node-2");
        // Told: that one, by id or by address.
        assert_eq!(
            choose(&topology(), Some("node-2")).expect("c").target.node,
            "node-2"
        );
        assert_eq!(
            choose(&topology(), Some("127.0.0.1:7002"))
                .expect("c")
                .target
                .node,
            "node-2"
        );
        // An unlinked replica is not chosen, and refused when asked for.
        let mut t = topology();
        t.nodes[2].link = LinkState::Down as i32;
        assert_eq!(choose(&t, None).expect("c").target.node, "node-2");
        assert!(matches!(
            choose(&t, Some("node-3")),
            Err(Refusal::TargetNotReady { .. })
        ));
    }

    #[test]
    fn refusals_name_why() {
        type Change = Box<dyn Fn(&mut Topology)>;
        let cases: Vec<(Change, Option<&str>, &str)> = vec![
            (Box::new(|t| t.master_address.clear()), None, "no master"),
            (
                Box::new(|t| t.master_confirmed = false),
                None,
                "not confirmed",
            ),
            (
                Box::new(|t| t.failover_in_progress = true),
                None,
                "already in progress",
            ),
            (
                Box::new(|t| t.split_brain = vec!["x".into()]),
                None,
                "split brain",
            ),
            (Box::new(|_| {}), Some("node-9"), "no node \"node-9\""),
            (Box::new(|_| {}), Some("node-1"), "master already"),
            (
                Box::new(|t| {
                    t.nodes[1].health = Health::Down as i32;
                    t.nodes[2].health = Health::Unknown as i32;
                }),
                None,
                "no healthy replica",
            ),
            (
                Box::new(|t| t.nodes[1].master_address = "127.0.0.1:7003".into()),
                Some("node-2"),
                "not the master",
            ),
        ];
        for (change, to, want) in cases {
            let mut t = topology();
            change(&mut t);
            let e = choose(&t, to).expect_err(want).to_string();
            assert!(e.contains(want), "{e:?} should say {want:?}");
        }
    }

    #[test]
    fn a_stopping_node_hands_over_only_when_it_is_the_master() {
        assert_eq!(not_master(&topology(), "node-1"), None);
        assert!(not_master(&topology(), "node-2")
            .expect("not the master")
            .contains("127.0.0.1:7001"));
        let mut t = topology();
        t.master_address.clear();
        t.master_node.clear();
        assert!(not_master(&t, "node-1").is_some());
    }

    #[test]
    fn a_stopping_master_is_reached_at_its_calls_address_when_it_asked_itself() {
        let peer: IpAddr = "10.0.1.7".parse().expect("an ip");
        let agent = |n: &str| Identity::Agent { node: n.into() };
        assert_eq!(handover_from(None, "node-1", peer), Some(peer));
        assert_eq!(
            handover_from(Some(&agent("node-1")), "node-1", peer),
            Some(peer)
        );
        // Another node's identity is refused before this; an operator calls from elsewhere.
        assert_eq!(handover_from(Some(&agent("node-2")), "node-1", peer), None);
        assert_eq!(
            handover_from(Some(&Identity::Operator), "node-1", peer),
            None
        );
        assert_eq!(handover_from(None, "", peer), None);
        assert_eq!(
            reach_stopping_master("redis-1:6379", peer),
            Some(HostPort {
                host: "10.0.1.7".into(),
                port: 6379
            })
        );
        assert_eq!(reach_stopping_master("redis-1", peer), None);
    }

    #[test]
    fn a_stopping_master_that_answers_at_its_address_is_confirmed() {
        let mut t = topology();
        t.master_confirmed = false;
        t.master_unconfirmed = "own-agent".into();
        assert!(matches!(choose(&t, None), Err(Refusal::NotConfirmed(_))));
        confirm_stopping_master(&mut t, false);
        assert!(!t.master_confirmed);
        let mut lost = t.clone();
        confirm_stopping_master(&mut t, true);
        assert!(choose(&t, None).is_ok());
        // Too few agents heard is not the stopping node's to overrule.
        lost.master_unconfirmed = "agents-lost".into();
        confirm_stopping_master(&mut lost, true);
        assert!(!lost.master_confirmed);
        let mut none = topology();
        none.master_confirmed = false;
        none.master_unconfirmed = "own-agent".into();
        none.master_address.clear();
        confirm_stopping_master(&mut none, true);
        assert!(!none.master_confirmed);
    }

    #[test]
    fn max_pause_bounds() {
        assert_eq!(max_pause(0), Ok(DEFAULT_MAX_PAUSE));
        assert_eq!(max_pause(500), Ok(Duration::from_millis(500)));
        assert!(max_pause(10).is_err());
        assert!(max_pause(3_600_000).is_err());
    }

    fn replica(port: u16, priority: Option<u32>, flags: &str, link: &str) -> SentinelReplica {
        SentinelReplica {
            address: HostPort::new("127.0.0.1", port),
            flags: flags.split(',').map(str::to_owned).collect(),
            master_link_status: link.into(),
            offset: 0,
            priority,
        }
    }

    #[test]
    fn priorities_are_seen_only_when_the_target_alone_is_promotable() {
        let others = vec!["127.0.0.1:7002".to_owned()];
        let ok = [
            replica(7002, Some(0), "slave", "ok"),
            replica(7003, Some(100), "slave", "ok"),
        ];
        assert_eq!(priorities_seen("s", &ok, "127.0.0.1:7003", &others), Ok(()));
        let not_yet = [
            replica(7002, Some(100), "slave", "ok"),
            replica(7003, Some(100), "slave", "ok"),
        ];
        assert!(priorities_seen("s", &not_yet, "127.0.0.1:7003", &others)
            .unwrap_err()
            .contains("7002"));
        let target_zero = [
            replica(7002, Some(0), "slave", "ok"),
            replica(7003, Some(0), "slave", "ok"),
        ];
        assert!(priorities_seen("s", &target_zero, "127.0.0.1:7003", &others).is_err());
        let target_down = [
            replica(7002, Some(0), "slave", "ok"),
            replica(7003, Some(100), "s_down,slave", "err"),
        ];
        assert!(
            priorities_seen("s", &target_down, "127.0.0.1:7003", &others)
                .unwrap_err()
                .contains("s_down")
        );
        assert!(priorities_seen("s", &ok[..1], "127.0.0.1:7003", &others)
            .unwrap_err()
            .contains("does not list"));
    }

    #[test]
    fn catching_up_keeps_the_promotions_share_of_the_pause() {
        let max = Duration::from_millis(1000);
        assert_eq!(catch_up(50, 50, Duration::ZERO, max), CatchUp::Ready);
        assert_eq!(catch_up(50, 60, Duration::ZERO, max), CatchUp::Ready);
        assert_eq!(
            catch_up(50, 40, Duration::from_millis(100), max),
            CatchUp::Wait
        );
        assert_eq!(
            catch_up(50, 40, max - PROMOTION_RESERVE, max),
            CatchUp::TooSlow { behind: 10 }
        );
    }

    fn view(elapsed: u64) -> PromotionView {
        PromotionView {
            target_is_master: false,
            sentinel: None,
            elapsed: Duration::from_millis(elapsed),
            paused_until: Duration::from_millis(1000),
            failover_timeout: Duration::from_secs(10),
        }
    }

    #[test]
    fn after_the_failover_the_old_master_stays_paused_until_someone_is_promoted() {
        let (old, target) = ("127.0.0.1:7001", "127.0.0.1:7003");
        assert_eq!(promoting(&view(10), old, target), PromotionStep::Wait);
        let mut v = view(10);
        v.target_is_master = true;
        assert_eq!(
            promoting(&v, old, target),
            PromotionStep::Demote(target.into())
        );
        // The Sentinel names someone else: that one is the master now.
        let mut v = view(10);
        v.sentinel = Some(("127.0.0.1:7002".into(), true));
        assert_eq!(
            promoting(&v, old, target),
            PromotionStep::Demote("127.0.0.1:7002".into())
        );
        // Still running at the old master: wait; ended there: abort.
        let mut v = view(10);
        v.sentinel = Some((old.into(), true));
        assert_eq!(promoting(&v, old, target), PromotionStep::Wait);
        v.sentinel = Some((old.into(), false));
        assert!(matches!(
            promoting(&v, old, target),
            PromotionStep::Abort(_)
        ));
        // The pause running out: extended, never past the failover-timeout.
        assert_eq!(
            promoting(&view(950), old, target),
            PromotionStep::Extend(Duration::from_millis(1550))
        );
        // Extended once less than the margin is left, not only at the last moment.
        assert_eq!(
            promoting(&view(601), old, target),
            PromotionStep::Extend(Duration::from_millis(1201))
        );
        assert_eq!(promoting(&view(599), old, target), PromotionStep::Wait);
        let mut v = view(9950);
        v.paused_until = Duration::from_millis(9960);
        assert_eq!(
            promoting(&v, old, target),
            PromotionStep::Extend(Duration::from_secs(10))
        );
        assert!(matches!(
            promoting(&view(10_000), old, target),
            PromotionStep::Abort(_)
        ));
    }

    #[test]
    fn unpause_when_the_new_master_is_published_or_the_pause_ends() {
        let max = Duration::from_millis(500);
        assert!(!may_unpause(
            "127.0.0.1:7001",
            "127.0.0.1:7003",
            Duration::from_millis(100),
            max
        ));
        assert!(may_unpause(
            "127.0.0.1:7003",
            "127.0.0.1:7003",
            Duration::from_millis(100),
            max
        ));
        assert!(may_unpause("127.0.0.1:7001", "127.0.0.1:7003", max, max));
    }
}
