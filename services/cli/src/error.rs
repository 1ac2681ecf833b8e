//! Everything that can go wrong in a `redis-ha` command, with the exit code each one means.

use std::io;

/// Exit code when the coordinator cannot be reached at all (scripts retry on it), or a
/// program `redis-ha` needs is missing.
pub const EXIT_UNREACHABLE: i32 = 2;
/// Exit code for every other failure: a gRPC error, no master, bad output.
pub const EXIT_FAILURE: i32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(
        "cannot reach the coordinator at {url}: {reason} \
         (is it running? set --coordinator or REDIS_HA_COORDINATOR)"
    )]
    Unreachable { url: String, reason: String },

    #[error("the coordinator at {url} ended the topology stream")]
    StreamEnded { url: String },

    #[error("TLS: {reason} (give --ca, --cert and --key, or REDIS_HA_CA, REDIS_HA_CERT and REDIS_HA_KEY; --insecure for a plaintext coordinator)")]
    Tls { reason: String },

    #[error("certificates: {0}")]
    Certs(#[from] redis_ha_tls::issue::IssueError),

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

    #[error(
        "`redis-ha {command}` runs the {program} binary, which is neither next to this \
         executable ({beside}) nor on PATH (it ships in the sidecars image with redis-ha; \
         from a checkout: cargo build -p redis-ha-chaos)"
    )]
    ChaosBinaryMissing {
        command: String,
        program: &'static str,
        beside: String,
    },

    #[error("cannot run {program}: {reason}")]
    Exec { program: String, reason: String },

    #[error("upgrade: {0}")]
    Upgrade(String),
}

impl CliError {
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Unreachable { .. }
            | Self::StreamEnded { .. }
            | Self::BadUrl { .. }
            | Self::Tls { .. }
            | Self::NotHealthy {
                unreachable: true, ..
            }
            | Self::ChaosBinaryMissing { .. } => EXIT_UNREACHABLE,
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
