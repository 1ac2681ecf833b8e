//! `redis-ha-chaos`: the message simulation across failovers ([`simulate`]) and the fault
//! injection on a deployment's Redis nodes ([`chaos`]), as a library (the process tests drive
//! both in-process) and as the `redis-ha-chaos` binary that `redis-ha simulate` and
//! `redis-ha chaos` run ([`cli`]).
//!
//! Exit codes of the binary (those of `redis-ha simulate` / `redis-ha chaos`): 0 success,
//! 1 a failure (Docker refused, a chaos round failed, ...), 2 the proxy, the coordinator or the
//! Docker daemon cannot be reached or the command line is wrong, 3 `simulate --mode durable`
//! lost an acknowledged message, 130 `simulate` was interrupted (Ctrl-C; its report is still
//! printed).

pub mod chaos;
pub mod cli;
pub mod conn;
pub mod error;
pub mod simulate;

pub use error::Error;
