//! `redis-ha simulate` (`redis-ha-chaos simulate`): one publisher and N subscribers moving sequence-numbered messages
//! through the proxy (RPUSH onto a list, BLPOP/BLMOVE off it) while a chaos schedule faults
//! the master, then an exact account of what was acknowledged, delivered, lost, duplicated.
//!
//! Two delivery modes:
//! - **fast**: plain RPUSH (acknowledged by its reply) and BLPOP, as the older project did.
//!   Redis replicates asynchronously, so a push acknowledged by a master that dies before
//!   its replicas got it is lost, and so is a message BLPOP took off a list whose reply was
//!   cut by the failover. Both are counted, not hidden.
//! - **durable**: a push counts as acknowledged only when `WAIT <replicas> <timeout>`
//!   confirms that many replicas have it; an unconfirmed push is retried (at least once), and
//!   subscribers take messages with BLMOVE into a processing list of their own and LREM them
//!   after recording, re-reading that list after every reconnection (at least once). The
//!   report de-duplicates by sequence number.
//!
//! Why WAIT for every replica (2 of 2) by default: Sentinel promotes the replica with the
//! highest replication offset *among those it has fresh INFO from*, so a message on one
//! replica only survives if that replica is the one promoted, which holds in the common case
//! but not when that replica is slow, disconnected or its INFO is stale. Confirmed on every
//! replica, a message survives whichever replica is promoted. The price: while a node is
//! down, pushes are accepted but not acknowledged (the publisher waits) until it is back.
//!
//! The engine is a library function, [`run`], so tests drive it in-process with a
//! [`ChaosTarget`] of their own.

pub mod link;
pub mod plot;
pub mod publisher;
pub mod report;
pub mod schedule;
pub mod subscriber;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis_ha_common::redis_client::info_fields;
use redis_ha_common::{Backoff, HostPort, Secret};
use serde::Serialize;
use tokio::sync::watch;

pub use report::Report;
pub use schedule::ChaosPlan;

use crate::chaos::{ChaosTarget, Fault};
use crate::conn::{ConnError, RedisEndpoint};
use link::{wait_true, Link};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// RPUSH acknowledged by its reply, BLPOP: the older project's behaviour; losses counted.
    Fast,
    /// RPUSH + WAIT, retried until confirmed; BLMOVE + LREM: at least once, no loss.
    Durable,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fast => "fast",
            Self::Durable => "durable",
        }
    }

    /// One line on what a push and a take mean in this mode.
    pub fn describe(self, wait_replicas: u32, wait_timeout_ms: u64) -> String {
        match self {
            Self::Fast => "RPUSH acknowledged by its reply; BLPOP (at most once)".to_owned(),
            Self::Durable => format!(
                "RPUSH acknowledged once WAIT {wait_replicas} {wait_timeout_ms} confirms \
                 {wait_replicas} replica(s), retried until then; BLMOVE + LREM (at least once)"
            ),
        }
    }
}

/// Everything a run needs.
#[derive(Clone, Debug)]
pub struct Options {
    /// The proxy's client endpoint (HAProxy's frontend).
    pub proxy: HostPort,
    /// The Redis ACL user (`simulator` on the stack; `None`: `default`).
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub mode: Mode,
    pub subscribers: usize,
    /// Publish at least this many messages; publishing goes on until the chaos schedule is
    /// over, so every fault is crossed by traffic.
    pub messages: u64,
    /// Messages per second (0 = as fast as acknowledgements come back).
    pub rate: u32,
    /// Sequence numbers per RPUSH.
    pub batch: u32,
    /// The list; its processing lists are `<key>:processing:<n>`. Must not exist yet.
    pub key: String,
    pub wait_replicas: u32,
    pub wait_timeout: Duration,
    /// Connect timeout and reply timeout (beyond a command's own blocking time).
    pub io_timeout: Duration,
    pub backoff: Backoff,
    pub chaos: ChaosPlan,
    /// After publishing: how long to wait for the subscribers to empty the list.
    pub drain_timeout: Duration,
    /// How often to log progress (None: never).
    pub progress_every: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            proxy: HostPort::new("127.0.0.1", 9000),
            user: None,
            password: None,
            mode: Mode::Durable,
            subscribers: 3,
            messages: 100_000,
            rate: 1000,
            batch: 1,
            key: default_key(),
            wait_replicas: 2,
            wait_timeout: Duration::from_secs(1),
            io_timeout: Duration::from_secs(2),
            backoff: client_backoff(),
            chaos: ChaosPlan::default(),
            drain_timeout: Duration::from_secs(60),
            progress_every: Some(Duration::from_secs(5)),
        }
    }
}

/// The clients' reconnection backoff: 50 ms doubled up to 2 s, jittered ("throttled retry":
/// clients hammering a proxy that has no master yet would only slow the failover down, and
/// clients retrying in lockstep would arrive together).
pub fn client_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(50), Duration::from_secs(2))
}

/// A key of its own for every run: `redis-ha:simulate:<ms since epoch>`.
pub fn default_key() -> String {
    format!("redis-ha:simulate:{}", redis_ha_common::time::now_ms())
}

/// The options as the report shows them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Settings {
    pub mode: Mode,
    pub proxy: String,
    pub key: String,
    pub subscribers: usize,
    pub messages: u64,
    pub rate: u32,
    pub batch: u32,
    pub wait_replicas: u32,
    pub wait_timeout_ms: u64,
    pub fault: Fault,
    pub kills: u32,
    pub interval_ms: u64,
    pub down_for_ms: u64,
    pub chaos_target: String,
}

impl Settings {
    fn from_options(o: &Options, chaos_target: String) -> Self {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Self {
            mode: o.mode,
            proxy: o.proxy.to_string(),
            key: o.key.clone(),
            subscribers: o.subscribers,
            messages: o.messages,
            rate: o.rate,
            batch: o.batch,
            wait_replicas: o.wait_replicas,
            wait_timeout_ms: ms(o.wait_timeout),
            fault: o.chaos.fault,
            kills: o.chaos.kills,
            interval_ms: ms(o.chaos.interval),
            down_for_ms: ms(o.chaos.down_for),
            chaos_target,
        }
    }

    #[cfg(test)]
    pub(crate) fn example() -> Self {
        Self::from_options(&Options::default(), "local processes in /run".into())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("invalid option: {0}")]
    Invalid(String),
    #[error("cannot reach the proxy: {0} (is the cluster up? set --proxy)")]
    Proxy(#[source] ConnError),
    #[error("the key {0} already holds data: choose another --list-key")]
    KeyInUse(String),
    #[error("a simulation task failed: {0}")]
    Task(String),
}

/// Milliseconds since the start of the run, shared by every task.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    start: Instant,
}

impl Clock {
    pub fn start() -> Self {
        Self {
            start: Instant::now(),
        }
    }

    pub fn ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// Live counters for the progress log and the drain.
#[derive(Debug, Default)]
pub struct Progress {
    pub published: AtomicU64,
    pub acknowledged: AtomicU64,
    pub deliveries: AtomicU64,
}

impl Options {
    fn validate(&self) -> Result<(), SimError> {
        let bad = |s: &str| Err(SimError::Invalid(s.to_owned()));
        if self.subscribers == 0 {
            return bad("at least one subscriber is needed");
        }
        if self.messages == 0 && self.chaos.kills == 0 {
            return bad("nothing to do: --messages 0 and no faults");
        }
        if self.batch == 0 {
            return bad("--batch must be at least 1");
        }
        if self.key.is_empty() {
            return bad("--list-key must not be empty");
        }
        if self.mode == Mode::Durable && self.wait_replicas == 0 {
            return bad("--wait-replicas 0 would acknowledge nothing more than fast mode");
        }
        if self.mode == Mode::Durable && self.wait_timeout.is_zero() {
            return bad("--wait-timeout-ms 0 would make WAIT block forever");
        }
        if self.io_timeout.is_zero() {
            return bad("--io-timeout-ms must be positive");
        }
        if self.chaos.kills > 0 && (self.chaos.interval.is_zero() || self.chaos.down_for.is_zero())
        {
            return bad("--interval and --down-for must be positive");
        }
        Ok(())
    }
}

/// Runs a simulation to its end.
pub async fn run<C: ChaosTarget>(opts: Options, chaos: C) -> Result<Report, SimError> {
    run_until(opts, chaos, std::future::pending()).await
}

/// A finished run: the report, and the logs it was made from (what the publisher saw
/// acknowledged, what each subscriber received), for tests that recount them.
#[derive(Debug)]
pub struct Run {
    pub report: Report,
    pub publisher: publisher::PublisherLog,
    pub subscribers: Vec<subscriber::SubscriberLog>,
}

/// Runs a simulation to its end and keeps its logs; `chaos` stays the caller's, with
/// whatever it recorded.
pub async fn run_logged<C: ChaosTarget>(opts: Options, chaos: &mut C) -> Result<Run, SimError> {
    execute(opts, chaos, std::future::pending()).await
}

/// Runs a simulation; when `shutdown` resolves (Ctrl-C), a faulted node is restored, the
/// clients stop, and the report covers what happened until then.
pub async fn run_until<C, S>(opts: Options, mut chaos: C, shutdown: S) -> Result<Report, SimError>
where
    C: ChaosTarget,
    S: Future<Output = ()>,
{
    execute(opts, &mut chaos, shutdown)
        .await
        .map(|run| run.report)
}

async fn execute<C, S>(opts: Options, chaos: &mut C, shutdown: S) -> Result<Run, SimError>
where
    C: ChaosTarget,
    S: Future<Output = ()>,
{
    opts.validate()?;
    let mut endpoint =
        RedisEndpoint::new(opts.proxy.clone(), opts.password.clone(), opts.io_timeout);
    endpoint.user = opts.user.clone();
    preflight(&opts, &endpoint).await?;
    let settings = Settings::from_options(&opts, chaos.describe());
    tracing::info!(
        "simulate: {} mode, {} subscriber(s), at least {} messages at {}/s through {}, key {}",
        opts.mode.as_str(),
        opts.subscribers,
        opts.messages,
        opts.rate,
        opts.proxy,
        opts.key
    );

    let clock = Clock::start();
    let started_at_ms = redis_ha_common::time::now_ms();
    let progress = Arc::new(Progress::default());
    let (interrupt_tx, interrupt_rx) = watch::channel(false);
    let (chaos_done_tx, chaos_done_rx) = watch::channel(false);
    let (stop_subs_tx, stop_subs_rx) = watch::channel(false);
    let (finished_tx, mut finished_rx) = watch::channel(false);

    let mut sub_handles = Vec::new();
    for i in 1..=opts.subscribers {
        let link = Link::new(
            &format!("subscriber-{i}"),
            endpoint.clone(),
            subscriber::BLOCK,
            opts.backoff.clone(),
            clock,
        );
        sub_handles.push(tokio::spawn(subscriber::run(
            opts.mode,
            opts.key.clone(),
            i,
            link,
            clock,
            progress.clone(),
            stop_subs_rx.clone(),
        )));
    }
    let pub_link = Link::new(
        "publisher",
        endpoint.clone(),
        opts.wait_timeout,
        opts.backoff.clone(),
        clock,
    );
    let pub_handle = tokio::spawn(publisher::run(
        publisher::PublisherConfig {
            key: opts.key.clone(),
            mode: opts.mode,
            messages: opts.messages,
            rate: opts.rate,
            batch: opts.batch,
            wait_replicas: opts.wait_replicas,
            wait_timeout: opts.wait_timeout,
        },
        pub_link,
        clock,
        progress.clone(),
        interrupt_rx.clone(),
        chaos_done_rx,
    ));

    let work = async {
        let mut interrupt = interrupt_rx.clone();
        let chaos_log = schedule::run_schedule(&opts.chaos, chaos, clock, &mut interrupt).await;
        let _ = chaos_done_tx.send(true);
        let publog = pub_handle
            .await
            .map_err(|e| SimError::Task(format!("publisher: {e}")));
        if publog.is_ok() && !*interrupt.borrow() {
            drain(&opts, &endpoint, &progress, &mut interrupt).await;
        }
        let _ = stop_subs_tx.send(true);
        let mut subs = Vec::new();
        for h in sub_handles {
            subs.push(
                h.await
                    .map_err(|e| SimError::Task(format!("subscriber: {e}")))?,
            );
        }
        let publog = publog?;
        let duration_ms = clock.ms();
        let interrupted = *interrupt.borrow();
        let (left_in_list, left_in_processing) = lengths(&opts, &endpoint).await.ok().unzip();
        cleanup(&opts, &endpoint).await;
        let report = Report::build(report::Inputs {
            settings,
            started_at_ms,
            duration_ms,
            interrupted,
            publisher: &publog,
            subscribers: &subs,
            faults: chaos_log.faults,
            chaos_errors: chaos_log.errors,
            left_in_list,
            left_in_processing,
        });
        Ok::<_, SimError>(Run {
            report,
            publisher: publog,
            subscribers: subs,
        })
    };

    let main = async {
        let r = work.await;
        // Also on an error: the monitor below ends with it.
        let _ = finished_tx.send(true);
        r
    };

    let monitor = async {
        let mut shutdown = std::pin::pin!(shutdown);
        let mut shut = false;
        let every = opts.progress_every.unwrap_or(Duration::from_secs(3600));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                () = &mut shutdown, if !shut => {
                    shut = true;
                    tracing::warn!("interrupted: restoring a faulted node, stopping the clients");
                    let _ = interrupt_tx.send(true);
                    let _ = stop_subs_tx.send(true);
                }
                _ = tick.tick() => {
                    if opts.progress_every.is_some() {
                        tracing::info!(
                            "{:>6.1} s: published {}, acknowledged {}, received {}",
                            clock.ms() as f64 / 1000.0,
                            progress.published.load(Ordering::Relaxed),
                            progress.acknowledged.load(Ordering::Relaxed),
                            progress.deliveries.load(Ordering::Relaxed),
                        );
                    }
                }
                () = wait_true(&mut finished_rx) => break,
            }
        }
    };
    let (report, ()) = tokio::join!(main, monitor);
    report
}

/// The proxy answers, and the key is unused (a leftover would be counted as our messages).
async fn preflight(opts: &Options, endpoint: &RedisEndpoint) -> Result<(), SimError> {
    let mut keys = redis::cmd("EXISTS");
    keys.arg(&opts.key);
    for i in 1..=opts.subscribers {
        keys.arg(subscriber::processing_key(&opts.key, i));
    }
    let existing: u64 = endpoint.query(&keys).await.map_err(SimError::Proxy)?;
    if existing > 0 {
        return Err(SimError::KeyInUse(opts.key.clone()));
    }
    if opts.mode == Mode::Durable {
        let mut info = redis::cmd("INFO");
        info.arg("replication");
        if let Ok(text) = endpoint.query::<String>(&info).await {
            let connected = info_fields(&text)
                .get("connected_slaves")
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(0);
            if connected < opts.wait_replicas {
                tracing::warn!(
                    "the master has {connected} replica(s) connected, WAIT asks for {}: no push \
                     is acknowledged until enough replicas are linked",
                    opts.wait_replicas
                );
            }
        }
    }
    Ok(())
}

/// Lengths of the list and of all processing lists together.
async fn lengths(opts: &Options, endpoint: &RedisEndpoint) -> Result<(u64, u64), ConnError> {
    let mut con = endpoint.connect(Duration::ZERO).await?;
    let mut pipe = redis::pipe();
    pipe.cmd("LLEN").arg(&opts.key);
    for i in 1..=opts.subscribers {
        pipe.cmd("LLEN")
            .arg(subscriber::processing_key(&opts.key, i));
    }
    let limit = opts.io_timeout * 2;
    let lens: Vec<u64> = match tokio::time::timeout(limit, pipe.query_async(&mut con)).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => return Err(endpoint.error(e)),
        Err(_) => {
            return Err(ConnError::Timeout {
                addr: opts.proxy.to_string(),
                timeout: limit,
            })
        }
    };
    let list = lens.first().copied().unwrap_or(0);
    Ok((list, lens.iter().skip(1).sum()))
}

/// After publishing: waits until the list and every processing list have been empty for a
/// quiet moment with no new reception (a BLPOP reply may be on its way when the list reads
/// empty), or the drain timeout.
async fn drain(
    opts: &Options,
    endpoint: &RedisEndpoint,
    progress: &Progress,
    interrupt: &mut watch::Receiver<bool>,
) {
    const QUIET: Duration = Duration::from_millis(600);
    let deadline = tokio::time::Instant::now() + opts.drain_timeout;
    let mut empty_since: Option<(tokio::time::Instant, u64)> = None;
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        let seen = progress.deliveries.load(Ordering::Relaxed);
        match lengths(opts, endpoint).await {
            Ok((0, 0)) => match empty_since {
                Some((since, n)) if n == seen && since.elapsed() >= QUIET => return,
                Some((_, n)) if n == seen => {}
                _ => empty_since = Some((tokio::time::Instant::now(), seen)),
            },
            Ok((list, processing)) => {
                empty_since = None;
                last = format!("{list} in the list, {processing} in processing lists");
            }
            Err(e) => {
                empty_since = None;
                last = e.to_string();
            }
        }
        if link::sleep_or_stop(Duration::from_millis(100), interrupt).await {
            return;
        }
    }
    tracing::warn!(
        "the subscribers did not empty the list within {:?} ({last})",
        opts.drain_timeout
    );
}

/// Deletes the run's keys (the counts are taken already).
async fn cleanup(opts: &Options, endpoint: &RedisEndpoint) {
    let mut del = redis::cmd("DEL");
    del.arg(&opts.key);
    for i in 1..=opts.subscribers {
        del.arg(subscriber::processing_key(&opts.key, i));
    }
    if let Err(e) = endpoint.query::<u64>(&del).await {
        tracing::warn!("could not delete the run's keys ({}): {e}", opts.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_safe() {
        let o = Options::default();
        o.validate().unwrap();
        assert_eq!(o.mode, Mode::Durable);
        assert_eq!(
            o.wait_replicas, 2,
            "WAIT for both replicas of a 3-node group"
        );
        assert!(o.key.starts_with("redis-ha:simulate:"));
    }

    #[test]
    fn nonsense_is_refused() {
        fn kills_without_down_time(o: &mut Options) {
            o.chaos.kills = 1;
            o.chaos.down_for = Duration::ZERO;
        }
        let cases: [fn(&mut Options); 7] = [
            |o| o.subscribers = 0,
            |o| o.batch = 0,
            |o| o.key.clear(),
            |o| o.wait_replicas = 0,
            |o| o.wait_timeout = Duration::ZERO,
            kills_without_down_time,
            |o| o.messages = 0,
        ];
        for (i, change) in cases.iter().enumerate() {
            let mut o = Options::default();
            change(&mut o);
            assert!(o.validate().is_err(), "case {i} accepted");
        }
        // Fast mode does not WAIT.
        let o = Options {
            mode: Mode::Fast,
            wait_replicas: 0,
            ..Options::default()
        };
        o.validate().unwrap();
    }
}
