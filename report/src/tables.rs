//! The services, routes and edges tables (static HTML, every cell escaped).
//!
//! Edge rows come straight from the analyzer's graph (counts of all spans, before
//! sampling; p50/p99 from its latency histogram). Service rows join the graph's nodes
//! (requests received, errors) with latencies of the service's SERVER spans in the report
//! (exact nearest-rank percentiles of the sampled spans) — or, for streamed spans, with the
//! [`ReportTotals`] over all spans (histogram percentiles). Route rows group each
//! service's SERVER spans by name — `{method} {route}` for HTTP (the analyzer names spans
//! after low-cardinality routes), `pkg.Service/Method` for gRPC — with the same two
//! sources. Database rows group the database spans (`db.system.name`) by system, side
//! (the app's CLIENT spans, the database's SERVER spans), operation and collection.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use podtrace_model::{Span, SpanKind};

use crate::escape::html;
use crate::totals::{db_operation_key, DbOperationKey, ReportTotals, RouteTotals};
use crate::units::duration;

/// A service row of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRow {
    /// Service (node) name.
    pub name: String,
    /// Requests received (graph).
    pub requests: u64,
    /// Failed requests received (graph, HTTP ≥ 500).
    pub errors: u64,
    /// SERVER spans of the service in the report.
    pub server_spans: u64,
    /// CLIENT spans of the service in the report.
    pub client_spans: u64,
    /// Median duration of its SERVER spans, ns (when it has any).
    pub p50_ns: Option<u64>,
    /// 99th percentile duration of its SERVER spans, ns (when it has any).
    pub p99_ns: Option<u64>,
}

/// An edge row of the report (caller → callee).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeRow {
    /// Calling service.
    pub from: String,
    /// Called service.
    pub to: String,
    /// Requests.
    pub count: u64,
    /// Failed requests (HTTP ≥ 500).
    pub errors: u64,
    /// Mean latency, ns.
    pub avg_ns: u64,
    /// Median latency, ns.
    pub p50_ns: u64,
    /// 99th percentile latency, ns.
    pub p99_ns: u64,
}

/// Nearest-rank quantile of sorted values.
fn quantile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// Service rows: every graph node, plus services that only appear in spans.
pub fn service_rows(nodes: &[(String, u64, u64)], spans: &[Span]) -> Vec<ServiceRow> {
    #[derive(Default)]
    struct Acc {
        requests: u64,
        errors: u64,
        server: Vec<u64>,
        client: u64,
    }
    let mut acc: BTreeMap<&str, Acc> = BTreeMap::new();
    for (name, requests, errors) in nodes {
        let a = acc.entry(name).or_default();
        a.requests = *requests;
        a.errors = *errors;
    }
    for s in spans {
        let a = acc.entry(&s.resource.service_name).or_default();
        match s.kind {
            SpanKind::Server => a.server.push(s.duration_ns()),
            SpanKind::Client => a.client += 1,
        }
    }
    acc.into_iter()
        .map(|(name, mut a)| {
            a.server.sort_unstable();
            ServiceRow {
                name: name.to_string(),
                requests: a.requests,
                errors: a.errors,
                server_spans: a.server.len() as u64,
                client_spans: a.client,
                p50_ns: quantile(&a.server, 0.5),
                p99_ns: quantile(&a.server, 0.99),
            }
        })
        .collect()
}

/// Service rows from totals over all spans: every graph node, plus services that only
/// appear in spans; p50/p99 from the latency histograms.
pub fn service_rows_from_totals(
    nodes: &[(String, u64, u64)],
    totals: &ReportTotals,
) -> Vec<ServiceRow> {
    let mut rows: BTreeMap<&str, ServiceRow> = BTreeMap::new();
    for (name, svc) in &totals.services {
        rows.insert(
            name,
            ServiceRow {
                name: name.clone(),
                requests: 0,
                errors: 0,
                server_spans: svc.server_spans,
                client_spans: svc.client_spans,
                p50_ns: svc.p50_ns(),
                p99_ns: svc.p99_ns(),
            },
        );
    }
    for (name, requests, errors) in nodes {
        let row = rows.entry(name).or_insert_with(|| ServiceRow {
            name: name.clone(),
            requests: 0,
            errors: 0,
            server_spans: 0,
            client_spans: 0,
            p50_ns: None,
            p99_ns: None,
        });
        row.requests = *requests;
        row.errors = *errors;
    }
    rows.into_values().collect()
}

/// A route row: the SERVER spans of one service with one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRow {
    /// Service name (`None`: the routes beyond the totals' limit, together).
    pub service: Option<String>,
    /// Span name (`{method} {route}`, `pkg.Service/Method`).
    pub name: String,
    /// SERVER spans.
    pub spans: u64,
    /// Of which failed (ERROR status).
    pub errors: u64,
    /// Median duration, ns.
    pub p50_ns: Option<u64>,
    /// 99th percentile duration, ns.
    pub p99_ns: Option<u64>,
}

/// Route rows of the spans in the report (exact nearest-rank percentiles), by service
/// then name.
pub fn route_rows(spans: &[Span]) -> Vec<RouteRow> {
    let mut acc: BTreeMap<(&str, &str), (u64, Vec<u64>)> = BTreeMap::new();
    for s in spans.iter().filter(|s| s.kind == SpanKind::Server) {
        let a = acc
            .entry((s.resource.service_name.as_str(), s.name.as_str()))
            .or_default();
        a.0 += u64::from(s.status.is_error());
        a.1.push(s.duration_ns());
    }
    acc.into_iter()
        .map(|((service, name), (errors, mut d))| {
            d.sort_unstable();
            RouteRow {
                service: Some(service.to_string()),
                name: name.to_string(),
                spans: d.len() as u64,
                errors,
                p50_ns: quantile(&d, 0.5),
                p99_ns: quantile(&d, 0.99),
            }
        })
        .collect()
}

/// Route rows from totals over all spans (histogram percentiles), plus one row for the
/// routes beyond the totals' limit when there were any.
pub fn route_rows_from_totals(totals: &ReportTotals) -> Vec<RouteRow> {
    let row = |service: Option<&str>, name: &str, r: &RouteTotals| RouteRow {
        service: service.map(str::to_string),
        name: name.to_string(),
        spans: r.spans,
        errors: r.errors,
        p50_ns: (r.spans > 0).then(|| r.latency.quantile(0.5)),
        p99_ns: (r.spans > 0).then(|| r.latency.quantile(0.99)),
    };
    let mut rows: Vec<RouteRow> = totals
        .routes
        .iter()
        .flat_map(|(svc, names)| names.iter().map(move |(n, r)| (svc, n, r)))
        .map(|(svc, n, r)| row(Some(svc), n, r))
        .collect();
    if totals.other_routes.spans > 0 {
        rows.push(row(None, "(other routes)", &totals.other_routes));
    }
    rows
}

/// The routes table.
pub fn routes_html(rows: &[RouteRow]) -> String {
    let mut out = String::from(
        "<table class=\"grid\" id=\"routes\"><thead><tr><th>service</th><th>route</th>\
         <th>server spans</th><th>errors</th><th>p50</th><th>p99</th></tr></thead><tbody>\n",
    );
    for r in rows {
        let cls = if r.errors > 0 { " class=\"bad\"" } else { "" };
        let _ = writeln!(
            out,
            "<tr{cls}><td class=\"svc\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            html(r.service.as_deref().unwrap_or("(other services)")),
            html(&r.name),
            r.spans,
            r.errors,
            opt_duration(r.p50_ns),
            opt_duration(r.p99_ns)
        );
    }
    if rows.is_empty() {
        out.push_str("<tr><td colspan=\"6\">no server spans</td></tr>\n");
    }
    out.push_str("</tbody></table>");
    out
}

/// A database row: the spans of one operation on one collection of one database system,
/// seen from one side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbRow {
    /// `db.system.name` (`None`: the operations beyond the totals' limit, together).
    pub system: Option<String>,
    /// `client` (the caller's spans) or `server` (the database's own).
    pub side: &'static str,
    /// `db.operation.name` (empty when unknown).
    pub operation: String,
    /// `db.collection.name` (empty when not derivable).
    pub collection: String,
    /// Spans.
    pub spans: u64,
    /// Of which failed (ERROR status).
    pub errors: u64,
    /// Median duration, ns.
    pub p50_ns: Option<u64>,
    /// 99th percentile duration, ns.
    pub p99_ns: Option<u64>,
}

/// Database rows of the spans in the report (exact nearest-rank percentiles), by system,
/// side, operation, collection.
pub fn db_rows(spans: &[Span]) -> Vec<DbRow> {
    let mut acc: BTreeMap<DbOperationKey, (u64, Vec<u64>)> = BTreeMap::new();
    for s in spans {
        if let Some(key) = db_operation_key(s) {
            let a = acc.entry(key).or_default();
            a.0 += u64::from(s.status.is_error());
            a.1.push(s.duration_ns());
        }
    }
    acc.into_iter()
        .map(|((system, side, operation, collection), (errors, mut d))| {
            d.sort_unstable();
            DbRow {
                system: Some(system),
                side,
                operation,
                collection,
                spans: d.len() as u64,
                errors,
                p50_ns: quantile(&d, 0.5),
                p99_ns: quantile(&d, 0.99),
            }
        })
        .collect()
}

/// Database rows from totals over all spans (histogram percentiles), plus one row for the
/// operations beyond the totals' limit when there were any.
pub fn db_rows_from_totals(totals: &ReportTotals) -> Vec<DbRow> {
    let row = |key: Option<&DbOperationKey>, r: &RouteTotals| DbRow {
        system: key.map(|k| k.0.clone()),
        side: key.map_or("", |k| k.1),
        operation: key.map_or_else(|| "(other operations)".into(), |k| k.2.clone()),
        collection: key.map(|k| k.3.clone()).unwrap_or_default(),
        spans: r.spans,
        errors: r.errors,
        p50_ns: (r.spans > 0).then(|| r.latency.quantile(0.5)),
        p99_ns: (r.spans > 0).then(|| r.latency.quantile(0.99)),
    };
    let mut rows: Vec<DbRow> = totals
        .db_operations
        .iter()
        .map(|(k, r)| row(Some(k), r))
        .collect();
    if totals.other_db_operations.spans > 0 {
        rows.push(row(None, &totals.other_db_operations));
    }
    rows
}

/// The databases table; `None` when there are no database spans (the page then has no
/// databases section).
pub fn databases_html(rows: &[DbRow]) -> Option<String> {
    if rows.is_empty() {
        return None;
    }
    let mut out = String::from(
        "<table class=\"grid\" id=\"db-operations\"><thead><tr><th>database</th><th>side</th>\
         <th>operation</th><th>collection</th><th>spans</th><th>errors</th><th>p50</th><th>p99</th>\
         </tr></thead><tbody>\n",
    );
    for r in rows {
        let cls = if r.errors > 0 { " class=\"bad\"" } else { "" };
        let _ = writeln!(
            out,
            "<tr{cls}><td class=\"svc\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            html(r.system.as_deref().unwrap_or("(other)")),
            r.side,
            html(if r.operation.is_empty() { "–" } else { &r.operation }),
            html(if r.collection.is_empty() { "–" } else { &r.collection }),
            r.spans,
            r.errors,
            opt_duration(r.p50_ns),
            opt_duration(r.p99_ns)
        );
    }
    out.push_str("</tbody></table>");
    Some(out)
}

fn opt_duration(v: Option<u64>) -> String {
    v.map(duration).unwrap_or_else(|| "–".into())
}

/// The services table.
pub fn services_html(rows: &[ServiceRow]) -> String {
    let mut out = String::from(
        "<table class=\"grid\" id=\"services\"><thead><tr><th>service</th><th>requests in</th>\
         <th>errors</th><th>server spans</th><th>client spans</th><th>p50</th><th>p99</th>\
         </tr></thead><tbody>\n",
    );
    for r in rows {
        let cls = if r.errors > 0 { " class=\"bad\"" } else { "" };
        let _ = writeln!(
            out,
            "<tr{cls}><td class=\"svc\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            html(&r.name),
            r.requests,
            r.errors,
            r.server_spans,
            r.client_spans,
            opt_duration(r.p50_ns),
            opt_duration(r.p99_ns)
        );
    }
    if rows.is_empty() {
        out.push_str("<tr><td colspan=\"7\">no services</td></tr>\n");
    }
    out.push_str("</tbody></table>");
    out
}

/// The edges table.
pub fn edges_html(rows: &[EdgeRow]) -> String {
    let mut out = String::from(
        "<table class=\"grid\" id=\"edges\"><thead><tr><th>caller</th><th></th><th>callee</th>\
         <th>requests</th><th>errors</th><th>avg</th><th>p50</th><th>p99</th></tr></thead><tbody>\n",
    );
    for r in rows {
        let cls = if r.errors > 0 { " class=\"bad\"" } else { "" };
        let _ = writeln!(
            out,
            "<tr{cls}><td class=\"svc\">{}</td><td>→</td><td class=\"svc\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            html(&r.from),
            html(&r.to),
            r.count,
            r.errors,
            duration(r.avg_ns),
            duration(r.p50_ns),
            duration(r.p99_ns)
        );
    }
    if rows.is_empty() {
        out.push_str("<tr><td colspan=\"8\">no edges</td></tr>\n");
    }
    out.push_str("</tbody></table>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use podtrace_model::{KeyValue, Resource, SpanId, Status, TraceId};

    fn span(svc: &str, kind: SpanKind, dur: u64) -> Span {
        Span {
            trace_id: TraceId([1; 16]),
            span_id: SpanId([1; 8]),
            parent_span_id: None,
            trace_state: String::new(),
            flags: 1,
            name: "x".into(),
            kind,
            start_time_unix_nano: 0,
            end_time_unix_nano: dur,
            attributes: vec![],
            status: Status::unset(),
            resource: Resource::new(svc),
        }
    }

    #[test]
    fn services_join_graph_and_span_latencies() {
        let mut spans: Vec<Span> = (1..=100)
            .map(|i| span("b", SpanKind::Server, i * 1000))
            .collect();
        spans.push(span("a", SpanKind::Client, 5));
        let rows = service_rows(&[("b".into(), 120, 3), ("lb".into(), 0, 0)], &spans);
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "lb"]);
        assert_eq!((rows[0].client_spans, rows[0].p50_ns), (1, None));
        let b = &rows[1];
        assert_eq!((b.requests, b.errors, b.server_spans), (120, 3, 100));
        assert_eq!((b.p50_ns, b.p99_ns), (Some(50_000), Some(99_000)));
        let table = services_html(&rows);
        assert!(table.contains("<td>50µs</td><td>99µs</td>"), "{table}");
        assert!(table.contains("<tr class=\"bad\"><td class=\"svc\">b</td>"));
    }

    #[test]
    fn routes_group_server_spans_by_service_and_name() {
        let named = |svc: &str, kind: SpanKind, name: &str, dur: u64, err: bool| {
            let mut s = span(svc, kind, dur);
            s.name = name.into();
            if err {
                s.status = Status::error("HTTP 500");
            }
            s
        };
        let spans = vec![
            named("b", SpanKind::Server, "GET /order/{id}", 10, false),
            named("b", SpanKind::Server, "GET /order/{id}", 30, true),
            named("b", SpanKind::Server, "GET /order/{id}", 20, false),
            named("a", SpanKind::Server, "POST /cart", 5, false),
            // CLIENT spans are not routes of their service.
            named("a", SpanKind::Client, "GET /order/{id}", 7, false),
        ];
        let rows = route_rows(&spans);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (
                rows[0].service.as_deref(),
                rows[0].name.as_str(),
                rows[0].spans
            ),
            (Some("a"), "POST /cart", 1)
        );
        let b = &rows[1];
        assert_eq!(
            (b.spans, b.errors, b.p50_ns, b.p99_ns),
            (3, 1, Some(20), Some(30))
        );
        // The same from totals (exact below 128 ns).
        let totals = ReportTotals::from_spans(&spans);
        assert_eq!(route_rows_from_totals(&totals), rows);
        let table = routes_html(&rows);
        assert!(
            table.contains("<td>GET /order/{id}</td><td>3</td><td>1</td>"),
            "{table}"
        );
        assert!(routes_html(&[]).contains("no server spans"));
    }

    #[test]
    fn routes_beyond_the_limit_are_counted_together() {
        let mut t = ReportTotals::default();
        for i in 0..crate::totals::MAX_ROUTES + 3 {
            let mut s = span("svc", SpanKind::Server, 10);
            s.name = format!("GET /r{i}");
            t.observe(&s);
        }
        assert_eq!(t.route_count, crate::totals::MAX_ROUTES);
        assert_eq!(t.other_routes.spans, 3);
        let rows = route_rows_from_totals(&t);
        assert_eq!(rows.len(), crate::totals::MAX_ROUTES + 1);
        let last = rows.last().expect("rows");
        assert_eq!((last.service.as_deref(), last.spans), (None, 3));
        assert!(routes_html(&rows).contains("(other services)</td><td>(other routes)"));
    }

    #[test]
    fn edge_names_are_escaped() {
        let t = edges_html(&[EdgeRow {
            from: "<b>x</b>".into(),
            to: "\"y\"".into(),
            count: 1,
            errors: 0,
            avg_ns: 1,
            p50_ns: 1,
            p99_ns: 1,
        }]);
        assert!(t.contains("&lt;b&gt;x&lt;/b&gt;") && t.contains("&quot;y&quot;"));
        assert!(!t.contains("<b>"));
    }

    #[test]
    fn database_rows_group_db_spans_by_system_side_operation_collection() {
        let db = |kind: SpanKind, op: &str, coll: Option<&str>, dur: u64, err: bool| {
            let mut s = span("app", kind, dur);
            s.attributes
                .push(KeyValue::new("db.system.name", "postgresql"));
            s.attributes.push(KeyValue::new("db.operation.name", op));
            if let Some(c) = coll {
                s.attributes.push(KeyValue::new("db.collection.name", c));
            }
            if err {
                s.status = Status::error("ERROR 42P01: relation does not exist");
            }
            s
        };
        let mut spans: Vec<Span> = (1..=10)
            .map(|i| db(SpanKind::Client, "SELECT", Some("items"), i * 100, i == 10))
            .collect();
        spans.push(db(SpanKind::Server, "SELECT", Some("items"), 50, false));
        spans.push(db(SpanKind::Client, "BEGIN", None, 7, false));
        spans.push(span("app", SpanKind::Server, 5));
        let rows = db_rows(&spans);
        assert_eq!(rows.len(), 3);
        let sel = rows
            .iter()
            .find(|r| r.side == "client" && r.operation == "SELECT")
            .expect("client SELECT row");
        assert_eq!(
            (sel.collection.as_str(), sel.spans, sel.errors),
            ("items", 10, 1)
        );
        assert_eq!((sel.p50_ns, sel.p99_ns), (Some(500), Some(1000)));
        // The same rows from the totals over all spans (histogram buckets: exact < 128 ns).
        let t = ReportTotals::from_spans(&spans);
        let from_totals = db_rows_from_totals(&t);
        assert_eq!(from_totals.len(), 3);
        let begin = from_totals
            .iter()
            .find(|r| r.operation == "BEGIN")
            .expect("BEGIN row");
        assert_eq!((begin.spans, begin.p50_ns), (1, Some(7)));
        let html = databases_html(&rows).expect("a table");
        assert!(html.contains("<td>items</td>") && html.contains("class=\"bad\""));
        assert!(html.contains("<td>–</td>"), "BEGIN has no collection");
        // No database spans: no table (and no section on the page).
        assert_eq!(
            databases_html(&db_rows(&[span("a", SpanKind::Server, 1)])),
            None
        );
    }
}
