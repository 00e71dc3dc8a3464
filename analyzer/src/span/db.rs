//! Database spans by the OpenTelemetry database semantic conventions: `db.system.name`,
//! `db.operation.name`, `db.namespace`, `db.query.text` (sanitized: keys kept, values as
//! `?`), `db.response.status_code` on errors, `server.address` / `server.port`; the span is
//! named `{db.operation.name}`.

use std::net::SocketAddr;

use podtrace_model::{KeyValue, Status};

use super::addr;
use crate::context::Family;
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

fn cut(s: &str) -> String {
    s.chars().take(MAX_STATUS_MESSAGE).collect()
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
}
