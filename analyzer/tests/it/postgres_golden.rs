//! Golden test: real PostgreSQL traffic (tools/fixtures/postgres_driver.py: psycopg2's
//! simple query protocol and psycopg 3's extended protocol against PostgreSQL 15 —
//! prepared statements, pipelines, a failing query, a pipeline whose second statement
//! fails, an explicit transaction, COPY in and out, a large result) recorded with tcpdump
//! on loopback (fixtures/postgres/postgres.pcap), imported with podtrace-import (both
//! sockets), analysed and compared with the checked-in outputs (spans.json, graph.dot,
//! stats.json) and with what the driver sent (statements.txt: operation, collection,
//! outcome per statement, in order). `UPDATE_GOLDEN=1` rewrites the golden files;
//! `tools/fixtures/record_postgres.sh` re-records the traffic.

use crate::golden_support;

use golden_support::*;
use podtrace_analyzer::{analyze, spans_to_json, Analysis, AnalyzeOptions};
use podtrace_model::{Span, SpanKind, StatusCode};

fn analysis() -> Analysis {
    analyze(
        import_records("postgres", "postgres.pcap").into_iter(),
        &AnalyzeOptions::default(),
    )
    .expect("analyze")
}

/// What the driver sent: (operation, collection, outcome) per statement, in order.
fn statements() -> Vec<(String, Option<String>, String)> {
    std::fs::read_to_string(fixtures().join("postgres/statements.txt"))
        .expect("statements.txt")
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!(f.len(), 3, "{l}");
            let coll = (f[1] != "-").then(|| f[1].to_string());
            (f[0].to_string(), coll, f[2].to_string())
        })
        .collect()
}

#[test]
fn postgres_matches_golden_outputs() {
    let a = analysis();
    check_golden(
        "postgres",
        "spans.json",
        &spans_to_json(&a.spans).expect("json"),
    );
    check_golden("postgres", "graph.dot", &a.graph.to_dot());
    let mut stats = serde_json::to_string_pretty(&a.stats).expect("stats json");
    stats.push('\n');
    check_golden("postgres", "stats.json", &stats);
}

/// The outcome a span shows: `ok`, `error` (an ErrorResponse) or `aborted` (skipped by the
/// server after an earlier error of its batch).
fn outcome(s: &Span) -> &'static str {
    match (s.status.code, attr_str(s, "db.response.status_code")) {
        (StatusCode::Error, Some(_)) => "error",
        (StatusCode::Error, None) => "aborted",
        _ => "ok",
    }
}

#[test]
fn one_client_and_one_server_span_per_statement_sent() {
    let a = analysis();
    assert!(a.stats.parse_errors.is_empty(), "{}", a.stats);
    assert_eq!(a.stats.unmatched_requests, 0, "{}", a.stats);
    assert_eq!(a.stats.unmatched_responses, 0, "{}", a.stats);
    let sent = statements();
    for kind in [SpanKind::Client, SpanKind::Server] {
        let mut spans: Vec<&Span> = a.spans.iter().filter(|s| s.kind == kind).collect();
        spans.sort_by_key(|s| s.start_time_unix_nano);
        let seen: Vec<(String, Option<String>, String)> = spans
            .iter()
            .map(|s| {
                (
                    attr_str(s, "db.operation.name").unwrap_or("").to_string(),
                    attr_str(s, "db.collection.name").map(str::to_string),
                    outcome(s).to_string(),
                )
            })
            .collect();
        assert_eq!(
            seen, sent,
            "{kind:?} spans, in order, as the driver sent them"
        );
        for s in &spans {
            assert_eq!(attr_str(s, "db.system.name"), Some("postgresql"));
            assert_eq!(attr_str(s, "db.namespace"), Some("shop"));
            assert_eq!(attr_str(s, "server.address"), Some("127.0.0.1"));
            assert_eq!(attr_int(s, "server.port"), Some(15432));
            let want = match attr_str(s, "db.collection.name") {
                Some(c) => format!("{} {c}", attr_str(s, "db.operation.name").unwrap_or("")),
                None => attr_str(s, "db.operation.name").unwrap_or("").to_string(),
            };
            assert_eq!(s.name, want);
        }
    }
    // Each SERVER span is the child of its CLIENT span, in its trace.
    for s in a.spans.iter().filter(|s| s.kind == SpanKind::Server) {
        let parent = a
            .spans
            .iter()
            .find(|c| c.kind == SpanKind::Client && Some(c.span_id) == s.parent_span_id)
            .expect("the CLIENT span is the parent");
        assert_eq!(parent.trace_id, s.trace_id);
        assert_eq!(parent.name, s.name);
    }
}

#[test]
fn query_text_errors_and_rows() {
    let a = analysis();
    let client: Vec<&Span> = a
        .spans
        .iter()
        .filter(|s| s.kind == SpanKind::Client)
        .collect();
    let texts: Vec<&str> = client
        .iter()
        .filter_map(|s| attr_str(s, "db.query.text"))
        .collect();
    // psycopg2 interpolates parameters: the literals are hidden. psycopg 3 sends them
    // apart ($1): the text is as prepared.
    assert!(texts.contains(&"INSERT INTO items (id, name, qty) VALUES (?, ?, ?)"));
    assert!(texts.contains(&"SELECT name, qty FROM items WHERE id = ?"));
    assert!(texts.contains(&"SELECT name FROM items WHERE id = $1"));
    assert!(
        !texts.iter().any(|t| t.contains("apple")),
        "no literal survives: {texts:?}"
    );
    // The failing simple query: SQLSTATE 42P01 (undefined table).
    let missing = client
        .iter()
        .find(|s| attr_str(s, "db.collection.name") == Some("missing_table"))
        .expect("the failing query");
    assert_eq!(attr_str(missing, "db.response.status_code"), Some("42P01"));
    assert!(missing.status.message.contains("does not exist"));
    // The pipeline's duplicate key: 23505, and the skipped UPDATE after it.
    assert!(client
        .iter()
        .any(|s| attr_str(s, "db.response.status_code") == Some("23505")));
    // The large result: 300 rows counted, not kept.
    assert!(client
        .iter()
        .any(|s| attr_int(s, "db.response.returned_rows") == Some(300)));
    // The graph: one edge client → server, every CLIENT span a call, errors counted.
    let errors = client
        .iter()
        .filter(|s| s.status.code == StatusCode::Error)
        .count();
    let edge = a.graph.graph.edge_weights().next().expect("one edge");
    assert_eq!(
        (edge.count, edge.errors),
        (client.len() as u64, errors as u64)
    );
}

/// The first table of a statement the SDK recorded, worked out here (not by podtrace's
/// lexer): the word after the first `FROM`, `INTO`, `UPDATE` or `TABLE` (`IF [NOT] EXISTS`
/// passed over), without quotes or a trailing `(`; `None` without one.
fn sdk_collection(statement: &str) -> Option<String> {
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
        .trim_matches('"');
    (!name.is_empty()).then(|| name.to_string())
}

/// fixtures/db-app: a driver (127.0.0.2) → a Flask app (127.0.0.1:18092) that queries
/// PostgreSQL (127.0.0.4:15432, psycopg2) and Redis (127.0.0.3:16381, redis-py) for each
/// request (tools/fixtures/db_app.py); `sdk.jsonl`: the spans the OpenTelemetry SDK
/// (opentelemetry-instrumentation-flask, -psycopg2, -redis) wrote in the same run.
fn app_analysis() -> Analysis {
    analyze(
        import_records("db-app", "db-app.pcap").into_iter(),
        &AnalyzeOptions::default(),
    )
    .expect("analyze")
}

#[test]
fn db_app_matches_golden_outputs() {
    let a = app_analysis();
    check_golden(
        "db-app",
        "spans.json",
        &spans_to_json(&a.spans).expect("json"),
    );
    check_golden("db-app", "graph.dot", &a.graph.to_dot());
}

/// One trace per request: the app's SERVER span of each order request has its PostgreSQL
/// and its Redis CLIENT spans as children, in its trace, inside its time.
#[test]
fn db_app_one_trace_per_request_with_the_database_calls_under_it() {
    let a = app_analysis();
    assert!(a.stats.parse_errors.is_empty(), "{}", a.stats);
    let orders: Vec<&Span> = a
        .spans
        .iter()
        .filter(|s| {
            s.kind == SpanKind::Server
                && attr_str(s, "url.path").is_some_and(|p| p.starts_with("/order/"))
        })
        .collect();
    assert_eq!(orders.len(), 7);
    for srv in orders {
        let children: Vec<&Span> = a
            .spans
            .iter()
            .filter(|c| c.parent_span_id == Some(srv.span_id))
            .collect();
        // SELECT, SELECT (psycopg 3), UPDATE; GET, INCRBY, EXPIRE (the first request also carries redis-py's
        // connection handshake: HELLO, CLIENT SETINFO...).
        let mut calls: Vec<(&str, &str)> = children
            .iter()
            .filter_map(|c| Some((attr_str(c, "db.system.name")?, c.name.as_str())))
            .filter(|(_, n)| !matches!(*n, "HELLO" | "CLIENT"))
            .collect();
        calls.sort_unstable();
        assert_eq!(
            calls,
            [
                ("postgresql", "SELECT orders"),
                ("postgresql", "SELECT orders"),
                ("postgresql", "UPDATE orders"),
                ("redis", "EXPIRE"),
                ("redis", "GET"),
                ("redis", "INCRBY")
            ]
        );
        for c in &children {
            assert_eq!(c.kind, SpanKind::Client);
            assert_eq!(c.trace_id, srv.trace_id);
            assert!(c.start_time_unix_nano >= srv.start_time_unix_nano);
            assert!(c.end_time_unix_nano <= srv.end_time_unix_nano);
        }
    }
    // The graph: the app calls both databases.
    let dot = a.graph.to_dot();
    assert!(dot.contains("\"127.0.0.1\" -> \"127.0.0.4\""), "{dot}");
    assert!(dot.contains("\"127.0.0.1\" -> \"127.0.0.3\""), "{dot}");
}

/// The SDK as the truth, offline: every database span the SDK wrote during the recording
/// has a podtrace CLIENT span with the same system and operation (and, for PostgreSQL,
/// collection), at the same time (± 5 ms), with the same error status, under podtrace's
/// SERVER span of the same request (same trace id where the request carried a
/// traceparent), or without a parent when the SDK's has none. Redis pipelines are one SDK
/// span of several commands.
#[test]
fn db_app_every_sdk_database_span_has_a_podtrace_client_span() {
    let a = app_analysis();
    let sdk: Vec<serde_json::Value> = std::fs::read_to_string(fixtures().join("db-app/sdk.jsonl"))
        .expect("sdk.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("SDK span JSON"))
        .collect();
    let s = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
    let by_id = |id: &str| sdk.iter().find(|v| v["span_id"] == id);
    let ours = |id: Option<podtrace_model::SpanId>| a.spans.iter().find(|p| Some(p.span_id) == id);
    let slack = 5_000_000;
    let mut used = std::collections::HashSet::new();
    let mut tally = std::collections::BTreeMap::<String, (usize, usize)>::new();
    let mut misses = Vec::new();
    for db in sdk.iter().filter(|v| v["kind"] == "CLIENT") {
        let system = db["attributes"]["db.system"].as_str().unwrap_or_default();
        let statement = db["attributes"]["db.statement"]
            .as_str()
            .unwrap_or_default();
        let wanted: Vec<(String, Option<String>)> = match system {
            "postgresql" => vec![(
                s(db, "name").to_ascii_uppercase(),
                sdk_collection(statement),
            )],
            "redis" => s(db, "name")
                .split(' ')
                .map(|op| (op.to_string(), None))
                .collect(),
            _ => continue,
        };
        let t = tally.entry(system.to_string()).or_default();
        t.1 += 1;
        let error = db["error"].as_bool().unwrap_or(false);
        let parent = by_id(&s(db, "parent_span_id"));
        let (start, end) = (
            db["start"].as_u64().unwrap_or(0),
            db["end"].as_u64().unwrap_or(0),
        );
        let mut all = true;
        for (op, coll) in wanted {
            let found = a.spans.iter().find(|p| {
                p.kind == SpanKind::Client
                    && !used.contains(&p.span_id)
                    && attr_str(p, "db.system.name") == Some(system)
                    && attr_str(p, "db.operation.name") == Some(op.as_str())
                    && attr_str(p, "db.collection.name") == coll.as_deref()
                    && p.start_time_unix_nano + slack >= start
                    && p.end_time_unix_nano <= end + slack
                    && (p.status.code == StatusCode::Error) == error
                    && match parent {
                        Some(srv) => {
                            let target = srv["attributes"]["http.target"].as_str();
                            let propagated = !s(srv, "parent_span_id").is_empty();
                            ours(p.parent_span_id).is_some_and(|ps| {
                                ps.kind == SpanKind::Server && attr_str(ps, "url.path") == target
                            }) && (!propagated || p.trace_id.to_string() == s(db, "trace_id"))
                        }
                        None => p.parent_span_id.is_none(),
                    }
            });
            match found {
                Some(p) => {
                    used.insert(p.span_id);
                }
                None => all = false,
            }
        }
        if all {
            t.0 += 1;
        } else {
            misses.push(db.clone());
        }
    }
    eprintln!("db-app sdk-truth: {tally:?} (matched, total) per system");
    assert!(misses.is_empty(), "unmatched SDK spans: {misses:#?}");
    // DROP, CREATE, 8 INSERTs, 3 per order request (2 psycopg2, 1 psycopg 3), the failing
    // one; a GET and a pipeline
    // per order request.
    assert_eq!(tally["postgresql"], (32, 32));
    assert_eq!(tally["redis"], (14, 14));
}
