//! `redis-ha`, the operator's command line: `status`, `watch`, `master`, `events`,
//! `failover`, `switchover`, `wait` (until the group is healthy, see [`health`]) against the coordinator's
//! gRPC API; `simulate` (messages through the proxy across failovers) and `chaos` (faults on
//! the swarm stack's nodes) run the `redis-ha-chaos` binary of the `redis-ha-chaos` crate
//! ([`external`]).
//!
//! Exit codes: 0 success, 1 a failure the coordinator reported (gRPC status, no master, not
//! healthy within `wait`'s time), 2 the coordinator (or, for `simulate`, the proxy) cannot be
//! reached, the command line is wrong or `redis-ha-chaos` is missing, 3 `simulate --mode
//! durable` lost an acknowledged message, 130 `simulate` was interrupted (Ctrl-C; its report is
//! still printed); `simulate` and `chaos` exit with `redis-ha-chaos`'s code.
//! The JSON shapes are documented in [`model`]; the text layouts in [`render`].

pub mod cli;
pub mod client;
pub mod commands;
pub mod error;
pub mod external;
pub mod health;
pub mod model;
pub mod output;
pub mod render;
mod table;
mod timefmt;
pub mod upgrade;

pub use cli::{Cli, Command, Connection};
pub use client::Target;
pub use error::CliError;

/// Runs one parsed command line; `simulate` and `chaos` replace this process with
/// `redis-ha-chaos` and return only when that fails.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let target = cli.connection.target();
    match &cli.command {
        Command::Status(args) => commands::status::run(&target, args).await,
        Command::Watch(args) => commands::watch::run(&target, args).await,
        Command::Master(args) => commands::master::run(&target, args).await,
        Command::Events(args) => commands::events::run(&target, args).await,
        Command::Failover => commands::failover::run(&target).await,
        Command::Switchover(args) => commands::switchover::run(&target, args).await,
        Command::Wait(args) => commands::wait::run(&target, args).await,
        Command::Simulate(fwd) => Err(external::exec("simulate", fwd, &cli.connection)),
        Command::Chaos(fwd) => Err(external::exec("chaos", fwd, &cli.connection)),
        Command::Certs(cli::CertsCommand::Create(args)) => commands::certs::create(args),
        Command::Upgrade(cli::UpgradeCommand::Plan(args)) => {
            commands::upgrade::plan_cmd(&target, args).await
        }
        Command::Upgrade(cli::UpgradeCommand::Wait(args)) => {
            commands::upgrade::wait_cmd(&target, args).await
        }
    }
}
