//! Pieces every redis-ha sidecar shares: layered configuration (defaults < TOML file <
//! environment), secrets read from files, `host:port` addresses, and telemetry set-up.

pub mod addr;
pub mod config;
pub mod secret;
pub mod telemetry;
pub mod time;

pub use addr::HostPort;
pub use config::{load_config, ConfigError};
pub use secret::Secret;
