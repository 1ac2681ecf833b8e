//! `redis-ha-agent`: the health agent beside one Redis node and its Sentinel.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use redis_ha_agent::AgentConfig;
use tokio_util::sync::CancellationToken;

/// Health agent for one Redis node: reports it and its Sentinel to the coordinator.
#[derive(Debug, Parser)]
#[command(name = "redis-ha-agent", version)]
struct Args {
    /// TOML configuration file; every key can also be set as REDIS_HA_AGENT_<KEY>.
    #[arg(long, env = "REDIS_HA_AGENT_CONFIG", value_name = "PATH")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("redis-ha-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let _telemetry =
        redis_ha_common::telemetry::init("redis-ha-agent").context("setting up telemetry")?;
    let path = args.config.clone();
    let config = tokio::task::spawn_blocking(move || AgentConfig::load(path.as_deref()))
        .await
        .context("loading the configuration")?
        .context("invalid configuration")?;

    let shutdown = CancellationToken::new();
    tokio::spawn(redis_ha_common::shutdown::cancel_on_signal(
        shutdown.clone(),
    ));
    redis_ha_agent::run(config, shutdown).await?;
    Ok(())
}
