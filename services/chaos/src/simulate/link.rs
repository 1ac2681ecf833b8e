//! One client's connection through the proxy, kept across failures: every failure drops the
//! connection, is logged once per disconnection, and the next use reconnects after a capped,
//! jittered exponential backoff.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis_ha_common::Backoff;
use serde::Serialize;
use tokio::sync::watch;

use super::Clock;
use crate::conn::{ConnError, RedisEndpoint};

/// A connection change of one client, for the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClientEvent {
    /// Milliseconds since the start of the run.
    pub at_ms: u64,
    /// "publisher", "subscriber-1", ...
    pub client: String,
    pub kind: ClientEventKind,
    /// The error for a disconnection; attempts and time down for a reconnection.
    pub detail: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientEventKind {
    /// The connection broke or timed out (or reached the wrong node): a new one is made.
    Disconnected,
    Reconnected,
    /// Redis answered an error (`NOREPLICAS` while the new master has no replica yet):
    /// the connection is kept and the command retried after the backoff.
    Refused,
}

pub struct Link {
    name: String,
    endpoint: RedisEndpoint,
    /// The longest a command on this connection blocks by itself (BLMOVE, WAIT).
    blocking: Duration,
    backoff: Backoff,
    clock: Clock,
    con: Option<MultiplexedConnection>,
    /// Consecutive failures since the last success (the backoff exponent).
    failures: u32,
    /// When the current disconnection started, while there is one.
    down_since: Option<u64>,
    /// Whether the current run of refusals was recorded already.
    refusing: bool,
    /// Sleep the backoff before the next attempt.
    backoff_pending: bool,
    pub events: Vec<ClientEvent>,
    pub disconnections: u64,
    /// Runs of refused commands (each run counted once).
    pub refusals: u64,
}

impl Link {
    pub fn new(
        name: &str,
        endpoint: RedisEndpoint,
        blocking: Duration,
        backoff: Backoff,
        clock: Clock,
    ) -> Self {
        Self {
            name: name.to_owned(),
            endpoint,
            blocking,
            backoff,
            clock,
            con: None,
            failures: 0,
            down_since: None,
            refusing: false,
            backoff_pending: false,
            events: Vec::new(),
            disconnections: 0,
            refusals: 0,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn endpoint(&self) -> &RedisEndpoint {
        &self.endpoint
    }

    pub fn is_connected(&self) -> bool {
        self.con.is_some()
    }

    /// The connection, (re)connecting first when there is none; after a failure it first
    /// waits out the backoff. `None` when `stop` turns true meanwhile. The second field is
    /// true when this call made a new connection.
    pub async fn get(
        &mut self,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<(MultiplexedConnection, bool)> {
        loop {
            if *stop.borrow() {
                return None;
            }
            if self.backoff_pending {
                let delay = self
                    .backoff
                    .jittered(self.failures.saturating_sub(1), &mut rand::rng());
                if sleep_or_stop(delay, stop).await {
                    return None;
                }
                self.backoff_pending = false;
            }
            if let Some(c) = &self.con {
                return Some((c.clone(), false));
            }
            let attempt = tokio::select! {
                r = self.endpoint.connect(self.blocking) => r,
                () = wait_true(stop) => return None,
            };
            match attempt {
                Ok(c) => {
                    self.con = Some(c.clone());
                    // A reset on purpose (`reset`) had no disconnection: nothing to tell.
                    if let Some(since) = self.down_since.take() {
                        let now = self.clock.ms();
                        let detail = format!(
                            "after {} attempt(s), {:.2} s after the disconnection",
                            self.failures,
                            now.saturating_sub(since) as f64 / 1000.0
                        );
                        tracing::info!(client = %self.name, "reconnected {detail}");
                        self.event(now, ClientEventKind::Reconnected, detail);
                    }
                    // `failures` stays until a command works: a proxy that connects but whose
                    // Redis refuses every command still backs off.
                    return Some((c, true));
                }
                Err(e) => self.failed(&e),
            }
        }
    }

    /// A command or a connection attempt failed: the next `get` waits out the backoff.
    /// An error answer keeps the connection; anything else drops it. The first failure of a
    /// disconnection (or of a run of refusals) is logged and recorded, the retries only at
    /// debug level.
    pub fn failed(&mut self, err: &ConnError) {
        self.failures = self.failures.saturating_add(1);
        self.backoff_pending = true;
        let now = self.clock.ms();
        if let (Some(code), Some(_)) = (err.refusal_code(), &self.con) {
            if !self.refusing {
                self.refusing = true;
                self.refusals += 1;
                tracing::warn!(client = %self.name, "refused ({code}): {err}; retrying with backoff");
                self.event(now, ClientEventKind::Refused, err.to_string());
            } else {
                tracing::debug!(client = %self.name, "still refused: {err}");
            }
            return;
        }
        self.con = None;
        if self.down_since.is_none() {
            self.down_since = Some(now);
            self.disconnections += 1;
            tracing::warn!(client = %self.name, "disconnected: {err}; reconnecting with backoff");
            self.event(now, ClientEventKind::Disconnected, err.to_string());
        } else {
            tracing::debug!(client = %self.name, "still failing: {err}");
        }
    }

    fn event(&mut self, at_ms: u64, kind: ClientEventKind, detail: String) {
        self.events.push(ClientEvent {
            at_ms,
            client: self.name.clone(),
            kind,
            detail,
        });
    }

    /// What the link saw, for the client's log: its events, disconnections and refusals.
    pub fn take_record(&mut self) -> (Vec<ClientEvent>, u64, u64) {
        (
            std::mem::take(&mut self.events),
            self.disconnections,
            self.refusals,
        )
    }

    /// Drops the connection on purpose (to be routed anew), without counting a failure.
    pub fn reset(&mut self) {
        self.con = None;
    }

    /// A command worked: the next failure starts the backoff from the beginning.
    pub fn succeeded(&mut self) {
        self.failures = 0;
        self.refusing = false;
    }
}

/// Sleeps `d`; returns true (early) when `stop` turns true.
pub async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = wait_true(stop) => true,
    }
}

/// Resolves once the flag is true (or its sender is gone, which means the run is over).
pub async fn wait_true(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|v| *v).await;
}
