//! The capture summary: time range of the spans and the analyzer's statistics.
//!
//! When the report lists only some traces ([`ReportTotals`] given), the time range covers all
//! spans, and rows say how many spans and traces the report lists out of how many.
//!
//! The statistics arrive as JSON (`serde_json::to_value(&AnalysisStats)`), so counters the
//! analyzer adds later show up without a change here: scalars become rows, objects become
//! `key = value` lists. Counters that mean lost or ignored data (drops, ignored propagation
//! headers, orphans, parse errors, evictions, late records, unmatched messages) are marked
//! when they are not zero, and explained, so the reader knows where to look.

use std::fmt::Write as _;

use podtrace_model::Span;
use serde_json::Value;

use crate::escape::html;
use crate::totals::ReportTotals;
use crate::units::{duration, utc};

/// Keys whose non-zero values mean data was lost or not linked, with an explanation.
const WARN_KEYS: &[(&str, &str)] = &[
    (
        "recorder_drops",
        "events the recorder lost (ring buffer full, oversized payloads, ...)",
    ),
    (
        "ignored_headers",
        "propagation headers ignored, by family/reason (see docs/troubleshooting.md)",
    ),
    ("orphans", "spans whose parent span is not in the capture"),
    (
        "ambiguous_parents",
        "client calls whose parent was picked among several concurrent requests",
    ),
    (
        "parse_errors",
        "HTTP messages that could not be parsed, by reason",
    ),
    (
        "evictions",
        "state dropped because it outlived the analysis window",
    ),
    (
        "late_records",
        "records that arrived out of time order by more than the window",
    ),
    ("unmatched_requests", "requests that never got a response"),
    ("unmatched_responses", "responses with no recorded request"),
    (
        "bad_k8s_objects",
        "Kubernetes objects that could not be read",
    ),
    ("sampled_out", "spans dropped by sampling (not an error)"),
];

/// Display order of the analyzer's counters (any others follow, by name).
const ORDER: &[&str] = &[
    "records",
    "connections",
    "exchanges",
    "traces",
    "spans",
    "sampled_out",
    "orphans",
    "ambiguous_parents",
    "adopted_traces",
    "ignored_headers",
    "recorder_drops",
    "parse_errors",
    "unmatched_requests",
    "unmatched_responses",
    "evictions",
    "late_records",
    "duplicate_span_ids",
    "k8s_objects",
    "bad_k8s_objects",
];

fn is_nonzero(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => a.iter().any(is_nonzero),
        Value::Object(o) => o.values().any(is_nonzero),
    }
}

fn value_html(v: &Value) -> String {
    match v {
        Value::Object(o) if o.is_empty() => "none".into(),
        Value::Object(o) => {
            let mut out = String::from("<ul class=\"kv\">");
            for (k, v) in o {
                let _ = write!(out, "<li><code>{}</code> = {}</li>", html(k), value_html(v));
            }
            out.push_str("</ul>");
            out
        }
        Value::Array(a) if a.is_empty() => "none".into(),
        Value::Array(a) => a.iter().map(value_html).collect::<Vec<_>>().join(", "),
        Value::String(s) => html(s),
        other => html(&other.to_string()),
    }
}

/// The summary section's HTML, from the spans of the report.
pub fn summary_html(spans: &[Span], stats: &Value) -> String {
    summary_html_with_totals(spans, None, stats)
}

/// The summary section's HTML; with `totals`, the time range and counts cover all spans and
/// the rows say how much of it the report lists.
pub fn summary_html_with_totals(
    spans: &[Span],
    totals: Option<&ReportTotals>,
    stats: &Value,
) -> String {
    let mut out = String::from("<table class=\"grid summary\" id=\"summary-table\"><tbody>\n");
    let (start, end) = match totals {
        Some(t) => (t.start_unix_nano, t.end_unix_nano),
        None => (
            spans.iter().map(|s| s.start_time_unix_nano).min(),
            spans
                .iter()
                .map(|s| s.end_time_unix_nano.max(s.start_time_unix_nano))
                .max(),
        ),
    };
    match (start, end) {
        (Some(a), Some(b)) => {
            let _ = writeln!(
                out,
                "<tr><th>time range</th><td>{} → {} ({})</td><td></td></tr>",
                utc(a),
                utc(b),
                duration(b - a)
            );
        }
        _ => out.push_str("<tr><th>time range</th><td>no spans</td><td></td></tr>\n"),
    }
    match totals {
        Some(t) => {
            let (cls, note) = if t.is_partial() {
                (
                    " class=\"warn\"",
                    "the report lists the erroring and slowest traces first, whole; the \
                     services table and time range cover all spans",
                )
            } else {
                ("", "")
            };
            let _ = writeln!(
                out,
                "<tr{cls} data-key=\"report_spans\"><th>spans in this report</th><td>{} of {}</td><td class=\"note\">{note}</td></tr>",
                spans.len(),
                t.spans
            );
            let _ = writeln!(
                out,
                "<tr{cls} data-key=\"report_traces\"><th>traces in this report</th><td>{} of {} ({} left out)</td><td></td></tr>",
                t.kept_traces, t.traces, t.dropped_traces
            );
        }
        None => {
            let _ = writeln!(
                out,
                "<tr><th>spans in this report</th><td>{}</td><td></td></tr>",
                spans.len()
            );
        }
    }
    match stats {
        Value::Object(o) => {
            let mut entries: Vec<(&String, &Value)> = o.iter().collect();
            entries.sort_by_key(|(k, _)| {
                (
                    ORDER.iter().position(|o| o == k).unwrap_or(ORDER.len()),
                    k.as_str(),
                )
            });
            for (k, v) in entries {
                let note = WARN_KEYS.iter().find(|(w, _)| w == k).map(|(_, n)| *n);
                let warn = note.is_some() && k != "sampled_out" && is_nonzero(v);
                let cls = if warn { " class=\"warn\"" } else { "" };
                let _ = writeln!(
                    out,
                    "<tr{cls} data-key=\"{}\"><th>{}</th><td>{}</td><td class=\"note\">{}</td></tr>",
                    html(k),
                    html(&k.replace('_', " ")),
                    value_html(v),
                    if warn || (note.is_some() && is_nonzero(v)) {
                        html(note.unwrap_or(""))
                    } else {
                        String::new()
                    }
                );
            }
        }
        Value::Null => {}
        other => {
            let _ = writeln!(
                out,
                "<tr><th>statistics</th><td>{}</td><td></td></tr>",
                value_html(other)
            );
        }
    }
    out.push_str("</tbody></table>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_render_generically_with_warnings() {
        let stats = serde_json::json!({
            "records": 10,
            "orphans": 2,
            "ignored_headers": {"w3c/invalid": 3, "<x>": 1},
            "recorder_drops": {},
            "new_counter_from_the_future": 7,
        });
        let h = summary_html(&[], &stats);
        assert!(
            h.contains("<tr class=\"warn\" data-key=\"orphans\">"),
            "{h}"
        );
        assert!(h.contains("<tr class=\"warn\" data-key=\"ignored_headers\">"));
        assert!(h.contains("<code>w3c/invalid</code> = 3"));
        assert!(h.contains("<code>&lt;x&gt;</code> = 1"));
        assert!(h.contains("<tr data-key=\"recorder_drops\"><th>recorder drops</th><td>none</td>"));
        assert!(h.contains("new counter from the future</th><td>7</td>"));
        assert!(h.contains("no spans"));
        let pos = |k: &str| h.find(&format!("data-key=\"{k}\"")).expect(k);
        assert!(pos("records") < pos("orphans") && pos("orphans") < pos("ignored_headers"));
        assert!(pos("recorder_drops") < pos("new_counter_from_the_future"));
    }
}
