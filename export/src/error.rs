//! The one error type of the exporters.
//!
//! Every variant names the endpoint it concerns (scheme, host, port and path only: never
//! user info, query strings or credentials) and says what went wrong in words an operator can
//! act on: a token problem is not a busy server, a refused connection is not a timeout.

use std::path::PathBuf;
use std::time::Duration;

/// What went wrong while exporting.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The configuration cannot work (bad URL, unreadable CA file, zero batch size...).
    #[error("invalid exporter configuration: {0}")]
    Config(String),
    /// The spans could not be turned into a request body.
    #[error("cannot encode spans: {0}")]
    Encode(String),
    /// No connection could be made (refused, unreachable, DNS, TLS handshake...).
    #[error("cannot connect to {endpoint} after {attempts} attempt(s): {detail}")]
    Connect {
        /// Redacted endpoint.
        endpoint: String,
        /// Requests tried.
        attempts: u32,
        /// The underlying cause.
        detail: String,
    },
    /// The TLS handshake failed (certificate not trusted, wrong host name...). Not retried.
    #[error("TLS with {endpoint} failed: {detail} (trust its CA with a CA file, or turn verification off explicitly)")]
    Tls {
        /// Redacted endpoint.
        endpoint: String,
        /// The underlying cause.
        detail: String,
    },
    /// The receiver did not answer in time (not retried: it may have received the data).
    #[error("{endpoint} did not answer within {timeout:?}")]
    Timeout {
        /// Redacted endpoint.
        endpoint: String,
        /// The configured request timeout.
        timeout: Duration,
    },
    /// The receiver refused the credentials (HTTP 401/403, HEC codes 1-4).
    #[error("{endpoint} refused the credentials (HTTP {status}): {message}")]
    Auth {
        /// Redacted endpoint.
        endpoint: String,
        /// HTTP status.
        status: u16,
        /// What the receiver said, explained.
        message: String,
    },
    /// The receiver rejected the request for good (bad data, unsupported content type...).
    #[error("{endpoint} rejected the request (HTTP {status}): {message}")]
    Rejected {
        /// Redacted endpoint.
        endpoint: String,
        /// HTTP status.
        status: u16,
        /// What the receiver said.
        message: String,
    },
    /// A retryable failure (busy, 429, 502-504, connection reset) lasted through every retry.
    #[error("{endpoint} still failing after {attempts} attempt(s): {last}")]
    RetriesExhausted {
        /// Redacted endpoint.
        endpoint: String,
        /// Requests tried.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// Another HTTP client failure (reading the response, building the request...).
    #[error("HTTP failure talking to {endpoint}: {detail}")]
    Http {
        /// Redacted endpoint.
        endpoint: String,
        /// The underlying cause.
        detail: String,
    },
    /// A local file could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

impl ExportError {
    /// True when the failure concerns the endpoint as a whole (nobody there, wrong token,
    /// never answering), so sending further batches to it now is pointless.
    pub fn is_endpoint_down(&self) -> bool {
        matches!(
            self,
            ExportError::Connect { .. }
                | ExportError::Tls { .. }
                | ExportError::Timeout { .. }
                | ExportError::Auth { .. }
                | ExportError::RetriesExhausted { .. }
                | ExportError::Config(_)
        )
    }
}
