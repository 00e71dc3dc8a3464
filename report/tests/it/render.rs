//! The rendered file on its own: self-contained (no URL the browser would fetch), every
//! untrusted string escaped, the CSP's script hash matching the inline script, the data
//! round-tripping, and size/time with many thousands of traces.

use crate::common;

use std::time::Instant;

use petgraph::graph::DiGraph;
use podtrace_analyzer::graph::{Edge, Node};
use podtrace_analyzer::Graph;
use podtrace_report::{render_html, CollectorLimits, ReportInput, TraceCollector};
use sha2::{Digest, Sha256};

use common::{chain_analysis, synthetic_spans, with_evil_span, EVIL};

fn evil_graph() -> Graph {
    let mut g = DiGraph::new();
    let a = g.add_node(Node {
        name: EVIL.into(),
        requests: 0,
        errors: 0,
    });
    let b = g.add_node(Node {
        name: "b\"><svg onload=alert(4)>".into(),
        requests: 1,
        errors: 1,
    });
    g.add_edge(
        a,
        b,
        Edge {
            count: 1,
            errors: 1,
            avg_ns: 5,
            p50_ns: 5,
            p99_ns: 5,
        },
    );
    Graph { graph: g }
}

/// The JSON inside `<script type="application/json" id="report-data">`.
fn embedded_json(html: &str) -> serde_json::Value {
    let open = "<script type=\"application/json\" id=\"report-data\">";
    let start = html.find(open).expect("data element") + open.len();
    let end = start + html[start..].find("</script>").expect("data end");
    serde_json::from_str(&html[start..end]).expect("embedded JSON parses")
}

#[test]
fn untrusted_strings_are_escaped_everywhere() {
    let a = chain_analysis();
    let spans = with_evil_span(&a.spans);
    let graph = evil_graph();
    let mut stats = serde_json::to_value(&a.stats).expect("stats");
    stats["ignored_headers"] = serde_json::json!({ EVIL: 1 });
    let html = render_html(&ReportInput {
        title: EVIL,
        spans: &spans,
        graph: &graph,
        graph_svg: None,
        stats_json: stats,
        totals: None,
    });
    // Exactly our two script elements; no planted markup survives as markup.
    assert_eq!(
        html.matches("<script").count(),
        2,
        "only the data and code elements"
    );
    for planted in [
        EVIL,
        "<img src=x",
        "<svg onload",
        "</script><script>alert(3)",
    ] {
        assert!(!html.contains(planted), "{planted} appears unescaped");
    }
    assert!(html.contains("<title>&lt;script&gt;alert(1)&lt;/script&gt;</title>"));
    assert!(html.contains("<code>&lt;script&gt;alert(1)&lt;/script&gt;</code> = 1"));
    // The planted strings reach the page's data intact (shown as text by the script).
    let data = embedded_json(&html);
    let names: Vec<&str> = data["traces"]
        .as_array()
        .expect("traces")
        .iter()
        .flat_map(|t| t["spans"].as_array().expect("spans"))
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert!(names.contains(&EVIL));
    assert_eq!(names.len(), spans.len());
}

#[test]
fn page_is_self_contained_and_csp_pins_the_script() {
    let a = chain_analysis();
    let html = render_html(&ReportInput::from_analysis("chain", &a, None));
    for fetch in [
        "src=\"http",
        "href=\"http",
        "src=\"//",
        "href=\"//",
        "@import",
        "url(http",
        "<link",
    ] {
        assert!(
            !html.contains(fetch),
            "the page would fetch something: {fetch}"
        );
    }
    let code_start = html.rfind("<script>").expect("script") + "<script>".len();
    let code_end = code_start + html[code_start..].find("</script>").expect("end");
    let digest = Sha256::digest(&html.as_bytes()[code_start..code_end]);
    let hash = podtrace_report::escape::base64(&digest);
    assert!(
        html.contains(&format!("script-src 'sha256-{hash}'")),
        "CSP must name the inline script's hash"
    );
    assert!(html.contains("default-src 'none'; img-src data:"));
    // Static parts from the real chain analysis.
    assert!(html.contains(
        "<td class=\"svc\">frontend</td><td>→</td><td class=\"svc\">service-a</td><td>9</td>"
    ));
    assert!(html.contains("9 traces · 70 spans"));
    assert!(html.contains("data:image/svg+xml;base64,"));
    let data = embedded_json(&html);
    assert_eq!(data["traces"].as_array().expect("traces").len(), 9);
    // Erroring traces come first.
    assert!(data["traces"][0]["errors"].as_u64().unwrap_or(0) > 0);
}

#[test]
fn many_thousands_of_traces_render_fast_and_compact() {
    let spans = synthetic_spans(20_000);
    let graph = Graph::default();
    let t = Instant::now();
    let html = render_html(&ReportInput {
        title: "scale",
        spans: &spans,
        graph: &graph,
        graph_svg: None,
        stats_json: serde_json::Value::Null,
        totals: None,
    });
    let took = t.elapsed();
    eprintln!(
        "20000 traces / {} spans: {:.1} MB in {:?}",
        spans.len(),
        html.len() as f64 / 1e6,
        took
    );
    assert!(took.as_secs() < 20, "render took {took:?}");
    assert!(
        html.len() < 400 * spans.len(),
        "{} bytes for {} spans",
        html.len(),
        spans.len()
    );
    let data = embedded_json(&html);
    assert_eq!(data["traces"].as_array().expect("traces").len(), 20_000);
}

#[test]
fn streamed_report_lists_kept_traces_and_totals_all_spans() {
    let spans = synthetic_spans(20_000);
    let mut collector = TraceCollector::new(CollectorLimits {
        max_traces: 300,
        ..CollectorLimits::default()
    });
    for batch in spans.chunks(777) {
        collector.add(batch);
    }
    let collected = collector.finish();
    let graph = Graph::default();
    let html = render_html(&ReportInput::from_collected(
        "streamed",
        &collected,
        &graph,
        None,
        serde_json::json!({ "spans": 100_000 }),
    ));
    let note = "showing 300 of 20000 traces: erroring and slowest first; 19700 traces left out";
    assert!(
        html.contains(&format!(
            "<p class=\"note warn\" id=\"left-out\">{note}</p>"
        )),
        "the trace list says traces were left out"
    );
    assert!(html.contains("300 of 20000 traces · 1500 of 100000 spans · 5 services"));
    assert!(html.contains("<th>spans in this report</th><td>1500 of 100000</td>"));
    assert!(html.contains("<th>traces in this report</th><td>300 of 20000 (19700 left out)</td>"));
    // Services table: counts over all 100 000 spans, not the 1 500 listed.
    assert!(
        html.contains("<td class=\"svc\">api</td><td>0</td><td>0</td><td>20000</td><td>0</td>"),
        "services count all spans"
    );
    let data = embedded_json(&html);
    let traces = data["traces"].as_array().expect("traces");
    assert_eq!(traces.len(), 300);
    // Erroring first: every 50th trace errs (400 of them), so all 300 listed err.
    assert!(traces.iter().all(|t| t["errors"].as_u64() == Some(1)));
    assert!(traces
        .iter()
        .all(|t| t["spans"].as_array().map(Vec::len) == Some(5)));

    // The all-spans page has no note and plain counts.
    let a = chain_analysis();
    let html = render_html(&ReportInput::from_analysis("chain", &a, None));
    assert!(!html.contains("id=\"left-out\"") && !html.contains("traces in this report"));
}
