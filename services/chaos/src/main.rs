//! `redis-ha-chaos` (also run as `redis-ha simulate` / `redis-ha chaos`): parse, run, map
//! errors to an exit code (see the library docs).

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use redis_ha_chaos::cli::{self, Cli};
use redis_ha_cli::error::EXIT_FAILURE;

fn exit(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let name = cli::program_name();
    // Logs (RUST_LOG, default info) go to stderr: the simulation's progress and chaos rounds.
    let _telemetry = match redis_ha_common::telemetry::init("redis-ha-chaos").context("telemetry") {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            return exit(EXIT_FAILURE);
        }
    };
    match cli::run(cli).await {
        Err(redis_ha_chaos::Error::Cli(e)) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            exit(e.exit_code())
        }
        Ok(()) => ExitCode::SUCCESS,
    }
}
