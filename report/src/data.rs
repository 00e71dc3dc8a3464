//! The trace data the page embeds as JSON and renders lazily in the browser.
//!
//! Spans are grouped by trace; each trace's spans come in tree order (a parent before its
//! children, siblings by start time) with their nesting depth, so the page draws a
//! waterfall without re-deriving the tree. Resources (service + Kubernetes attributes) are
//! stored once and referenced by index. Times are offsets in ns from the trace's start
//! (absolute epoch ns do not fit JavaScript numbers exactly); trace starts are µs since the
//! epoch. Traces are ordered erroring first, then slowest first.

use std::collections::{BTreeMap, HashMap};

use podtrace_model::{AttrValue, Resource, Span, SpanId, SpanKind, TraceId};
use serde::Serialize;

/// One resource (workload) as the page shows it.
#[derive(Debug, Serialize)]
pub struct ResourceRow {
    /// `service.name`.
    pub service: String,
    /// Other resource attributes as `[key, value]`.
    pub attrs: Vec<(String, String)>,
}

/// One span as the page shows it.
#[derive(Debug, Serialize)]
pub struct SpanRow {
    /// Span id (hex).
    pub id: String,
    /// Parent span id (hex), when the span has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// True when the parent id is set but no span of the trace has it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub orphan: bool,
    /// Span name.
    pub name: String,
    /// `server` or `client`.
    pub kind: &'static str,
    /// Index into the resource table.
    pub r: usize,
    /// Start, ns after the trace's start.
    pub off: u64,
    /// Duration, ns.
    pub dur: u64,
    /// Nesting depth in the waterfall (0 = root or orphan).
    pub depth: usize,
    /// Span status is an error.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub err: bool,
    /// Status message (errors only).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub msg: String,
    /// `http.response.status_code` or `rpc.grpc.status_code`, when present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<i64>,
    /// Attributes as `[key, value]` strings.
    pub attrs: Vec<(String, String)>,
}

/// One trace as the page shows it.
#[derive(Debug, Serialize)]
pub struct TraceRow {
    /// Trace id (hex).
    pub id: String,
    /// Start of the earliest span, µs since the Unix epoch.
    pub start_us: u64,
    /// End of the latest span minus start of the earliest, ns.
    pub dur: u64,
    /// Name of the first root span (or of the first span when there is no root).
    pub root: String,
    /// Service of that span.
    pub root_service: String,
    /// Spans with an error status.
    pub errors: usize,
    /// Distinct services.
    pub services: usize,
    /// The spans, in tree order.
    pub spans: Vec<SpanRow>,
}

/// Everything the page's script reads.
#[derive(Debug, Serialize)]
pub struct ReportData {
    /// Resource table.
    pub resources: Vec<ResourceRow>,
    /// Traces, erroring first, then slowest first.
    pub traces: Vec<TraceRow>,
}

fn attr_text(v: &AttrValue) -> String {
    v.to_string()
}

fn status_code(s: &Span) -> Option<i64> {
    ["http.response.status_code", "rpc.grpc.status_code"]
        .iter()
        .find_map(|k| match s.attribute(k) {
            Some(AttrValue::Int(v)) => Some(*v),
            _ => None,
        })
}

/// Orders one trace's spans into tree order with depths.
fn tree_order<'a>(spans: &[&'a Span]) -> Vec<(&'a Span, usize, bool)> {
    let ids: HashMap<SpanId, usize> = spans
        .iter()
        .enumerate()
        .map(|(i, s)| (s.span_id, i))
        .collect();
    let mut children: HashMap<usize, Vec<usize>> = HashMap::new();
    let mut tops = Vec::new();
    for (i, s) in spans.iter().enumerate() {
        match s.parent_span_id.and_then(|p| ids.get(&p)) {
            Some(&p) if p != i => children.entry(p).or_default().push(i),
            _ => tops.push(i),
        }
    }
    let key = |i: &usize| {
        let s = spans[*i];
        // At equal start the CLIENT (the sender) comes first.
        (
            s.start_time_unix_nano,
            u8::from(s.kind == SpanKind::Server),
            s.span_id,
        )
    };
    tops.sort_by_key(key);
    for c in children.values_mut() {
        c.sort_by_key(key);
    }
    let mut out = Vec::with_capacity(spans.len());
    let mut seen = vec![false; spans.len()];
    let mut stack: Vec<(usize, usize)> = tops.iter().rev().map(|&i| (i, 0)).collect();
    while let Some((i, depth)) = stack.pop() {
        if std::mem::replace(&mut seen[i], true) {
            continue;
        }
        let s = spans[i];
        let orphan =
            s.parent_span_id.is_some() && !s.parent_span_id.is_some_and(|p| ids.contains_key(&p));
        out.push((s, depth, orphan));
        if let Some(c) = children.get(&i) {
            stack.extend(c.iter().rev().map(|&c| (c, depth + 1)));
        }
    }
    // Spans in a parent cycle (not reachable from any top) are listed flat at the end.
    for (i, s) in spans.iter().enumerate() {
        if !seen[i] {
            out.push((s, 0, true));
        }
    }
    out
}

impl ReportData {
    /// Builds the page data from spans (any order).
    pub fn from_spans(spans: &[Span]) -> Self {
        let mut resources: Vec<ResourceRow> = Vec::new();
        let mut resource_index: HashMap<&Resource, usize> = HashMap::new();
        let mut by_trace: BTreeMap<TraceId, Vec<&Span>> = BTreeMap::new();
        for s in spans {
            by_trace.entry(s.trace_id).or_default().push(s);
            resource_index.entry(&s.resource).or_insert_with(|| {
                resources.push(ResourceRow {
                    service: s.resource.service_name.clone(),
                    attrs: s.resource.attributes.clone(),
                });
                resources.len() - 1
            });
        }
        let mut traces: Vec<TraceRow> = by_trace
            .into_iter()
            .map(|(id, group)| {
                let start = group
                    .iter()
                    .map(|s| s.start_time_unix_nano)
                    .min()
                    .unwrap_or(0);
                let end = group
                    .iter()
                    .map(|s| s.end_time_unix_nano.max(s.start_time_unix_nano))
                    .max()
                    .unwrap_or(start);
                let ordered = tree_order(&group);
                let root = ordered
                    .iter()
                    .find(|(s, _, _)| s.parent_span_id.is_none())
                    .or(ordered.first())
                    .map(|(s, _, _)| *s);
                let mut services: Vec<&str> = group
                    .iter()
                    .map(|s| s.resource.service_name.as_str())
                    .collect();
                services.sort_unstable();
                services.dedup();
                let rows: Vec<SpanRow> = ordered
                    .into_iter()
                    .map(|(s, depth, orphan)| SpanRow {
                        id: s.span_id.to_string(),
                        parent: s.parent_span_id.map(|p| p.to_string()),
                        orphan,
                        name: s.name.clone(),
                        kind: match s.kind {
                            SpanKind::Server => "server",
                            SpanKind::Client => "client",
                        },
                        r: resource_index.get(&s.resource).copied().unwrap_or(0),
                        off: s.start_time_unix_nano - start,
                        dur: s.duration_ns(),
                        depth,
                        err: s.status.is_error(),
                        msg: s.status.message.clone(),
                        code: status_code(s),
                        attrs: s
                            .attributes
                            .iter()
                            .map(|kv| (kv.key.to_string(), attr_text(&kv.value)))
                            .collect(),
                    })
                    .collect();
                TraceRow {
                    id: id.to_string(),
                    start_us: start / 1000,
                    dur: end - start,
                    root: root.map(|s| s.name.clone()).unwrap_or_default(),
                    root_service: root
                        .map(|s| s.resource.service_name.clone())
                        .unwrap_or_default(),
                    errors: rows.iter().filter(|r| r.err).count(),
                    services: services.len(),
                    spans: rows,
                }
            })
            .collect();
        traces.sort_by(|a, b| {
            (b.errors > 0)
                .cmp(&(a.errors > 0))
                .then(b.dur.cmp(&a.dur))
                .then(a.id.cmp(&b.id))
        });
        ReportData { resources, traces }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use podtrace_model::{KeyValue, Status};

    fn span(trace: u8, id: u8, parent: Option<u8>, start: u64, end: u64, svc: &str) -> Span {
        Span {
            trace_id: TraceId([trace; 16]),
            span_id: SpanId([id; 8]),
            parent_span_id: parent.map(|p| SpanId([p; 8])),
            trace_state: String::new(),
            flags: 1,
            name: format!("GET /{id}"),
            kind: SpanKind::Server,
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            attributes: vec![KeyValue::new("http.response.status_code", 200i64)],
            status: Status::unset(),
            resource: Resource::new(svc),
        }
    }

    #[test]
    fn traces_are_trees_sorted_errors_then_slowest() {
        let mut err = span(3, 9, None, 100, 150, "c");
        err.status = Status::error("HTTP 500");
        let spans = vec![
            span(1, 1, None, 1000, 5000, "a"),
            span(1, 3, Some(2), 1300, 1400, "c"),
            span(1, 2, Some(1), 1200, 2000, "b"),
            span(1, 4, Some(1), 1100, 1150, "b"),
            span(1, 5, Some(77), 1500, 1600, "d"),
            span(2, 6, None, 10, 100_000, "a"),
            err,
        ];
        let d = ReportData::from_spans(&spans);
        let ids: Vec<&str> = d.traces.iter().map(|t| &t.id[..2]).collect();
        assert_eq!(ids, ["03", "02", "01"], "erroring first, then slowest");
        let t = &d.traces[2];
        let order: Vec<(&str, usize, bool)> = t
            .spans
            .iter()
            .map(|s| (&s.id[..2], s.depth, s.orphan))
            .collect();
        assert_eq!(
            order,
            [
                ("01", 0, false),
                ("04", 1, false),
                ("02", 1, false),
                ("03", 2, false),
                ("05", 0, true)
            ]
        );
        assert_eq!((t.dur, t.start_us, t.services, t.errors), (4000, 1, 4, 0));
        assert_eq!(t.spans[3].off, 300);
        assert_eq!(t.spans[0].code, Some(200));
        assert_eq!(d.traces[0].errors, 1);
        assert_eq!(d.resources.len(), 4);
    }

    #[test]
    fn parent_cycles_do_not_loop() {
        let spans = vec![
            span(1, 1, Some(2), 0, 10, "a"),
            span(1, 2, Some(1), 0, 10, "a"),
        ];
        let d = ReportData::from_spans(&spans);
        assert_eq!(d.traces[0].spans.len(), 2);
    }
}
