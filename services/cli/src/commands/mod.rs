//! One module per subcommand. Each takes the connection target and its own arguments.

pub mod certs;
pub mod events;
pub mod failover;
pub mod master;
pub mod status;
pub mod switchover;
pub mod upgrade;
pub mod wait;
pub mod watch;
