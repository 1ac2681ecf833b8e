//! The running agent: four loops sharing one [`State`]:
//! - Redis poll: full poll at the heartbeat, `ROLE` every `failover_poll` during a failover,
//!   fencing after each full poll;
//! - Sentinel poll: `SENTINEL MASTER/REPLICAS/SENTINELS` at the heartbeat and after events;
//! - Sentinel events: `PSUBSCRIBE *`, parsed, queued, reported at once;
//! - reporter: sends `AgentReport`s (startup, events, changes, heartbeat), never blocking the
//!   others; failed reports keep their events queued and are retried with backoff;
//! - topology (when `follow_promotions` or `crash_watch`): watches the coordinator's topology,
//!   re-points this replica at a promoted master at once ([`crate::follow`]) and tells the
//!   master watch which master to hold a connection to;
//! - master watch (when `crash_watch`): a held connection to the published master, so its
//!   crash is reported at once ([`crate::watch`]); with `docker_events`, also Docker's `die`
//!   events of this node's Redis container ([`crate::docker_events`]).
//!
//! The Redis poll also feeds each result to the hung-node detector ([`crate::hung`]): when
//! enabled, a node whose polls keep timing out (not refused: a crash is the restart policy's)
//! has its container restarted through Docker.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use redis_ha_common::time::now_ms;
use redis_ha_common::{Backoff, HostPort};
use redis_ha_proto::v1::coordinator_client::CoordinatorClient;
use redis_ha_proto::v1::{AgentReport, MasterSource, Topology, WatchTopologyRequest};
use tokio::sync::{Mutex as AsyncMutex, Notify};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use tracing::{debug, debug_span, info, info_span, warn, Instrument};

use crate::config::AgentSettings;
use crate::fencing::{decide, stray_master, FencingDecision, FencingInput, MismatchTimer};
use crate::follow::{FollowCooldown, FollowDecision, FollowInput, PublishedMaster};
use crate::hung::{DockerRestarter, HungDecision, HungDetector, PollOutcome};
use crate::metrics::AgentMetrics;
use crate::probe::{RedisProbe, SentinelProbe};
use crate::siblings::{sibling_addresses, Siblings};
use crate::state::{Reason, State};
use crate::watch::{on_every_close, Held, Seen};
use crate::AgentError;
use redis_ha_proto::v1::Reach;
use redis_ha_sentinel::{
    named_master, parse_event, same_node, MasterView, ParsedEvent, Payload, SentinelClient,
};

const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The agent's reconnection backoff: 50 ms doubling up to 1 s.
fn backoff() -> Backoff {
    Backoff::new(BACKOFF_MIN, BACKOFF_MAX)
}

/// Logs a failing peer once per distinct error and once when it recovers, so a dead Redis
/// does not flood the log at the poll rate.
#[derive(Debug, Default)]
struct ErrorLog {
    last: Option<String>,
    repeats: u64,
}

impl ErrorLog {
    /// True when `err` should be logged (first error, or a different one).
    fn failed(&mut self, err: &str) -> bool {
        if self.last.as_deref() == Some(err) {
            self.repeats += 1;
            false
        } else {
            self.last = Some(err.to_owned());
            self.repeats = 0;
            true
        }
    }

    /// `Some(failed attempts)` when this ends an outage.
    fn recovered(&mut self) -> Option<u64> {
        self.last
            .take()
            .map(|_| std::mem::take(&mut self.repeats) + 1)
    }
}

/// Everything the loops share.
pub(crate) struct Shared {
    settings: AgentSettings,
    state: Mutex<State>,
    /// Wakes the reporter: a report is due before the heartbeat.
    report_now: Notify,
    /// Wakes the Redis poll: a failover started (switch to the fast poll).
    failover_started: Notify,
    /// Wakes the Redis poll for one `ROLE` at once: this node closed a held connection (the
    /// promotion's `CLIENT KILL`, a restart, a crash).
    redis_closed: Notify,
    /// Wakes the sibling connections' check, for the same reason.
    siblings_check: Notify,
    /// Wakes the Sentinel poll: an event arrived, its view may have changed.
    sentinel_refresh: Notify,
    /// Wakes the follow loop: this agent's Sentinel reached a new epoch.
    epoch_advanced: Notify,
    /// The master the coordinator publishes: what the master watch holds a connection to.
    watch_target: tokio::sync::watch::Sender<Option<HostPort>>,
    /// Connections to the other nodes, for the follow's read of a promoted one.
    siblings: Siblings,
    metrics: AgentMetrics,
}

impl Shared {
    fn new(settings: AgentSettings, metrics: AgentMetrics) -> Self {
        let state = State::new(
            settings.node_id.clone(),
            settings.master_group.clone(),
            settings.announce_addr.clone(),
            settings.sentinel_addr.clone(),
            settings.failover_timeout,
        );
        let siblings = Siblings::new(
            settings.redis_user.clone(),
            settings.redis_password.clone(),
            settings.io_timeout,
        );
        Self {
            settings,
            siblings,
            state: Mutex::new(state),
            report_now: Notify::new(),
            failover_started: Notify::new(),
            redis_closed: Notify::new(),
            siblings_check: Notify::new(),
            sentinel_refresh: Notify::new(),
            epoch_advanced: Notify::new(),
            watch_target: tokio::sync::watch::Sender::new(None),
            metrics,
        }
    }

    /// Applies what the master watch saw; reports at once when the reach changed.
    fn watch_seen(&self, seen: &Seen) {
        let changed = {
            let mut st = self.state();
            let changed = st.master_watch.apply(seen, now_ms());
            if changed {
                st.want_report(Reason::MasterWatch);
                st.master_lost_until = (st.master_watch.reach() != Reach::Up)
                    .then(|| Instant::now() + self.settings.failover_timeout);
            }
            changed.then(|| st.master_watch.clone())
        };
        if let Some(w) = changed {
            let s = &self.settings;
            match w.reach() {
                Reach::Up => {
                    info!(node = %s.node_id, master = ?w.address(), "master watch: the master answers")
                }
                reach => {
                    warn!(node = %s.node_id, master = ?w.address(), ?reach, seen = ?seen, "master watch: the master does not answer")
                }
            }
            self.report_now.notify_one();
            // Switch the Redis poll to the fast ROLE poll now (or back).
            self.fast_poll_changed();
        }
    }

    /// A failover started or ended, or the watched master was lost: the loops that poll fast
    /// meanwhile re-read [`Shared::fast_polling`].
    fn fast_poll_changed(&self) {
        self.failover_started.notify_one();
        self.siblings_check.notify_one();
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-written in a way that
        // matters more than stopping the agent would: keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn failover_in_progress(&self, now: Instant) -> bool {
        self.state().failover.in_progress(now)
    }

    /// Poll `ROLE` fast: a failover is in progress, or the watched master was just lost (a
    /// crash failover's leader may not be this agent's Sentinel, which then tells it nothing).
    fn fast_polling(&self, now: Instant) -> bool {
        let mut st = self.state();
        st.failover.in_progress(now) || st.master_lost_until.is_some_and(|t| now < t)
    }

    /// Applies a Redis poll's result to the state (`apply`) and the metrics; returns the
    /// report reason it gives, if any.
    fn apply_redis_poll(&self, apply: impl FnOnce(&mut State) -> Option<Reason>) -> Option<Reason> {
        let mut st = self.state();
        let reason = apply(&mut st);
        self.metrics.redis(&st.redis);
        reason
    }
}

/// One peer's polls: the reconnection backoff and the error log.
struct PeerPolls {
    backoff: Backoff,
    errors: ErrorLog,
}

impl PeerPolls {
    fn new() -> Self {
        Self {
            backoff: backoff(),
            errors: ErrorLog::default(),
        }
    }

    /// A poll answered: `Some(failed polls)` when this ends an outage.
    fn answered(&mut self) -> Option<u64> {
        self.backoff.reset();
        self.errors.recovered()
    }

    /// A poll failed; `connected`: the connection survived it (else back off). True when the
    /// error is worth a log line (see [`ErrorLog`]).
    fn failed(&mut self, connected: bool, e: &impl std::fmt::Display) -> bool {
        if !connected {
            self.backoff.failed(Instant::now());
        }
        self.errors.failed(&e.to_string())
    }
}

/// A long-lived stream broke or could not start: waits for the backoff's next attempt.
/// Returns false on shutdown.
async fn retry_later(backoff: &mut Backoff, shutdown: &CancellationToken) -> bool {
    backoff.failed(Instant::now());
    let deadline = backoff.next_attempt().unwrap_or_else(Instant::now);
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep_until(deadline.into()) => true,
    }
}

/// Sleeps until `deadline`, or until `wake` fires or `shutdown` is cancelled.
/// Returns false on shutdown.
async fn nap(deadline: Instant, wake: &Notify, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep_until(deadline.into()) => true,
        _ = wake.notified() => true,
    }
}

async fn redis_loop(shared: &Shared, mut probe: RedisProbe, shutdown: &CancellationToken) {
    let s = &shared.settings;
    let mut polls = PeerPolls::new();
    let mut mismatch = MismatchTimer::default();
    let mut fencing_disabled_logged = false;
    let mut hung = HungDetector::from_settings(&s.hung);
    let mut restarter = s.hung.target.clone().map(DockerRestarter::new);
    let mut next_full = Instant::now();
    // How old the Sentinel's answer may be for fencing: a few missed polls at most.
    let sentinel_max_age = s.heartbeat * 3 + s.io_timeout;
    // This node closed a held connection: a `ROLE` now, fast poll or not.
    let mut closed = false;

    while !shutdown.is_cancelled() {
        let now = Instant::now();
        let fast = shared.fast_polling(now) || std::mem::take(&mut closed);
        let reachable = shared.state().redis.reachable;
        let connected = probe.is_connected();

        if connected || polls.backoff.ready(now) {
            if now >= next_full || !connected || !reachable {
                let mut result = probe.observe().await;
                // An established connection that failed for another reason than a timeout
                // (Sentinel's CLIENT KILL at a promotion, a reply in transition) is polled once
                // more at once before the node is reported down: the promotion is no outage. A
                // dead process refuses the new connection at once; a hang is a timeout.
                if connected && result.as_ref().is_err_and(|e| !e.is_timeout()) {
                    result = probe.observe().await;
                }
                next_full = Instant::now() + s.heartbeat;
                match &result {
                    Ok(_) => {
                        if let Some(n) = polls.answered() {
                            info!(node = %s.node_id, redis = %s.redis_addr, failed_polls = n, "redis reachable again");
                        }
                    }
                    Err(e) => {
                        if polls.failed(probe.is_connected(), e) {
                            warn!(node = %s.node_id, error = %e, "redis poll failed; reporting it down and reconnecting");
                        }
                    }
                }
                let reason = shared.apply_redis_poll(|st| st.apply_redis(&result, now_ms()));
                if reason.is_some() {
                    shared.report_now.notify_one();
                }
                let outcome = PollOutcome::of(&result);
                if check_hung(shared, &mut hung, restarter.as_mut(), outcome, now).await {
                    // See the restarted node at once.
                    next_full = Instant::now();
                }
                if result.is_ok() {
                    let decision = {
                        let now = Instant::now();
                        let mut st = shared.state();
                        let in_progress = st.failover.in_progress(now);
                        let mut input = FencingInput {
                            own_role: st.redis.role(),
                            own_addr: &s.announce_addr,
                            sentinel_master: st.fresh_sentinel_master(now, sentinel_max_age),
                            failover_in_progress: in_progress,
                            recently_named: st.recently_named(now, s.failover_timeout),
                            mismatch_for: Duration::ZERO,
                            grace: s.fencing_grace,
                        };
                        input.mismatch_for = mismatch.update(stray_master(&input).is_some(), now);
                        let epoch = input.sentinel_master.map_or(0, |(_, e)| e);
                        (decide(&input), epoch)
                    };
                    if let (FencingDecision::Demote(master), epoch) = decision {
                        if s.fencing {
                            if fence(shared, &mut probe, &master, epoch).await {
                                mismatch.reset();
                                // See the demotion at once.
                                next_full = Instant::now();
                            }
                        } else if !fencing_disabled_logged {
                            fencing_disabled_logged = true;
                            warn!(node = %s.node_id, redis = %s.announce_addr, sentinel_master = %master, epoch,
                                "stray master: this node claims master while the Sentinel names another; fencing is disabled");
                        }
                    }
                }
            } else if fast {
                let result = probe.role().await;
                if let Err(e) = &result {
                    if polls.failed(probe.is_connected(), e) {
                        warn!(node = %s.node_id, error = %e, "redis ROLE poll failed");
                    }
                }
                let reason = shared.apply_redis_poll(|st| st.apply_role(&result, now_ms()));
                if reason.is_some() {
                    debug!(node = %s.node_id, ?reason, "redis change seen by the fast ROLE poll");
                    shared.report_now.notify_one();
                }
                let outcome = PollOutcome::of(&result);
                check_hung(shared, &mut hung, restarter.as_mut(), outcome, now).await;
            }
        }

        let now = Instant::now();
        let deadline = if !probe.is_connected() {
            polls.backoff.next_attempt().unwrap_or(now).max(now)
        } else if shared.fast_polling(now) {
            now + s.failover_poll
        } else {
            next_full
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep_until(deadline.into()) => {}
            _ = shared.failover_started.notified() => {}
            _ = shared.redis_closed.notified() => closed = true,
        }
    }
}

/// Holds a bare connection to this node's Redis: when the node closes it, the Redis poll reads
/// `ROLE` at once ([`on_every_close`]), so a promotion is seen at its `CLIENT KILL`, not up to a
/// fast poll later; and the follow's connection, closed by the same kill, is made again at once.
/// Sentinel's re-pointing of a replica ends in that kill too, every failover: without this the
/// next follow's `REPLICAOF` paid a name lookup, a connect and AUTH in the middle of a failover.
async fn own_close_watch_loop(
    shared: &Shared,
    follow: Option<&AsyncMutex<RedisProbe>>,
    shutdown: &CancellationToken,
) {
    let s = &shared.settings;
    let warm_follow = || async move {
        if let Some(p) = follow {
            // A failure only means the follow connects again itself.
            let _ = p.lock().await.ping().await;
        }
    };
    tokio::select! {
        _ = shutdown.cancelled() => {}
        () = on_every_close(&s.redis_addr, s.io_timeout, || async move {
            debug!(node = %s.node_id, "this node closed the held connection: reading ROLE now");
            shared.redis_closed.notify_one();
            warm_follow().await;
        }) => {}
    }
}

/// Feeds one poll's outcome (`started`: when the poll began) to the hung-node detector and
/// restarts the node's container when it says so. Returns true when it was restarted.
async fn check_hung(
    shared: &Shared,
    detector: &mut HungDetector,
    restarter: Option<&mut DockerRestarter>,
    outcome: PollOutcome,
    started: Instant,
) -> bool {
    let s = &shared.settings;
    let in_progress = shared.failover_in_progress(Instant::now());
    match detector.observe(outcome, started, in_progress) {
        HungDecision::Restart(hung_for) => {
            detector.attempted(Instant::now());
            match restarter {
                Some(r) => restart_hung(shared, r, hung_for).await,
                None => false,
            }
        }
        HungDecision::Held(hung_for, why) => {
            debug!(node = %s.node_id, hung_for_ms = hung_for.as_millis() as u64, ?why,
                "hung node: restart held");
            false
        }
        HungDecision::Stalled(_) | HungDecision::Fine => false,
    }
}

/// Restarts the hung node's container; errors are logged and counted, never returned.
async fn restart_hung(
    shared: &Shared,
    restarter: &mut DockerRestarter,
    hung_for: Duration,
) -> bool {
    let s = &shared.settings;
    let hung_for_ms = u64::try_from(hung_for.as_millis()).unwrap_or(u64::MAX);
    let span = info_span!("hung_restart", node = %s.node_id, redis = %s.announce_addr,
        target = %restarter.target(), hung_for_ms, container = tracing::field::Empty);
    async {
        warn!(
            "hung node: {} has not answered for {} ms (its polls time out); restarting {} through Docker",
            s.announce_addr,
            hung_for_ms,
            restarter.target()
        );
        match restarter.restart().await {
            Ok(container) => {
                tracing::Span::current().record("container", container.as_str());
                shared.metrics.hung_restarts.inc();
                warn!(container = %container, "hung node: container restarted");
                let dropped = shared.state().hung_restarted(&container, hung_for, now_ms());
                if dropped > 0 {
                    warn!(dropped, "event queue full: dropped the oldest events");
                }
                shared.report_now.notify_one();
                true
            }
            Err(e) => {
                shared.metrics.hung_restart_failures.inc();
                warn!(error = %e, cooldown_ms = s.hung.cooldown.as_millis() as u64,
                    "hung node: restart failed; next attempt after the cooldown");
                false
            }
        }
    }
    .instrument(span)
    .await
}

/// Asks the peer Sentinels (from `SENTINEL SENTINELS`) which master they name, so a
/// demotion follows the highest config epoch and not only this node's Sentinel, which may
/// be the one cut off from the others. One rule for all: [`named_master`], quorum 1 (this
/// node's own Sentinel is enough, as it was for the mismatch).
async fn quorum_view(shared: &Shared, own: (HostPort, u64)) -> (HostPort, u64) {
    let s = &shared.settings;
    let peers: Vec<HostPort> = shared
        .state()
        .sentinel
        .peers
        .iter()
        .filter_map(|p| p.parse().ok())
        .collect();
    let answers = futures::future::join_all(peers.into_iter().map(|peer| async move {
        let mut client =
            SentinelClient::new(peer.clone(), s.sentinel_password.as_ref(), s.io_timeout).ok()?;
        match client.master(&s.master_group).await {
            Ok(m) => Some(m.view(peer)),
            Err(e) => {
                debug!(peer = %peer, error = %e, "fencing: peer sentinel did not answer");
                None
            }
        }
    }))
    .await;
    // Fencing runs only while no failover is in progress: the own view is settled.
    let mut views = vec![MasterView {
        sentinel: s.sentinel_addr.clone(),
        master: own.0.clone(),
        config_epoch: own.1,
        settled: true,
    }];
    views.extend(answers.into_iter().flatten());
    named_master(&views, 1).map_or(own, |n| (n.master, n.config_epoch))
}

/// Demotes this node after checking the peers agree. Returns true when it was demoted.
async fn fence(shared: &Shared, probe: &mut RedisProbe, master: &HostPort, epoch: u64) -> bool {
    let s = &shared.settings;
    let span =
        info_span!("fencing", node = %s.node_id, redis = %s.announce_addr, master = %master, epoch);
    async {
        let (master, epoch) = quorum_view(shared, (master.clone(), epoch)).await;
        if same_node(&master, &s.announce_addr) {
            info!(epoch, "fencing: a peer sentinel names this node at a higher config epoch; keeping it master");
            return false;
        }
        let master = &master;
        warn!(
            "fencing: demoting stray master {} to a replica of {} (the Sentinel names it at config epoch {}; mismatch lasted over {} ms)",
            s.announce_addr,
            master,
            epoch,
            s.fencing_grace.as_millis()
        );
        match probe.replicaof(master).await {
            Ok(()) => {
                shared.metrics.fencing_demotions.inc();
                let dropped = shared.state().fenced(master, epoch, now_ms());
                if dropped > 0 {
                    warn!(dropped, "event queue full: dropped the oldest events");
                }
                shared.report_now.notify_one();
                true
            }
            Err(e) => {
                warn!(error = %e, "fencing: REPLICAOF failed; will retry");
                false
            }
        }
    }
    .instrument(span)
    .await
}

async fn sentinel_loop(shared: &Shared, mut probe: SentinelProbe, shutdown: &CancellationToken) {
    let s = &shared.settings;
    let mut polls = PeerPolls::new();
    // The down-after the Sentinel's ping-period was checked for, and on which connection: a
    // new connection may be a restarted Sentinel, back at its default.
    let mut timed_for: Option<(u64, u64)> = None;
    while !shutdown.is_cancelled() {
        let now = Instant::now();
        if probe.is_connected() || polls.backoff.ready(now) {
            let result = probe.observe(&s.master_group).await;
            match &result {
                Ok(o) => {
                    if let Some(n) = polls.answered() {
                        info!(node = %s.node_id, sentinel = %s.sentinel_addr, failed_polls = n, "sentinel reachable again");
                    }
                    let down_after = o.master.down_after_ms;
                    let checked = Some((down_after, probe.connections()));
                    if down_after > 0 && timed_for != checked {
                        tune_sentinel_timers(shared, &mut probe, down_after).await;
                        timed_for = Some((down_after, probe.connections()));
                    }
                }
                Err(e) => {
                    if polls.failed(probe.is_connected(), e) {
                        warn!(node = %s.node_id, error = %e, "sentinel poll failed");
                    }
                }
            }
            let (reason, failover_changed) = {
                let mut st = shared.state();
                // `now` is when the poll started: an end event that arrived while it ran
                // is newer than the flags it saw.
                let r = st.apply_sentinel(&result, now);
                let in_progress = st.failover.in_progress(Instant::now());
                shared.metrics.sentinel(&st.sentinel, in_progress);
                r
            };
            if failover_changed {
                shared.fast_poll_changed();
            }
            if reason.is_some() {
                shared.report_now.notify_one();
            }
        }
        let now = Instant::now();
        let deadline = if probe.is_connected() {
            now + s.heartbeat
        } else {
            polls
                .backoff
                .next_attempt()
                .unwrap_or(now + s.heartbeat)
                .max(now)
        };
        if !nap(deadline, &shared.sentinel_refresh, shutdown).await {
            return;
        }
    }
}

/// Keeps the Sentinel's ping-period within down-after ([`redis_ha_sentinel::timers`]: else a
/// Sentinel may take the promoted master for down right after `+switch-master` and fail it over
/// again). A Sentinel without `SENTINEL DEBUG` (before Redis 7.0) keeps its default: logged.
async fn tune_sentinel_timers(shared: &Shared, probe: &mut SentinelProbe, down_after_ms: u64) {
    let s = &shared.settings;
    let want = redis_ha_sentinel::timers::ping_period_ms(down_after_ms);
    match probe.tune_ping_period(want).await {
        Ok(Some(had)) => {
            info!(node = %s.node_id, sentinel = %s.sentinel_addr, down_after_ms, ping_period_ms = want, was_ms = had,
                "sentinel ping-period set to follow down-after");
        }
        Ok(None) => {}
        Err(e) => {
            warn!(node = %s.node_id, sentinel = %s.sentinel_addr, down_after_ms, ping_period_ms = want, error = %e,
                "cannot set the sentinel's ping-period (SENTINEL DEBUG): it may take a new master for down right after a failover");
        }
    }
}

async fn events_loop(shared: &Shared, probe: &SentinelProbe, shutdown: &CancellationToken) {
    let s = &shared.settings;
    let mut backoff = backoff();
    let mut errors = ErrorLog::default();
    while !shutdown.is_cancelled() {
        match probe.subscribe_events(s.heartbeat).await {
            Ok(mut events) => {
                backoff.reset();
                errors.recovered();
                info!(node = %s.node_id, sentinel = %s.sentinel_addr, "subscribed to sentinel events");
                // Events may have been missed while disconnected: look at the Sentinel now.
                shared.sentinel_refresh.notify_one();
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        msg = events.next() => match msg {
                            Ok(m) => on_event(shared, &m.channel, &m.payload),
                            Err(e) => {
                                if errors.failed(&e.to_string()) {
                                    warn!(node = %s.node_id, error = %e, "sentinel event connection lost (closed or stalled); resubscribing");
                                }
                                break;
                            }
                        },
                    }
                }
            }
            Err(e) => {
                if errors.failed(&e.to_string()) {
                    warn!(node = %s.node_id, error = %e, "sentinel event subscription failed; retrying");
                }
            }
        }
        if !retry_later(&mut backoff, shutdown).await {
            return;
        }
    }
}

fn on_event(shared: &Shared, channel: &str, payload: &str) {
    if channel == "__sentinel__:hello" {
        return;
    }
    let parsed = parse_event(channel, payload);
    if let Err(e) = &parsed {
        warn!(error = %e, "unreadable sentinel event; reporting it as received");
    }
    let now = Instant::now();
    let mut st = shared.state();
    let epoch_before = st.current_epoch;
    let outcome = st.apply_event(channel, payload, parsed.as_ref().ok(), now, now_ms());
    if !outcome.queued {
        return;
    }
    let epoch_advanced = st.current_epoch > epoch_before;
    shared.metrics.event(channel);
    let in_progress = st.failover.in_progress(now);
    shared
        .metrics
        .failover_in_progress
        .set(i64::from(in_progress));
    if in_progress && st.failover_span.is_none() {
        st.failover_span = Some(info_span!(
            parent: None,
            "failover",
            node = %shared.settings.node_id,
            group = %shared.settings.master_group,
            epoch = tracing::field::Empty,
        ));
    }
    let failover_span = st.failover_span.clone();
    if let Some(f) = &failover_span {
        if outcome.epoch > 0 {
            f.record("epoch", outcome.epoch);
        }
    }
    if !in_progress {
        // This event (e.g. +failover-end) is the failover's last.
        st.failover_span = None;
    }
    let span = info_span!(
        parent: failover_span.as_ref().and_then(tracing::Span::id),
        "sentinel_event",
        node = %shared.settings.node_id,
        group = %shared.settings.master_group,
        kind = channel,
        epoch = outcome.epoch,
        old_master = tracing::field::Empty,
        new_master = tracing::field::Empty,
    );
    if let Some((old, new)) = parsed.as_ref().ok().and_then(masters_named) {
        if let Some(old) = old {
            span.record("old_master", tracing::field::display(old));
        }
        span.record("new_master", tracing::field::display(new));
    }
    {
        let _entered = span.enter();
        info!(
            payload,
            failover_in_progress = in_progress,
            "sentinel event"
        );
        if outcome.dropped > 0 {
            warn!(
                dropped = outcome.dropped,
                "event queue full: dropped the oldest events"
            );
        }
        if epoch_advanced {
            debug!(epoch = st.current_epoch, "new epoch");
        }
    }
    // The report this event causes becomes a child of this span (one trace per failover).
    st.event_span = Some((span, now));
    drop(st);
    if outcome.failover_changed {
        shared.fast_poll_changed();
    }
    if epoch_advanced {
        shared.epoch_advanced.notify_one();
    }
    shared.sentinel_refresh.notify_one();
    shared.report_now.notify_one();
}

/// The masters an event names: (the master it leaves, if named; the new or future master) for
/// `+switch-master`, `+selected-slave`, `+promoted-slave` and `+failover-state-*`.
fn masters_named(e: &ParsedEvent) -> Option<(Option<&HostPort>, &HostPort)> {
    let new = e.named_master()?;
    let old = match &e.payload {
        Payload::SwitchMaster { old, .. } => Some(old),
        Payload::Instance { instance, .. } => instance.master.as_ref().map(|m| &m.addr),
        _ => None,
    };
    Some((old, new))
}

/// Builds the next report; the events go with it (put back if it fails).
fn build_report(
    shared: &Shared,
    sequence: u64,
    started_at_ms: i64,
    reason: Reason,
) -> (AgentReport, Option<tracing::Span>) {
    let s = &shared.settings;
    let now = Instant::now();
    let mut st = shared.state();
    let failover_in_progress = st.failover.in_progress(now);
    let mut sentinel = st.sentinel.clone();
    sentinel.current_epoch = st.current_epoch;
    let events = st.events.take();
    // A report caused by something (events, a role change, the Sentinel's view) shortly after a
    // Sentinel event joins that event's trace: during a failover the report that makes the
    // coordinator switch is often a role change seen by the fast ROLE poll, not the event itself.
    let caused = !events.is_empty() || reason != Reason::Heartbeat;
    let span = match &st.event_span {
        Some((span, at)) if caused && now.saturating_duration_since(*at) < s.failover_timeout => {
            Some(span.clone())
        }
        _ => None,
    };
    if span.is_none() && !failover_in_progress {
        // Old news: later reports start their own traces.
        st.event_span = None;
    }
    if !failover_in_progress {
        // Ended without an end event (timed out): close its span.
        st.failover_span = None;
    }
    let report = AgentReport {
        agent_id: s.node_id.clone(),
        master_group: s.master_group.clone(),
        sequence,
        agent_started_at_ms: started_at_ms,
        observed_at_ms: now_ms(),
        reason: reason.as_str().to_owned(),
        redis: Some(st.redis.clone()),
        sentinel: Some(sentinel),
        events,
        failover_in_progress,
        master_watch: st.master_watch.to_proto(),
    };
    (report, span)
}

async fn report_loop(
    shared: &Shared,
    client: CoordinatorClient<Channel>,
    started_at_ms: i64,
    shutdown: &CancellationToken,
) {
    let s = &shared.settings;
    // Start-up report: wait (briefly) for the first look at Redis and Sentinel.
    let startup_deadline = Instant::now() + s.io_timeout * 2 + Duration::from_millis(100);
    loop {
        {
            let st = shared.state();
            if st.redis_observed && st.sentinel_observed {
                break;
            }
        }
        if Instant::now() >= startup_deadline
            || !nap(startup_deadline, &shared.report_now, shutdown).await
        {
            break;
        }
    }

    let mut sequence = 0u64;
    let mut backoff = backoff();
    let mut outage: Option<(Instant, u64)> = None;
    let mut next_heartbeat = Instant::now();
    while !shutdown.is_cancelled() {
        let now = Instant::now();
        let pending = shared.state().pending;
        let due = if outage.is_some() {
            backoff.ready(now)
        } else {
            pending.is_some() || now >= next_heartbeat
        };
        if !due {
            let deadline = if outage.is_some() {
                backoff.next_attempt().unwrap_or(now)
            } else {
                next_heartbeat
            };
            if !nap(deadline, &shared.report_now, shutdown).await {
                return;
            }
            continue;
        }

        let reason = shared.state().pending.take().unwrap_or(Reason::Heartbeat);
        sequence += 1;
        let (report, event_span) = build_report(shared, sequence, started_at_ms, reason);
        let epoch = report.sentinel.as_ref().map_or(0, |x| x.current_epoch);
        let span = match &event_span {
            Some(parent) => {
                info_span!(parent: parent, "report", node = %s.node_id, group = %s.master_group,
                    reason = reason.as_str(), sequence, epoch, topology_version = tracing::field::Empty)
            }
            // Plain heartbeats are debug spans: one trace per heartbeat would bury the ones
            // that matter.
            None if reason == Reason::Heartbeat => {
                debug_span!("report", node = %s.node_id, group = %s.master_group,
                reason = reason.as_str(), sequence, epoch, topology_version = tracing::field::Empty)
            }
            None => info_span!("report", node = %s.node_id, group = %s.master_group,
                reason = reason.as_str(), sequence, epoch, topology_version = tracing::field::Empty),
        };
        let events = report.events.clone();
        let n_events = events.len();
        let mut client = client.clone();
        let result = async {
            let mut request = tonic::Request::new(report);
            redis_ha_common::telemetry::inject_trace_context(request.metadata_mut());
            // The endpoint has its own timeouts; this one also covers a stuck connect.
            match tokio::time::timeout(s.io_timeout * 2, client.report(request)).await {
                Ok(Ok(ack)) => {
                    shared.metrics.report(tonic::Code::Ok);
                    let version = ack.get_ref().topology_version;
                    tracing::Span::current().record("topology_version", version);
                    debug!(
                        events = n_events,
                        topology_version = version,
                        "report delivered"
                    );
                    Ok(())
                }
                Ok(Err(status)) => {
                    shared.metrics.report(status.code());
                    Err(format!("{}: {}", status.code(), status.message()))
                }
                Err(_) => {
                    shared.metrics.report(tonic::Code::DeadlineExceeded);
                    Err(format!(
                        "timed out after {} ms",
                        (s.io_timeout * 2).as_millis()
                    ))
                }
            }
        }
        .instrument(span)
        .await;
        drop(event_span);

        next_heartbeat = Instant::now() + s.heartbeat;
        match result {
            Ok(()) => {
                backoff.reset();
                if let Some((since, failed)) = outage.take() {
                    info!(node = %s.node_id, coordinator = %s.coordinator_url, failed_reports = failed,
                        outage_ms = since.elapsed().as_millis() as u64, "coordinator reachable again");
                }
            }
            Err(e) => {
                let mut st = shared.state();
                let dropped = st.events.put_back(events);
                // The reason is not lost: the retry carries it.
                st.want_report(reason);
                drop(st);
                if dropped > 0 {
                    warn!(dropped, "event queue full while the coordinator is unreachable: dropped the oldest events");
                }
                backoff.failed(Instant::now());
                match &mut outage {
                    Some((_, failed)) => *failed += 1,
                    None => {
                        warn!(node = %s.node_id, coordinator = %s.coordinator_url, error = %e,
                            "report to the coordinator failed; keeping events queued and retrying with backoff");
                        outage = Some((Instant::now(), 1));
                    }
                }
            }
        }
    }
}

/// The master a topology publishes, when it names one that parses.
fn published_master(t: &Topology) -> Option<PublishedMaster> {
    let master = t.master_address.parse().ok()?;
    Some(PublishedMaster {
        master,
        config_epoch: t.config_epoch,
        source: t.master_source(),
        confirmed: t.master_confirmed,
    })
}

/// Watches the coordinator's topology: re-points this node at a promoted master
/// ([`crate::follow::decide`]) when `probe` is given, and tells the master watch which master
/// to hold. Without a watch nothing is followed (Sentinel does it, as before) and the master
/// watch keeps its last target.
async fn topology_loop(
    shared: &Shared,
    endpoint: Endpoint,
    probe: Option<&AsyncMutex<RedisProbe>>,
    shutdown: &CancellationToken,
) {
    let s = &shared.settings;
    let mut backoff = backoff();
    let mut errors = ErrorLog::default();
    // Long enough for the next poll to show the REPLICAOF.
    let mut cooldown = FollowCooldown::new(s.heartbeat * 2 + s.io_timeout);
    // The promoted master this agent last re-pointed the node at (see `follow::decide`).
    let mut followed: Option<HostPort> = None;
    while !shutdown.is_cancelled() {
        let mut client = CoordinatorClient::new(endpoint.connect_lazy());
        let request = WatchTopologyRequest {
            master_group: s.master_group.clone(),
        };
        let watched = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = client.watch_topology(request) => r,
        };
        match watched {
            Ok(stream) => {
                let mut stream = stream.into_inner();
                let mut published: Option<PublishedMaster> = None;
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        msg = stream.message() => match msg {
                            Ok(Some(t)) => {
                                backoff.reset();
                                if errors.recovered().is_some() {
                                    info!(node = %s.node_id, "coordinator topology watch back");
                                }
                                if t.master_group == s.master_group {
                                    if probe.is_some() {
                                        let nodes = t.nodes.iter().map(|n| n.address.as_str());
                                        shared.siblings.set(&sibling_addresses(nodes, &s.announce_addr));
                                    }
                                    published = published_master(&t);
                                    let target = published.as_ref().map(|p| p.master.clone());
                                    shared.watch_target.send_if_modified(|held| {
                                        let changed = *held != target;
                                        if changed {
                                            held.clone_from(&target);
                                        }
                                        changed
                                    });
                                }
                            }
                            Ok(None) => {
                                if errors.failed("stream ended") {
                                    warn!(node = %s.node_id, "coordinator topology watch ended; promotions are left to Sentinel until it is back");
                                }
                                break;
                            }
                            Err(e) => {
                                if errors.failed(&e.to_string()) {
                                    warn!(node = %s.node_id, error = %e, "coordinator topology watch broken; promotions are left to Sentinel until it is back");
                                }
                                break;
                            }
                        },
                        _ = shared.epoch_advanced.notified() => {}
                    }
                    let Some(probe) = probe else {
                        continue;
                    };
                    if let Some(promoted) = follow_if_due(
                        shared,
                        &mut *probe.lock().await,
                        published.as_ref(),
                        followed.as_ref(),
                        &mut cooldown,
                    )
                    .await
                    {
                        followed = Some(promoted);
                    }
                }
            }
            Err(e) => {
                if errors.failed(&e.to_string()) {
                    warn!(node = %s.node_id, error = %e, "coordinator topology watch failed; retrying");
                }
            }
        }
        if !retry_later(&mut backoff, shutdown).await {
            return;
        }
    }
}

/// Decides on what the agent knows now and carries out a `ReplicaOf`; returns the master when
/// it followed a promotion.
async fn follow_if_due(
    shared: &Shared,
    probe: &mut RedisProbe,
    published: Option<&PublishedMaster>,
    followed: Option<&HostPort>,
    cooldown: &mut FollowCooldown,
) -> Option<HostPort> {
    let s = &shared.settings;
    let (own_role, own_master, own_sentinel_epoch) = {
        let st = shared.state();
        let role = if st.redis.reachable {
            st.redis.role()
        } else {
            redis_ha_proto::v1::Role::Unspecified
        };
        (role, st.own_master(), st.current_epoch)
    };
    let input = |sibling_promoted| FollowInput {
        own_addr: &s.announce_addr,
        own_role,
        own_master: own_master.as_ref(),
        published,
        own_sentinel_epoch,
        followed,
        sibling_promoted,
    };
    let mut decision = crate::follow::decide(&input(false));
    if crate::follow::awaits_witness(&input(false)) {
        // This agent's Sentinel is not at the epoch yet (a forced failover's leader is the
        // only one for a second or two): read the promoted node itself.
        if let Some(p) = published {
            if promoted_sibling(shared, probe, &p.master).await {
                decision = crate::follow::decide(&input(true));
            }
        }
    }
    let FollowDecision::ReplicaOf(master, epoch) = &decision else {
        return None;
    };
    if cooldown.suppressed(&decision, Instant::now()) {
        return None;
    }
    match probe.replicaof(master).await {
        Ok(()) => {
            cooldown.acted(master, *epoch, Instant::now());
            shared.metrics.follows.inc();
            info!(node = %s.node_id, redis = %s.announce_addr, master = %master, epoch,
                "follow: re-pointed this replica at the promoted master (before Sentinel)");
            let dropped = shared.state().followed(master, *epoch, now_ms());
            if dropped > 0 {
                warn!(dropped, "event queue full: dropped the oldest events");
            }
            shared.report_now.notify_one();
            let promoted = published.is_some_and(|p| p.source == MasterSource::Promoted);
            promoted.then(|| master.clone())
        }
        Err(e) => {
            warn!(node = %s.node_id, master = %master, error = %e, "follow: REPLICAOF failed; Sentinel will re-point the node");
            None
        }
    }
}

/// Holds a connection to the published master (this node's own Redis, through `redis_addr`,
/// when it is the master) and reports every change of its reach at once.
async fn master_watch_loop(shared: &Shared, retry: Duration, shutdown: &CancellationToken) {
    let s = &shared.settings;
    let mut target_rx = shared.watch_target.subscribe();
    loop {
        let target = target_rx.borrow_and_update().clone();
        let retargeted = shared
            .state()
            .master_watch
            .retarget(target.as_ref(), now_ms());
        if retargeted {
            debug!(node = %s.node_id, master = ?target, "master watch: new target");
        }
        let Some(target) = target else {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = target_rx.changed() => if r.is_err() { return },
            }
            continue;
        };
        // This node's own Redis is reached the way the agent always reaches it.
        let dial = if same_node(&target, &s.announce_addr) {
            s.redis_addr.clone()
        } else {
            target.clone()
        };
        let opened = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = target_rx.changed() => continue,
            o = Held::open(&dial, s.io_timeout) => o,
        };
        match opened {
            Ok(mut held) => {
                shared.watch_seen(&Seen::Answered);
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    r = target_rx.changed() => if r.is_err() { return },
                    // Reconnect at once: the refusal right after the close is the evidence.
                    seen = held.lost(s.heartbeat, s.io_timeout) => shared.watch_seen(&seen),
                }
            }
            Err(seen) => {
                shared.watch_seen(&seen);
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = target_rx.changed() => {}
                    _ = tokio::time::sleep(retry) => {}
                }
            }
        }
    }
}

/// Feeds Docker's `die` events of this node's Redis container to the master watch while this
/// node is the watched master; reconnects with backoff when the daemon goes away.
async fn docker_events_loop(
    shared: &Shared,
    target: &crate::hung::RestartTarget,
    shutdown: &CancellationToken,
) {
    let s = &shared.settings;
    let mut backoff = backoff();
    let mut errors = ErrorLog::default();
    while !shutdown.is_cancelled() {
        let followed = crate::docker_events::follow_deaths(
            target,
            |exit_code| {
                let own = {
                    let st = shared.state();
                    st.master_watch
                        .address()
                        .is_some_and(|a| same_node(a, &s.announce_addr))
                };
                info!(node = %s.node_id, %target, ?exit_code, own_node_is_master = own, "docker: this node's Redis container died");
                if own {
                    shared.watch_seen(&Seen::ContainerDied { exit_code });
                }
            },
            || {
                if errors.recovered().is_some() {
                    info!(node = %s.node_id, "docker event stream back");
                }
            },
        );
        let result = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = followed => r,
        };
        if let Err(e) = result {
            if errors.failed(&e.to_string()) {
                warn!(node = %s.node_id, error = %e, "docker events unavailable; a crash of this node is left to the connection watch and Sentinel");
            }
        }
        if !retry_later(&mut backoff, shutdown).await {
            return;
        }
    }
}

/// Keeps the connections to the other nodes ([`Siblings`]): a `PING` on each every heartbeat,
/// and every failover poll while the Redis poll is fast (a failover, or the watched master just
/// lost). The promotion's `CLIENT KILL TYPE normal` closes this agent's connection to the
/// promoted node too: each sibling's close watch makes it again at once, and the fast poll here
/// is the fallback, so it is made again before the coordinator publishes the promotion this
/// agent then reads it for.
async fn siblings_loop(shared: &Shared, shutdown: &CancellationToken) {
    let s = &shared.settings;
    loop {
        shared.siblings.warm();
        let every = if shared.fast_polling(Instant::now()) {
            s.failover_poll
        } else {
            s.heartbeat
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            () = shared.siblings.added() => {}
            () = shared.siblings_check.notified() => {}
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// True when `master` answers `role:master` and continues the replication history this node
/// follows (`master_replid2` = this node's `master_replid`): the follow's second witness.
async fn promoted_sibling(shared: &Shared, probe: &mut RedisProbe, master: &HostPort) -> bool {
    let s = &shared.settings;
    // Held open by `siblings_loop` and its close watch: one round trip, no connect, in the
    // failover.
    let target = match shared.siblings.probe(master) {
        Ok(p) => p,
        Err(e) => {
            debug!(node = %s.node_id, error = %e, "follow: cannot reach the promoted node");
            return false;
        }
    };
    // Both reads at once: one round trip on the follow's path, not two.
    let (own, read) = tokio::join!(probe.replication(), async {
        target.lock().await.replication().await
    });
    let own = match own {
        Ok(r) => r,
        Err(e) => {
            debug!(node = %s.node_id, error = %e, "follow: cannot read this node's replication");
            return false;
        }
    };
    match read {
        Ok(t) => {
            let continued = own.continued_by(&t);
            debug!(node = %s.node_id, master = %master, continued, "follow: read the promoted node");
            continued
        }
        Err(e) => {
            debug!(node = %s.node_id, master = %master, error = %e, "follow: cannot read the promoted node");
            false
        }
    }
}

/// Runs the agent with checked settings until `shutdown` is cancelled.
pub async fn run_with_settings(
    settings: AgentSettings,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    settings.coordinator_tls.warn_if_insecure("redis-ha-agent");
    let endpoint = settings
        .coordinator_tls
        .client_endpoint(&settings.coordinator_url, settings.io_timeout)
        .map_err(|e| {
            AgentError::Config(redis_ha_common::ConfigError::invalid(
                "coordinator_url",
                &settings.coordinator_url,
                e.reason,
            ))
        })?;
    // A stream must outlive any request timeout: the keep-alives alone watch it.
    let watch_endpoint = endpoint.clone();
    let endpoint = endpoint.timeout(settings.io_timeout);
    let client = CoordinatorClient::new(endpoint.connect_lazy());
    // Its own connection: REPLICAOF must not wait behind a slow poll.
    let follow_probe = settings
        .follow_promotions
        .then(|| RedisProbe::from_settings(&settings).map(AsyncMutex::new))
        .transpose()
        .map_err(AgentError::Setup)?;
    let redis = RedisProbe::from_settings(&settings).map_err(AgentError::Setup)?;
    let sentinel = SentinelProbe::from_settings(&settings).map_err(AgentError::Setup)?;
    // A second client for the subscription: the poll loop owns the first.
    let events = SentinelProbe::from_settings(&settings).map_err(AgentError::Setup)?;
    let started_at_ms = now_ms();
    let (metrics, registry) = AgentMetrics::new(&settings.node_id, &settings.master_group);
    redis_ha_common::metrics::start(
        "redis-ha-agent",
        settings.metrics_addr,
        Arc::new(registry),
        shutdown.clone(),
    )
    .await;

    info!(
        node = %settings.node_id,
        group = %settings.master_group,
        redis = %settings.redis_addr,
        announce = %settings.announce_addr,
        sentinel = %settings.sentinel_addr,
        coordinator = %settings.coordinator_url,
        fencing = settings.fencing,
        follow_promotions = settings.follow_promotions,
        crash_watch = settings.crash_watch.is_some(),
        docker_events = settings.docker_events.is_some(),
        hung_restart = settings.hung.enabled,
        "health agent starting"
    );
    let shared = Shared::new(settings, metrics);
    tokio::join!(
        redis_loop(&shared, redis, &shutdown),
        sentinel_loop(&shared, sentinel, &shutdown),
        events_loop(&shared, &events, &shutdown),
        report_loop(&shared, client, started_at_ms, &shutdown),
        own_close_watch_loop(&shared, follow_probe.as_ref(), &shutdown),
        async {
            if shared.settings.follow_promotions || shared.settings.crash_watch.is_some() {
                topology_loop(&shared, watch_endpoint, follow_probe.as_ref(), &shutdown).await;
            }
        },
        async {
            if shared.settings.follow_promotions {
                siblings_loop(&shared, &shutdown).await;
            }
        },
        async {
            if let Some(retry) = shared.settings.crash_watch {
                master_watch_loop(&shared, retry, &shutdown).await;
            }
        },
        async {
            if let Some(target) = shared.settings.docker_events.clone() {
                docker_events_loop(&shared, &target, &shutdown).await;
            }
        },
    );
    info!(node = %shared.settings.node_id, "health agent stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let t0 = Instant::now();
        let mut b = backoff();
        assert!(b.ready(t0));
        b.failed(t0);
        assert_eq!(b.next_attempt(), Some(t0 + Duration::from_millis(50)));
        assert!(!b.ready(t0));
        for _ in 0..10 {
            b.failed(t0);
        }
        assert_eq!(b.next_attempt(), Some(t0 + BACKOFF_MAX));
        b.reset();
        assert!(b.ready(t0));
        b.failed(t0);
        assert_eq!(b.next_attempt(), Some(t0 + BACKOFF_MIN));
    }

    #[test]
    fn error_log_only_on_change() {
        let mut l = ErrorLog::default();
        assert_eq!(l.recovered(), None);
        assert!(l.failed("refused"));
        assert!(!l.failed("refused"));
        assert!(!l.failed("refused"));
        assert!(l.failed("timeout"));
        assert!(!l.failed("timeout"));
        assert_eq!(l.recovered(), Some(2));
        assert!(l.failed("timeout"));
    }
}
