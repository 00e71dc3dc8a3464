//! The analysis summary: what was seen, what became spans, what was dropped and why.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

/// State dropped because it outlived the time window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Evictions {
    /// Idle connections whose parser state was dropped.
    pub connections: u64,
    /// Outstanding requests dropped without a response.
    pub requests: u64,
}

/// Counters of one analysis (the summary the CLI prints).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AnalysisStats {
    /// Records read.
    pub records: u64,
    /// Socket rows older than the time window when they arrived (input not in time order).
    pub late_records: u64,
    /// Connections with socket data (a keep-alive connection idle for longer than the time
    /// window, evicted and then used again, counts again).
    pub connections: u64,
    /// Requests parsed.
    pub exchanges: u64,
    /// Distinct trace ids among all spans (before sampling); a trace whose spans are more
    /// than the time window apart counts again.
    pub traces: u64,
    /// Spans produced (before sampling).
    pub spans: u64,
    /// Spans dropped by sampling.
    pub sampled_out: u64,
    /// Spans whose parent is not a span of their trace.
    pub orphans: u64,
    /// CLIENT spans whose parent was picked among several in-flight SERVER exchanges of
    /// their process that neither the wire trace id nor the thread told apart.
    pub ambiguous_parents: u64,
    /// Invented traces that took the trace id a service's own tracer started for a
    /// context-less request (root adoption).
    pub adopted_traces: u64,
    /// Span ids re-derived because (trace id, span id) was taken.
    pub duplicate_span_ids: u64,
    /// HTTP parse problems by reason.
    pub parse_errors: BTreeMap<String, u64>,
    /// Socket rows of TLS connections skipped: ciphertext, the connection being parsed from
    /// the TLS plaintext rows (or yielding nothing when its plaintext was not captured).
    #[serde(skip_serializing_if = "is_zero")]
    pub tls_ciphertext_skipped: u64,
    /// Ignored propagation headers by `family/reason`.
    pub ignored_headers: BTreeMap<String, u64>,
    /// State evicted by the time window.
    pub evictions: Evictions,
    /// Requests that never got a response.
    pub unmatched_requests: u64,
    /// Responses with no recorded request.
    pub unmatched_responses: u64,
    /// Kubernetes objects indexed.
    pub k8s_objects: u64,
    /// Kubernetes objects whose JSON could not be read.
    pub bad_k8s_objects: u64,
    /// Recorder drop counters found in `stats` rows (latest value per name).
    pub recorder_drops: BTreeMap<String, u64>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn map(f: &mut fmt::Formatter<'_>, title: &str, m: &BTreeMap<String, u64>) -> fmt::Result {
    if m.is_empty() {
        return writeln!(f, "{title:<20} none");
    }
    let items: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
    writeln!(f, "{title:<20} {}", items.join(", "))
}

impl fmt::Display for AnalysisStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:<20} {}", "records", self.records)?;
        writeln!(f, "{:<20} {}", "connections", self.connections)?;
        writeln!(f, "{:<20} {}", "exchanges", self.exchanges)?;
        writeln!(f, "{:<20} {}", "traces", self.traces)?;
        writeln!(
            f,
            "{:<20} {} ({} sampled out)",
            "spans", self.spans, self.sampled_out
        )?;
        writeln!(f, "{:<20} {}", "orphan spans", self.orphans)?;
        writeln!(
            f,
            "{:<20} {} (parent picked among several in-flight requests)",
            "ambiguous parents", self.ambiguous_parents
        )?;
        writeln!(
            f,
            "{:<20} {} (context-less requests joined the trace their service started)",
            "adopted traces", self.adopted_traces
        )?;
        writeln!(
            f,
            "{:<20} {} requests, {} responses",
            "unmatched", self.unmatched_requests, self.unmatched_responses
        )?;
        map(f, "parse errors", &self.parse_errors)?;
        if self.tls_ciphertext_skipped > 0 {
            writeln!(
                f,
                "{:<20} {} socket rows (ciphertext of TLS connections)",
                "TLS skipped", self.tls_ciphertext_skipped
            )?;
        }
        map(f, "ignored headers", &self.ignored_headers)?;
        writeln!(
            f,
            "{:<20} {} connections, {} requests",
            "evictions", self.evictions.connections, self.evictions.requests
        )?;
        if self.late_records > 0 {
            writeln!(f, "{:<20} {}", "late records", self.late_records)?;
        }
        if self.duplicate_span_ids > 0 {
            writeln!(
                f,
                "{:<20} {}",
                "re-derived span ids", self.duplicate_span_ids
            )?;
        }
        writeln!(
            f,
            "{:<20} {} ({} unreadable)",
            "k8s objects", self.k8s_objects, self.bad_k8s_objects
        )?;
        if !self.recorder_drops.is_empty() {
            map(f, "recorder drops", &self.recorder_drops)?;
        }
        Ok(())
    }
}
