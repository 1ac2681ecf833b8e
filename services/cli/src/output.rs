//! Writing to stdout without panicking on a closed pipe, and the colour decision.

use std::io::{IsTerminal, Write};

use crate::error::CliError;

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
