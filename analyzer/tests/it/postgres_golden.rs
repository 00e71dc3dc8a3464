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
