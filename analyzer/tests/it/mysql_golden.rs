//! Golden test: real MariaDB traffic (tools/fixtures/mysql_driver.py against a Debian
//! MariaDB 10.11: PyMySQL text queries — DDL, a batched INSERT, SELECTs, a 500-row and a
//! 200 KB result set, an UPDATE, a syntax error, COM_INIT_DB, COM_PING — then
//! mysql.connector prepared statements) recorded with tcpdump on loopback
//! (fixtures/mysql/mysql.pcap), imported with podtrace-import (both sockets), analysed and
//! compared with the checked-in outputs (spans.json, graph.dot, stats.json).
//! `UPDATE_GOLDEN=1` rewrites them; `tools/fixtures/record_mysql.sh` re-records the traffic
//! and the number of answered commands the clients sent (fixtures/mysql/commands.txt).

use super::golden_support::*;
use podtrace_analyzer::{analyze, spans_to_json, Analysis, AnalyzeOptions};
use podtrace_model::{Span, SpanKind, StatusCode};

fn analysis() -> Analysis {
    analyze(
        import_records("mysql", "mysql.pcap").into_iter(),
        &AnalyzeOptions::default(),
    )
    .expect("analyze")
}

/// The answered commands the clients sent while recorded (counted where they send them).
fn commands() -> usize {
    std::fs::read_to_string(fixtures().join("mysql/commands.txt"))
        .expect("commands.txt")
        .trim()
        .parse()
        .expect("a number")
}

#[test]
fn mysql_matches_golden_outputs() {
    let a = analysis();
    check_golden(
        "mysql",
        "spans.json",
        &spans_to_json(&a.spans).expect("json"),
    );
    check_golden("mysql", "graph.dot", &a.graph.to_dot());
    let mut stats = serde_json::to_string_pretty(&a.stats).expect("stats json");
    stats.push('\n');
    check_golden("mysql", "stats.json", &stats);
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
        assert_eq!(attr_str(s, "db.system.name"), Some("mariadb"));
        assert_eq!(attr_int(s, "server.port"), Some(13306));
        assert_eq!(attr_str(s, "server.address"), Some("127.0.0.1"));
        let op = attr_str(s, "db.operation.name").expect("operation");
        match attr_str(s, "db.collection.name") {
            Some(c) => assert_eq!(s.name, format!("{op} {c}")),
            None => assert_eq!(s.name, op),
        }
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
    // Text queries: literals as `?`, the collection, the rows.
    let alice = find("SELECT id, name FROM users WHERE name = ?");
    assert_eq!(alice.name, "SELECT users");
    assert_eq!(attr_str(alice, "db.namespace"), Some("shop"));
    assert_eq!(attr_int(alice, "db.response.returned_rows"), Some(1));
    assert_eq!(
        attr_int(
            find("SELECT seq FROM seq_1_to_500"),
            "db.response.returned_rows"
        ),
        Some(500)
    );
    assert_eq!(
        attr_int(
            find("SELECT REPEAT(?, ?) AS big"),
            "db.response.returned_rows"
        ),
        Some(1)
    );
    assert_eq!(
        find("INSERT INTO users (id, name, email) VALUES (?, ?, ?),(?, ?, ?),(?, ?, ?)").name,
        "INSERT users"
    );
    find("UPDATE users SET email = ? WHERE id = ?");
    // COM_INIT_DB changes the namespace of what follows.
    let count = find("SELECT COUNT(*) FROM shop.users");
    assert_eq!(attr_str(count, "db.namespace"), Some("mysql"));
    assert_eq!(count.name, "SELECT shop.users");
    assert!(client.iter().any(|s| s.name == "USE"));
    assert!(client.iter().any(|s| s.name == "PING"));
    // mysql.connector resets a prepared statement before executing it again.
    assert!(client.iter().any(|s| s.name == "STMT_RESET"));
    // Prepared statements: the PREPARE, then each EXECUTE named by its SQL.
    let prepared = "SELECT name FROM users WHERE id = ?";
    let named: Vec<&&Span> = client.iter().filter(|s| query(s) == prepared).collect();
    assert_eq!(
        named.iter().filter(|s| s.name == "PREPARE users").count(),
        1,
        "{named:#?}"
    );
    let executes: Vec<&&&Span> = named.iter().filter(|s| s.name == "SELECT users").collect();
    assert_eq!(executes.len(), 2);
    for e in executes {
        assert_eq!(attr_int(e, "db.response.returned_rows"), Some(1));
    }
    assert!(client.iter().any(|s| s.name == "INSERT users"
        && query(s) == "INSERT INTO users (id, name, email) VALUES (?, ?, ?)"));
    // The syntax error: an ERROR span on both sides, code 1064.
    let errors: Vec<&Span> = a
        .spans
        .iter()
        .filter(|s| s.status.code == StatusCode::Error)
        .collect();
    assert_eq!(errors.len(), 2, "{errors:#?}");
    for e in &errors {
        assert_eq!(e.name, "SELEC users");
        assert_eq!(attr_str(e, "db.response.status_code"), Some("1064"));
        assert!(e.status.message.starts_with("1064 (42000): "), "{e:#?}");
    }
    // The graph: every CLIENT span is a call of the edge, its error counted.
    let edge = a.graph.graph.edge_weights().next().expect("one edge");
    assert_eq!((edge.count, edge.errors), (client.len() as u64, 1));
}
