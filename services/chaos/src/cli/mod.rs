//! The `redis-ha-chaos` command line: `simulate` and `chaos`, with `redis-ha`'s global options
//! (which `redis-ha` forwards, see `redis_ha_cli::external`).

pub mod inject;
pub mod simulate;

use std::path::Path;

use clap::{Parser, Subcommand};
use redis_ha_cli::Connection;

use crate::error::Error;

#[derive(Debug, Parser)]
#[command(
    name = "redis-ha-chaos",
    version,
    about = "Move messages through a redis-ha deployment across failovers, and fault its nodes \
             (run as `redis-ha simulate` and `redis-ha chaos`)."
)]
pub struct Cli {
    #[command(flatten)]
    pub connection: Connection,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Move sequence-numbered messages through the proxy while faulting the master; count them.
    Simulate(Box<simulate::SimulateArgs>),
    /// Fault a Redis node of the swarm stack through the Docker API (stop, kill, pause, isolate ...).
    Chaos(inject::ChaosArgs),
}

/// The name this process was started as (`redis-ha` when `redis-ha` runs it), for messages.
pub fn program_name() -> String {
    std::env::args_os()
        .next()
        .as_deref()
        .map(Path::new)
        .and_then(Path::file_name)
        .map_or_else(
            || "redis-ha-chaos".to_owned(),
            |n| n.to_string_lossy().into_owned(),
        )
}

/// Runs one parsed command line.
pub async fn run(cli: Cli) -> Result<(), Error> {
    match &cli.command {
        Command::Simulate(args) => simulate::run(&cli.connection.target(), args).await,
        Command::Chaos(args) => inject::run(args).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// `redis-ha chaos stop 2 --group later`, as `redis-ha` forwards it.
    #[test]
    fn the_forwarded_global_options_are_understood() {
        Cli::command().debug_assert();
        let forwarded = [
            "redis-ha",
            "--coordinator",
            "c:1",
            "--group",
            "g",
            "--timeout-ms",
            "500",
            "chaos",
            "stop",
            "2",
            "--group",
            "later",
        ];
        let cli = Cli::try_parse_from(forwarded).unwrap();
        // Given again after the subcommand: that one wins, as in `redis-ha` itself.
        assert_eq!(cli.connection.group, "later");
        assert_eq!(cli.connection.coordinator, "c:1");
        assert_eq!(cli.connection.timeout_ms, 500);
        assert!(matches!(cli.command, Command::Chaos(_)));
    }
}
