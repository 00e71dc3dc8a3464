//! `podtrace analyze` options that shape the spans: `--route`, `--routes-file`,
//! `--baggage-attributes` and `--k8s-objects` (Kubernetes metadata given at analysis time
//! for a capture recorded without it), and `--spans-json` (which files are written),
//! through the binary.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use support::{podtrace, read_spans, read_summary, repo, run};

const LIMIT: Duration = Duration::from_secs(120);

fn analyze(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = podtrace();
    cmd.arg("analyze").args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(&mut cmd, LIMIT)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The chain fixture's pcap imported without Kubernetes objects.
fn bare_capture(dir: &Path) -> PathBuf {
    let cap = dir.join("bare.parquet");
    let o = run(
        podtrace()
            .arg("import")
            .arg(repo().join("fixtures/chain/chain.pcap"))
            .arg("-o")
            .arg(&cap),
        LIMIT,
    );
    assert!(o.status.success(), "import: {}", stderr(&o));
    cap
}

#[test]
fn k8s_objects_and_routes_name_a_bare_capture() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cap = bare_capture(tmp.path());
    let routes = tmp.path().join("routes.txt");
    std::fs::write(
        &routes,
        "# the chain's second hop\n/a/{step}   # a's handler\n\n",
    )
    .expect("routes file");
    let out = tmp.path().join("out");
    let objects = repo().join("fixtures/chain/k8s-objects.json");
    let o = analyze(
        &[
            cap.to_str().expect("utf-8"),
            "--out",
            out.to_str().expect("utf-8"),
            "--k8s-objects",
            objects.to_str().expect("utf-8"),
            "--routes-file",
            routes.to_str().expect("utf-8"),
            "--route",
            "/b/{step}",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let spans = read_spans(&out);
    assert_eq!(spans.len(), 70);
    let services: std::collections::BTreeSet<&str> =
        spans.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(
        services.into_iter().collect::<Vec<_>>(),
        [
            "127.0.0.1",
            "frontend",
            "service-a",
            "service-b",
            "service-c"
        ]
    );
    for s in &spans {
        let path = s.attr("url.path").and_then(|v| v.as_str()).unwrap_or("");
        let method = s
            .attr("http.request.method")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let route_key = if s.kind == "server" {
            "http.route"
        } else {
            "url.template"
        };
        let route = s.attr(route_key).and_then(|v| v.as_str()).unwrap_or("");
        let want = if path.starts_with("/a/") {
            "/a/{step}"
        } else if path.starts_with("/b/") {
            "/b/{step}"
        } else {
            path
        };
        assert_eq!(route, want, "{}", s.raw);
        assert_eq!(s.name, format!("{method} {want}"));
        if s.kind == "server" && s.service != "127.0.0.1" {
            assert_eq!(
                s.resource_attr("k8s.namespace.name").as_deref(),
                Some("shop")
            );
        }
    }
    assert_eq!(read_summary(&out)["k8s_objects"], 12);
    let report = std::fs::read_to_string(out.join("report.html")).expect("report");
    assert!(report.contains("id=\"routes\""));
    assert!(report.contains("<td class=\"svc\">service-a</td><td>GET /a/{step}</td>"));
}

#[test]
fn bad_routes_and_objects_files_are_exit_2() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cap = bare_capture(tmp.path());
    let cap = cap.to_str().expect("utf-8");
    let out = tmp.path().join("out");
    let out = out.to_str().expect("utf-8");
    let bad_routes = tmp.path().join("routes.txt");
    std::fs::write(&bad_routes, "/ok/{id}\norders/{id}\n").expect("write");
    let not_json = tmp.path().join("objects.json");
    std::fs::write(&not_json, "pods: [").expect("write");
    let no_name = tmp.path().join("no-name.json");
    std::fs::write(
        &no_name,
        r#"{"kind": "List", "items": [{"kind": "Pod", "metadata": {}}]}"#,
    )
    .expect("write");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--route", "/order/x{id}"], "whole segment"),
        (vec!["--route", "order"], "must start with `/`"),
        (
            vec!["--routes-file", bad_routes.to_str().expect("utf-8")],
            "line 2: route `orders/{id}`",
        ),
        (vec!["--routes-file", "/nonexistent/routes"], "routes file"),
        (
            vec!["--k8s-objects", not_json.to_str().expect("utf-8")],
            "objects.json: kubernetes objects: not JSON",
        ),
        (
            vec!["--k8s-objects", no_name.to_str().expect("utf-8")],
            "without `metadata.name`",
        ),
        (
            vec!["--k8s-objects", "/nonexistent/objects.json"],
            "objects.json",
        ),
    ];
    for (flags, want) in cases {
        let mut args = vec![cap, "--out", out];
        args.extend(&flags);
        let o = analyze(&args, &[]);
        assert_eq!(o.status.code(), Some(2), "{flags:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(want), "{flags:?}: {}", stderr(&o));
    }
    let o = analyze(
        &[cap, "--out", out],
        &[("PODTRACE_BAGGAGE_ATTRIBUTES", "perhaps")],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn baggage_attributes_flag_and_env() {
    // The chain's requests carry no baggage: the flag is accepted (flag and env) and adds
    // no attributes and no counters.
    let tmp = tempfile::tempdir().expect("tempdir");
    let cap = bare_capture(tmp.path());
    for (flag, env) in [
        (Some("--baggage-attributes"), None),
        (None, Some(("PODTRACE_BAGGAGE_ATTRIBUTES", "true"))),
    ] {
        let out = tmp.path().join("out");
        let mut args = vec![
            cap.to_str().expect("utf-8"),
            "--out",
            out.to_str().expect("utf-8"),
        ];
        args.extend(flag);
        let o = analyze(&args, &env.into_iter().collect::<Vec<_>>());
        assert!(o.status.success(), "{}", stderr(&o));
        let spans = read_spans(&out);
        assert!(spans
            .iter()
            .all(|s| s.raw["attributes"]
                .as_array()
                .is_some_and(|a| a
                    .iter()
                    .all(|kv| !kv["key"].as_str().unwrap_or("").starts_with("baggage.")))));
        assert_eq!(read_summary(&out)["ignored_headers"], serde_json::json!({}));
    }
}

#[test]
fn spans_json_false_leaves_the_dump_out_and_the_rest_as_it_was() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cap = bare_capture(tmp.path());
    let cap = cap.to_str().expect("utf-8");
    let full = tmp.path().join("full");
    let o = analyze(&[cap, "--out", full.to_str().expect("utf-8")], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(full.join("spans.json").is_file());
    // An earlier run's spans.json in the directory does not survive a run without it.
    let lean = tmp.path().join("lean");
    std::fs::create_dir_all(&lean).expect("lean dir");
    std::fs::copy(full.join("spans.json"), lean.join("spans.json")).expect("stale dump");
    let o = analyze(
        &[
            cap,
            "--out",
            lean.to_str().expect("utf-8"),
            "--spans-json",
            "false",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!lean.join("spans.json").exists(), "spans.json was left");
    // The other outputs are those of the full run, byte for byte.
    for name in ["traces.otlp.json", "graph.dot"] {
        let a = std::fs::read(full.join(name)).expect("full run's file");
        let b = std::fs::read(lean.join(name)).expect("lean run's file");
        assert!(a == b, "{name} differs without spans.json");
    }
    assert_eq!(read_summary(&full)["spans"], read_summary(&lean)["spans"]);
    // A bad value is a usage error.
    let o = analyze(
        &[
            cap,
            "--out",
            lean.to_str().expect("utf-8"),
            "--spans-json",
            "maybe",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}
