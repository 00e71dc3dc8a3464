//! [`ExporterReport`]: what one exporter did with one `export_all` call.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::{Accounting, ExportError, Exporter};

/// The outcome of one exporter in [`crate::export_all`] (printable and serializable).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExporterReport {
    /// Exporter name (`otlp`, `jaeger`, `splunk`).
    pub exporter: String,
    /// Redacted endpoint.
    pub endpoint: String,
    /// Spans handed to the exporter.
    pub spans: usize,
    /// What happened to them (counters over this call).
    #[serde(flatten)]
    pub accounting: Accounting,
    /// Wall time of the call, in ms.
    pub elapsed_ms: u64,
    /// The first error, if any (already redacted).
    pub error: Option<String>,
}

impl ExporterReport {
    /// Builds a report.
    pub fn new(
        exporter: &dyn Exporter,
        spans: usize,
        accounting: Accounting,
        elapsed: Duration,
        error: Option<ExportError>,
    ) -> Self {
        ExporterReport {
            exporter: exporter.name().to_string(),
            endpoint: exporter.endpoint(),
            spans,
            accounting,
            elapsed_ms: elapsed.as_millis() as u64,
            error: error.map(|e| e.to_string()),
        }
    }

    /// True when every span was delivered and nothing failed.
    pub fn is_ok(&self) -> bool {
        self.error.is_none() && self.accounting.dropped_spans == 0
    }
}

impl fmt::Display for ExporterReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = &self.accounting;
        write!(
            f,
            "{} → {}: {}/{} spans sent, {} requests, {} retried, {} failed, {} spans dropped ({} ms)",
            self.exporter,
            self.endpoint,
            a.spans_sent,
            self.spans,
            a.requests,
            a.retried_requests,
            a.failed_requests,
            a.dropped_spans,
            self.elapsed_ms
        )?;
        if let Some(e) = &self.error {
            write!(f, ": ERROR {e}")?;
        }
        Ok(())
    }
}
