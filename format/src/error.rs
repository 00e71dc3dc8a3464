//! Errors of the capture format. Every variant about a file names the file.

use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T, E = FormatError> = std::result::Result<T, E>;

/// What went wrong reading or writing a capture.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The operating system refused an operation on the file.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not Parquet at all (empty, or no `PAR1` magic at its start).
    #[error("{}: not a Parquet file ({reason})", path.display())]
    NotParquet {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The file starts like Parquet but its footer is missing (the writer was killed or the
    /// file was cut) and there is no `<file>.footer` sidecar to recover it with.
    #[error("{}: truncated capture, footer missing and no sidecar ({reason})", path.display())]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Details.
        reason: String,
    },
    /// A Parquet file, but not a podtrace capture: no `podtrace.schema_version`, or columns
    /// missing / of the wrong type.
    #[error("{}: not a podtrace capture ({reason})", path.display())]
    WrongSchema {
        /// The file.
        path: PathBuf,
        /// Details.
        reason: String,
    },
    /// A capture of a schema version this build does not read (written by a newer podtrace).
    #[error("{}: capture schema version {found} is not supported (this podtrace reads up to {supported}); upgrade podtrace", path.display())]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: String,
        /// The newest version this build reads.
        supported: u32,
    },
    /// The file's footer or data could not be decoded (bad page, bad footer, decode panic).
    #[error("{}: corrupt capture ({reason})", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// Details.
        reason: String,
    },
    /// Encoding or writing a row group failed.
    #[error("{}: writing capture failed: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The Parquet/Arrow error.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// An input (file, directory or glob) named no capture file.
    #[error("{input}: no capture files found")]
    NoInput {
        /// The input as given.
        input: String,
    },
    /// A record batch does not have the columns of schema v1 (in `batch_to_records`).
    #[error("record batch does not match the capture schema: {0}")]
    Batch(String),
    /// Kubernetes object JSON that cannot be used.
    #[error("kubernetes objects: {0}")]
    K8sJson(String),
}

impl FormatError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        FormatError::Io {
            path: path.into(),
            source,
        }
    }
    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: impl std::fmt::Display) -> Self {
        FormatError::Corrupt {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}

/// Turns a caught panic payload into a message.
pub(crate) fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        format!("decoder failed: {s}")
    } else if let Some(s) = payload.downcast_ref::<String>() {
        format!("decoder failed: {s}")
    } else {
        "decoder failed".to_string()
    }
}

thread_local! {
    /// True while this thread runs decoder code under [`catch_quiet`].
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// `catch_unwind` for decoder code (arrow/parquet assert on some corrupt inputs): the panic
/// becomes an error value, so the process-wide panic hook is not run for it (no
/// "thread panicked" message on stderr). Panics elsewhere still reach the previous hook.
pub(crate) fn catch_quiet<R>(f: impl FnOnce() -> R) -> std::thread::Result<R> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(std::cell::Cell::get) {
                previous(info);
            }
        }));
    });
    let was = QUIET.with(|q| q.replace(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET.with(|q| q.set(was));
    result
}
