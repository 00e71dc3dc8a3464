//! One module per command; each turns resolved flags into library calls.

pub mod analyze;
pub mod cluster;
pub mod import;
pub mod inspect;
pub mod live;
pub mod output;
pub mod record;
pub mod target;
pub mod tracing_config;

/// The async runtime for commands that record or export.
pub fn runtime() -> Result<tokio::runtime::Runtime, crate::error::CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| crate::error::CliError::Runtime(e.into()))
}
