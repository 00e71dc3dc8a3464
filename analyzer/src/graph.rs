//! The request-flow graph: who calls whom, how often, how fast, how often it fails.
//!
//! Nodes are services (or pods, or external addresses) with the requests they received
//! and how many failed; a database whose side was not recorded is a node named by its
//! system and address (`postgresql 10.0.0.5:5432`). Edges are caller → callee with request
//! count, error count and latency (exact average; p50 and p99 nearest-rank over a log-linear [`Histogram`], within
//! 1/64 relative error, so memory does not grow with traffic). Edges come from CLIENT spans (caller = the
//! span's service, callee = `peer.service` or the peer address) and from SERVER spans whose
//! client side was not recorded (caller = the peer's service or address). An error is an
//! HTTP status ≥ 500. [`Graph::to_dot`] writes a Graphviz `digraph` with quoted, escaped
//! names. A gRPC call with a `grpc-status` other than 0 is an error too, and so is a
//! database call whose span is an error (an error reply, `db.response.status_code`, or a
//! statement the server skipped after an earlier error of its batch).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use podtrace_model::{AttrValue, SpanKind, StatusCode};
use serde::Serialize;

use crate::span::ObservedSpan;

/// A node: one service, pod or external address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    /// Display name.
    pub name: String,
    /// Requests it received (sum of incoming edges).
    pub requests: u64,
    /// Of which failed (HTTP ≥ 500).
    pub errors: u64,
}

/// An edge: caller → callee.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Edge {
    /// Requests.
    pub count: u64,
    /// Failed requests (HTTP ≥ 500, gRPC status, database error reply).
    pub errors: u64,
    /// Mean latency, ns.
    pub avg_ns: u64,
    /// Median latency, ns.
    pub p50_ns: u64,
    /// 99th percentile latency, ns.
    pub p99_ns: u64,
}

/// The finished graph (nodes and edges in name order, so output is deterministic).
#[derive(Debug, Clone, Default)]
pub struct Graph {
    /// The petgraph graph.
    pub graph: DiGraph<Node, Edge>,
}

/// A latency histogram with log-linear buckets (7 significant bits: values below 128 ns
/// exact, above within 1/64 relative error), so an edge's memory does not grow with its
/// request count. Quantiles are nearest-rank over the buckets (bucket midpoints).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Histogram {
    buckets: BTreeMap<u32, u64>,
    count: u64,
    sum: u128,
}

impl Histogram {
    fn key(v: u64) -> u32 {
        if v < 128 {
            return v as u32;
        }
        let shift = 63 - v.leading_zeros() - 6;
        (shift << 7) | ((v >> shift) as u32 & 127)
    }

    fn value(key: u32) -> u64 {
        let (shift, m) = (key >> 7, u64::from(key & 127));
        if shift == 0 {
            m
        } else {
            (m << shift) + (1u64 << (shift - 1))
        }
    }

    /// Records one value.
    pub fn add(&mut self, v: u64) {
        *self.buckets.entry(Self::key(v)).or_default() += 1;
        self.count += 1;
        self.sum += u128::from(v);
    }

    /// Number of values.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Exact mean (0 when empty).
    pub fn mean(&self) -> u64 {
        if self.count == 0 {
            0
        } else {
            (self.sum / u128::from(self.count)) as u64
        }
    }

    /// Nearest-rank quantile `q` in 0..=1 (0 when empty).
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (k, n) in &self.buckets {
            seen += n;
            if seen >= rank {
                return Self::value(*k);
            }
        }
        0
    }
}

/// What a graph node stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum GraphNodes {
    /// One node per service (`service.name`, `peer.service`), else per address.
    #[default]
    Services,
    /// One node per pod (`k8s.pod.name`, `podtrace.peer.pod`), else per service/address.
    Pods,
}

/// The value under `key`, inserted as the default when missing (the key is copied only
/// then).
fn get_or_insert<'m, V: Default>(map: &'m mut BTreeMap<String, V>, key: &str) -> &'m mut V {
    if !map.contains_key(key) {
        map.insert(key.to_string(), V::default());
    }
    map.get_mut(key).expect("the key was inserted above")
}

/// Accumulates spans into a [`Graph`].
#[derive(Debug, Default, Clone)]
pub struct GraphBuilder {
    by: GraphNodes,
    nodes: BTreeMap<String, (u64, u64)>,
    /// caller → callee → (requests, errors, latency); nested so a known edge is found by
    /// borrowed names (no allocation per span).
    edges: BTreeMap<String, BTreeMap<String, (u64, u64, Histogram)>>,
}

fn attr_str<'a>(s: &'a ObservedSpan, key: &str) -> Option<&'a str> {
    match s.span.attribute(key) {
        Some(AttrValue::Str(v)) => Some(v.as_str()),
        _ => None,
    }
}

fn attr_int(s: &ObservedSpan, key: &str) -> Option<i64> {
    match s.span.attribute(key) {
        Some(AttrValue::Int(v)) => Some(*v),
        _ => None,
    }
}

impl GraphBuilder {
    /// An empty builder with one node per service.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty builder with nodes of the given kind.
    pub fn by(by: GraphNodes) -> Self {
        GraphBuilder {
            by,
            ..Self::default()
        }
    }

    /// Adds one span's edge (if it contributes one).
    pub fn add(&mut self, s: &ObservedSpan) {
        let resource = &s.span.resource;
        let (own, peer): (&str, Option<&str>) = match self.by {
            GraphNodes::Services => (resource.service_name.as_str(), attr_str(s, "peer.service")),
            GraphNodes::Pods => (
                resource
                    .get("k8s.pod.name")
                    .unwrap_or(&resource.service_name),
                attr_str(s, "podtrace.peer.pod").or_else(|| attr_str(s, "peer.service")),
            ),
        };
        let peer_ip = attr_str(s, "network.peer.address");
        let (caller, callee): (Cow<'_, str>, Cow<'_, str>) = match s.span.kind {
            SpanKind::Client => {
                let callee = peer.map(Cow::Borrowed).or_else(|| {
                    let addr = peer_ip.map(|ip| match attr_int(s, "network.peer.port") {
                        Some(port) if ip.contains(':') => Cow::Owned(format!("[{ip}]:{port}")),
                        Some(port) => Cow::Owned(format!("{ip}:{port}")),
                        None => Cow::Borrowed(ip),
                    })?;
                    // A database whose side was not recorded: named by its system too.
                    Some(match attr_str(s, "db.system.name") {
                        Some(system) => Cow::Owned(format!("{system} {addr}")),
                        None => addr,
                    })
                });
                (
                    Cow::Borrowed(own),
                    callee.unwrap_or(Cow::Borrowed("unknown")),
                )
            }
            SpanKind::Server => {
                if s.caller_recorded {
                    return;
                }
                let caller = peer.or(peer_ip).unwrap_or("unknown");
                (Cow::Borrowed(caller), Cow::Borrowed(own))
            }
        };
        let error = attr_int(s, "http.response.status_code").is_some_and(|c| c >= 500)
            || attr_int(s, "rpc.grpc.status_code").is_some_and(|c| c != 0)
            || (s.span.status.code == StatusCode::Error
                && s.span
                    .attributes
                    .iter()
                    .any(|kv| kv.key == "db.response.status_code" || kv.key == "db.system.name"));
        if !self.nodes.contains_key(caller.as_ref()) {
            self.nodes.insert(caller.to_string(), (0, 0));
        }
        let n = get_or_insert(&mut self.nodes, &callee);
        n.0 += 1;
        n.1 += u64::from(error);
        let e = get_or_insert(get_or_insert(&mut self.edges, &caller), &callee);
        e.0 += 1;
        e.1 += u64::from(error);
        e.2.add(s.span.duration_ns());
    }

    /// The graph of everything added so far.
    pub fn build(&self) -> Graph {
        let mut graph = DiGraph::new();
        let mut index: BTreeMap<&str, NodeIndex> = BTreeMap::new();
        for (name, (requests, errors)) in &self.nodes {
            let i = graph.add_node(Node {
                name: name.clone(),
                requests: *requests,
                errors: *errors,
            });
            index.insert(name.as_str(), i);
        }
        let edges = self
            .edges
            .iter()
            .flat_map(|(from, to)| to.iter().map(move |(to, e)| (from, to, e)));
        for (from, to, (count, errors, lat)) in edges {
            let (Some(a), Some(b)) = (index.get(from.as_str()), index.get(to.as_str())) else {
                continue;
            };
            graph.add_edge(
                *a,
                *b,
                Edge {
                    count: *count,
                    errors: *errors,
                    avg_ns: lat.mean(),
                    p50_ns: lat.quantile(0.5),
                    p99_ns: lat.quantile(0.99),
                },
            );
        }
        Graph { graph }
    }
}

/// Escapes a string for a double-quoted DOT id or label.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Formats nanoseconds for a label.
fn duration(ns: u64) -> String {
    if ns >= 1_000_000_000 {
        format!("{:.2}s", ns as f64 / 1e9)
    } else if ns >= 1_000_000 {
        format!("{:.2}ms", ns as f64 / 1e6)
    } else {
        format!("{:.0}µs", ns as f64 / 1e3)
    }
}

impl Graph {
    /// Nodes in name order.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.graph.node_weights()
    }

    /// Edges as (caller, callee, stats), in (caller, callee) order.
    pub fn edges(&self) -> impl Iterator<Item = (&str, &str, &Edge)> {
        self.graph.edge_references().map(|e| {
            (
                self.graph[e.source()].name.as_str(),
                self.graph[e.target()].name.as_str(),
                e.weight(),
            )
        })
    }

    /// The graph in Graphviz DOT.
    pub fn to_dot(&self) -> String {
        let mut out = String::from(
            "digraph podtrace {\n  rankdir=LR;\n  node [shape=box, style=rounded, fontname=\"Helvetica\"];\n  edge [fontname=\"Helvetica\", fontsize=10];\n",
        );
        for n in self.nodes() {
            let label = format!("{}\n{} req, {} err", n.name, n.requests, n.errors);
            let color = if n.errors > 0 { ", color=red" } else { "" };
            let _ = writeln!(
                out,
                "  \"{}\" [label=\"{}\"{}];",
                escape(&n.name),
                escape(&label),
                color
            );
        }
        for (from, to, e) in self.edges() {
            let label = format!(
                "{} req, avg {}, p99 {}, {} err",
                e.count,
                duration(e.avg_ns),
                duration(e.p99_ns),
                e.errors
            );
            let color = if e.errors > 0 { ", color=red" } else { "" };
            let _ = writeln!(
                out,
                "  \"{}\" -> \"{}\" [label=\"{}\"{}];",
                escape(from),
                escape(to),
                escape(&label),
                color
            );
        }
        out.push_str("}\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reassemble::{ConnInfo, ConnKey};
    use podtrace_format::Role;
    use podtrace_model::{KeyValue, Resource, Span, SpanId, Status, TraceId};
    use std::sync::Arc;

    fn span(
        kind: SpanKind,
        svc: &str,
        peer: &str,
        status: i64,
        dur: u64,
        caller_recorded: bool,
    ) -> ObservedSpan {
        ObservedSpan {
            span: Span {
                trace_id: TraceId([1; 16]),
                span_id: SpanId([1; 8]),
                parent_span_id: None,
                trace_state: String::new(),
                flags: 1,
                name: "GET /".into(),
                kind,
                start_time_unix_nano: 1000,
                end_time_unix_nano: 1000 + dur,
                attributes: vec![
                    KeyValue::new("http.response.status_code", status),
                    KeyValue::new("network.peer.address", "10.1.2.3"),
                    KeyValue::new("network.peer.port", 8080i64),
                    KeyValue::new("peer.service", peer),
                ],
                status: Status::unset(),
                resource: Resource::new(svc),
            },
            conn: Arc::new(ConnInfo {
                key: ConnKey {
                    conn_id: 1,
                    local: None,
                    remote: None,
                },
                pid: 1,
                comm: "x".into(),
                cgroup_id: 0,
                role: Role::Client,
                tls: false,
            }),
            caller_recorded,
        }
    }

    #[test]
    fn counts_latencies_and_server_dedup() {
        let mut b = GraphBuilder::new();
        for (i, status) in [200, 200, 500, 200].iter().enumerate() {
            b.add(&span(
                SpanKind::Client,
                "front",
                "back",
                *status,
                (i as u64 + 1) * 1_000_000,
                false,
            ));
        }
        // The server side of the same calls: already counted from the client side.
        b.add(&span(SpanKind::Server, "back", "front", 200, 5, true));
        // A call from an unrecorded client.
        b.add(&span(SpanKind::Server, "back", "lb", 200, 5, false));
        let g = b.build();
        let edges: Vec<_> = g
            .edges()
            .map(|(a, b, e)| (a.to_string(), b.to_string(), e.clone()))
            .collect();
        assert_eq!(edges.len(), 2);
        let (_, _, fb) = edges
            .iter()
            .find(|(a, _, _)| a == "front")
            .expect("front edge");
        assert_eq!((fb.count, fb.errors), (4, 1));
        assert_eq!(fb.avg_ns, 2_500_000);
        let close = |got: u64, want: u64| got.abs_diff(want) <= want / 64;
        assert!(close(fb.p50_ns, 2_000_000), "{}", fb.p50_ns);
        assert!(close(fb.p99_ns, 4_000_000), "{}", fb.p99_ns);
        let back = g.nodes().find(|n| n.name == "back").expect("back");
        assert_eq!((back.requests, back.errors), (5, 1));
    }

    #[test]
    fn histogram_quantiles_within_bucket_error() {
        let mut h = Histogram::default();
        for v in 1..=10_000u64 {
            h.add(v * 1000);
        }
        for (q, want) in [(0.5, 5_000_000u64), (0.99, 9_900_000), (1.0, 10_000_000)] {
            let got = h.quantile(q);
            assert!(got.abs_diff(want) <= want / 64, "q{q}: {got} vs {want}");
        }
        assert_eq!(h.mean(), 5_000_500);
        let mut small = Histogram::default();
        small.add(7);
        assert_eq!(small.quantile(0.5), 7, "small values are exact");
        for v in [0u64, 1, 127, 128, 129, 1 << 20, u64::MAX] {
            let k = Histogram::key(v);
            let back = Histogram::value(k);
            assert!(back.abs_diff(v) <= v / 64 + 1, "{v} -> {back}");
        }
    }

    #[test]
    fn pod_nodes() {
        let mut s = span(SpanKind::Client, "front", "back", 200, 10, false);
        s.span.resource.set("k8s.pod.name", "front-1");
        s.span
            .attributes
            .push(KeyValue::new("podtrace.peer.pod", "back-7"));
        let mut b = GraphBuilder::by(GraphNodes::Pods);
        b.add(&s);
        let g = b.build();
        let e: Vec<_> = g
            .edges()
            .map(|(a, b, _)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(e, vec![("front-1".to_string(), "back-7".to_string())]);
    }

    #[test]
    fn dot_renders_without_warnings() {
        let mut b = GraphBuilder::new();
        b.add(&span(
            SpanKind::Client,
            "we\"ird\\name\nx",
            "ünïcode svc",
            200,
            10,
            false,
        ));
        b.add(&span(SpanKind::Client, "a -> b", "c;d{}", 503, 10, false));
        let dot = b.build().to_dot();
        assert!(dot.starts_with("digraph podtrace {"));
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("g.dot");
        std::fs::write(&path, &dot).expect("write");
        let out = match std::process::Command::new("dot")
            .arg("-Tsvg")
            .arg(&path)
            .output()
        {
            Ok(o) => o,
            Err(e) => {
                eprintln!("SKIPPING dot render check: graphviz `dot` not runnable: {e}");
                return;
            }
        };
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "dot warnings: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let svg = String::from_utf8_lossy(&out.stdout);
        assert!(svg.contains("ünïcode svc"));
        assert!(svg.contains("we&quot;ird\\name"), "{svg}");
    }

    #[test]
    fn databases_are_callees_named_by_system_and_address() {
        let db = |op: &str, aborted: bool| {
            let mut s = span(SpanKind::Client, "app", "", 0, 100, false);
            s.span.attributes = vec![
                KeyValue::new("db.system.name", "postgresql"),
                KeyValue::new("db.operation.name", op),
                KeyValue::new("network.peer.address", "10.1.2.3"),
                KeyValue::new("network.peer.port", 5432i64),
            ];
            if aborted {
                // Skipped after an earlier error: no status code, still an error.
                s.span.status = Status::error("not executed");
            }
            s
        };
        let mut b = GraphBuilder::new();
        b.add(&db("SELECT", false));
        b.add(&db("UPDATE", true));
        let g = b.build();
        let edge = g.edges().next().expect("one edge");
        assert_eq!((edge.0, edge.1), ("app", "postgresql 10.1.2.3:5432"));
        assert_eq!((edge.2.count, edge.2.errors), (2, 1));
    }
}
