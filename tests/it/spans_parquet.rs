//! `analyze --spans-parquet`: the spans as a table. DuckDB (an independent Parquet reader)
//! reads every span of `spans.json` back, row for row, and the documented "slowest routes
//! per service" query (docs/capture-format.md) gives the numbers of the report's routes
//! table. Needs the project venv with DuckDB (`make deps`); without it the test says so
//! loudly and passes (`PODTRACE_REQUIRE_DUCKDB=1` makes that a failure).

use crate::support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use podtrace_analyzer::graph::Histogram;
use podtrace_model::{Span, SpanKind};
use podtrace_report::escape::html;
use podtrace_report::tables::route_rows;
use podtrace_report::units::duration;
use serde_json::Value;
use support::{duckdb, podtrace, repo, run, venv};

const LIMIT: Duration = Duration::from_secs(120);

/// The query of docs/capture-format.md, verbatim (the test checks the doc still has it).
const SLOWEST_ROUTES: &str = "SELECT service_name AS service, name AS route,
       count(*) AS spans,
       count(*) FILTER (WHERE status_code = 'error') AS errors,
       quantile_disc(duration_ns, 0.5) AS p50_ns,
       quantile_disc(duration_ns, 0.99) AS p99_ns
FROM 'podtrace-out/spans.parquet'
WHERE kind = 'server'
GROUP BY service_name, name
ORDER BY service, p99_ns DESC, route;";

fn venv_with_duckdb() -> Option<PathBuf> {
    let found = venv().filter(|v| {
        std::process::Command::new(v.join("bin/python"))
            .args(["-c", "import duckdb"])
            .status()
            .is_ok_and(|s| s.success())
    });
    if found.is_none() {
        let msg = "SKIPPED: no venv with duckdb (make deps)";
        assert!(
            std::env::var_os("PODTRACE_REQUIRE_DUCKDB").is_none(),
            "{msg}"
        );
        eprintln!("\n\n*** {msg} ***\n");
    }
    found
}

/// Imports `pcap`, analyzes it with `--spans-parquet <tmp>/table/` (a directory named with
/// a trailing `/`, created by podtrace); returns (out dir, table file).
fn analyze(tmp: &Path, pcap: &str, extra: &[&str]) -> (PathBuf, PathBuf) {
    let cap = tmp.join("cap.parquet");
    let o = run(
        podtrace()
            .arg("import")
            .arg(repo().join(pcap))
            .arg("-o")
            .arg(&cap),
        LIMIT,
    );
    assert!(o.status.success(), "import failed");
    let out = tmp.join("out");
    let table_dir = format!("{}/table/", tmp.display());
    let o = run(
        podtrace()
            .arg("analyze")
            .arg(&cap)
            .arg("--out")
            .arg(&out)
            .args(["--spans-parquet", &table_dir])
            .args(extra),
        LIMIT,
    );
    assert!(o.status.success(), "analyze failed");
    let table = tmp.join("table/spans.parquet");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("table/spans.parquet"),
        "the summary lists the table"
    );
    (out, table)
}

fn spans_json(out: &Path) -> Vec<Span> {
    let text = std::fs::read_to_string(out.join("spans.json")).expect("spans.json");
    serde_json::from_str(&text).expect("spans.json holds spans")
}

fn u64_of(v: &Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("not an integer: {v}"))
}

/// The rows of the report's routes table: (service, route) → [spans, errors, p50, p99] as
/// the page prints them.
fn report_routes(out: &Path) -> BTreeMap<(String, String), Vec<String>> {
    let page = std::fs::read_to_string(out.join("report.html")).expect("report.html");
    let start = page.find("id=\"routes\"").expect("routes table");
    let end = start
        + page[start..]
            .find("</table>")
            .expect("end of the routes table");
    let mut rows = BTreeMap::new();
    for row in page[start..end].split("<tr").skip(2) {
        let cells: Vec<String> = row
            .split("<td")
            .skip(1)
            .map(|c| {
                let c = &c[c.find('>').expect("cell") + 1..];
                c[..c.find("</td>").expect("cell end")].to_string()
            })
            .collect();
        assert_eq!(cells.len(), 6, "route row {row}");
        rows.insert((cells[0].clone(), cells[1].clone()), cells[2..].to_vec());
    }
    rows
}

/// The table holds `spans.json`, row for row; the documented query equals the report.
fn check(venv: &Path, out: &Path, table: &Path) {
    let spans = spans_json(out);
    assert!(!spans.is_empty());
    let t = table.display();

    // Every span, in the same order, with its ids, times, status, resource and attributes.
    let rows = duckdb(
        venv,
        &format!(
            "SELECT trace_id, span_id, coalesce(parent_span_id, '') AS parent, name, kind,
                    start_ns, end_ns, duration_ns, epoch_ns(start_time) AS start_time,
                    status_code, coalesce(status_message, '') AS message, service_name,
                    coalesce(k8s_pod_name, '') AS pod, to_json(attributes) AS attrs,
                    cardinality(resource_attributes) AS resource_attrs
             FROM '{t}'"
        ),
    );
    assert_eq!(rows.len(), spans.len(), "one row per span");
    for (row, s) in rows.iter().zip(&spans) {
        assert_eq!(row["trace_id"], s.trace_id.to_string());
        assert_eq!(row["span_id"], s.span_id.to_string());
        let parent = s.parent_span_id.map(|p| p.to_string()).unwrap_or_default();
        assert_eq!(row["parent"], parent);
        assert_eq!(row["name"], s.name);
        let kind = match s.kind {
            SpanKind::Server => "server",
            SpanKind::Client => "client",
        };
        assert_eq!(row["kind"], kind);
        assert_eq!(u64_of(&row["start_ns"]), s.start_time_unix_nano);
        assert_eq!(u64_of(&row["end_ns"]), s.end_time_unix_nano);
        assert_eq!(u64_of(&row["duration_ns"]), s.duration_ns());
        assert_eq!(u64_of(&row["start_time"]), s.start_time_unix_nano);
        assert_eq!(
            row["status_code"],
            if s.status.is_error() {
                "error"
            } else {
                "unset"
            }
        );
        assert_eq!(row["message"], s.status.message);
        assert_eq!(row["service_name"], s.resource.service_name);
        assert_eq!(
            row["pod"],
            s.resource.get("k8s.pod.name").unwrap_or_default()
        );
        let attrs: BTreeMap<String, String> =
            serde_json::from_str(row["attrs"].as_str().expect("attributes as JSON text"))
                .expect("attributes map");
        let want: BTreeMap<String, String> = s
            .attributes
            .iter()
            .map(|kv| (kv.key.to_string(), kv.value.to_string()))
            .collect();
        assert_eq!(attrs, want, "attributes of {}", s.span_id);
        assert_eq!(
            u64_of(&row["resource_attrs"]),
            s.resource.attributes.len() as u64
        );
    }

    // The documented query, as written, over this table.
    let doc = std::fs::read_to_string(repo().join("docs/capture-format.md")).expect("doc");
    assert!(
        doc.contains(SLOWEST_ROUTES),
        "docs/capture-format.md shows the query"
    );
    let sql = SLOWEST_ROUTES.replace("podtrace-out/spans.parquet", &t.to_string());
    let got = duckdb(venv, &sql);
    let exact = route_rows(&spans);
    assert_eq!(got.len(), exact.len(), "one row per route");
    let page = report_routes(out);
    assert_eq!(page.len(), exact.len(), "the report has every route");
    for want in &exact {
        let service = want.service.clone().expect("a service");
        let row = got
            .iter()
            .find(|r| r["service"] == service && r["route"] == want.name)
            .unwrap_or_else(|| panic!("route {service} {} in the query", want.name));
        let (p50, p99) = (u64_of(&row["p50_ns"]), u64_of(&row["p99_ns"]));
        // Exactly the nearest-rank numbers over the same spans ...
        assert_eq!(u64_of(&row["spans"]), want.spans);
        assert_eq!(u64_of(&row["errors"]), want.errors);
        assert_eq!(Some(p50), want.p50_ns);
        assert_eq!(Some(p99), want.p99_ns);
        // ... and the report's row: counts as printed, percentiles as its histogram
        // buckets them.
        let bucket = |v: u64| {
            let mut h = Histogram::default();
            h.add(v);
            duration(h.quantile(0.5))
        };
        let cells = &page[&(html(&service), html(&want.name))];
        assert_eq!(cells[0], want.spans.to_string());
        assert_eq!(cells[1], want.errors.to_string());
        assert_eq!(cells[2], bucket(p50), "p50 of {service} {}", want.name);
        assert_eq!(cells[3], bucket(p99), "p99 of {service} {}", want.name);
    }
    // Slowest first within a service.
    for pair in got.windows(2) {
        if pair[0]["service"] == pair[1]["service"] {
            assert!(u64_of(&pair[0]["p99_ns"]) >= u64_of(&pair[1]["p99_ns"]));
        }
    }
}

#[test]
fn duckdb_reads_the_spans_table_and_the_routes_query_matches_the_report() {
    let Some(venv) = venv_with_duckdb() else {
        return;
    };
    // Redis behind an HTTP app: several spans per route, errors on both protocols.
    let tmp = tempfile::tempdir().expect("tempdir");
    let (out, table) = analyze(tmp.path(), "fixtures/redis-app/redis-app.pcap", &[]);
    check(&venv, &out, &table);

    // The chain with Kubernetes objects: resource columns and labels.
    let tmp = tempfile::tempdir().expect("tempdir");
    let objects = repo().join("fixtures/chain/k8s-objects.json");
    let objects = objects.to_str().expect("utf-8");
    let (out, table) = analyze(
        tmp.path(),
        "fixtures/chain/chain.pcap",
        &["--k8s-objects", objects],
    );
    check(&venv, &out, &table);
    let pods = duckdb(
        &venv,
        &format!(
            "SELECT count(*) AS n FROM '{}' WHERE k8s_pod_name IS NOT NULL
               AND k8s_namespace_name IS NOT NULL AND cardinality(resource_attributes) > 2",
            table.display()
        ),
    );
    assert!(u64_of(&pods[0]["n"]) > 0, "spans resolved to pods");
}

#[test]
fn a_file_argument_is_the_table_and_a_bad_path_fails_without_outputs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cap = tmp.path().join("cap.parquet");
    let o = run(
        podtrace()
            .arg("import")
            .arg(repo().join("fixtures/chain/chain.pcap"))
            .arg("-o")
            .arg(&cap),
        LIMIT,
    );
    assert!(o.status.success());
    let file = tmp.path().join("mine.parquet");
    let o = run(
        podtrace()
            .arg("analyze")
            .arg(&cap)
            .arg("--out")
            .arg(tmp.path().join("out"))
            .arg("--spans-parquet")
            .arg(&file),
        LIMIT,
    );
    assert!(o.status.success());
    let magic = std::fs::read(&file).expect("the table");
    assert_eq!(&magic[..4], b"PAR1");
    assert_eq!(&magic[magic.len() - 4..], b"PAR1");

    // Under a regular file: no directory can be made there.
    std::fs::write(tmp.path().join("plain"), b"x").expect("a file");
    let bad = tmp.path().join("plain/spans.parquet");
    let out2 = tmp.path().join("out2");
    let o = run(
        podtrace()
            .arg("analyze")
            .arg(&cap)
            .arg("--out")
            .arg(&out2)
            .arg("--spans-parquet")
            .arg(&bad),
        LIMIT,
    );
    assert_eq!(o.status.code(), Some(1), "cannot create the table: exit 1");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("plain/spans.parquet"),
        "the error names the path: {err}"
    );
    assert!(
        !out2.join("spans.json").exists(),
        "no output when one cannot be made"
    );
}
