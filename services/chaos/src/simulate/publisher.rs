//! The publisher: RPUSHes sequence numbers 1, 2, 3 ... to the list through the proxy.
//!
//! fast: a push is acknowledged by its RPUSH reply (the older project's behaviour).
//! durable: a push is acknowledged only when `WAIT <replicas> <timeout>` confirms that many
//! replicas have it. A WAIT that confirms fewer is asked again on the same connection (the
//! write is already in the master's replication stream); after a few shortfalls, or when the
//! connection breaks, the same sequence numbers are pushed again on a new connection. So every
//! acknowledged message is on the master and the confirmed replicas, an unacknowledged one may
//! exist any number of times, and subscribers de-duplicate.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::link::{wait_true, Link};
use super::{Clock, Mode, Progress};

/// WAIT shortfalls on one connection before the batch is pushed again on a new connection:
/// a connection left on a demoted master would otherwise wait forever.
const SHORTFALLS_BEFORE_REPUSH: u32 = 3;

/// A write outage seen by the publisher.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawOutage {
    /// The last acknowledgement before the failure (or the failure, if nothing was acknowledged
    /// before it).
    pub start_ms: u64,
    pub first_error_ms: u64,
    pub first_error: String,
    /// The first acknowledgement after it; `None` when the run ended first.
    pub end_ms: Option<u64>,
}

/// What the publisher did.
#[derive(Debug, Default)]
pub struct PublisherLog {
    /// Per sequence number (index = seq - 1): when it was first pushed.
    pub first_push_ms: Vec<u64>,
    /// Per sequence number: when it was acknowledged.
    pub ack_ms: Vec<Option<u64>>,
    /// RPUSH commands sent (a retried batch counts again).
    pub pushes: u64,
    pub wait_shortfalls: u64,
    pub outages: Vec<RawOutage>,
    pub events: Vec<super::link::ClientEvent>,
    pub disconnections: u64,
    pub refusals: u64,
}

pub struct PublisherConfig {
    pub key: String,
    pub mode: Mode,
    /// Publish at least this many; keep going until the chaos schedule is over.
    pub messages: u64,
    /// Messages per second; 0 = as fast as acknowledgements come.
    pub rate: u32,
    /// Sequence numbers per RPUSH.
    pub batch: u32,
    pub wait_replicas: u32,
    pub wait_timeout: Duration,
}

struct State {
    log: PublisherLog,
    last_ack_ms: Option<u64>,
    open_outage: Option<RawOutage>,
}

impl State {
    fn failure(&mut self, now: u64, what: String) {
        if self.open_outage.is_none() {
            self.open_outage = Some(RawOutage {
                start_ms: self.last_ack_ms.unwrap_or(now),
                first_error_ms: now,
                first_error: what,
                end_ms: None,
            });
        }
    }

    fn ack(&mut self, now: u64, seqs: &[u64], progress: &Progress) {
        for &s in seqs {
            if let Some(slot) = usize::try_from(s - 1)
                .ok()
                .and_then(|i| self.log.ack_ms.get_mut(i))
            {
                if slot.is_none() {
                    *slot = Some(now);
                    progress.acknowledged.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.last_ack_ms = Some(now);
        if let Some(mut o) = self.open_outage.take() {
            o.end_ms = Some(now);
            tracing::info!(
                "publisher: writes acknowledged again after {:.2} s",
                (now - o.start_ms) as f64 / 1000.0
            );
            self.log.outages.push(o);
        }
    }
}

/// Runs until the publisher is done (`messages` published and `chaos_done`) or `interrupt`.
pub async fn run(
    cfg: PublisherConfig,
    mut link: Link,
    clock: Clock,
    progress: Arc<Progress>,
    mut interrupt: watch::Receiver<bool>,
    chaos_done: watch::Receiver<bool>,
) -> PublisherLog {
    let mut st = State {
        log: PublisherLog::default(),
        last_ack_ms: None,
        open_outage: None,
    };
    let batch = u64::from(cfg.batch.max(1));
    let mut ticker = (cfg.rate > 0).then(|| {
        let period = Duration::from_secs_f64(batch as f64 / f64::from(cfg.rate));
        let mut t = tokio::time::interval(period.max(Duration::from_micros(100)));
        // After a stall, carry on at the set rate instead of bursting to catch up.
        t.set_missed_tick_behavior(MissedTickBehavior::Delay);
        t
    });
    let mut next_seq: u64 = 1;
    loop {
        if *interrupt.borrow() {
            break;
        }
        if next_seq > cfg.messages && *chaos_done.borrow() {
            break;
        }
        if let Some(t) = ticker.as_mut() {
            tokio::select! {
                _ = t.tick() => {}
                _ = wait_true(&mut interrupt) => break,
            }
        }
        let seqs: Vec<u64> = (next_seq..next_seq + batch).collect();
        next_seq += batch;
        let now = clock.ms();
        st.log.first_push_ms.extend(seqs.iter().map(|_| now));
        st.log.ack_ms.extend(seqs.iter().map(|_| None));
        progress.published.store(next_seq - 1, Ordering::Relaxed);
        if !deliver(
            &cfg,
            &mut link,
            &clock,
            &progress,
            &mut interrupt,
            &mut st,
            &seqs,
        )
        .await
        {
            break;
        }
    }
    let mut log = st.log;
    if let Some(o) = st.open_outage {
        log.outages.push(o);
    }
    (log.events, log.disconnections, log.refusals) = link.take_record();
    log
}

/// Pushes one batch until it is acknowledged; false when interrupted first.
async fn deliver(
    cfg: &PublisherConfig,
    link: &mut Link,
    clock: &Clock,
    progress: &Progress,
    interrupt: &mut watch::Receiver<bool>,
    st: &mut State,
    seqs: &[u64],
) -> bool {
    let values: Vec<String> = seqs.iter().map(u64::to_string).collect();
    let mut push = redis::cmd("RPUSH");
    push.arg(&cfg.key).arg(&values);
    let mut wait = redis::cmd("WAIT");
    let timeout_ms = u64::try_from(cfg.wait_timeout.as_millis()).unwrap_or(u64::MAX);
    wait.arg(cfg.wait_replicas).arg(timeout_ms);
    loop {
        let Some((mut con, _new)) = link.get(interrupt).await else {
            return false;
        };
        st.log.pushes += 1;
        if let Err(e) = link
            .endpoint()
            .run::<i64>(&mut con, &push, Duration::ZERO)
            .await
        {
            st.failure(clock.ms(), format!("RPUSH: {e}"));
            link.failed(&e);
            continue;
        }
        link.succeeded();
        if cfg.mode == Mode::Fast {
            st.ack(clock.ms(), seqs, progress);
            return true;
        }
        let mut shortfalls = 0;
        loop {
            if *interrupt.borrow() {
                return false;
            }
            match link
                .endpoint()
                .run::<i64>(&mut con, &wait, cfg.wait_timeout)
                .await
            {
                Ok(n) if n >= i64::from(cfg.wait_replicas) => {
                    st.ack(clock.ms(), seqs, progress);
                    return true;
                }
                Ok(n) => {
                    st.log.wait_shortfalls += 1;
                    shortfalls += 1;
                    let what = format!(
                        "WAIT: {n} of {} replicas within {} ms",
                        cfg.wait_replicas, timeout_ms
                    );
                    if st.open_outage.is_none() {
                        tracing::warn!("publisher: {what}; not acknowledged, waiting again");
                    }
                    st.failure(clock.ms(), what);
                    if shortfalls >= SHORTFALLS_BEFORE_REPUSH {
                        // Maybe still on a demoted master: be routed anew, push again.
                        link.reset();
                        break;
                    }
                }
                Err(e) => {
                    st.failure(clock.ms(), format!("WAIT: {e}"));
                    link.failed(&e);
                    break;
                }
            }
        }
    }
}
