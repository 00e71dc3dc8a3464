//! `podtrace record`.

use crate::error::{CliError, CmdResult};

/// Runs the command.
pub fn run(_args: crate::cli::RecordArgs) -> CmdResult {
    Err(CliError::Usage("`record` is not built yet in this version of podtrace".into()))
}
