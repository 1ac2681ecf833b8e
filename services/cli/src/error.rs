//! Everything that can go wrong in a `redis-ha` command, with the exit code each one means.

use std::io;

/// Exit code when the coordinator cannot be reached at all (scripts retry on it).
pub const EXIT_UNREACHABLE: i32 = 2;
/// Exit code for every other failure: a gRPC error, no master, bad output.
pub const EXIT_FAILURE: i32 = 1;
/// Exit code of `simulate --mode durable` when an acknowledged message was lost.
pub const EXIT_MESSAGES_LOST: i32 = 3;
/// Exit code of a `simulate` run stopped by Ctrl-C (after its report), as shells count SIGINT.
pub const EXIT_INTERRUPTED: i32 = 130;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(
        "cannot reach the coordinator at {url}: {reason} \
         (is it running? set --coordinator or REDIS_HA_COORDINATOR)"
    )]
    Unreachable { url: String, reason: String },

    #[error("the coordinator at {url} ended the topology stream")]
    StreamEnded { url: String },

    #[error("invalid coordinator URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },

    #[error("the coordinator at {url} answered {code}: {message}")]
    Grpc {
        url: String,
        code: &'static str,
        message: String,
    },

    #[error("master group {group} has no master right now{hint}")]
    NoMaster { group: String, hint: &'static str },

    #[error("the coordinator named an invalid master address {address:?}: {reason}")]
    BadMasterAddress { address: String, reason: String },

    #[error("group {group} is not healthy after {after_ms} ms: {reason}")]
    NotHealthy {
        group: String,
        after_ms: u64,
        reason: String,
        /// The last poll could not reach the coordinator.
        unreachable: bool,
    },

    #[error("cannot write the output: {0}")]
    Output(#[source] io::Error),

    #[error("cannot encode JSON: {0}")]
    Json(#[from] serde_json::Error),

    #[error("simulate: {0}")]
    Simulate(#[from] crate::simulate::SimError),

    #[error("simulate: chaos: {0}")]
    Chaos(String),

    #[error("chaos: {0}")]
    Docker(#[from] crate::chaos::ChaosError),

    #[error(
        "simulate: {lost} acknowledged message(s) lost in durable mode (see the report above)"
    )]
    MessagesLost { lost: u64 },

    #[error("cannot write {path}: {reason}")]
    WriteFile { path: String, reason: String },

    #[error("simulate: interrupted (the report covers the run until then)")]
    Interrupted,
}

impl CliError {
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Unreachable { .. }
            | Self::StreamEnded { .. }
            | Self::BadUrl { .. }
            | Self::NotHealthy {
                unreachable: true, ..
            }
            | Self::Simulate(crate::simulate::SimError::Proxy(_))
            | Self::Docker(
                crate::chaos::ChaosError::DockerUnavailable(_)
                | crate::chaos::ChaosError::NoService { .. },
            ) => EXIT_UNREACHABLE,
            Self::MessagesLost { .. } => EXIT_MESSAGES_LOST,
            Self::Interrupted => EXIT_INTERRUPTED,
            _ => EXIT_FAILURE,
        }
    }

    /// A closed stdout (`redis-ha watch | head`) is the reader's choice, not a failure.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Self::Output(e) if e.kind() == io::ErrorKind::BrokenPipe)
    }
}

impl From<io::Error> for CliError {
    fn from(e: io::Error) -> Self {
        Self::Output(e)
    }
}
