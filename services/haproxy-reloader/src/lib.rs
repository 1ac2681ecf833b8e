//! The HAProxy reloader: keeps HAProxy's client port routed to the current Redis master.
//!
//! Decisions come from the coordinator's topology stream and, so that the coordinator is no
//! single point of failure, from the Sentinels directly; the highest config epoch wins
//! ([`decision`]). Each HAProxy is driven through its runtime API ([`runtime`]) with commands
//! planned from a read-back ([`plan`]): the old master is fenced (maint + shutdown sessions)
//! before the new one is readied, and a periodic read-back re-applies on drift ([`reloader`]).

pub mod config;
pub mod coordinator;
pub mod decision;
pub mod metrics;
pub mod plan;
pub mod reloader;
pub mod runtime;
pub mod sentinel;
pub mod supervise;

pub use config::{NodeConfig, ReloaderConfig};
pub use reloader::{run, Reloader, ReloaderError, ReloaderStatus};
