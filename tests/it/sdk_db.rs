//! The apps' own OpenTelemetry SDK as the truth for database spans: one matcher shared by
//! the Redis, PostgreSQL and MySQL tests (`analyze_redis`, `analyze_postgres`,
//! `analyze_mysql`), so a fix of the comparison reaches every protocol.
//!
//! Every SDK CLIENT span of a system must have podtrace CLIENT spans for each operation it
//! stands for (a Redis pipeline is one SDK span of several commands): same
//! `db.operation.name` and `db.collection.name`, inside the SDK span's time (± the
//! socket/app difference), the same error status, under podtrace's SERVER span of the same
//! HTTP request (same trace id where the request carried a traceparent), each podtrace span
//! claimed once.

use std::collections::HashSet;
use std::path::Path;

use serde_json::Value;

use crate::support::SpanRow;

/// Socket times vs the app's: the SDK span encloses the statement's bytes, give or take.
const SLACK_NS: u64 = 5_000_000;

/// One span the OpenTelemetry SDK wrote (the apps' JSON-lines span exporter).
#[derive(Debug)]
pub struct SdkSpan {
    /// The span as written.
    pub raw: Value,
}

impl SdkSpan {
    /// A top-level string field (`name`, `kind`, `span_id`, ...).
    pub fn s(&self, k: &str) -> &str {
        self.raw[k].as_str().unwrap_or_default()
    }

    /// A top-level number field (`start`, `end`, in ns).
    pub fn t(&self, k: &str) -> u64 {
        self.raw[k].as_u64().unwrap_or_default()
    }

    /// A string attribute.
    pub fn attr(&self, k: &str) -> &str {
        self.raw["attributes"][k].as_str().unwrap_or_default()
    }
}

/// The SDK spans of a JSON-lines file.
pub fn read_sdk(path: &Path) -> Vec<SdkSpan> {
    std::fs::read_to_string(path)
        .expect("sdk spans")
        .lines()
        .map(|l| SdkSpan {
            raw: serde_json::from_str(l).expect("sdk span JSON"),
        })
        .collect()
}

/// A podtrace span attribute as text (numbers printed), empty when absent.
pub fn text(s: &SpanRow, key: &str) -> String {
    match s.attr(key) {
        Some(Value::String(v)) => v.clone(),
        Some(v) => v.to_string(),
        None => String::new(),
    }
}

/// The table an SDK statement names, found by the test itself (the word after the first
/// FROM, INTO, UPDATE or TABLE, `IF [NOT] EXISTS` passed over, without quotes or a
/// trailing `(`), not by podtrace's SQL lexer: the truth shares no code with what it checks.
pub fn sdk_collection(statement: &str) -> Option<String> {
    let words: Vec<&str> = statement.split_whitespace().collect();
    let at = words.iter().position(|w| {
        ["FROM", "INTO", "UPDATE", "TABLE"]
            .iter()
            .any(|k| w.eq_ignore_ascii_case(k))
    })?;
    let name = words[at + 1..]
        .iter()
        .find(|w| {
            !["IF", "NOT", "EXISTS"]
                .iter()
                .any(|k| w.eq_ignore_ascii_case(k))
        })?
        .split('(')
        .next()?
        .trim_matches(|c| c == '"' || c == '`');
    (!name.is_empty()).then(|| name.to_string())
}

/// Matched and total SDK spans of one database system, and the misses.
#[derive(Debug, Default)]
pub struct Tally {
    /// SDK spans with all their podtrace spans found.
    pub matched: usize,
    /// SDK spans of the system.
    pub total: usize,
    /// The SDK spans not matched.
    pub misses: Vec<Value>,
}

/// Matches the SDK's CLIENT spans of one system against podtrace's spans.
///
/// `wanted` gives, for an SDK span of the system, the (operation, collection) of each
/// podtrace span it stands for, or `None` for a span of another system. `systems` are the
/// `db.system.name` values podtrace may give the system (`mysql` or `mariadb`).
/// `path_attr` is the SDK SERVER span attribute holding the request's path (the Flask
/// instrumentation's `http.target` or `url.path`). `used` holds the podtrace spans claimed
/// so far (shared when several systems are matched on one run).
pub fn match_db(
    spans: &[SpanRow],
    sdk: &[SdkSpan],
    systems: &[&str],
    path_attr: &str,
    used: &mut HashSet<String>,
    wanted: impl Fn(&SdkSpan) -> Option<Vec<(String, String)>>,
) -> Tally {
    let by_id = |id: &str| sdk.iter().find(|s| s.s("span_id") == id);
    let ours = |id: &str| spans.iter().find(|s| s.span_id == id);
    let mut tally = Tally::default();
    for db in sdk.iter().filter(|s| s.s("kind") == "CLIENT") {
        let Some(wanted) = wanted(db) else {
            continue;
        };
        tally.total += 1;
        let error = db.raw["error"].as_bool().unwrap_or(false);
        let parent = by_id(db.s("parent_span_id"));
        let mut all = true;
        for (op, coll) in wanted {
            let found = spans.iter().find(|p| {
                p.kind == "client"
                    && systems.contains(&text(p, "db.system.name").as_str())
                    && !used.contains(&p.span_id)
                    && text(p, "db.operation.name") == op
                    && text(p, "db.collection.name") == coll
                    && p.raw["start_time_unix_nano"].as_u64().unwrap_or(0) + SLACK_NS
                        >= db.t("start")
                    && p.raw["end_time_unix_nano"].as_u64().unwrap_or(0) <= db.t("end") + SLACK_NS
                    && (p.raw["status"]["code"] == "error") == error
                    && match parent {
                        // Under podtrace's SERVER span of the same request.
                        Some(srv) => {
                            let path = srv.raw["attributes"][path_attr].as_str().unwrap_or("?");
                            // A request that carried a traceparent: the same trace id.
                            let propagated = !srv.s("parent_span_id").is_empty();
                            ours(&p.parent).is_some_and(|ps| {
                                ps.kind == "server" && text(ps, "url.path") == path
                            }) && (!propagated || p.trace_id == db.s("trace_id"))
                        }
                        None => p.parent.is_empty(),
                    }
            });
            match found {
                Some(p) => {
                    used.insert(p.span_id.clone());
                }
                None => all = false,
            }
        }
        if all {
            tally.matched += 1;
        } else {
            tally.misses.push(db.raw.clone());
        }
    }
    tally
}
