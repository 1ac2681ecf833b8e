//! `redis-ha-chaos` (also run as `redis-ha simulate` / `redis-ha chaos`): parse, run, map
//! errors to an exit code (see the library docs).

use std::process::ExitCode;

use clap::Parser;
use redis_ha_chaos::cli::{self, Cli};
use redis_ha_chaos::Error;
use redis_ha_cli::output::{exit, start_telemetry};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let name = cli::program_name();
    // The simulation's progress and chaos rounds are logged (stderr).
    let _telemetry = match start_telemetry("redis-ha-chaos", &name) {
        Ok(guard) => guard,
        Err(code) => return code,
    };
    match cli::run(cli).await {
        Err(Error::Cli(e)) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            exit(e.exit_code())
        }
        Ok(()) => ExitCode::SUCCESS,
    }
}
