//! The OpenTelemetry span of an identified exchange: name, attributes (the semantic
//! conventions of its protocol, chosen by the request's detail: HTTP and gRPC here, plus
//! network ones), status and times; the exchange's request strings move into the span
//! instead of being copied.

use std::net::SocketAddr;

use podtrace_model::{KeyValue, Resource, Span, SpanKind, Status};

use super::addr;
use super::db;
use super::identity::Identity;
use crate::details::SpanDetails;
use crate::exchange::{Exchange, Request, Response};
use crate::protocol::http::{HttpRequest, HttpResponse};
use crate::protocol::mysql::MysqlCommand;
use crate::protocol::postgres::PostgresQuery;
use crate::protocol::redis::RedisCommand;
use crate::protocol::{Headers, RequestDetail, ResponseDetail};
use crate::reassemble::ConnInfo;

/// What an emitted exchange keeps of its request: the times and sizes linking still reads
/// (no strings, no protocol facts beyond the version).
pub(super) fn emptied(req: &Request) -> Request {
    Request {
        headers: Headers::new(),
        body_size: req.body_size,
        start_ts: req.start_ts,
        end_ts: req.end_ts,
        truncated: req.truncated,
        tid: req.tid,
        detail: match &req.detail {
            RequestDetail::Http(h) => RequestDetail::Http(HttpRequest {
                method: String::new(),
                target: String::new(),
                path: String::new(),
                query: None,
                version: h.version,
                h2: None,
            }),
            RequestDetail::Redis(c) => RequestDetail::Redis(RedisCommand {
                operation: String::new(),
                query: None,
                database: c.database,
            }),
            RequestDetail::Mysql(c) => RequestDetail::Mysql(MysqlCommand {
                operation: String::new(),
                collection: None,
                query: None,
                database: None,
                mariadb: c.mariadb,
            }),
            RequestDetail::Postgres(c) => RequestDetail::Postgres(PostgresQuery {
                operation: None,
                collection: None,
                query: None,
                database: None,
                extended: c.extended,
            }),
        },
    }
}

/// Whether a gRPC status code makes a span an error, by the OpenTelemetry semantic
/// conventions for gRPC: on the CLIENT side every code but OK; on the SERVER side only
/// UNKNOWN (2), DEADLINE_EXCEEDED (4), UNIMPLEMENTED (12), INTERNAL (13), UNAVAILABLE (14)
/// and DATA_LOSS (15) — the others (NOT_FOUND, INVALID_ARGUMENT, ...) are the caller's
/// problem, not the server's.
pub fn grpc_is_error(code: i64, side: SpanKind) -> bool {
    match side {
        SpanKind::Client => code != 0,
        SpanKind::Server => matches!(code, 2 | 4 | 12 | 13 | 14 | 15),
    }
}

/// Splits a Host header into host and port.
fn split_host(host: &str) -> (String, Option<u16>) {
    if let Some(rest) = host.strip_prefix('[') {
        if let Some((h, tail)) = rest.split_once(']') {
            return (
                h.to_string(),
                tail.strip_prefix(':').and_then(|p| p.parse().ok()),
            );
        }
    }
    match host.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h.to_string(), p.parse().ok()),
        _ => (host.to_string(), None),
    }
}

/// The service name of a process before Kubernetes enrichment: its comm, else (and for
/// imported sockets, which have no process) its local IP.
pub fn default_service_name(conn: &ConnInfo) -> String {
    if conn.pid == 0 {
        // Imported captures have no process: the workload is its address.
        if let Some(local) = conn.key.local {
            return addr::ip_string(local.ip());
        }
    }
    if !conn.comm.is_empty() {
        conn.comm.clone()
    } else if let Some(local) = conn.key.local {
        addr::ip_string(local.ip())
    } else {
        "unknown".to_string()
    }
}

/// `network.protocol.version` of an HTTP/1.x request (`1.{minor}`), the usual ones
/// without the formatter.
fn http1_version(minor: u8) -> String {
    match minor {
        0 => "1.0".to_string(),
        1 => "1.1".to_string(),
        _ => format!("1.{minor}"),
    }
}

/// Attributes an HTTP/1 span typically ends with (with enrichment's): the list is
/// allocated once at this size (the largest, gRPC ones, grow once).
const ATTRS_CAPACITY: usize = 16;

/// The span of an exchange whose request was taken out of it (`req`): its strings move
/// into the span's attributes instead of being copied.
pub(super) fn build_span(
    ex: &Exchange,
    req: Request,
    idn: &Identity,
    details: &SpanDetails,
) -> Span {
    let resp = ex.response.as_ref();
    let (start_ts, end_ts) = (req.start_ts, req.end_ts);
    let (name, attributes, status) = match req.detail {
        RequestDetail::Http(http) => {
            let http_resp = resp.and_then(|r| match &r.detail {
                ResponseDetail::Http(h) => Some((r, h)),
                _ => None,
            });
            http_span(
                ex,
                http,
                req.headers,
                req.body_size,
                http_resp,
                idn,
                details,
            )
        }
        RequestDetail::Redis(cmd) => {
            let reply = resp.and_then(|r| match &r.detail {
                ResponseDetail::Redis(h) => Some(h),
                _ => None,
            });
            let (server, _) = sockets(ex);
            db::redis_span(server, ex.conn.key.remote, cmd, reply, idn.family)
        }
        RequestDetail::Mysql(cmd) => {
            let reply = resp.and_then(|r| match &r.detail {
                ResponseDetail::Mysql(h) => Some(h),
                _ => None,
            });
            let (server, _) = sockets(ex);
            db::mysql_span(server, ex.conn.key.remote, cmd, reply, idn.family)
        }
        RequestDetail::Postgres(q) => {
            let result = resp.and_then(|r| match &r.detail {
                ResponseDetail::Postgres(h) => Some(h),
                _ => None,
            });
            let (server, _) = sockets(ex);
            db::postgres_span(server, ex.conn.key.remote, q, result, idn.family)
        }
    };
    Span {
        trace_id: idn.trace_id,
        span_id: idn.span_id,
        parent_span_id: idn.parent,
        trace_state: idn.trace_state.clone(),
        flags: idn.flags,
        name,
        kind: ex.side,
        start_time_unix_nano: start_ts,
        end_time_unix_nano: resp.map(|r| r.end_ts).unwrap_or(end_ts).max(start_ts),
        attributes,
        status,
        resource: Resource::new(default_service_name(&ex.conn)),
    }
}

/// The server's and the client's socket addresses of an exchange.
fn sockets(ex: &Exchange) -> (Option<SocketAddr>, Option<SocketAddr>) {
    let local = ex.conn.key.local;
    let remote = ex.conn.key.remote;
    match ex.side {
        SpanKind::Server => (local, remote),
        SpanKind::Client => (remote, local),
    }
}

/// Name, attributes (HTTP, gRPC, network semantic conventions) and status of an HTTP
/// exchange.
fn http_span(
    ex: &Exchange,
    mut req: HttpRequest,
    headers: Headers,
    body_size: u64,
    resp: Option<(&Response, &HttpResponse)>,
    idn: &Identity,
    details: &SpanDetails,
) -> (String, Vec<KeyValue>, Status) {
    let remote = ex.conn.key.remote;
    let (server_sock, client_sock) = sockets(ex);
    let grpc = req.h2.as_ref().and_then(|h| h.grpc.as_ref());
    // HTTP: `{method} {route}` (user route, else inferred), else `{method}`.
    let (name, route) = match grpc {
        Some(g) => (format!("{}/{}", g.service, g.method), None),
        None => details.http_name(&req.method, &req.path),
    };
    let mut attrs = Vec::with_capacity(ATTRS_CAPACITY);
    attrs.push(KeyValue::new(
        "http.request.method",
        std::mem::take(&mut req.method),
    ));
    attrs.push(KeyValue::new("url.path", std::mem::take(&mut req.path)));
    if let Some(q) = req.query.take() {
        attrs.push(KeyValue::new("url.query", q));
    }
    if ex.conn.tls {
        // the plaintext came from the TLS library: the request was made over HTTPS
        attrs.push(KeyValue::new("url.scheme", "https"));
    }
    if let Some(route) = route {
        attrs.push(KeyValue::new(SpanDetails::route_key(ex.side), route));
    }
    if let Some((_, r)) = resp.filter(|(_, r)| r.status != 0) {
        attrs.push(KeyValue::new(
            "http.response.status_code",
            i64::from(r.status),
        ));
    }
    let host_header = headers.get("host");
    let (host, host_port) = match host_header {
        Some(h) if !h.is_empty() => {
            let (h, p) = split_host(h);
            (Some(h), p)
        }
        _ => (None, None),
    };
    let server_address = host.or_else(|| server_sock.map(|s| addr::ip_string(s.ip())));
    if let Some(a) = server_address {
        attrs.push(KeyValue::new("server.address", a));
    }
    let server_port = host_port.or(server_sock.map(|s| s.port()));
    if let Some(p) = server_port {
        attrs.push(KeyValue::new("server.port", i64::from(p)));
    }
    // On the server side the client is the peer: its address is formatted once.
    let peer_ip = remote.map(|r| addr::ip_string(r.ip()));
    if let Some(c) = client_sock {
        let ip = match (&peer_ip, ex.side) {
            (Some(ip), SpanKind::Server) => ip.clone(),
            _ => addr::ip_string(c.ip()),
        };
        attrs.push(KeyValue::new("client.address", ip));
    }
    if let (Some(r), Some(ip)) = (remote, peer_ip) {
        attrs.push(KeyValue::new("network.peer.address", ip));
        attrs.push(KeyValue::new("network.peer.port", i64::from(r.port())));
    }
    if req.h2.is_some() {
        attrs.push(KeyValue::new("network.protocol.name", "http"));
        attrs.push(KeyValue::new("network.protocol.version", "2"));
    } else {
        attrs.push(KeyValue::new(
            "network.protocol.version",
            http1_version(req.version),
        ));
    }
    let h2_resp = resp.and_then(|(_, r)| r.h2.as_ref());
    if let Some(g) = grpc {
        attrs.push(KeyValue::new("rpc.system", "grpc"));
        attrs.push(KeyValue::new("rpc.service", g.service.as_str()));
        attrs.push(KeyValue::new("rpc.method", g.method.as_str()));
        if let Some(code) = h2_resp.and_then(|r| r.grpc_status) {
            attrs.push(KeyValue::new("rpc.grpc.status_code", code));
        }
    }
    if let Some(agent) = headers.get("user-agent") {
        attrs.push(KeyValue::new("user_agent.original", agent.to_string()));
    }
    details.add_baggage(&headers, &mut attrs);
    attrs.push(KeyValue::new("http.request.body.size", body_size as i64));
    if let Some((r, _)) = resp {
        attrs.push(KeyValue::new("http.response.body.size", r.body_size as i64));
    }
    attrs.push(KeyValue::new(
        "podtrace.context.family",
        idn.family.map(|f| f.as_str()).unwrap_or("none"),
    ));
    let grpc_code = h2_resp
        .and_then(|r| r.grpc_status)
        .filter(|_| grpc.is_some());
    let reset = h2_resp.and_then(|r| r.reset);
    let status = match resp.map(|(_, r)| r.status) {
        _ if grpc_code.is_some_and(|c| grpc_is_error(c, ex.side)) => {
            let msg = h2_resp
                .and_then(|r| r.grpc_message.as_deref())
                .unwrap_or("");
            Status::error(format!("gRPC {}: {msg}", grpc_code.unwrap_or(0)))
        }
        _ if reset.is_some_and(|c| c != 0) => {
            Status::error(format!("HTTP/2 stream reset ({})", reset.unwrap_or(0)))
        }
        Some(s) if s >= 500 => Status::error(format!("HTTP {s}")),
        Some(s) if s >= 400 && ex.side == SpanKind::Client => Status::error(format!("HTTP {s}")),
        _ => Status::unset(),
    };
    (name, attrs, status)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use podtrace_format::Role;
    use podtrace_model::{AttrValue, StatusCode};

    use super::*;
    use crate::exchange::ExchangeId;
    use crate::reassemble::ConnKey;
    use crate::span::identity::root_identity;
    use crate::span::ids::IdParts;

    fn conn(pid: u32, comm: &str, local: Option<&str>) -> ConnInfo {
        ConnInfo {
            key: ConnKey {
                conn_id: 1,
                local: local.map(|l| l.parse().expect("local")),
                remote: Some("10.0.0.9:40000".parse().expect("remote")),
            },
            pid,
            comm: comm.into(),
            cgroup_id: 0,
            role: Role::Server,
            tls: false,
        }
    }

    fn request(headers: &[(&str, &str)]) -> Request {
        Request {
            detail: RequestDetail::Http(HttpRequest {
                method: "POST".into(),
                target: "/orders?id=7".into(),
                path: "/orders".into(),
                query: Some("id=7".into()),
                version: 1,
                h2: None,
            }),
            headers: headers.iter().copied().collect(),
            body_size: 12,
            start_ts: 100,
            end_ts: 110,
            truncated: false,
            tid: 5,
        }
    }

    fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a AttrValue> {
        span.attributes
            .iter()
            .find(|kv| kv.key == key)
            .map(|kv| &kv.value)
    }

    #[test]
    fn host_header_splits_into_host_and_port() {
        assert_eq!(split_host("api:8080"), ("api".into(), Some(8080)));
        assert_eq!(split_host("api"), ("api".into(), None));
        assert_eq!(split_host("api:x"), ("api".into(), None));
        assert_eq!(split_host("[::1]:443"), ("::1".into(), Some(443)));
        assert_eq!(split_host("[::1]"), ("::1".into(), None));
        assert_eq!(split_host("::1"), ("::1".into(), None));
    }

    #[test]
    fn service_name_is_comm_else_local_ip() {
        assert_eq!(
            default_service_name(&conn(7, "nginx", Some("10.0.0.1:80"))),
            "nginx"
        );
        assert_eq!(
            default_service_name(&conn(0, "", Some("10.0.0.1:80"))),
            "10.0.0.1"
        );
        assert_eq!(default_service_name(&conn(7, "", Some("[::1]:80"))), "::1");
        assert_eq!(default_service_name(&conn(7, "", None)), "unknown");
        assert_eq!(default_service_name(&conn(0, "imported", None)), "imported");
    }

    /// gRPC status by the semantic conventions: NOT_FOUND fails the CLIENT span only,
    /// UNAVAILABLE both.
    #[test]
    fn grpc_server_errors_are_server_faults_only() {
        for (code, client, server) in [(0, false, false), (5, true, false), (14, true, true)] {
            assert_eq!(grpc_is_error(code, SpanKind::Client), client, "{code}");
            assert_eq!(grpc_is_error(code, SpanKind::Server), server, "{code}");
        }
    }

    #[test]
    fn emptied_request_keeps_times_and_sizes_only() {
        let req = request(&[("host", "api")]);
        let e = emptied(&req);
        let RequestDetail::Http(h) = &e.detail else {
            panic!("http detail expected")
        };
        assert!(h.method.is_empty() && h.path.is_empty() && e.headers.is_empty());
        assert_eq!((h.query.as_deref(), h.version), (None, 1));
        assert_eq!(
            (e.start_ts, e.end_ts, e.body_size, e.tid),
            (100, 110, 12, 5)
        );
    }

    #[test]
    fn http_server_span_attributes_and_status() {
        let conn = Arc::new(conn(7, "orders", Some("10.0.0.1:8080")));
        let ex = Exchange {
            id: ExchangeId {
                conn: conn.key,
                seq: 0,
            },
            conn: conn.clone(),
            side: SpanKind::Server,
            request: request(&[]),
            response: Some(Response {
                body_size: 3,
                start_ts: 150,
                end_ts: 160,
                truncated: false,
                detail: ResponseDetail::Http(HttpResponse {
                    status: 503,
                    version: 1,
                    h2: None,
                }),
            }),
            ordinal: 0,
        };
        let idn = root_identity(&IdParts::of(&ex));
        let span = build_span(&ex, ex.request.clone(), &idn, &SpanDetails::default());
        assert_eq!((span.trace_id, span.span_id), (idn.trace_id, idn.span_id));
        assert_eq!(span.name, "POST /orders");
        assert_eq!(
            (span.start_time_unix_nano, span.end_time_unix_nano),
            (100, 160)
        );
        assert_eq!(span.status.code, StatusCode::Error);
        assert_eq!(span.resource.service_name, "orders");
        let text = |k: &str| match attr(&span, k) {
            Some(AttrValue::Str(s)) => Some(s.clone()),
            _ => None,
        };
        let int = |k: &str| match attr(&span, k) {
            Some(AttrValue::Int(i)) => Some(*i),
            _ => None,
        };
        assert_eq!(text("url.path").as_deref(), Some("/orders"));
        assert_eq!(text("url.query").as_deref(), Some("id=7"));
        assert_eq!(text("server.address").as_deref(), Some("10.0.0.1"));
        assert_eq!(int("server.port"), Some(8080));
        assert_eq!(text("client.address").as_deref(), Some("10.0.0.9"));
        assert_eq!(int("network.peer.port"), Some(40000));
        assert_eq!(int("http.response.status_code"), Some(503));
        assert_eq!(text("network.protocol.version").as_deref(), Some("1.1"));
        assert_eq!(text("podtrace.context.family").as_deref(), Some("none"));
    }
}
