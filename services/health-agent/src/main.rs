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
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("signal received, stopping");
        on_signal.cancel();
    });
    redis_ha_agent::run(config, shutdown).await?;
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the agent");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
