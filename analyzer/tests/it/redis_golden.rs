//! Golden test: real Redis traffic (tools/fixtures/redis_driver.py, redis-py against a
//! Debian redis-server: single commands, a pipeline, a MULTI/EXEC transaction, a WRONGTYPE
//! error, a client on database 2) recorded with tcpdump on loopback
//! (fixtures/redis/redis.pcap), imported with podtrace-import (both sockets), analysed and
//! compared with the checked-in outputs (spans.json, graph.dot, stats.json).
//! `UPDATE_GOLDEN=1` rewrites them; `tools/fixtures/record_redis.sh` re-records the traffic
//! and the number of commands redis-py sent (fixtures/redis/commands.txt).

use crate::golden_support;

use golden_support::*;
use podtrace_analyzer::{analyze, spans_to_json, Analysis, AnalyzeOptions};
use podtrace_model::{Span, SpanKind, StatusCode};

fn analysis() -> Analysis {
    analyze(
        import_records("redis", "redis.pcap").into_iter(),
        &AnalyzeOptions::default(),
    )
    .expect("analyze")
}

/// The commands redis-py sent while recorded (counted in its RESP serializer).
fn commands() -> usize {
    std::fs::read_to_string(fixtures().join("redis/commands.txt"))
        .expect("commands.txt")
        .trim()
        .parse()
        .expect("a number")
}

#[test]
fn redis_matches_golden_outputs() {
    let a = analysis();
    check_golden(
        "redis",
        "spans.json",
        &spans_to_json(&a.spans).expect("json"),
    );
    check_golden("redis", "graph.dot", &a.graph.to_dot());
    let mut stats = serde_json::to_string_pretty(&a.stats).expect("stats json");
    stats.push('\n');
    check_golden("redis", "stats.json", &stats);
}

#[test]
fn one_client_and_one_server_span_per_command() {
    let a = analysis();
    assert!(a.stats.parse_errors.is_empty(), "{}", a.stats);
    assert_eq!(a.stats.unmatched_requests, 0, "{}", a.stats);
    assert_eq!(a.stats.unmatched_responses, 0, "{}", a.stats);
    let of = |k: SpanKind| -> Vec<&Span> { a.spans.iter().filter(|s| s.kind == k).collect() };
    let (client, server) = (of(SpanKind::Client), of(SpanKind::Server));
    assert_eq!(client.len(), commands());
    assert_eq!(server.len(), commands());
    for s in &a.spans {
        assert_eq!(attr_str(s, "db.system.name"), Some("redis"));
        assert_eq!(attr_str(s, "db.operation.name"), Some(s.name.as_str()));
        assert_eq!(attr_int(s, "server.port"), Some(16379));
        assert_eq!(attr_str(s, "server.address"), Some("127.0.0.1"));
    }
    // Each SERVER span is the child of its CLIENT span, in its trace.
    for s in &server {
        let parent = client
            .iter()
            .find(|c| Some(c.span_id) == s.parent_span_id)
            .expect("the CLIENT span is the parent");
        assert_eq!(parent.trace_id, s.trace_id);
        assert_eq!(parent.name, s.name);
    }
    let query = |s: &Span| attr_str(s, "db.query.text").unwrap_or_default().to_string();
    let find = |q: &str| {
        *client
            .iter()
            .find(|s| query(s) == q)
            .unwrap_or_else(|| panic!("no CLIENT span {q}"))
    };
    assert_eq!(attr_str(find("SET user:1 ?"), "db.namespace"), Some("0"));
    assert_eq!(attr_str(find("SET other ?"), "db.namespace"), Some("2"));
    for q in [
        "GET user:1",
        "SET counter ?",
        "INCRBY counter ?",
        "RPUSH list ? ?",
        "MULTI",
    ] {
        find(q);
    }
    for q in ["HSET h ? ?", "HGET h ?", "EXEC"] {
        find(q);
    }
    // redis-py 8 speaks RESP3 (HELLO 3) and announces itself with CLIENT subcommands the
    // recorded Redis 7.0 rejects (`-ERR unknown subcommand`): those and the WRONGTYPE reply
    // of the LPUSH are the errors, on both sides.
    assert!(client.iter().any(|s| s.name == "HELLO"));
    let errors: Vec<&Span> = a
        .spans
        .iter()
        .filter(|s| s.status.code == StatusCode::Error)
        .collect();
    let wrongtype: Vec<&&Span> = errors
        .iter()
        .filter(|e| attr_str(e, "db.response.status_code") == Some("WRONGTYPE"))
        .collect();
    assert_eq!(wrongtype.len(), 2, "{errors:#?}");
    for e in &wrongtype {
        assert_eq!(e.name, "LPUSH");
        assert!(e.status.message.starts_with("WRONGTYPE"));
    }
    for e in &errors {
        assert!(
            e.name == "LPUSH"
                || (e.name == "CLIENT" && attr_str(e, "db.response.status_code") == Some("ERR")),
            "{e:#?}"
        );
    }
    // The graph: every CLIENT span is a call of the edge, its errors counted.
    let client_errors = errors.iter().filter(|e| e.kind == SpanKind::Client).count();
    let edge = a.graph.graph.edge_weights().next().expect("one edge");
    assert_eq!(
        (edge.count, edge.errors),
        (client.len() as u64, client_errors as u64)
    );
}

/// fixtures/redis-app: a driver (127.0.0.2) → an HTTP app (127.0.0.1:18090) that reads and
/// updates Redis (127.0.0.3:16379) while serving; `counts.txt`: requests, Redis commands
/// sent while serving them.
fn app_analysis() -> (Analysis, usize, usize) {
    let a = analyze(
        import_records("redis-app", "redis-app.pcap").into_iter(),
        &AnalyzeOptions::default(),
    )
    .expect("analyze");
    let counts =
        std::fs::read_to_string(fixtures().join("redis-app/counts.txt")).expect("counts.txt");
    let n: Vec<usize> = counts
        .split_whitespace()
        .map(|x| x.parse().expect("a number"))
        .collect();
    (a, n[0], n[1])
}

#[test]
fn redis_app_matches_golden_outputs() {
    let (a, _, _) = app_analysis();
    check_golden(
        "redis-app",
        "spans.json",
        &spans_to_json(&a.spans).expect("json"),
    );
    check_golden("redis-app", "graph.dot", &a.graph.to_dot());
}

#[test]
fn redis_calls_are_children_of_the_app_server_span_serving_them() {
    let (a, requests, commands) = app_analysis();
    assert!(a.stats.parse_errors.is_empty(), "{}", a.stats);
    let app_server: Vec<&Span> = a
        .spans
        .iter()
        .filter(|s| s.kind == SpanKind::Server && attr_str(s, "http.request.method").is_some())
        .collect();
    assert_eq!(app_server.len(), requests);
    let redis_client =
        |s: &&Span| s.kind == SpanKind::Client && attr_str(s, "db.system.name") == Some("redis");
    // Every Redis call made while serving a request is that request's SERVER span's child,
    // in its trace (one trace per driver request).
    let mut under = 0;
    for srv in &app_server {
        let children: Vec<&Span> = a
            .spans
            .iter()
            .filter(redis_client)
            .filter(|c| c.parent_span_id == Some(srv.span_id))
            .collect();
        assert!(!children.is_empty(), "{srv:#?}");
        for c in &children {
            assert_eq!(c.trace_id, srv.trace_id);
            assert!(c.start_time_unix_nano >= srv.start_time_unix_nano);
            assert!(c.end_time_unix_nano <= srv.end_time_unix_nano);
            // The Redis side's SERVER span continues the trace.
            assert!(a.spans.iter().any(|s| s.kind == SpanKind::Server
                && s.parent_span_id == Some(c.span_id)
                && s.trace_id == c.trace_id));
        }
        under += children.len();
    }
    assert_eq!(under, commands, "every Redis command sent while serving");
    // The request whose Redis call failed: an ERROR Redis span under a 500.
    let failed = app_server
        .iter()
        .find(|s| attr_int(s, "http.response.status_code") == Some(500))
        .expect("the 500");
    assert!(a
        .spans
        .iter()
        .any(|c| c.parent_span_id == Some(failed.span_id)
            && c.name == "LPUSH"
            && c.status.code == StatusCode::Error));
    // The graph: the app calls Redis.
    assert!(a.graph.to_dot().contains("\"127.0.0.1\" -> \"127.0.0.3\""));
}
