//! `podtrace import`.

use crate::error::{CliError, CmdResult};

/// Runs the command.
pub fn run(_args: crate::cli::ImportArgs) -> CmdResult {
    Err(CliError::Usage("`import` is not built yet in this version of podtrace".into()))
}
