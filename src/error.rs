//! The binary's error type: every failure maps to a documented exit code.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | a runtime failure: an exporter failed, the recorder stopped on an error |
//! | 2 | bad usage, an unreadable or corrupt input file, missing privileges or kernel features |

use std::process::ExitCode;

/// A failure of a podtrace command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Flags that cannot work together, or a value clap could not check alone.
    #[error("{0}")]
    Usage(String),
    /// An input that cannot be used: missing, unreadable, corrupt, of another format.
    #[error(transparent)]
    Input(anyhow::Error),
    /// The environment cannot do it: privileges, kernel features, cgroups.
    #[error(transparent)]
    Environment(anyhow::Error),
    /// Anything else that went wrong while working.
    #[error(transparent)]
    Runtime(anyhow::Error),
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Usage(_) | CliError::Input(_) | CliError::Environment(_) => ExitCode::from(2),
            CliError::Runtime(_) => ExitCode::from(1),
        }
    }
}

/// Result of a command: the exit code on success (a command may succeed with a non-zero code,
/// e.g. `analyze` when an exporter failed).
pub type CmdResult = Result<ExitCode, CliError>;
