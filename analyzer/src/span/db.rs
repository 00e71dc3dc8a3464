//! Database spans by the OpenTelemetry database semantic conventions: `db.system.name`,
//! `db.operation.name`, `db.namespace`, `db.query.text` (sanitized: keys kept, values as
//! `?`), `db.response.status_code` on errors, `server.address` / `server.port`; the span is
//! named `{db.operation.name}` (Redis) or `{db.operation.name} {db.collection.name}` (SQL).

use std::net::SocketAddr;

use podtrace_model::{KeyValue, Status};

use super::addr;
use crate::context::Family;
use crate::protocol::mysql::{MysqlCommand, MysqlReply};
use crate::protocol::postgres::{PostgresQuery, PostgresResult};
use crate::protocol::redis::{RedisCommand, RedisReply};

/// Longest error text kept in a span status.
const MAX_STATUS_MESSAGE: usize = 256;

/// Name, attributes and status of a Redis command whose server end is `server` and whose
/// socket's peer is `peer` (the same rules on the CLIENT and the SERVER side).
pub(super) fn redis_span(
    server: Option<SocketAddr>,
    peer: Option<SocketAddr>,
    cmd: RedisCommand,
    reply: Option<&RedisReply>,
    family: Option<Family>,
) -> (String, Vec<KeyValue>, Status) {
    let name = cmd.operation.clone();
    let mut attrs = Vec::with_capacity(12);
    attrs.push(KeyValue::new("db.system.name", "redis"));
    attrs.push(KeyValue::new("db.operation.name", cmd.operation));
    attrs.push(KeyValue::new("db.namespace", cmd.database.to_string()));
    if let Some(q) = cmd.query {
        attrs.push(KeyValue::new("db.query.text", q));
    }
    if let Some(code) = reply.and_then(|r| r.error_code()) {
        attrs.push(KeyValue::new("db.response.status_code", code.to_string()));
    }
    push_connection(&mut attrs, server, peer, family);
    let status = match reply {
        Some(RedisReply { error: Some(e), .. }) => Status::error(cut(e)),
        Some(RedisReply {
            nested_errors: n @ 1..,
            first_nested_error,
            ..
        }) => Status::error(format!(
            "{n} queued command(s) failed: {}",
            cut(first_nested_error.as_deref().unwrap_or(""))
        )),
        _ => Status::unset(),
    };
    (name, attrs, status)
}

/// Name, attributes and status of a MySQL / MariaDB command (the same rules on the
/// CLIENT and the SERVER side): `db.system.name` `mariadb` when the server's greeting says
/// MariaDB, else `mysql`; the span is named `{db.operation.name} {db.collection.name}`, or
/// `{db.operation.name}` without a collection; an ERR reply is an ERROR status with its
/// code as `db.response.status_code`.
pub(super) fn mysql_span(
    server: Option<SocketAddr>,
    peer: Option<SocketAddr>,
    cmd: MysqlCommand,
    reply: Option<&MysqlReply>,
    family: Option<Family>,
) -> (String, Vec<KeyValue>, Status) {
    let name = match &cmd.collection {
        Some(c) => format!("{} {c}", cmd.operation),
        None => cmd.operation.clone(),
    };
    let mut attrs = Vec::with_capacity(14);
    let system = if cmd.mariadb { "mariadb" } else { "mysql" };
    attrs.push(KeyValue::new("db.system.name", system));
    attrs.push(KeyValue::new("db.operation.name", cmd.operation));
    if let Some(c) = cmd.collection {
        attrs.push(KeyValue::new("db.collection.name", c));
    }
    if let Some(ns) = cmd.database {
        attrs.push(KeyValue::new("db.namespace", ns));
    }
    if let Some(q) = cmd.query {
        attrs.push(KeyValue::new("db.query.text", q));
    }
    if let Some(code) = reply.and_then(|r| r.error_code) {
        attrs.push(KeyValue::new("db.response.status_code", code.to_string()));
    }
    if let Some(rows) = reply.and_then(|r| r.rows) {
        attrs.push(KeyValue::new(
            "db.response.returned_rows",
            i64::try_from(rows).unwrap_or(i64::MAX),
        ));
    }
    push_connection(&mut attrs, server, peer, family);
    let status = match reply {
        Some(MysqlReply {
            error_code: Some(code),
            sql_state,
            message,
            ..
        }) => {
            let state = sql_state
                .as_deref()
                .map(|s| format!(" ({s})"))
                .unwrap_or_default();
            Status::error(cut(&format!(
                "{code}{state}: {}",
                message.as_deref().unwrap_or("")
            )))
        }
        _ => Status::unset(),
    };
    (name, attrs, status)
}

/// Name, attributes and status of a PostgreSQL query or execution (the same rules on the
/// CLIENT and the SERVER side): `db.system.name` `postgresql`; the span is named
/// `{db.operation.name} {db.collection.name}`, `{db.operation.name}` without a collection,
/// `postgresql` when the statement was not seen; an `ErrorResponse` is an ERROR status
/// with its SQLSTATE as `db.response.status_code`, and so is an execution the server
/// skipped after an earlier error of its batch.
pub(super) fn postgres_span(
    server: Option<SocketAddr>,
    peer: Option<SocketAddr>,
    q: PostgresQuery,
    result: Option<&PostgresResult>,
    family: Option<Family>,
) -> (String, Vec<KeyValue>, Status) {
    let name = match (&q.operation, &q.collection) {
        (Some(op), Some(c)) => format!("{op} {c}"),
        (Some(op), None) => op.clone(),
        (None, _) => "postgresql".to_string(),
    };
    let mut attrs = Vec::with_capacity(14);
    attrs.push(KeyValue::new("db.system.name", "postgresql"));
    if let Some(op) = q.operation {
        attrs.push(KeyValue::new("db.operation.name", op));
    }
    if let Some(c) = q.collection {
        attrs.push(KeyValue::new("db.collection.name", c));
    }
    if let Some(ns) = q.database {
        attrs.push(KeyValue::new("db.namespace", ns));
    }
    if let Some(text) = q.query {
        attrs.push(KeyValue::new("db.query.text", text));
    }
    if let Some(e) = result.and_then(|r| r.error.as_ref()) {
        attrs.push(KeyValue::new("db.response.status_code", e.code.clone()));
    }
    if let Some(r) = result.filter(|r| r.error.is_none() && !r.aborted && r.rows > 0) {
        attrs.push(KeyValue::new(
            "db.response.returned_rows",
            i64::try_from(r.rows).unwrap_or(i64::MAX),
        ));
    }
    push_connection(&mut attrs, server, peer, family);
    let status = match result {
        Some(PostgresResult { error: Some(e), .. }) => {
            Status::error(cut(&format!("{} {}: {}", e.severity, e.code, e.message)))
        }
        Some(PostgresResult { aborted: true, .. }) => {
            Status::error("not executed: an earlier statement of the batch failed")
        }
        _ => Status::unset(),
    };
    (name, attrs, status)
}

fn cut(s: &str) -> String {
    s.chars().take(MAX_STATUS_MESSAGE).collect()
}

/// The attributes every database span ends with, in this order: `server.address`/
/// `server.port` (the database's socket), `network.peer.address`/`network.peer.port` and
/// `podtrace.context.family`.
fn push_connection(
    attrs: &mut Vec<KeyValue>,
    server: Option<SocketAddr>,
    peer: Option<SocketAddr>,
    family: Option<Family>,
) {
    if let Some(s) = server {
        attrs.push(KeyValue::new("server.address", addr::ip_string(s.ip())));
        attrs.push(KeyValue::new("server.port", i64::from(s.port())));
    }
    if let Some(p) = peer {
        attrs.push(KeyValue::new(
            "network.peer.address",
            addr::ip_string(p.ip()),
        ));
        attrs.push(KeyValue::new("network.peer.port", i64::from(p.port())));
    }
    attrs.push(KeyValue::new(
        "podtrace.context.family",
        family.map(|f| f.as_str()).unwrap_or("none"),
    ));
}

#[cfg(test)]
mod tests {
    use podtrace_model::{AttrValue, StatusCode};

    use super::*;

    fn text(attrs: &[KeyValue], k: &str) -> Option<String> {
        attrs
            .iter()
            .find(|kv| kv.key == k)
            .and_then(|kv| match &kv.value {
                AttrValue::Str(s) => Some(s.clone()),
                _ => None,
            })
    }

    #[test]
    fn mysql_attributes_and_error_status() {
        let cmd = MysqlCommand {
            operation: "SELECT".into(),
            collection: Some("users".into()),
            query: Some("SELECT * FROM users WHERE id = ?".into()),
            database: Some("shop".into()),
            mariadb: true,
        };
        let reply = MysqlReply {
            rows: Some(3),
            ..MysqlReply::default()
        };
        let server = Some("127.0.0.1:3306".parse().expect("addr"));
        let (name, attrs, status) = mysql_span(server, None, cmd, Some(&reply), None);
        assert_eq!(name, "SELECT users");
        assert_eq!(text(&attrs, "db.system.name").as_deref(), Some("mariadb"));
        assert_eq!(text(&attrs, "db.collection.name").as_deref(), Some("users"));
        assert_eq!(text(&attrs, "db.namespace").as_deref(), Some("shop"));
        assert!(attrs
            .iter()
            .any(|kv| kv.key == "db.response.returned_rows" && kv.value == AttrValue::Int(3)));
        assert_eq!(status.code, StatusCode::Unset);
        let cmd = MysqlCommand {
            operation: "SELEC".into(),
            collection: None,
            query: None,
            database: None,
            mariadb: false,
        };
        let err = MysqlReply {
            error_code: Some(1064),
            sql_state: Some("42000".into()),
            message: Some("You have an error in your SQL syntax".into()),
            rows: None,
        };
        let (name, attrs, status) = mysql_span(server, None, cmd, Some(&err), None);
        assert_eq!(name, "SELEC");
        assert_eq!(text(&attrs, "db.system.name").as_deref(), Some("mysql"));
        assert_eq!(
            text(&attrs, "db.response.status_code").as_deref(),
            Some("1064")
        );
        assert_eq!(status.code, StatusCode::Error);
        assert_eq!(
            status.message,
            "1064 (42000): You have an error in your SQL syntax"
        );
    }

    #[test]
    fn redis_attributes_and_error_status() {
        let cmd = RedisCommand {
            operation: "LPUSH".into(),
            query: Some("LPUSH k ?".into()),
            database: 2,
        };
        let reply = RedisReply {
            error: Some("WRONGTYPE Operation against a key holding the wrong kind of value".into()),
            nested_errors: 0,
            first_nested_error: None,
        };
        let server = Some("127.0.0.1:6379".parse().expect("addr"));
        let (name, attrs, status) = redis_span(server, server, cmd, Some(&reply), None);
        assert_eq!(name, "LPUSH");
        assert_eq!(text(&attrs, "db.system.name").as_deref(), Some("redis"));
        assert_eq!(text(&attrs, "db.namespace").as_deref(), Some("2"));
        assert_eq!(text(&attrs, "db.query.text").as_deref(), Some("LPUSH k ?"));
        assert_eq!(
            text(&attrs, "db.response.status_code").as_deref(),
            Some("WRONGTYPE")
        );
        assert_eq!(text(&attrs, "server.address").as_deref(), Some("127.0.0.1"));
        assert_eq!(status.code, StatusCode::Error);
        let ok = RedisReply {
            error: None,
            nested_errors: 0,
            first_nested_error: None,
        };
        let cmd = RedisCommand {
            operation: "GET".into(),
            query: None,
            database: 0,
        };
        let (_, attrs, status) = redis_span(server, None, cmd, Some(&ok), None);
        assert_eq!(status.code, StatusCode::Unset);
        assert_eq!(text(&attrs, "db.response.status_code"), None);
        assert_eq!(text(&attrs, "db.query.text"), None, "query text off");
    }

    #[test]
    fn postgres_attributes_and_error_status() {
        use crate::protocol::postgres::PostgresError;
        let q = PostgresQuery {
            operation: Some("SELECT".into()),
            collection: Some("users".into()),
            query: Some("SELECT * FROM users WHERE id = ?".into()),
            database: Some("app".into()),
            extended: true,
        };
        let ok = PostgresResult {
            command_tag: Some("SELECT 2".into()),
            rows: 2,
            ..PostgresResult::default()
        };
        let server = Some("127.0.0.1:5432".parse().expect("addr"));
        let (name, attrs, status) = postgres_span(server, server, q.clone(), Some(&ok), None);
        assert_eq!(name, "SELECT users");
        assert_eq!(
            text(&attrs, "db.system.name").as_deref(),
            Some("postgresql")
        );
        assert_eq!(text(&attrs, "db.collection.name").as_deref(), Some("users"));
        assert_eq!(text(&attrs, "db.namespace").as_deref(), Some("app"));
        assert!(attrs
            .iter()
            .any(|kv| kv.key == "db.response.returned_rows" && kv.value == AttrValue::Int(2)));
        assert_eq!(status.code, StatusCode::Unset);
        let failed = PostgresResult {
            error: Some(PostgresError {
                code: "42P01".into(),
                severity: "ERROR".into(),
                message: "relation \"nope\" does not exist".into(),
            }),
            ..PostgresResult::default()
        };
        let (_, attrs, status) = postgres_span(server, None, q.clone(), Some(&failed), None);
        assert_eq!(
            text(&attrs, "db.response.status_code").as_deref(),
            Some("42P01")
        );
        assert_eq!(status.code, StatusCode::Error);
        assert!(status.message.contains("does not exist"));
        let aborted = PostgresResult {
            aborted: true,
            ..PostgresResult::default()
        };
        let (_, _, status) = postgres_span(server, None, q, Some(&aborted), None);
        assert_eq!(status.code, StatusCode::Error);
        let unknown = PostgresQuery {
            operation: None,
            collection: None,
            query: None,
            database: None,
            extended: true,
        };
        let (name, _, _) = postgres_span(server, None, unknown, None, None);
        assert_eq!(name, "postgresql");
    }
}
