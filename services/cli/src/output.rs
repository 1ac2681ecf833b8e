//! Writing to stdout without panicking on a closed pipe, the colour decision, and what the
//! binaries (`redis-ha`, `redis-ha-chaos`) do at their edge: exit codes, telemetry start.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use redis_ha_common::telemetry::TelemetryGuard;

use crate::error::{CliError, EXIT_FAILURE};

/// Writes `text` to stdout and flushes (watch output must appear line by line).
pub fn emit(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Colour only for a person at a terminal, and never when `NO_COLOR` is set (no-color.org).
pub fn use_color() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// An exit code as the process's status (out of range: 1).
pub fn exit(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// Starts logging to stderr (RUST_LOG, default info) and trace export for `service`; on
/// failure says so as `program` and gives the exit status to end with.
pub fn start_telemetry(service: &'static str, program: &str) -> Result<TelemetryGuard, ExitCode> {
    redis_ha_common::telemetry::init(service).map_err(|e| {
        eprintln!("{program}: telemetry: {}", crate::client::error_chain(&e));
        exit(EXIT_FAILURE)
    })
}
