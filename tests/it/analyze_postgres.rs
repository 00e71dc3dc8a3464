//! PostgreSQL and Redis spans against the OpenTelemetry SDK, as root, with the real
//! recorder and with tcpdump: a throw-away PostgreSQL 15 (initdb + postgres as the
//! `postgres` user, on 127.0.0.4), a Debian `redis-server` (on 127.0.0.3), and a Flask app
//! (tools/fixtures/db_app.py) that for each HTTP request queries PostgreSQL through
//! psycopg2 (simple query protocol) and psycopg 3 (extended protocol) and Redis through
//! redis-py, traced by opentelemetry-instrumentation-flask, -psycopg2, -psycopg and -redis. The app moves itself into its own cgroup before it connects, after
//! `podtrace record --cgroup` attached; tcpdump records the same run on `lo`. Its driver
//! thread sends requests from 127.0.0.2, half with a traceparent, the last one making the
//! app query a missing table (42P01, a 500).
//!
//! For both captures (record → analyze; pcap → import → analyze): every SDK database span
//! must have a podtrace CLIENT span with the same system, the same operation (PostgreSQL:
//! the SDK's span name, the statement's first word; Redis: each command of the SDK's span
//! name, one per command of a pipeline) and, for PostgreSQL, the same collection (the
//! first table of the SDK's `db.statement`, found by the test itself), at the same time
//! (± the socket/app difference), with the same error status, under podtrace's HTTP SERVER
//! span of the same request and in the same trace where the request carried a traceparent;
//! statements outside a request have no parent on both sides. The test prints
//! matched/total per system and capture.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::reliability_support::{cgroup2_root, is_root, TestCgroup};
use crate::sdk_db::{match_db, read_sdk, sdk_collection, text, SdkSpan, Tally};
use crate::support::*;

/// Requests the app's driver sends (tools/fixtures/db_app.py REQUESTS).
const REQUESTS: usize = 8;
/// PostgreSQL 15 as Debian installs it.
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

fn ok(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `cmd` run as the `postgres` user (initdb and postgres refuse root).
fn as_postgres(program: &str) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        "--reuid=postgres",
        "--regid=postgres",
        "--clear-groups",
        "--",
    ])
    .arg(Path::new(PG_BIN).join(program));
    c
}

/// A throw-away PostgreSQL on 127.0.0.4:`port` with its data directory and socket under
/// `dir`: trust authentication, superuser `app`, database `shop`. Stopped (SIGTERM) on drop.
fn postgres(dir: &Path, port: u16) -> Proc {
    let pg = dir.join("pg");
    std::fs::create_dir(&pg).expect("pg dir");
    // The server's user reaches its directory.
    assert!(ok(Command::new("chmod").arg("0755").arg(dir)));
    assert!(ok(Command::new("chown").arg("postgres:").arg(&pg)));
    let out = run(
        as_postgres("initdb").arg("-D").arg(pg.join("data")).args([
            "-U",
            "app",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]),
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "initdb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = Proc::new(
        as_postgres("postgres")
            .arg("-D")
            .arg(pg.join("data"))
            .arg("-k")
            .arg(&pg)
            .args(["-h", "127.0.0.4", "-p", &port.to_string()])
            .args(["-c", "fsync=off", "-c", "shared_buffers=16MB"])
            .args(["-c", "max_connections=20"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start postgres"),
        "TERM",
        Duration::from_secs(10),
    );
    let ready = || {
        ok(Command::new(Path::new(PG_BIN).join("pg_isready"))
            .arg("-q")
            .arg("-h")
            .arg(&pg)
            .args(["-p", &port.to_string()]))
    };
    assert!(
        wait_until(Duration::from_secs(30), ready),
        "postgres did not start"
    );
    let out = run(
        as_postgres("psql")
            .arg("-q")
            .arg("-h")
            .arg(&pg)
            .args(["-p", &port.to_string(), "-U", "app", "-d", "postgres"])
            .args(["-c", "CREATE DATABASE shop"]),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "createdb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    server
}

/// Compares podtrace's spans with the SDK's (see the module doc): PostgreSQL, then Redis.
fn compare(spans: &[SpanRow], sdk: &[SdkSpan]) -> (Tally, Tally) {
    let mut used = std::collections::HashSet::new();
    let pg = match_db(
        spans,
        sdk,
        &["postgresql"],
        "http.target",
        &mut used,
        |db| {
            (db.attr("db.system") == "postgresql").then(|| {
                let coll = sdk_collection(db.attr("db.statement")).unwrap_or_default();
                vec![(db.s("name").to_ascii_uppercase(), coll)]
            })
        },
    );
    let redis = match_db(spans, sdk, &["redis"], "http.target", &mut used, |db| {
        (db.attr("db.system") == "redis").then(|| {
            db.s("name")
                .split(' ')
                .map(|op| (op.to_string(), String::new()))
                .collect()
        })
    });
    (pg, redis)
}

/// `podtrace analyze CAPTURE --out DIR`; the spans.
fn analyze(cap: &Path, out: &Path) -> Vec<SpanRow> {
    analyze_capture(cap, out);
    let summary = read_summary(out);
    assert!(
        summary["parse_errors"]
            .as_object()
            .expect("summary.json has parse_errors")
            .keys()
            .all(|k| !k.starts_with("postgres")),
        "{summary}"
    );
    read_spans(out)
}

#[test]
fn postgres_and_redis_spans_match_the_opentelemetry_sdk() {
    let Some(venv) = prerequisites(false) else {
        return;
    };
    let skip = |why: &str| {
        eprintln!("!!! SKIPPING analyze_postgres: {why} (tools/install-deps.sh installs it) !!!")
    };
    if !is_root() || cgroup2_root().is_none() {
        return skip("needs root and a cgroup v2 mount");
    }
    if !Path::new(PG_BIN).join("postgres").exists() {
        return skip("PostgreSQL 15 (postgresql-15) is not installed");
    }
    if !ok(Command::new("redis-server").arg("--version")) {
        return skip("`redis-server` is not installed");
    }
    if !ok(Command::new("tcpdump").arg("--version")) {
        return skip("`tcpdump` is not installed");
    }
    let python = venv.join("bin/python");
    let imports = "import flask, psycopg2, redis, opentelemetry.sdk.trace, \
                   opentelemetry.instrumentation.flask, opentelemetry.instrumentation.psycopg2, \
                   opentelemetry.instrumentation.redis";
    if !ok(Command::new(&python).args(["-c", imports])) {
        return skip("the venv lacks psycopg2, redis-py or the OpenTelemetry instrumentations");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (pg_port, redis_port, app_port) = (free_port(), free_port(), free_port());
    let pg = postgres(dir.path(), pg_port);
    let redis = Proc::new(
        Command::new("redis-server")
            .args(["--bind", "127.0.0.3", "--port", &redis_port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server"),
        "TERM",
        Duration::from_secs(5),
    );
    assert!(
        wait_until(Duration::from_secs(10), || std::net::TcpStream::connect((
            "127.0.0.3",
            redis_port
        ))
        .is_ok()),
        "redis-server did not listen"
    );

    // Both captures of one run: the recorder on the app's cgroup, tcpdump on lo.
    let cap = dir.path().join("cap.parquet");
    let cg = TestCgroup::new("postgres-sdk");
    let mut record = Proc::new(
        podtrace()
            .args(["record", "--cgroup"])
            .arg(&cg.path)
            .arg("-o")
            .arg(&cap)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start podtrace record"),
        "INT",
        Duration::from_secs(30),
    );
    let lines = Lines::collect(record.stderr().expect("record stderr"), "record");
    assert!(
        lines.wait_for("probes attached", Duration::from_secs(60)),
        "the recorder did not attach: {:?}",
        lines.all()
    );
    let pcap = dir.path().join("app.pcap");
    let marker_port = free_port();
    let filter = format!(
        "tcp port {pg_port} or tcp port {redis_port} or tcp port {app_port} or {}",
        pcap_sync_filter(marker_port)
    );
    let mut tcpdump = Proc::new(
        Command::new("tcpdump")
            .args(["-i", "lo", "--immediate-mode", "-U", "-B", "65536"])
            .args(["-Z", "root", "-s", "0", "-w"])
            .arg(&pcap)
            .arg(&filter)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tcpdump"),
        "INT",
        Duration::from_secs(5),
    );
    let dump = Lines::collect(tcpdump.stderr().expect("tcpdump stderr"), "tcpdump");
    assert!(dump.wait_for("listening on", Duration::from_secs(10)));

    let sdk_file = dir.path().join("sdk.jsonl");
    let out = run(
        Command::new(&python)
            .arg(repo().join("tools/fixtures/db_app.py"))
            .args([
                app_port.to_string(),
                "127.0.0.4".into(),
                pg_port.to_string(),
                "127.0.0.3".into(),
                redis_port.to_string(),
            ])
            .arg(&sdk_file)
            .arg("--cgroup")
            .arg(&cg.path),
        Duration::from_secs(90),
    );
    assert!(
        out.status.success(),
        "app: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The recorder flushes about every second; tcpdump lags the traffic under load.
    std::thread::sleep(Duration::from_millis(1500));
    pcap_sync(&pcap, marker_port);
    tcpdump.signal("INT");
    assert!(tcpdump.wait_timeout(Duration::from_secs(10)).is_some());
    assert_tcpdump_complete(&dump);
    drop(cg);
    record.signal("INT");
    assert!(record.wait_timeout(Duration::from_secs(30)).is_some());
    drop(redis);
    drop(pg);

    let sdk = read_sdk(&sdk_file);
    let pcap_cap = dir.path().join("pcap.parquet");
    import_pcap(&pcap, &pcap_cap);
    let mut failures = Vec::new();
    for (how, capture) in [("record", &cap), ("pcap", &pcap_cap)] {
        let spans = analyze(capture, &dir.path().join(format!("out-{how}")));
        check_outputs(&dir.path().join(format!("out-{how}")), &spans);
        let (pg, redis) = compare(&spans, &sdk);
        eprintln!(
            "postgres+redis sdk-truth ({how}): PostgreSQL {}/{} SDK spans matched, Redis {}/{} \
             (same operation, collection, time, status, parent request, trace)",
            pg.matched, pg.total, redis.matched, redis.total
        );
        // Setup: DROP, CREATE, one INSERT per order; three statements per order request
        // (two by psycopg2, one by psycopg 3); the failing one. Redis: a GET and a pipeline per order request.
        assert_eq!(pg.total, 2 + REQUESTS + 3 * (REQUESTS - 1) + 1);
        assert_eq!(redis.total, 2 * (REQUESTS - 1));
        for (system, t) in [("postgresql", pg), ("redis", redis)] {
            if t.matched != t.total {
                failures.push(format!("{how} {system}: unmatched {:#?}", t.misses));
            }
        }
        // The failing statement: an ERROR span with its SQLSTATE, under the 500.
        let failed = spans
            .iter()
            .find(|s| s.kind == "client" && text(s, "db.response.status_code") == "42P01")
            .expect("the 42P01 span");
        assert_eq!(failed.raw["status"]["code"], "error");
        assert!(spans.iter().any(|s| s.span_id == failed.parent
            && s.kind == "server"
            && text(s, "http.response.status_code") == "500"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// One trace per request with the database spans under the app's SERVER span, in the OTLP
/// output; the report's databases section lists both systems (client side).
fn check_outputs(out: &Path, spans: &[SpanRow]) {
    let otlp: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("traces.otlp.json")).expect("traces.otlp.json"),
    )
    .expect("OTLP JSON");
    let mut all = Vec::new();
    for rs in otlp["resourceSpans"].as_array().expect("resourceSpans") {
        for ss in rs["scopeSpans"].as_array().expect("scopeSpans") {
            all.extend(ss["spans"].as_array().expect("spans").iter().cloned());
        }
    }
    let system = |s: &Value| {
        s["attributes"].as_array().and_then(|a| {
            a.iter()
                .find(|kv| kv["key"] == "db.system.name")
                .and_then(|kv| kv["value"]["stringValue"].as_str().map(str::to_string))
        })
    };
    let requests: Vec<&SpanRow> = spans
        .iter()
        .filter(|s| s.kind == "server" && text(s, "url.path").starts_with("/order/"))
        .collect();
    assert_eq!(requests.len(), REQUESTS - 1);
    for srv in requests {
        let children: Vec<&Value> = all
            .iter()
            .filter(|c| c["parentSpanId"] == srv.span_id.as_str())
            .collect();
        let systems: std::collections::BTreeSet<String> =
            children.iter().filter_map(|c| system(c)).collect();
        assert_eq!(
            systems.into_iter().collect::<Vec<_>>(),
            ["postgresql", "redis"],
            "OTLP: the DB calls of {} under its SERVER span",
            text(srv, "url.path")
        );
        assert!(children
            .iter()
            .all(|c| c["traceId"] == srv.trace_id.as_str()));
    }
    let html = std::fs::read_to_string(out.join("report.html")).expect("report.html");
    assert!(html.contains("<section id=\"databases\">"));
    for row in [
        "<td class=\"svc\">postgresql</td><td>client</td><td>SELECT</td><td>orders</td>",
        "<td class=\"svc\">redis</td><td>client</td><td>GET</td>",
    ] {
        assert!(html.contains(row), "report: no row {row}");
    }
}
