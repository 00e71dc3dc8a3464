//! `podtrace live`.

use crate::error::{CliError, CmdResult};

/// Runs the command.
pub fn run(_args: crate::cli::LiveArgs) -> CmdResult {
    Err(CliError::Usage(
        "`live` is not built yet in this version of podtrace".into(),
    ))
}
