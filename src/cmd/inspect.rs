//! `podtrace inspect`.

use crate::error::{CliError, CmdResult};

/// Runs the command.
pub fn run(_args: crate::cli::InspectArgs) -> CmdResult {
    Err(CliError::Usage("`inspect` is not built yet in this version of podtrace".into()))
}
