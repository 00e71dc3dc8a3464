//! Span names from routes, `http.route` / `url.template`, user routes, baggage attributes
//! and Jaeger context, end to end through the pipeline on recorder-style rows.

use std::net::SocketAddr;

use podtrace_analyzer::{analyze, Analysis, AnalyzeOptions, Pipeline};
use podtrace_format::{Direction, Record, SocketData, SocketMeta};
use podtrace_model::{AttrValue, Span, SpanKind};

const MS: u64 = 1_000_000;

/// One socket of a recorded process.
struct Sock {
    conn_id: u64,
    pid: u32,
    local: SocketAddr,
    remote: SocketAddr,
}

impl Sock {
    fn new(conn_id: u64, pid: u32, local: &str, remote: &str) -> Self {
        Sock {
            conn_id,
            pid,
            local: local.parse().expect("local"),
            remote: remote.parse().expect("remote"),
        }
    }

    fn row(&self, ts: u64, direction: Direction, bytes: &[u8]) -> Record {
        Record::SocketData(SocketData {
            meta: SocketMeta {
                ts_ns: ts,
                cpu: 0,
                pid: self.pid,
                tid: self.pid,
                comm: format!("p{}", self.pid).into(),
                cgroup_id: 42,
                conn_id: self.conn_id,
                local: Some(self.local),
                remote: Some(self.remote),
            },
            direction,
            syscall: "sendto".into(),
            ret: bytes.len() as i64,
            payload: bytes.to_vec(),
            flags: 0,
        })
    }
}

/// A client (pid 1) calling a server (pid 2) once per request head in `heads`, one
/// connection each, both sides recorded.
fn calls(heads: &[&str]) -> Vec<Record> {
    let mut out = Vec::new();
    for (i, head) in heads.iter().enumerate() {
        let port = 40000 + i as u16;
        let cli = Sock::new(
            2 * i as u64 + 1,
            1,
            &format!("10.0.0.1:{port}"),
            "10.0.0.2:80",
        );
        let srv = Sock::new(
            2 * i as u64 + 2,
            2,
            "10.0.0.2:80",
            &format!("10.0.0.1:{port}"),
        );
        let t = i as u64 * 10 * MS;
        let req = format!("{head}\r\n\r\n");
        let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        out.push(cli.row(t, Direction::Egress, req.as_bytes()));
        out.push(srv.row(t + 1, Direction::Ingress, req.as_bytes()));
        out.push(srv.row(t + 2 * MS, Direction::Egress, resp));
        out.push(cli.row(t + 2 * MS + 1, Direction::Ingress, resp));
    }
    out
}

fn run(heads: &[&str], opts: &AnalyzeOptions) -> Analysis {
    let a = analyze(calls(heads).into_iter(), opts).expect("analyze");
    assert_eq!(a.spans.len(), 2 * heads.len(), "{:#?}", a.spans);
    a
}

fn attr<'a>(s: &'a Span, key: &str) -> Option<&'a str> {
    match s.attribute(key) {
        Some(AttrValue::Str(v)) => Some(v),
        _ => None,
    }
}

fn server(a: &Analysis, path: &str) -> Span {
    a.spans
        .iter()
        .find(|s| s.kind == SpanKind::Server && attr(s, "url.path") == Some(path))
        .cloned()
        .unwrap_or_else(|| panic!("no server span for {path}"))
}

#[test]
fn names_use_inferred_routes_and_keep_the_raw_path() {
    let a = run(
        &[
            "GET /order/1?expand=items HTTP/1.1",
            "GET /order/2 HTTP/1.1",
            "DELETE /carts/4bf92f35-77b3-4da6-a3ce-929d0e0e4736/items/7 HTTP/1.1",
            "GET /static/app.js HTTP/1.1",
            "OPTIONS * HTTP/1.1",
        ],
        &AnalyzeOptions::default(),
    );
    let s = server(&a, "/order/1");
    assert_eq!(s.name, "GET /order/{id}");
    assert_eq!(attr(&s, "http.route"), Some("/order/{id}"));
    assert_eq!(attr(&s, "url.query"), Some("expand=items"));
    assert_eq!(attr(&s, "url.template"), None);
    assert_eq!(server(&a, "/order/2").name, "GET /order/{id}");
    assert_eq!(
        server(&a, "/carts/4bf92f35-77b3-4da6-a3ce-929d0e0e4736/items/7").name,
        "DELETE /carts/{id}/items/{id}"
    );
    assert_eq!(server(&a, "/static/app.js").name, "GET /static/app.js");
    // No path route: the method alone, no route attribute.
    let star = server(&a, "*");
    assert_eq!(star.name, "OPTIONS");
    assert_eq!(attr(&star, "http.route"), None);
    // CLIENT spans carry the template as url.template (semantic conventions).
    let client = a
        .spans
        .iter()
        .find(|s| s.kind == SpanKind::Client && attr(s, "url.path") == Some("/order/2"))
        .expect("client span");
    assert_eq!(client.name, "GET /order/{id}");
    assert_eq!(attr(client, "url.template"), Some("/order/{id}"));
    assert_eq!(attr(client, "http.route"), None);
    // Five requests, four distinct names per side.
    let mut names: Vec<&str> = a.spans.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), 4, "{names:?}");
}

#[test]
fn user_routes_win_over_inference() {
    let opts = AnalyzeOptions {
        routes: vec!["/users/{user}".into(), "/users/{user}/avatar".into()],
        ..AnalyzeOptions::default()
    };
    let a = run(
        &[
            "GET /users/ann HTTP/1.1",
            "GET /users/42/avatar HTTP/1.1",
            "GET /order/9 HTTP/1.1",
        ],
        &opts,
    );
    assert_eq!(server(&a, "/users/ann").name, "GET /users/{user}");
    let avatar = server(&a, "/users/42/avatar");
    assert_eq!(avatar.name, "GET /users/{user}/avatar");
    assert_eq!(attr(&avatar, "http.route"), Some("/users/{user}/avatar"));
    assert_eq!(server(&a, "/order/9").name, "GET /order/{id}");
}

#[test]
fn a_bad_user_route_is_an_option_error() {
    let opts = AnalyzeOptions {
        routes: vec!["/users/x{id}".into()],
        ..AnalyzeOptions::default()
    };
    let err = Pipeline::new(&opts).expect_err("bad route");
    assert!(err.to_string().contains("/users/x{id}"), "{err}");
}

#[test]
fn baggage_becomes_attributes_only_when_asked() {
    let heads = ["GET /b HTTP/1.1\r\nbaggage: userId=alice,region=eu%2Dwest;ttl=3, oops"];
    let off = run(&heads, &AnalyzeOptions::default());
    assert!(off.spans.iter().all(|s| s
        .attributes
        .iter()
        .all(|kv| !kv.key.starts_with("baggage."))));
    assert!(off.stats.ignored_headers.is_empty());
    let on = run(
        &heads,
        &AnalyzeOptions {
            baggage_attributes: true,
            ..AnalyzeOptions::default()
        },
    );
    for s in &on.spans {
        assert_eq!(attr(s, "baggage.userId"), Some("alice"));
        assert_eq!(attr(s, "baggage.region"), Some("eu-west"));
    }
    // `oops` (no `=`), once per span (client and server side).
    assert_eq!(on.stats.ignored_headers.get("baggage/malformed"), Some(&2));
}

#[test]
fn jaeger_context_gives_the_trace_and_family() {
    let a = run(
        &["GET /j HTTP/1.1\r\nuber-trace-id: a3ce929d0e0e4736%3A00f067aa0ba902b7%3A0%3A1"],
        &AnalyzeOptions::default(),
    );
    for s in &a.spans {
        assert_eq!(s.trace_id.to_string(), "0000000000000000a3ce929d0e0e4736");
        assert_eq!(attr(s, "podtrace.context.family"), Some("jaeger"));
    }
    let client = a
        .spans
        .iter()
        .find(|s| s.kind == SpanKind::Client)
        .expect("client");
    assert_eq!(client.span_id.to_string(), "00f067aa0ba902b7");
    let bad = run(
        &["GET /j HTTP/1.1\r\nuber-trace-id: 0:0:0:1"],
        &AnalyzeOptions::default(),
    );
    assert_eq!(bad.stats.ignored_headers.get("jaeger/invalid"), Some(&2));
}
