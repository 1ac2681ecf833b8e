//! `redis-ha-coordinator`: merges the health agents' reports into one versioned topology and
//! serves it over gRPC. Runs until SIGINT or SIGTERM.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use redis_ha_coordinator::CoordinatorConfig;
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(name = "redis-ha-coordinator", version, about)]
struct Args {
    /// TOML configuration file; every key can also be set as REDIS_HA_COORDINATOR_<KEY>.
    #[arg(long, env = "REDIS_HA_COORDINATOR_CONFIG")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("redis-ha-coordinator: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let config = CoordinatorConfig::load(args.config.as_deref()).context("bad configuration")?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let _telemetry =
            redis_ha_common::telemetry::init("redis-ha-coordinator").context("telemetry set-up")?;
        let shutdown = CancellationToken::new();
        tokio::spawn(redis_ha_common::shutdown::cancel_on_signal(
            shutdown.clone(),
        ));
        redis_ha_coordinator::run(config, shutdown).await?;
        Ok(())
    })
}
