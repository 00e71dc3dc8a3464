//! `podtrace analyze`.

use crate::error::{CliError, CmdResult};

/// Runs the command.
pub fn run(_args: crate::cli::AnalyzeArgs) -> CmdResult {
    Err(CliError::Usage("`analyze` is not built yet in this version of podtrace".into()))
}
