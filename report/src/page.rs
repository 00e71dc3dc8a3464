//! Assembles the single HTML file: inline CSS, the graph as an `<img>` data URI, static
//! tables, the trace data as inert JSON, and the inline script.
//!
//! Safety model: (1) every string from traffic is escaped where it is placed (see
//! [`crate::escape`]); (2) the graph SVG — Graphviz's or ours — is shown through an
//! `<img>`, where SVG cannot run scripts or load anything; (3) a Content-Security-Policy
//! allows no network access at all and only the one script whose SHA-256 it names, so even
//! a markup injection that slipped past (1) could not run code or fetch anything.

use sha2::{Digest, Sha256};

use crate::escape::{base64, html, json_in_script};

/// The page's stylesheet.
const CSS: &str = include_str!("assets/report.css");
/// The page's script.
const JS: &str = include_str!("assets/report.js");

/// The parts of the page, already rendered.
pub struct Parts<'a> {
    /// Page title (unescaped).
    pub title: &'a str,
    /// The graph SVG document (unescaped; shown as an image).
    pub graph_svg: &'a str,
    /// Who drew the graph, for the caption.
    pub graph_by_graphviz: bool,
    /// Services table HTML (escaped).
    pub services: &'a str,
    /// Routes table HTML (escaped).
    pub routes: &'a str,
    /// Edges table HTML (escaped).
    pub edges: &'a str,
    /// Databases table HTML (escaped); `None` without database spans (no section).
    pub databases: Option<&'a str>,
    /// Summary table HTML (escaped).
    pub summary: &'a str,
    /// Trace data JSON (raw serde_json output).
    pub data_json: &'a str,
    /// Header counts: traces, spans, services (in the report).
    pub counts: (usize, usize, usize),
    /// Traces and spans of the whole analysis, when the report lists only some of them.
    pub all_counts: Option<(u64, u64)>,
    /// Shown above the trace list (and in the header) when traces were left out (unescaped).
    pub left_out_note: Option<&'a str>,
}

/// The Content-Security-Policy of the page.
pub fn content_security_policy() -> String {
    let hash = base64(&Sha256::digest(JS.as_bytes()));
    format!(
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-{hash}'; \
         base-uri 'none'; form-action 'none'"
    )
}

/// Renders the page.
pub fn render(p: &Parts<'_>) -> String {
    let title = html(p.title);
    let graph_uri = format!(
        "data:image/svg+xml;base64,{}",
        base64(p.graph_svg.as_bytes())
    );
    let caption = if p.graph_by_graphviz {
        "Laid out by Graphviz. Edges: requests, latency, errors (HTTP ≥ 500) over all spans before sampling."
    } else {
        "Drawn by podtrace (install Graphviz for a better layout). Edges: requests, p99 latency, errors (HTTP ≥ 500) over all spans before sampling."
    };
    let (traces, spans, services) = p.counts;
    let counts = match p.all_counts {
        Some((all_traces, all_spans))
            if (all_traces, all_spans) != (traces as u64, spans as u64) =>
        {
            format!("{traces} of {all_traces} traces · {spans} of {all_spans} spans · {services} services")
        }
        _ => format!("{traces} traces · {spans} spans · {services} services"),
    };
    let left_out = p
        .left_out_note
        .map(|n| format!("<p class=\"note warn\" id=\"left-out\">{}</p>", html(n)))
        .unwrap_or_default();
    let db_nav = if p.databases.is_some() {
        "<a href=\"#databases\">Databases</a>"
    } else {
        ""
    };
    let mut out = String::with_capacity(p.data_json.len() + graph_uri.len() + 64 * 1024);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    // The policy is our own constant text (no `"`, `<` or `&`): placed as is.
    out.push_str(&format!(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"{}\">\n",
        content_security_policy()
    ));
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    out.push_str(&format!(
        "<title>{title}</title>\n<style>\n{CSS}</style>\n</head>\n<body>\n"
    ));
    out.push_str(&format!(
        "<header><h1>{title}</h1><span class=\"counts\" id=\"counts\">{counts}</span>\
         <nav><a href=\"#graph\">Graph</a><a href=\"#services\">Services</a><a href=\"#routes\">Routes</a>{db_nav}<a href=\"#traces\">Traces</a><a href=\"#summary\">Capture summary</a></nav></header>\n<main>\n"
    ));
    out.push_str(&format!(
        "<section id=\"graph\"><h2>Request flow</h2><div class=\"graph\"><img id=\"graph-img\" alt=\"request-flow graph\" src=\"{graph_uri}\"></div>\
         <p class=\"note\">{caption}</p></section>\n"
    ));
    out.push_str(&format!(
        "<section id=\"services\"><h2>Services</h2>{}\n<p class=\"note\">Requests and errors: all spans before sampling. {}</p>\
         <h3>Calls (caller → callee)</h3>{}</section>\n",
        p.services,
        if p.all_counts.is_some() {
            "Server/client spans and p50/p99: all SERVER spans of the analysis, including traces not listed below (p50/p99 within 1/64)."
        } else {
            "p50/p99: SERVER spans in this report."
        },
        p.edges
    ));
    out.push_str(&format!(
        "<section id=\"routes\"><h2>Routes</h2>{}\n<p class=\"note\">SERVER spans by service and span name \
         (<code>{{method}} {{route}}</code>: routes given with --route or inferred from paths; \
         gRPC: <code>Service/Method</code>); errors: ERROR status. {}</p></section>\n",
        p.routes,
        if p.all_counts.is_some() {
            "All SERVER spans of the analysis (p50/p99 within 1/64)."
        } else {
            "SERVER spans in this report."
        }
    ));
    if let Some(db) = p.databases {
        out.push_str(&format!(
            "<section id=\"databases\"><h2>Databases</h2>{db}\n<p class=\"note\">Database spans \
             (<code>db.system.name</code>) by system, side (client: the callers' spans; server: the \
             database's own), <code>db.operation.name</code> and <code>db.collection.name</code>; \
             errors: ERROR status (an error reply, or a statement skipped after an earlier error). {}</p></section>\n",
            if p.all_counts.is_some() {
                "All database spans of the analysis (p50/p99 within 1/64)."
            } else {
                "Database spans in this report."
            }
        ));
    }
    out.push_str("<section id=\"traces\"><h2>Traces</h2>");
    out.push_str(&left_out);
    out.push_str(
        "<div class=\"controls\">\
         <input type=\"search\" id=\"trace-filter\" placeholder=\"filter: trace id, service, span name\" aria-label=\"filter traces\">\
         <label>sort <select id=\"trace-sort\"><option value=\"errors\">errors, then slowest</option><option value=\"duration\">slowest</option>\
         <option value=\"start\">start time</option><option value=\"spans\">most spans</option></select></label>\
         <label><input type=\"checkbox\" id=\"errors-only\"> errors only</label>\
         <span class=\"pager\"><button id=\"pager-prev\" type=\"button\">◀</button><span id=\"pager-label\"></span><button id=\"pager-next\" type=\"button\">▶</button></span></div>\
         <table class=\"grid\" id=\"trace-list\"><thead><tr><th>start (UTC)</th><th>root span</th><th>duration</th><th>spans</th><th>services</th><th>errors</th><th>trace id</th></tr></thead><tbody></tbody></table>\
         <div class=\"waterfall\" id=\"waterfall\"></div>\
         <noscript><p>The trace list and waterfalls need JavaScript.</p></noscript></section>\n",
    );
    out.push_str(&format!(
        "<section id=\"summary\"><h2>Capture summary</h2>{}</section>\n</main>\n",
        p.summary
    ));
    out.push_str("<script type=\"application/json\" id=\"report-data\">");
    out.push_str(&json_in_script(p.data_json));
    out.push_str("</script>\n<script>");
    out.push_str(JS);
    out.push_str("</script>\n</body>\n</html>\n");
    out
}
