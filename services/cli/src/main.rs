//! `redis-ha`: parse, run, map errors to an exit code (see the library docs).

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use redis_ha_cli::error::EXIT_FAILURE;
use redis_ha_cli::{external, Cli};

fn exit(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(external::help_forwarded(std::env::args_os().collect()));
    // `simulate` and `chaos` become `redis-ha-chaos` before any runtime or exporter starts.
    if let Some((name, fwd)) = cli.command.forwarded() {
        let e = external::exec(name, fwd, &cli.connection);
        eprintln!("redis-ha: {e}");
        return exit(e.exit_code());
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("redis-ha: {e:#}");
            return exit(EXIT_FAILURE);
        }
    };
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> ExitCode {
    // Logs (RUST_LOG, default info) go to stderr; the CLI itself only logs at debug.
    let _telemetry = match redis_ha_common::telemetry::init("redis-ha-cli").context("telemetry") {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("redis-ha: {e:#}");
            return exit(EXIT_FAILURE);
        }
    };
    match redis_ha_cli::run(cli).await {
        // A closed stdout (`redis-ha watch | head`) is the reader's choice, not a failure.
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("redis-ha: {e}");
            exit(e.exit_code())
        }
        Ok(()) => ExitCode::SUCCESS,
    }
}
