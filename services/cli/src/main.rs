//! `redis-ha`: parse, run, map errors to an exit code (see the library docs).

use std::process::ExitCode;

use clap::Parser;
use redis_ha_cli::error::EXIT_FAILURE;
use redis_ha_cli::output::{exit, start_telemetry};
use redis_ha_cli::{external, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse_from(external::help_forwarded(std::env::args_os().collect()));
    // `simulate` and `chaos` become `redis-ha-chaos` before any runtime or exporter starts.
    if let Some((name, fwd)) = cli.command.forwarded() {
        let e = external::exec(name, fwd, &cli.connection);
        eprintln!("redis-ha: {e}");
        return exit(e.exit_code());
    }
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(run(cli)),
        Err(e) => {
            eprintln!("redis-ha: tokio runtime: {e}");
            exit(EXIT_FAILURE)
        }
    }
}

async fn run(cli: Cli) -> ExitCode {
    // The CLI itself only logs at debug.
    let _telemetry = match start_telemetry("redis-ha-cli", "redis-ha") {
        Ok(guard) => guard,
        Err(code) => return code,
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
