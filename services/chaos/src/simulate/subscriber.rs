//! A subscriber: takes messages off the list through the proxy and records every sequence
//! number it receives (duplicates included: the report counts them).
//!
//! fast: `BLPOP list` (the older project's behaviour). A message popped by a master whose
//! reply is lost in a disconnection is gone: BLPOP is at most once.
//! durable: `BLMOVE list <processing list> LEFT RIGHT`, record, then `LREM` it from the
//! processing list, which is this subscriber's own. A message whose reply was lost stays in
//! the processing list (or, if the move never reached the replica that became master, in the
//! list), and after every (re)connection the subscriber first records whatever its processing
//! list holds. So every message is delivered at least once; a pop or an LREM that the new
//! master never saw delivers it again, which the report counts as a duplicate.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::sync::watch;

use super::link::{ClientEvent, Link};
use super::{Clock, Mode, Progress};

/// How long one BLPOP / BLMOVE blocks: also how quickly a subscriber notices it should stop.
pub const BLOCK: Duration = Duration::from_secs(1);

/// One received message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub seq: u64,
    /// Milliseconds since the start of the run.
    pub at_ms: u64,
    /// Read back from the processing list after a reconnection (durable mode).
    pub recovered: bool,
}

#[derive(Debug, Default)]
pub struct SubscriberLog {
    pub name: String,
    pub deliveries: Vec<Delivery>,
    /// List values that are not sequence numbers (someone else's data under our key).
    pub foreign: u64,
    pub events: Vec<ClientEvent>,
    pub disconnections: u64,
    pub refusals: u64,
}

/// The processing list of subscriber `index` (1-based) for the list `key`.
pub fn processing_key(key: &str, index: usize) -> String {
    format!("{key}:processing:{index}")
}

struct Recorder<'a> {
    log: SubscriberLog,
    clock: Clock,
    progress: &'a Progress,
}

impl Recorder<'_> {
    fn record(&mut self, value: &str, recovered: bool) {
        match value.parse::<u64>() {
            Ok(seq) if seq > 0 => {
                self.log.deliveries.push(Delivery {
                    seq,
                    at_ms: self.clock.ms(),
                    recovered,
                });
                self.progress.deliveries.fetch_add(1, Ordering::Relaxed);
            }
            _ => self.log.foreign += 1,
        }
    }
}

/// Runs until `stop` turns true; returns what it received.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    mode: Mode,
    key: String,
    index: usize,
    mut link: Link,
    clock: Clock,
    progress: Arc<Progress>,
    mut stop: watch::Receiver<bool>,
) -> SubscriberLog {
    let processing = processing_key(&key, index);
    let mut rec = Recorder {
        log: SubscriberLog {
            name: link.name().to_owned(),
            ..SubscriberLog::default()
        },
        clock,
        progress: &progress,
    };
    let block_secs = BLOCK.as_secs_f64();
    let take = match mode {
        Mode::Fast => {
            let mut c = redis::cmd("BLPOP");
            c.arg(&key).arg(block_secs);
            c
        }
        Mode::Durable => {
            let mut c = redis::cmd("BLMOVE");
            c.arg(&key)
                .arg(&processing)
                .arg("LEFT")
                .arg("RIGHT")
                .arg(block_secs);
            c
        }
    };
    // Recorded, but its LREM failed: retried before the next message (a refused LREM keeps
    // the connection, so no recovery would run, and the drain waits for empty lists).
    let mut unacked: Option<String> = None;
    loop {
        if *stop.borrow() {
            break;
        }
        let Some((mut con, new)) = link.get(&mut stop).await else {
            break;
        };
        if mode == Mode::Durable {
            if new {
                match recover(&mut link, &mut con, &processing, &mut rec).await {
                    // The whole processing list was recorded and deleted, this one included.
                    Ok(()) => unacked = None,
                    Err(e) => {
                        link.failed(&e);
                        continue;
                    }
                }
            } else if let Some(value) = &unacked {
                match lrem(&link, &mut con, &processing, value).await {
                    Ok(()) => unacked = None,
                    Err(e) => {
                        link.failed(&e);
                        continue;
                    }
                }
            }
        }
        // Stop only between messages, never abandoning a pending BLMOVE whose message may be
        // on its way (it returns within BLOCK: the list is empty when the run stops).
        match take_one(&link, &mut con, &take, mode).await {
            Ok(None) => link.succeeded(),
            Ok(Some(value)) => {
                link.succeeded();
                rec.record(&value, false);
                if mode == Mode::Durable {
                    if let Err(e) = lrem(&link, &mut con, &processing, &value).await {
                        unacked = Some(value);
                        link.failed(&e);
                    }
                }
            }
            Err(e) => link.failed(&e),
        }
    }
    let mut log = rec.log;
    (log.events, log.disconnections, log.refusals) = link.take_record();
    log
}

/// Acknowledges a recorded message: removes it from the processing list.
async fn lrem(
    link: &Link,
    con: &mut MultiplexedConnection,
    processing: &str,
    value: &str,
) -> Result<(), crate::conn::ConnError> {
    let mut ack = redis::cmd("LREM");
    ack.arg(processing).arg(1).arg(value);
    link.endpoint()
        .run::<i64>(con, &ack, Duration::ZERO)
        .await
        .map(|_| ())
}

async fn take_one(
    link: &Link,
    con: &mut MultiplexedConnection,
    cmd: &redis::Cmd,
    mode: Mode,
) -> Result<Option<String>, crate::conn::ConnError> {
    match mode {
        Mode::Fast => link
            .endpoint()
            .run::<Option<(String, String)>>(con, cmd, BLOCK)
            .await
            .map(|r| r.map(|(_, v)| v)),
        Mode::Durable => link.endpoint().run::<Option<String>>(con, cmd, BLOCK).await,
    }
}

/// Records what the processing list holds (taken before a disconnection, reply maybe lost),
/// then empties it. Only this subscriber writes its processing list, so nothing lands between
/// the read and the delete.
async fn recover(
    link: &mut Link,
    con: &mut MultiplexedConnection,
    processing: &str,
    rec: &mut Recorder<'_>,
) -> Result<(), crate::conn::ConnError> {
    let mut range = redis::cmd("LRANGE");
    range.arg(processing).arg(0).arg(-1);
    let pending: Vec<String> = link.endpoint().run(con, &range, Duration::ZERO).await?;
    if pending.is_empty() {
        return Ok(());
    }
    tracing::info!(
        client = %link.name(),
        "recovering {} message(s) from {processing}",
        pending.len()
    );
    for v in &pending {
        rec.record(v, true);
    }
    let mut del = redis::cmd("DEL");
    del.arg(processing);
    link.endpoint()
        .run::<i64>(con, &del, Duration::ZERO)
        .await
        .map(|_| ())
}
