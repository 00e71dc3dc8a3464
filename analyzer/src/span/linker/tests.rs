//! Linking tests: context rules, both sides of an exchange, the same-process rule.

use std::net::SocketAddr;
use std::sync::Arc;

use podtrace_format::Role;
use podtrace_model::{AttrValue, Span, SpanId, SpanKind, StatusCode, TraceId};

use super::*;
use crate::context::{Family, IgnoreReason};
use crate::exchange::{Request, Response};
use crate::protocol::http::{split_target, HttpRequest, HttpResponse};
use crate::protocol::{RequestDetail, ResponseDetail};
use crate::reassemble::ConnInfo;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("addr")
}

fn conn(id: u64, pid: u32, comm: &str, local: &str, remote: &str, role: Role) -> Arc<ConnInfo> {
    Arc::new(ConnInfo {
        key: ConnKey {
            conn_id: id,
            local: Some(addr(local)),
            remote: Some(addr(remote)),
        },
        pid,
        comm: comm.into(),
        cgroup_id: 0,
        role,
        tls: false,
    })
}

#[allow(clippy::too_many_arguments)]
fn exchange(
    c: &Arc<ConnInfo>,
    seq: u64,
    target: &str,
    headers: &[(&str, &str)],
    start: u64,
    end: u64,
    status: u16,
) -> (ExchangeEvent, ExchangeEvent) {
    let (path, query) = split_target(target);
    let id = ExchangeId { conn: c.key, seq };
    let ex = Exchange {
        id,
        conn: c.clone(),
        side: if c.role == Role::Server {
            SpanKind::Server
        } else {
            SpanKind::Client
        },
        request: Request {
            detail: RequestDetail::Http(HttpRequest {
                method: "GET".into(),
                target: target.into(),
                path,
                query,
                version: 1,
                h2: None,
            }),
            headers: headers.iter().copied().collect(),
            body_size: 0,
            start_ts: start,
            end_ts: start,
            truncated: false,
            tid: 0,
        },
        response: None,
        ordinal: seq as u32,
    };
    (
        ExchangeEvent::Request(Box::new(ex)),
        ExchangeEvent::Response {
            id,
            response: Response {
                body_size: 2,
                start_ts: end,
                end_ts: end,
                truncated: false,
                detail: ResponseDetail::Http(HttpResponse {
                    status,
                    version: 1,
                    h2: None,
                }),
            },
        },
    )
}

fn run(events: Vec<(ExchangeEvent, ExchangeEvent)>) -> (Vec<ObservedSpan>, LinkStats) {
    let mut l = Linker::new();
    for (req, resp) in events {
        l.on_event(req);
        l.on_event(resp);
    }
    let spans = l.link(u64::MAX);
    (spans, l.stats().clone())
}

fn by_name<'a>(spans: &'a [ObservedSpan], kind: SpanKind, svc: &str) -> &'a Span {
    &spans
        .iter()
        .find(|s| s.span.kind == kind && s.span.resource.service_name == svc)
        .unwrap_or_else(|| panic!("{kind:?} span of {svc}"))
        .span
}

const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[test]
fn w3c_client_takes_header_id_server_takes_it_as_parent() {
    let c = conn(
        1,
        10,
        "front",
        "127.0.1.1:40000",
        "127.0.1.2:8080",
        Role::Client,
    );
    let s = conn(
        2,
        20,
        "back",
        "127.0.1.2:8080",
        "127.0.1.1:40000",
        Role::Server,
    );
    let (spans, stats) = run(vec![
        exchange(&c, 0, "/x?y=1", &[("traceparent", TP)], 100, 200, 200),
        exchange(&s, 0, "/x?y=1", &[("traceparent", TP)], 110, 190, 200),
    ]);
    let client = by_name(&spans, SpanKind::Client, "front");
    let server = by_name(&spans, SpanKind::Server, "back");
    assert_eq!(
        client.trace_id.to_string(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(client.span_id.to_string(), "00f067aa0ba902b7");
    assert_eq!(client.parent_span_id, None);
    assert_eq!(server.trace_id, client.trace_id);
    assert_eq!(server.parent_span_id, Some(client.span_id));
    assert_ne!(server.span_id, client.span_id);
    assert_eq!(server.name, "GET /x");
    assert_eq!(
        server.attribute("url.query"),
        Some(&AttrValue::Str("y=1".into()))
    );
    assert_eq!(
        server.attribute("podtrace.context.family"),
        Some(&AttrValue::Str("w3c".into()))
    );
    assert_eq!(stats.orphans, 0);
    assert!(spans
        .iter()
        .find(|s| s.span.kind == SpanKind::Server)
        .is_some_and(|s| s.caller_recorded));
}

/// Both ends of one connection: frontend's (pid 10) client side and backend's (pid 20)
/// server side.
fn front_calls_back() -> (Arc<ConnInfo>, Arc<ConnInfo>) {
    let c1 = conn(
        2,
        10,
        "front",
        "127.0.1.1:40000",
        "127.0.1.2:8080",
        Role::Client,
    );
    let s2 = conn(
        3,
        20,
        "back",
        "127.0.1.2:8080",
        "127.0.1.1:40000",
        Role::Server,
    );
    (c1, s2)
}

#[test]
fn no_context_chain_links_by_process_and_by_4_tuple() {
    // curl → frontend (server), frontend → backend (client), backend (server).
    let s1 = conn(
        1,
        10,
        "front",
        "127.0.1.1:80",
        "127.0.0.1:5000",
        Role::Server,
    );
    let (c1, s2) = front_calls_back();
    let (spans, stats) = run(vec![
        exchange(&s1, 0, "/", &[], 100, 500, 200),
        exchange(&c1, 0, "/b", &[], 200, 400, 503),
        exchange(&s2, 0, "/b", &[], 200, 400, 503),
    ]);
    let root = by_name(&spans, SpanKind::Server, "front");
    let client = by_name(&spans, SpanKind::Client, "front");
    let back = by_name(&spans, SpanKind::Server, "back");
    assert_eq!(root.parent_span_id, None);
    assert_eq!(client.trace_id, root.trace_id);
    assert_eq!(client.parent_span_id, Some(root.span_id));
    assert_eq!(back.trace_id, root.trace_id);
    assert_eq!(back.parent_span_id, Some(client.span_id));
    assert_eq!(client.status.code, StatusCode::Error);
    assert_eq!(back.status.code, StatusCode::Error);
    assert_eq!(root.status.code, StatusCode::Unset);
    assert_eq!(stats.orphans, 0);
    // Determinism: same input, same ids.
    let (again, _) = run(vec![
        exchange(&s1, 0, "/", &[], 100, 500, 200),
        exchange(&c1, 0, "/b", &[], 200, 400, 503),
        exchange(&s2, 0, "/b", &[], 200, 400, 503),
    ]);
    assert_eq!(
        spans.iter().map(|s| s.span.clone()).collect::<Vec<_>>(),
        again.iter().map(|s| s.span.clone()).collect::<Vec<_>>()
    );
}

#[test]
fn client_error_threshold_is_400_server_500() {
    let c = conn(1, 10, "a", "127.0.0.1:4000", "127.0.0.2:80", Role::Client);
    let s = conn(2, 20, "b", "127.0.0.3:80", "127.0.0.4:4000", Role::Server);
    let (spans, _) = run(vec![
        exchange(&c, 0, "/", &[], 1, 2, 404),
        exchange(&s, 0, "/", &[], 1, 2, 404),
    ]);
    assert!(by_name(&spans, SpanKind::Client, "a").status.is_error());
    assert!(!by_name(&spans, SpanKind::Server, "b").status.is_error());
}

#[test]
fn passed_through_header_does_not_duplicate_ids_and_orphans_are_counted() {
    // A backend receives a context whose caller was not recorded (orphan), and forwards
    // the very same header (so its client span would reuse the caller's id).
    let s = conn(1, 10, "mid", "127.0.1.2:80", "10.0.0.9:5000", Role::Server);
    let c = conn(
        2,
        10,
        "mid",
        "127.0.1.2:41000",
        "127.0.1.3:80",
        Role::Client,
    );
    let c2 = conn(
        3,
        10,
        "mid",
        "127.0.1.2:41001",
        "127.0.1.3:80",
        Role::Client,
    );
    let (spans, stats) = run(vec![
        exchange(&s, 0, "/", &[("traceparent", TP)], 100, 900, 200),
        exchange(&c, 0, "/c", &[("traceparent", TP)], 200, 300, 200),
        exchange(&c2, 0, "/c", &[("traceparent", TP)], 400, 500, 200),
    ]);
    let mut ids: Vec<(TraceId, SpanId)> = spans
        .iter()
        .map(|s| (s.span.trace_id, s.span.span_id))
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3);
    assert_eq!(
        stats.orphans, 1,
        "the server's caller 00f067aa0ba902b7 was not recorded"
    );
    let server = by_name(&spans, SpanKind::Server, "mid");
    for c in spans.iter().filter(|s| s.span.kind == SpanKind::Client) {
        assert_eq!(c.span.parent_span_id, Some(server.span_id));
        assert_ne!(Some(c.span.span_id), server.parent_span_id);
    }
}

#[test]
fn ignored_headers_are_counted_and_unanswered_requests_too() {
    let s = conn(1, 10, "svc", "127.0.1.2:80", "10.0.0.9:5000", Role::Server);
    let mut l = Linker::new();
    let (req, _) = exchange(&s, 0, "/", &[("X-Request-ID", "free text")], 1, 2, 200);
    l.on_event(req);
    l.on_event(ExchangeEvent::Unanswered(ExchangeId {
        conn: s.key,
        seq: 0,
    }));
    assert!(l.link(u64::MAX).is_empty());
    assert_eq!(l.stats().unmatched_requests, 1);
    assert_eq!(
        l.stats()
            .ignored_headers
            .get(&(Family::Splunk, IgnoreReason::Invalid)),
        Some(&1)
    );
    l.evict(u64::MAX);
    assert!(l.is_empty());
}

#[test]
fn window_cutoff_delays_identification() {
    let s = conn(1, 10, "svc", "127.0.1.2:80", "10.0.0.9:5000", Role::Server);
    let mut l = Linker::new();
    let (req, resp) = exchange(&s, 0, "/", &[], 1000, 2000, 200);
    l.on_event(req);
    l.on_event(resp);
    assert!(l.link(1000).is_empty(), "start is not before the cutoff");
    // Identified, but its trace is invented: a call it makes could still carry the trace
    // its service started (root adoption), so it waits until it ended before the cutoff.
    assert!(l.link(1001).is_empty(), "invented trace not final yet");
    assert_eq!(l.link(2001).len(), 1);
    assert!(l.link(u64::MAX).is_empty(), "emitted once");
    l.evict(1500);
    assert_eq!(l.len(), 1, "still within the window");
    l.evict(2001);
    assert!(l.is_empty());
    assert_eq!(l.stats().evicted_requests, 0);
}

#[test]
fn window_cutoff_emits_wire_traces_when_identified() {
    let s = conn(1, 10, "svc", "127.0.1.2:80", "10.0.0.9:5000", Role::Server);
    let mut l = Linker::new();
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let (req, resp) = exchange(&s, 0, "/", &[("traceparent", tp)], 1000, 2000, 200);
    l.on_event(req);
    l.on_event(resp);
    assert_eq!(l.link(1001).len(), 1, "a wire trace id is final at once");
}

#[test]
fn pipelined_server_requests_own_the_calls_made_in_their_turn() {
    // Two pipelined requests arrive in one packet; the process answers the first, then
    // works on the second. Each outgoing call belongs to the request being worked on.
    let s = conn(
        1,
        10,
        "front",
        "127.0.1.1:80",
        "127.0.0.1:5000",
        Role::Server,
    );
    let c1 = conn(
        2,
        10,
        "front",
        "127.0.1.1:40000",
        "127.0.1.2:80",
        Role::Client,
    );
    let c2 = conn(
        3,
        10,
        "front",
        "127.0.1.1:40001",
        "127.0.1.2:80",
        Role::Client,
    );
    let (spans, _) = run(vec![
        exchange(&s, 0, "/one", &[], 100, 300, 200),
        exchange(&s, 1, "/two", &[], 100, 600, 200),
        exchange(&c1, 0, "/for-one", &[], 150, 250, 200),
        exchange(&c2, 0, "/for-two", &[], 350, 550, 200),
    ]);
    let find = |name: &str| {
        &spans
            .iter()
            .find(|s| s.span.name == name)
            .unwrap_or_else(|| panic!("{name}"))
            .span
    };
    assert_eq!(
        find("GET /for-one").parent_span_id,
        Some(find("GET /one").span_id)
    );
    assert_eq!(
        find("GET /for-two").parent_span_id,
        Some(find("GET /two").span_id)
    );
    assert_ne!(find("GET /one").trace_id, find("GET /two").trace_id);
}

#[test]
fn forwarded_header_keeps_the_recorded_caller_as_parent() {
    // front receives a W3C context and forwards it unchanged to back; both recorded.
    let s = conn(
        1,
        10,
        "front",
        "127.0.1.1:80",
        "10.0.0.9:5000",
        Role::Server,
    );
    let c = conn(
        2,
        10,
        "front",
        "127.0.1.1:41000",
        "127.0.1.2:80",
        Role::Client,
    );
    let b = conn(
        3,
        20,
        "back",
        "127.0.1.2:80",
        "127.0.1.1:41000",
        Role::Server,
    );
    let (spans, stats) = run(vec![
        exchange(&s, 0, "/", &[("traceparent", TP)], 100, 900, 200),
        exchange(&c, 0, "/b", &[("traceparent", TP)], 200, 300, 200),
        exchange(&b, 0, "/b", &[("traceparent", TP)], 200, 300, 200),
    ]);
    let front = by_name(&spans, SpanKind::Server, "front");
    let call = by_name(&spans, SpanKind::Client, "front");
    let back = by_name(&spans, SpanKind::Server, "back");
    assert_eq!(call.parent_span_id, Some(front.span_id));
    assert_eq!(back.parent_span_id, Some(call.span_id));
    assert_eq!(
        stats.orphans, 1,
        "only front's caller (not recorded) is missing"
    );
}

#[test]
fn outstanding_requests_count_as_evicted_in_the_window_and_at_the_end() {
    // Two identified requests without a response: one falls out of the window (evicted
    // one by one), the other is left for the end of the analysis (everything at once).
    let s = conn(1, 10, "svc", "127.0.1.2:80", "10.0.0.9:5000", Role::Server);
    let mut l = Linker::new();
    let (first, _) = exchange(&s, 0, "/a", &[], 1000, 1100, 200);
    let (second, second_resp) = exchange(&s, 1, "/b", &[], 5000, 5100, 200);
    let (third, _) = exchange(&s, 2, "/c", &[], 6000, 6100, 200);
    for ev in [first, second, second_resp, third] {
        l.on_event(ev);
    }
    assert_eq!(l.link(u64::MAX).len(), 1, "only /b has its response");
    l.evict(2000);
    assert_eq!(l.len(), 2);
    assert_eq!(l.stats().evicted_requests, 1);
    l.evict(u64::MAX);
    assert!(l.is_empty());
    assert_eq!(l.stats().evicted_requests, 2, "/c counted, /b was emitted");
    // The linker stays usable after the end-of-analysis eviction.
    let (again, again_resp) = exchange(&s, 3, "/d", &[], 7000, 7100, 200);
    l.on_event(again);
    l.on_event(again_resp);
    assert_eq!(l.link(u64::MAX).len(), 1);
}

#[test]
fn connection_numbers_are_released_with_their_last_exchange() {
    // A connection's number lives while one of its exchanges is held: evicting the last
    // one frees it (bounded memory), and a later exchange on the same connection gets a
    // fresh number that its response and its predecessor lookup still find.
    let s = conn(1, 10, "svc", "127.0.1.2:80", "10.0.0.9:5000", Role::Server);
    let mut l = Linker::new();
    let (first, first_resp) = exchange(&s, 0, "/a", &[], 1000, 1100, 200);
    let (second, second_resp) = exchange(&s, 1, "/b", &[], 1200, 1300, 200);
    for ev in [first, first_resp, second] {
        l.on_event(ev);
    }
    assert_eq!(l.conn_nos.len(), 1, "one number for both exchanges");
    assert_eq!(l.conn_nos.get(&s.key).map(|e| e.held), Some(2));
    l.on_event(second_resp);
    assert_eq!(l.link(u64::MAX).len(), 2);
    l.evict(1250);
    assert_eq!(
        l.conn_nos.get(&s.key).map(|e| e.held),
        Some(1),
        "/a gone, /b held"
    );
    l.evict(1400);
    assert!(l.is_empty());
    assert!(
        l.conn_nos.is_empty(),
        "the number went with the last exchange"
    );
    let (third, third_resp) = exchange(&s, 2, "/c", &[], 5000, 5100, 200);
    l.on_event(third);
    l.on_event(third_resp);
    let spans = l.link(u64::MAX);
    assert_eq!(
        spans.len(),
        1,
        "the response found its exchange under the new number"
    );
    assert_eq!(l.conn_nos.get(&s.key).map(|e| e.no), Some(1));
}

/// The same exchange with the thread that read or wrote its first request byte.
fn on_thread(
    (req, resp): (ExchangeEvent, ExchangeEvent),
    tid: u32,
) -> (ExchangeEvent, ExchangeEvent) {
    match req {
        ExchangeEvent::Request(mut ex) => {
            ex.request.tid = tid;
            (ExchangeEvent::Request(ex), resp)
        }
        other => (other, resp),
    }
}

fn span_of<'a>(spans: &'a [ObservedSpan], kind: SpanKind, path: &str) -> &'a Span {
    &spans
        .iter()
        .find(|s| {
            s.span.kind == kind
                && s.span
                    .attributes
                    .iter()
                    .any(|kv| kv.key == "url.path" && kv.value == AttrValue::Str(path.to_string()))
        })
        .unwrap_or_else(|| panic!("{kind:?} span of {path}"))
        .span
}

const TP_A: &str = "00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-a000000000000001-01";
const TP_B: &str = "00-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-b000000000000001-01";
const TP_A_CALL: &str = "00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-a000000000000002-01";

/// Two requests of two traces in flight in one process: the outgoing call of the older
/// one carries its trace id and hangs under it, not under the newer (innermost) one.
#[test]
fn wire_trace_id_picks_the_parent_among_concurrent_requests() {
    let a = conn(
        1,
        10,
        "svc",
        "127.0.1.2:80",
        "127.0.1.1:40001",
        Role::Server,
    );
    let b = conn(
        2,
        10,
        "svc",
        "127.0.1.2:80",
        "127.0.1.1:40002",
        Role::Server,
    );
    let out = conn(
        3,
        10,
        "svc",
        "127.0.1.2:50000",
        "127.0.1.3:80",
        Role::Client,
    );
    let (spans, stats) = run(vec![
        exchange(&a, 0, "/a", &[("traceparent", TP_A)], 100, 500, 200),
        exchange(&b, 0, "/b", &[("traceparent", TP_B)], 150, 450, 200),
        exchange(
            &out,
            0,
            "/call",
            &[("traceparent", TP_A_CALL)],
            200,
            300,
            200,
        ),
    ]);
    let sa = span_of(&spans, SpanKind::Server, "/a");
    let call = span_of(&spans, SpanKind::Client, "/call");
    assert_eq!(call.trace_id, sa.trace_id);
    assert_eq!(call.parent_span_id, Some(sa.span_id));
    assert_eq!(call.span_id.to_string(), "a000000000000002");
    assert_eq!(stats.ambiguous_parents, 0);
    assert_eq!(stats.orphans, 2, "only the two servers' remote callers");
}

/// A call whose wire trace id matches no in-flight request and whose candidates all have
/// wire contexts of other traces gets no parent (it is not theirs).
#[test]
fn wire_trace_id_of_no_in_flight_request_gets_no_parent() {
    let b = conn(
        2,
        10,
        "svc",
        "127.0.1.2:80",
        "127.0.1.1:40002",
        Role::Server,
    );
    let out = conn(
        3,
        10,
        "svc",
        "127.0.1.2:50000",
        "127.0.1.3:80",
        Role::Client,
    );
    let (spans, _) = run(vec![
        exchange(&b, 0, "/b", &[("traceparent", TP_B)], 150, 450, 200),
        exchange(
            &out,
            0,
            "/call",
            &[("traceparent", TP_A_CALL)],
            200,
            300,
            200,
        ),
    ]);
    let call = span_of(&spans, SpanKind::Client, "/call");
    assert_eq!(call.parent_span_id, None);
    assert_eq!(
        call.trace_id.to_string(),
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    );
}

/// Thread-per-request server: without context, the call made by the thread that read a
/// request belongs to that request, whichever started last.
#[test]
fn same_thread_picks_the_parent_without_context() {
    let a = conn(
        1,
        10,
        "svc",
        "127.0.1.2:80",
        "127.0.1.1:40001",
        Role::Server,
    );
    let b = conn(
        2,
        10,
        "svc",
        "127.0.1.2:80",
        "127.0.1.1:40002",
        Role::Server,
    );
    let out = conn(
        3,
        10,
        "svc",
        "127.0.1.2:50000",
        "127.0.1.3:80",
        Role::Client,
    );
    let (spans, stats) = run(vec![
        on_thread(exchange(&a, 0, "/a", &[], 100, 500, 200), 11),
        on_thread(exchange(&b, 0, "/b", &[], 150, 450, 200), 12),
        on_thread(exchange(&out, 0, "/call", &[], 200, 300, 200), 11),
    ]);
    let sa = span_of(&spans, SpanKind::Server, "/a");
    let call = span_of(&spans, SpanKind::Client, "/call");
    assert_eq!(call.parent_span_id, Some(sa.span_id));
    assert_eq!(call.trace_id, sa.trace_id);
    assert_eq!(stats.ambiguous_parents, 0);
}

/// Nothing tells two in-flight requests apart (same thread, no context): the innermost
/// is taken and the choice is counted.
#[test]
fn undecidable_parent_is_the_innermost_and_counted() {
    let a = conn(
        1,
        10,
        "svc",
        "127.0.1.2:80",
        "127.0.1.1:40001",
        Role::Server,
    );
    let b = conn(
        2,
        10,
        "svc",
        "127.0.1.2:80",
        "127.0.1.1:40002",
        Role::Server,
    );
    let out = conn(
        3,
        10,
        "svc",
        "127.0.1.2:50000",
        "127.0.1.3:80",
        Role::Client,
    );
    let (spans, stats) = run(vec![
        on_thread(exchange(&a, 0, "/a", &[], 100, 500, 200), 11),
        on_thread(exchange(&b, 0, "/b", &[], 150, 450, 200), 11),
        on_thread(exchange(&out, 0, "/call", &[], 200, 300, 200), 11),
    ]);
    let sb = span_of(&spans, SpanKind::Server, "/b");
    let call = span_of(&spans, SpanKind::Client, "/call");
    assert_eq!(call.parent_span_id, Some(sb.span_id));
    assert_eq!(stats.ambiguous_parents, 1);
}

/// The exchanges of [`context_less_request_adopts_the_trace_its_service_started`].
fn adoption_events() -> Vec<(ExchangeEvent, ExchangeEvent)> {
    // The balancer (pid 5): accepted from the driver, forwards to the service.
    let lb_in = conn(1, 5, "lb", "127.0.1.1:80", "127.0.0.9:41000", Role::Server);
    let lb_out = conn(2, 5, "lb", "127.0.1.1:42000", "127.0.1.2:80", Role::Client);
    // The service (pid 10): its server side of that connection and two calls.
    let svc_in = conn(
        3,
        10,
        "svc",
        "127.0.1.2:80",
        "127.0.1.1:42000",
        Role::Server,
    );
    let plain = conn(
        4,
        10,
        "svc",
        "127.0.1.2:50000",
        "127.0.1.4:80",
        Role::Client,
    );
    let traced = conn(
        5,
        10,
        "svc",
        "127.0.1.2:50001",
        "127.0.1.3:80",
        Role::Client,
    );
    vec![
        exchange(&lb_in, 0, "/entry", &[], 100, 900, 200),
        exchange(&lb_out, 0, "/entry", &[], 110, 890, 200),
        exchange(&svc_in, 0, "/entry", &[], 120, 880, 200),
        exchange(&plain, 0, "/plain", &[], 200, 300, 200),
        exchange(
            &traced,
            0,
            "/traced",
            &[("traceparent", TP_A_CALL)],
            400,
            500,
            200,
        ),
    ]
}

/// Root adoption: a context-less request through an uninstrumented (recorded) load
/// balancer reaches a service whose tracer starts a trace; the service's call carries
/// it. The service's SERVER span, the balancer's CLIENT span and SERVER span (the
/// context-less ancestors) and a context-less call made before all join that trace.
#[test]
fn context_less_request_adopts_the_trace_its_service_started() {
    let (spans, stats) = run(adoption_events());
    assert_eq!(spans.len(), 5);
    let t = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    for s in &spans {
        assert_eq!(s.span.trace_id.to_string(), t, "{}", s.span.name);
    }
    let entry = by_name(&spans, SpanKind::Server, "lb");
    let fwd = by_name(&spans, SpanKind::Client, "lb");
    let served = by_name(&spans, SpanKind::Server, "svc");
    let traced_call = span_of(&spans, SpanKind::Client, "/traced");
    let plain_call = span_of(&spans, SpanKind::Client, "/plain");
    assert_eq!(entry.parent_span_id, None);
    assert_eq!(fwd.parent_span_id, Some(entry.span_id));
    assert_eq!(served.parent_span_id, Some(fwd.span_id));
    assert_eq!(plain_call.parent_span_id, Some(served.span_id));
    assert_eq!(traced_call.parent_span_id, Some(served.span_id));
    assert_eq!(traced_call.span_id.to_string(), "a000000000000002");
    assert_eq!(stats.adopted_traces, 1);
    assert_eq!(stats.orphans, 0);
}

/// The exchanges of [`concurrent_context_less_requests_adopt_their_own_traces`].
fn concurrent_adoption_events() -> Vec<(ExchangeEvent, ExchangeEvent)> {
    let a = conn(
        1,
        10,
        "svc",
        "127.0.1.2:80",
        "127.0.1.1:40001",
        Role::Server,
    );
    let b = conn(
        2,
        10,
        "svc",
        "127.0.1.2:80",
        "127.0.1.1:40002",
        Role::Server,
    );
    let out_a = conn(
        3,
        10,
        "svc",
        "127.0.1.2:50000",
        "127.0.1.3:80",
        Role::Client,
    );
    let out_b = conn(
        4,
        10,
        "svc",
        "127.0.1.2:50001",
        "127.0.1.3:80",
        Role::Client,
    );
    let tp_b_call = "00-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-b000000000000002-01";
    vec![
        on_thread(exchange(&a, 0, "/a", &[], 100, 500, 200), 11),
        on_thread(exchange(&b, 0, "/b", &[], 150, 450, 200), 12),
        on_thread(
            exchange(
                &out_b,
                0,
                "/call-b",
                &[("traceparent", tp_b_call)],
                160,
                300,
                200,
            ),
            12,
        ),
        on_thread(
            exchange(
                &out_a,
                0,
                "/call-a",
                &[("traceparent", TP_A_CALL)],
                200,
                300,
                200,
            ),
            11,
        ),
    ]
}

/// The end of an analysis linked a run at a time (`run_cutoffs`, as the pipeline's back
/// does it) gives the same spans and stats as linking it all at once, with root adoption
/// renaming invented traces across runs, down to runs of one exchange.
#[test]
fn linking_the_end_in_runs_equals_linking_it_at_once() {
    for events in [adoption_events(), concurrent_adoption_events()] {
        let (mut once, once_stats) = run(events.clone());
        let key = |s: &ObservedSpan| format!("{s:?}");
        once.sort_by_key(key);
        for per in [1, 2, 3] {
            let mut l = Linker::new();
            for (req, resp) in events.clone() {
                l.on_event(req);
                l.on_event(resp);
            }
            let cutoffs = l.run_cutoffs(per, u64::MAX);
            assert!(per > 1 || cutoffs.len() > 1, "runs of one: several cutoffs");
            let mut spans = Vec::new();
            for c in cutoffs.into_iter().chain([u64::MAX]) {
                spans.extend(l.link(c));
            }
            spans.sort_by_key(key);
            assert_eq!(
                spans.iter().map(key).collect::<Vec<_>>(),
                once.iter().map(key).collect::<Vec<_>>(),
                "runs of {per}"
            );
            assert_eq!(l.stats(), &once_stats, "runs of {per}");
        }
    }
}

/// A drain linked in parts (`link_part` at the run cutoffs below the drain's, then
/// `link_unbuilt` at it, as the pipeline's back links a large drain) emits the same spans
/// in the same order as the drain at once, drain after drain, with the same stats: events
/// fed in time order with a drain after each (requests still unanswered at a drain), and
/// all events fed before a few large drains (root adoption across parts, invented traces
/// closing), in parts down to one exchange.
#[test]
fn a_drain_linked_in_parts_emits_what_it_emits_at_once_in_its_order() {
    let time = |ev: &ExchangeEvent| match ev {
        ExchangeEvent::Request(ex) => ex.start_ts(),
        ExchangeEvent::Response { response, .. } => response.end_ts,
        _ => 0,
    };
    // A server's caller recorded on a node whose clock is ahead: the client exchange
    // starts after the server's, and is identified ahead of its turn, with the server.
    let skewed = {
        let server = conn(
            1,
            10,
            "svc",
            "127.0.1.2:80",
            "127.0.1.1:40001",
            Role::Server,
        );
        let caller = conn(
            2,
            20,
            "web",
            "127.0.1.1:40001",
            "127.0.1.2:80",
            Role::Client,
        );
        let other = conn(
            3,
            30,
            "api",
            "127.0.1.4:80",
            "127.0.1.5:40002",
            Role::Server,
        );
        vec![
            exchange(&server, 0, "/s", &[("traceparent", TP)], 100, 200, 200),
            exchange(&other, 0, "/o", &[("traceparent", TP)], 103, 150, 200),
            exchange(&caller, 0, "/s", &[("traceparent", TP)], 105, 195, 200),
        ]
    };
    for events in [adoption_events(), concurrent_adoption_events(), skewed] {
        let mut timeline: Vec<ExchangeEvent> =
            events.into_iter().flat_map(|(q, r)| [q, r]).collect();
        timeline.sort_by_key(time);
        let times: Vec<u64> = timeline.iter().map(time).collect();
        // (events fed before each drain, the drain's cutoff): one drain per event, or all
        // events first and then drains at a third, two thirds and the end
        let stepwise: Vec<(usize, u64)> = (1..=timeline.len()).zip(times.clone()).collect();
        let at_once: Vec<(usize, u64)> = [times.len() / 3, 2 * times.len() / 3]
            .into_iter()
            .map(|i| (timeline.len(), times[i]))
            .collect();
        for (plan, large) in [(stepwise, false), (at_once, true)] {
            let plan: Vec<(usize, u64)> = plan
                .into_iter()
                .chain([(timeline.len(), u64::MAX)])
                .collect();
            let key = |s: &ObservedSpan| format!("{s:?}");
            // drain by drain, the spans each emits in order; the stats; the parts linked
            let drains = |parts_of: Option<usize>| {
                let mut l = Linker::new();
                let (mut out, mut fed, mut parts) = (Vec::new(), 0, 0);
                for &(upto, cutoff) in &plan {
                    for ev in &timeline[fed..upto] {
                        l.on_event(ev.clone());
                    }
                    fed = upto;
                    let details = l.details.clone();
                    let mut spans = Vec::new();
                    if let Some(per) = parts_of {
                        for part in l.run_cutoffs(per, cutoff) {
                            parts += 1;
                            spans.extend(build_all(l.link_part(part), &details));
                        }
                    }
                    spans.extend(l.link(cutoff));
                    out.push(spans.iter().map(key).collect::<Vec<_>>());
                }
                (out, l.stats().clone(), parts)
            };
            let (once, once_stats, _) = drains(None);
            for per in [1, 2, 3] {
                let (in_parts, stats, parts) = drains(Some(per));
                assert!(!large || per > 1 || parts > 0, "runs of one: {parts} parts");
                assert_eq!(in_parts, once, "parts of {per}");
                assert_eq!(stats, once_stats, "parts of {per}");
            }
        }
    }
}

/// Two concurrent context-less requests on a thread-per-request server: each adopts
/// the trace its own thread's call carries.
#[test]
fn concurrent_context_less_requests_adopt_their_own_traces() {
    let (spans, stats) = run(concurrent_adoption_events());
    let sa = span_of(&spans, SpanKind::Server, "/a");
    let sb = span_of(&spans, SpanKind::Server, "/b");
    assert_eq!(sa.trace_id.to_string(), "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    assert_eq!(sb.trace_id.to_string(), "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
    assert_eq!(
        span_of(&spans, SpanKind::Client, "/call-a").parent_span_id,
        Some(sa.span_id)
    );
    assert_eq!(
        span_of(&spans, SpanKind::Client, "/call-b").parent_span_id,
        Some(sb.span_id)
    );
    assert_eq!(stats.adopted_traces, 2);
    assert_eq!(stats.ambiguous_parents, 0);
}

/// A response timed before its request by more than the window (clock steps, hostile
/// input) leaves the caller search empty instead of panicking on an inverted range.
#[test]
fn response_timed_before_its_request_does_not_panic() {
    let c = conn(
        1,
        10,
        "front",
        "127.0.1.1:40000",
        "127.0.1.2:80",
        Role::Client,
    );
    let s = conn(
        2,
        20,
        "back",
        "127.0.1.2:80",
        "127.0.1.1:40000",
        Role::Server,
    );
    let mut l = Linker::with_window(100);
    for (req, resp) in [
        exchange(&c, 0, "/", &[], 5_000, 6_000, 200),
        exchange(&s, 0, "/", &[], 5_000, 1_000, 200),
    ] {
        l.on_event(req);
        l.on_event(resp);
    }
    let spans = l.link(u64::MAX);
    assert_eq!(spans.len(), 2);
    let back = by_name(&spans, SpanKind::Server, "back");
    assert_eq!(
        back.parent_span_id, None,
        "no caller within the (empty) range"
    );
}

/// A span whose parent exchange is identified but never emitted (the capture ended before
/// the parent's response) is an orphan: its parent is in no output. While the parent may
/// still be answered it is not counted; once answered and emitted, never.
#[test]
fn child_of_a_parent_never_emitted_is_an_orphan() {
    let (c1, s2) = front_calls_back();
    for answered in [false, true] {
        let mut l = Linker::new();
        // the caller sent a traceparent (its own span id): both traces are wire traces,
        // final at once
        let tp = [("traceparent", TP)];
        let (call, call_resp) = exchange(&c1, 0, "/b", &tp, 200, 400, 200);
        l.on_event(call);
        let (req, resp) = exchange(&s2, 0, "/b", &tp, 210, 390, 200);
        l.on_event(req);
        l.on_event(resp);
        let spans = l.link(u64::MAX);
        assert_eq!(
            spans.len(),
            1,
            "the server span; its caller has no response yet"
        );
        assert!(spans[0].span.parent_span_id.is_some(), "parent: the caller");
        assert_eq!(l.stats().orphans, 0, "the caller may still be answered");
        if answered {
            l.on_event(call_resp);
            assert_eq!(l.link(u64::MAX).len(), 1, "the caller, emitted");
        }
        l.evict(u64::MAX);
        assert_eq!(
            l.stats().orphans,
            u64::from(!answered),
            "answered: {answered}"
        );
    }
}

/// An emitted exchange's request and response move into its span; its slot, held for the
/// rest of the window, keeps only what linking reads, and is smaller than the exchange.
#[test]
fn an_emitted_exchange_moves_into_its_span_and_its_slot_stays_small() {
    let s = conn(1, 10, "svc", "127.0.1.2:80", "10.0.0.9:5000", Role::Server);
    let mut l = Linker::new();
    let (req, resp) = exchange(
        &s,
        0,
        "/orders?id=7",
        &[("traceparent", TP)],
        1000,
        2000,
        503,
    );
    l.on_event(req);
    l.on_event(resp);
    let spans = l.link(u64::MAX);
    assert_eq!(spans.len(), 1);
    let attr = |k: &str| {
        spans[0]
            .span
            .attributes
            .iter()
            .find(|kv| kv.key == k)
            .map(|kv| kv.value.clone())
    };
    assert_eq!(attr("url.path"), Some(AttrValue::Str("/orders".into())));
    assert_eq!(attr("http.response.status_code"), Some(AttrValue::Int(503)));
    let slot = l.slots.values().next().expect("held for the window");
    assert!(slot.emitted && slot.live.is_none());
    assert_eq!(
        (slot.held.start, slot.held.end_ts(), slot.held.open_end()),
        (1000, 2000, 2000)
    );
    assert!(
        std::mem::size_of::<Slot>() < std::mem::size_of::<Exchange>(),
        "a held slot ({} bytes) is smaller than the exchange ({} bytes)",
        std::mem::size_of::<Slot>(),
        std::mem::size_of::<Exchange>()
    );
}
