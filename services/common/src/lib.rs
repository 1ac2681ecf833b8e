//! Pieces every redis-ha sidecar shares: layered configuration (defaults < TOML file <
//! environment), secrets read from files, `host:port` addresses, telemetry set-up (logs and
//! traces) and the Prometheus `/metrics` endpoint.

pub mod addr;
pub mod config;
pub mod metrics;
pub mod secret;
pub mod shutdown;
pub mod telemetry;
pub mod time;

pub use addr::HostPort;
pub use config::{load_config, ConfigError};
pub use secret::Secret;
