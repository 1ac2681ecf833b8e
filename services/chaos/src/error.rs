//! What can go wrong in `redis-ha-chaos`, with the exit code each one means.

use redis_ha_cli::error::{EXIT_FAILURE, EXIT_UNREACHABLE};
use redis_ha_cli::CliError;

use crate::chaos::docker::DockerError;
use crate::simulate::SimError;

/// Exit code of `simulate --mode durable` when an acknowledged message was lost.
pub const EXIT_MESSAGES_LOST: i32 = 3;
/// Exit code of a `simulate` run stopped by Ctrl-C (after its report), as shells count SIGINT.
pub const EXIT_INTERRUPTED: i32 = 130;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The coordinator, the output: as `redis-ha` reports them.
    #[error(transparent)]
    Cli(#[from] CliError),

    #[error("simulate: {0}")]
    Simulate(#[from] SimError),

    #[error("simulate: chaos: {0}")]
    Chaos(String),

    #[error("chaos: {0}")]
    Docker(#[from] DockerError),

    #[error(
        "simulate: {lost} acknowledged message(s) lost in durable mode (see the report above)"
    )]
    MessagesLost { lost: u64 },

    #[error("cannot write {path}: {reason}")]
    WriteFile { path: String, reason: String },

    #[error("simulate: interrupted (the report covers the run until then)")]
    Interrupted,
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Self::Cli(CliError::Json(e))
    }
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Cli(e) => e.exit_code(),
            Self::Simulate(SimError::Proxy(_))
            | Self::Docker(DockerError::DockerUnavailable(_) | DockerError::NoService { .. }) => {
                EXIT_UNREACHABLE
            }
            Self::MessagesLost { .. } => EXIT_MESSAGES_LOST,
            Self::Interrupted => EXIT_INTERRUPTED,
            _ => EXIT_FAILURE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_the_documented_ones() {
        assert_eq!(Error::MessagesLost { lost: 1 }.exit_code(), 3);
        assert_eq!(Error::Interrupted.exit_code(), 130);
        assert_eq!(
            Error::Docker(DockerError::DockerUnavailable("x".into())).exit_code(),
            2
        );
        assert_eq!(Error::Chaos("round 1 failed".into()).exit_code(), 1);
        let unreachable = CliError::Unreachable {
            url: "http://c:1".into(),
            reason: "connection refused".into(),
        };
        assert_eq!(Error::Cli(unreachable).exit_code(), 2);
    }
}
