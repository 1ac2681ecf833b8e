//! `redis-ha`, the operator's command line: `status`, `watch`, `master`, `events`,
//! `failover`, `wait` (until the group is healthy, see [`health`]) against the coordinator's
//! gRPC API, and `simulate` (messages through the proxy across failovers, see [`simulate`]).
//!
//! Exit codes: 0 success, 1 a failure the coordinator reported (gRPC status, no master, not
//! healthy within `wait`'s time), 2 the coordinator (or, for `simulate`, the proxy) cannot be reached or the command line is
//! wrong, 3 `simulate --mode durable` lost an acknowledged message, 130 `simulate` was
//! interrupted (Ctrl-C; its report is still printed).
//! The JSON shapes are documented in [`model`]; the text layouts in [`render`].

pub mod chaos;
pub mod cli;
pub mod client;
pub mod commands;
pub mod error;
pub mod health;
pub mod model;
mod output;
pub mod render;
pub mod simulate;
mod table;
mod timefmt;

use std::time::Duration;

pub use cli::{Cli, Command};
pub use client::Target;
pub use error::CliError;

/// Runs one parsed command line.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let target = Target::new(
        &cli.coordinator,
        &cli.group,
        Duration::from_millis(cli.timeout_ms),
    );
    match &cli.command {
        Command::Status(args) => commands::status::run(&target, args).await,
        Command::Watch(args) => commands::watch::run(&target, args).await,
        Command::Master(args) => commands::master::run(&target, args).await,
        Command::Events(args) => commands::events::run(&target, args).await,
        Command::Failover => commands::failover::run(&target).await,
        Command::Wait(args) => commands::wait::run(&target, args).await,
        Command::Simulate(args) => commands::simulate::run(&target, args).await,
        Command::Chaos(args) => commands::chaos::run(args).await,
    }
}
