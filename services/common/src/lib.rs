//! Pieces every redis-ha sidecar shares: layered configuration (defaults < TOML file <
//! environment), secrets read from files, `host:port` addresses, telemetry set-up (logs and
//! traces), the Prometheus `/metrics` endpoint, the bounded Redis connection every sidecar
//! uses ([`redis_client`]) and the reconnection [`Backoff`].

pub mod addr;
pub mod backoff;
pub mod config;
pub mod metrics;
pub mod redis_client;
pub mod secret;
pub mod shutdown;
pub mod telemetry;
pub mod template;
pub mod time;

pub use addr::HostPort;
pub use backoff::Backoff;
pub use config::{load_config, ConfigError};
pub use secret::Secret;
