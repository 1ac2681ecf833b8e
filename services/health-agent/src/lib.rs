//! Health agent: watches one Redis node and the Sentinel beside it, reports to the
//! coordinator at once on every Sentinel event and role change and on a heartbeat, polls the
//! node's `ROLE` fast while a failover is in progress, fences a stray master, re-points its replica at a promoted master, and (when enabled)
//! restarts a hung node's container through Docker.
//!
//! Entry points: [`AgentConfig::load`] / [`AgentConfig::validate`] and [`run`]. The
//! observation functions ([`probe::RedisProbe`], [`probe::SentinelProbe`]) and the pure
//! parsers and decisions are public for tests and tools.

pub mod agent;
pub mod config;
pub mod docker_events;
pub mod failover;
pub mod fencing;
pub mod follow;
pub mod hung;
pub mod metrics;
pub mod probe;
pub mod redis_parse;
pub mod sentinel_parse;
pub mod siblings;
pub mod state;
pub mod watch;

pub use agent::run_with_settings;
pub use config::{AgentConfig, AgentSettings};
pub use probe::{ObserveError, RedisProbe, SentinelProbe};

use redis_ha_common::ConfigError;
use tokio_util::sync::CancellationToken;

/// Errors that make running impossible. Everything else (a dead Redis, Sentinel or
/// coordinator) is reported and retried, never returned.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot set up a client: {0}")]
    Setup(ObserveError),
    #[error("configuration check did not finish: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// Validates `config` (DNS, password files), then runs until `shutdown` is cancelled.
pub async fn run(config: AgentConfig, shutdown: CancellationToken) -> Result<(), AgentError> {
    // validate() may wait for DNS: keep it off the async workers.
    let settings = tokio::task::spawn_blocking(move || config.validate()).await??;
    run_with_settings(settings, shutdown).await
}
