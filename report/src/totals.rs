//! Report totals over every span of an analysis, in bounded memory.
//!
//! When the CLI streams spans through a [`crate::collect::TraceCollector`], the page keeps
//! only some traces, but its services and routes tables, summary and header still describe
//! every span handed over: [`ReportTotals`] counts SERVER/CLIENT spans per service, keeps
//! each service's SERVER latencies in a log-linear histogram (the analyzer's
//! [`Histogram`]: fixed-size, exact below 128 ns, within 1/64 above), the same per route
//! (service and SERVER span name, at most [`MAX_ROUTES`] of them) and per database
//! operation (spans with `db.system.name`: system, side, operation and collection, at most
//! [`MAX_DB_OPERATIONS`]), the time range, and how many spans and traces were kept or left
//! out.

use std::collections::BTreeMap;

use podtrace_analyzer::graph::Histogram;
use podtrace_model::{Span, SpanKind};

/// Per-service totals over all spans.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceTotals {
    /// SERVER spans of the service.
    pub server_spans: u64,
    /// CLIENT spans of the service.
    pub client_spans: u64,
    /// Durations of its SERVER spans, ns.
    pub server_latency: Histogram,
}

impl ServiceTotals {
    /// Median SERVER span duration, ns (bucket precision), when the service has any.
    pub fn p50_ns(&self) -> Option<u64> {
        (self.server_latency.count() > 0).then(|| self.server_latency.quantile(0.5))
    }

    /// 99th percentile SERVER span duration, ns (bucket precision), when it has any.
    pub fn p99_ns(&self) -> Option<u64> {
        (self.server_latency.count() > 0).then(|| self.server_latency.quantile(0.99))
    }
}

/// Routes (service, SERVER span name) the totals keep apart; SERVER spans of further
/// routes are counted together in [`ReportTotals::other_routes`].
pub const MAX_ROUTES: usize = 2000;

/// Database operations (system, side, operation, collection) the totals keep apart; spans
/// of further ones are counted together in [`ReportTotals::other_db_operations`].
pub const MAX_DB_OPERATIONS: usize = 2000;

/// What a database operation row is keyed by: `db.system.name`, the span's side
/// (`client` or `server`), `db.operation.name` and `db.collection.name` (empty when absent).
pub type DbOperationKey = (String, &'static str, String, String);

/// The key of a database span (one with `db.system.name`), `None` for other spans.
pub fn db_operation_key(s: &Span) -> Option<DbOperationKey> {
    let text = |k: &str| {
        s.attributes
            .iter()
            .find(|kv| kv.key == k)
            .map(|kv| match &kv.value {
                podtrace_model::AttrValue::Str(v) => v.clone(),
                other => other.to_string(),
            })
    };
    let system = text("db.system.name")?;
    let side = match s.kind {
        SpanKind::Client => "client",
        SpanKind::Server => "server",
    };
    Some((
        system,
        side,
        text("db.operation.name").unwrap_or_default(),
        text("db.collection.name").unwrap_or_default(),
    ))
}

/// Totals of one route: the SERVER spans of one service with one name
/// (`{method} {route}`, `pkg.Service/Method` for gRPC).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteTotals {
    /// SERVER spans.
    pub spans: u64,
    /// Of which have the ERROR status.
    pub errors: u64,
    /// Their durations, ns.
    pub latency: Histogram,
}

impl RouteTotals {
    /// Accounts one span (a SERVER span of a route, a database span).
    pub fn observe(&mut self, s: &Span) {
        self.spans += 1;
        self.errors += u64::from(s.status.is_error());
        self.latency.add(s.duration_ns());
    }
}

/// What the page shows about all spans, and how many of them the page lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportTotals {
    /// Spans handed over.
    pub spans: u64,
    /// Distinct traces handed over (a trace whose id was forgotten after being left out
    /// and that shows up again counts again; see [`crate::collect::CollectorLimits`]).
    pub traces: u64,
    /// Earliest span start, ns since the Unix epoch.
    pub start_unix_nano: Option<u64>,
    /// Latest span end, ns since the Unix epoch.
    pub end_unix_nano: Option<u64>,
    /// Per service (by `service.name`).
    pub services: BTreeMap<String, ServiceTotals>,
    /// SERVER spans per route: service → span name → totals, at most [`MAX_ROUTES`].
    pub routes: BTreeMap<String, BTreeMap<String, RouteTotals>>,
    /// Routes in `routes`.
    pub route_count: usize,
    /// SERVER spans of routes beyond [`MAX_ROUTES`], together.
    pub other_routes: RouteTotals,
    /// Database spans per operation, at most [`MAX_DB_OPERATIONS`] keys.
    pub db_operations: BTreeMap<DbOperationKey, RouteTotals>,
    /// Database spans of operations beyond [`MAX_DB_OPERATIONS`], together.
    pub other_db_operations: RouteTotals,
    /// Traces the page lists.
    pub kept_traces: u64,
    /// Spans the page lists.
    pub kept_spans: u64,
    /// Traces left out (whole).
    pub dropped_traces: u64,
    /// Spans left out (all spans of the left-out traces).
    pub dropped_spans: u64,
}

impl ReportTotals {
    /// Accounts one span (any order).
    pub fn observe(&mut self, s: &Span) {
        self.spans += 1;
        let end = s.end_time_unix_nano.max(s.start_time_unix_nano);
        self.start_unix_nano = Some(
            self.start_unix_nano
                .map_or(s.start_time_unix_nano, |v| v.min(s.start_time_unix_nano)),
        );
        self.end_unix_nano = Some(self.end_unix_nano.map_or(end, |v| v.max(end)));
        let name = s.resource.service_name.as_str();
        let svc = match self.services.get_mut(name) {
            Some(svc) => svc,
            None => self.services.entry(name.to_string()).or_default(),
        };
        match s.kind {
            SpanKind::Server => {
                svc.server_spans += 1;
                svc.server_latency.add(s.duration_ns());
                self.observe_route(s);
            }
            SpanKind::Client => svc.client_spans += 1,
        }
        if let Some(key) = db_operation_key(s) {
            if let Some(t) = self.db_operations.get_mut(&key) {
                t.observe(s);
            } else if self.db_operations.len() >= MAX_DB_OPERATIONS {
                self.other_db_operations.observe(s);
            } else {
                self.db_operations.entry(key).or_default().observe(s);
            }
        }
    }

    fn observe_route(&mut self, s: &Span) {
        // Found by borrowed names: the names are copied only for a new route.
        if let Some(r) = self
            .routes
            .get_mut(s.resource.service_name.as_str())
            .and_then(|m| m.get_mut(s.name.as_str()))
        {
            r.observe(s);
            return;
        }
        if self.route_count >= MAX_ROUTES {
            self.other_routes.observe(s);
            return;
        }
        self.route_count += 1;
        self.routes
            .entry(s.resource.service_name.clone())
            .or_default()
            .entry(s.name.clone())
            .or_default()
            .observe(s);
    }

    /// Totals of a complete span set that the page lists in full (nothing left out).
    pub fn from_spans(spans: &[Span]) -> Self {
        let mut t = ReportTotals::default();
        let mut ids = std::collections::HashSet::new();
        for s in spans {
            t.observe(s);
            ids.insert(s.trace_id);
        }
        t.traces = ids.len() as u64;
        t.kept_traces = t.traces;
        t.kept_spans = t.spans;
        t
    }

    /// True when some traces are not listed on the page.
    pub fn is_partial(&self) -> bool {
        self.dropped_traces > 0 || self.dropped_spans > 0
    }

    /// The note the page shows when traces were left out, e.g. `showing 2000 of 81234
    /// traces: erroring and slowest first; 79234 traces left out`.
    pub fn left_out_note(&self) -> Option<String> {
        self.is_partial().then(|| {
            format!(
                "showing {} of {} traces: erroring and slowest first; {} traces left out",
                self.kept_traces, self.traces, self.dropped_traces
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podtrace_model::{Resource, SpanId, Status, TraceId};

    fn span(trace: u8, svc: &str, kind: SpanKind, start: u64, dur: u64) -> Span {
        Span {
            trace_id: TraceId([trace; 16]),
            span_id: SpanId([1; 8]),
            parent_span_id: None,
            trace_state: String::new(),
            flags: 1,
            name: "x".into(),
            kind,
            start_time_unix_nano: start,
            end_time_unix_nano: start + dur,
            attributes: vec![],
            status: Status::unset(),
            resource: Resource::new(svc),
        }
    }

    #[test]
    fn totals_count_kinds_range_and_latency() {
        let mut spans: Vec<Span> = (1..=100)
            .map(|i| span(1, "b", SpanKind::Server, 1000 + i, i))
            .collect();
        spans.push(span(2, "a", SpanKind::Client, 10, 5));
        let t = ReportTotals::from_spans(&spans);
        assert_eq!((t.spans, t.traces, t.kept_traces), (101, 2, 2));
        assert_eq!((t.start_unix_nano, t.end_unix_nano), (Some(10), Some(1200)));
        let b = &t.services["b"];
        assert_eq!((b.server_spans, b.client_spans), (100, 0));
        // Below 128 ns the histogram is exact.
        assert_eq!((b.p50_ns(), b.p99_ns()), (Some(50), Some(99)));
        assert_eq!(t.services["a"].p50_ns(), None);
        assert!(!t.is_partial() && t.left_out_note().is_none());
        let partial = ReportTotals {
            dropped_traces: 1,
            kept_traces: 1,
            ..t
        };
        assert_eq!(
            partial.left_out_note().as_deref(),
            Some("showing 1 of 2 traces: erroring and slowest first; 1 traces left out")
        );
    }
}
