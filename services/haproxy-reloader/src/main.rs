//! `redis-ha-reloader`: applies the redis-ha topology to HAProxy through its runtime API.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use redis_ha_reloader::ReloaderConfig;
use tokio_util::sync::CancellationToken;

/// Keeps HAProxy's Redis port routed to the current master.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// TOML configuration file; every key can also be set as REDIS_HA_RELOADER_<KEY>.
    #[arg(long, env = "REDIS_HA_RELOADER_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = ReloaderConfig::load(args.config.as_deref()).context("configuration")?;
    let _telemetry = redis_ha_common::telemetry::init("redis-ha-reloader").context("telemetry")?;
    let cancel = CancellationToken::new();
    tokio::spawn(redis_ha_common::shutdown::cancel_on_signal(cancel.clone()));
    redis_ha_reloader::run(config, cancel)
        .await
        .context("redis-ha-reloader")
}
