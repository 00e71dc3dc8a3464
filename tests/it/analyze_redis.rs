//! Redis spans from real traffic: a Debian `redis-server` on a free loopback port, driven by
//! redis-py (single commands, a pipeline, a MULTI/EXEC transaction, a client on database 2,
//! a WRONGTYPE error), captured with `tcpdump -i lo`, imported with `podtrace import` and
//! analyzed. The driver (tools/fixtures/redis_driver.py, also what records
//! fixtures/redis/) counts the commands redis-py sends, handshakes included: one CLIENT and
//! one SERVER span per command, with the OpenTelemetry database attributes and an ERROR
//! status for the WRONGTYPE reply. No eBPF needed.

use crate::support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

use crate::sdk_db::{match_db, read_sdk, text, Tally};

fn ok(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn redis_commands_become_client_and_server_spans() {
    let Some(venv) = prerequisites(false) else {
        return;
    };
    let skip = |why: &str| {
        eprintln!("!!! SKIPPING analyze_redis: {why} (tools/install-deps.sh installs it) !!!")
    };
    if !ok(Command::new("redis-server").arg("--version")) {
        return skip("`redis-server` is not installed");
    }
    if !ok(Command::new(venv.join("bin/python")).args(["-c", "import redis"])) {
        return skip("the venv lacks redis-py (tools/requirements-test.txt)");
    }
    if !ok(Command::new("tcpdump").arg("--version")) {
        return skip("`tcpdump` is not installed");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let server = Proc::new(
        Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
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
        wait_port(port, Duration::from_secs(10)),
        "redis-server did not listen"
    );
    let pcap = dir.path().join("redis.pcap");
    let marker_port = free_port();
    let mut tcpdump = Proc::new(
        Command::new("tcpdump")
            .args([
                "-i",
                "lo",
                "--immediate-mode",
                "-U",
                "-B",
                "65536",
                "-Z",
                "root",
                "-s",
                "0",
                "-w",
            ])
            .arg(&pcap)
            .arg(format!(
                "tcp port {port} or {}",
                pcap_sync_filter(marker_port)
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tcpdump"),
        "INT",
        Duration::from_secs(5),
    );
    let stderr = tcpdump.stderr().expect("tcpdump stderr");
    let lines = Lines::collect(stderr, "tcpdump");
    assert!(
        lines.wait_for("listening on", Duration::from_secs(10)),
        "tcpdump did not start"
    );
    let out = run(
        Command::new(venv.join("bin/python"))
            .arg(repo().join("tools/fixtures/redis_driver.py"))
            .arg(port.to_string()),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "driver failed");
    // "SENT RAN": commands redis-py sent, commands the server ran.
    let counts = String::from_utf8_lossy(&out.stdout).to_string();
    let commands: usize = counts
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("command count");
    pcap_sync(&pcap, marker_port);
    tcpdump.signal("INT");
    assert!(tcpdump.wait_timeout(Duration::from_secs(10)).is_some());
    assert_tcpdump_complete(&lines);
    drop(server);

    let cap = dir.path().join("redis.parquet");
    import_pcap(&pcap, &cap);
    let outdir = dir.path().join("out");
    analyze_capture(&cap, &outdir);
    let spans = read_spans(&outdir);
    let summary = read_summary(&outdir);
    let client: Vec<&SpanRow> = spans.iter().filter(|s| s.kind == "client").collect();
    let server: Vec<&SpanRow> = spans.iter().filter(|s| s.kind == "server").collect();
    eprintln!(
        "redis: {commands} commands sent (sent, ran: {}), {} CLIENT and {} SERVER spans",
        counts.trim(),
        client.len(),
        server.len()
    );
    assert_eq!(client.len(), commands, "one CLIENT span per command");
    assert_eq!(server.len(), commands, "one SERVER span per command");
    assert!(
        summary["parse_errors"]
            .as_object()
            .expect("summary.json has parse_errors")
            .is_empty(),
        "{summary}"
    );
    for s in &spans {
        assert_eq!(text(s, "db.system.name"), "redis");
        assert_eq!(s.name, text(s, "db.operation.name"));
        assert_eq!(text(s, "server.port"), port.to_string());
        assert_eq!(text(s, "server.address"), "127.0.0.1");
    }
    // The SERVER span of each command is the child of its CLIENT span.
    let ids: std::collections::HashSet<&str> = client.iter().map(|s| s.span_id.as_str()).collect();
    assert!(server.iter().all(|s| ids.contains(s.parent.as_str())));
    // Sanitized query text: keys kept, values hidden.
    let set = client
        .iter()
        .find(|s| text(s, "db.query.text").starts_with("SET user:1"))
        .expect("SET user:1");
    assert_eq!(text(set, "db.query.text"), "SET user:1 ?");
    assert_eq!(text(set, "db.namespace"), "0");
    for q in ["RPUSH list ? ?", "INCRBY counter ?", "GET user:1"] {
        assert!(client.iter().any(|s| text(s, "db.query.text") == q), "{q}");
    }
    // The transaction: MULTI, the queued commands, EXEC.
    for op in ["MULTI", "HSET", "HGET", "EXEC"] {
        assert!(client.iter().any(|s| s.name == op), "{op}");
    }
    // The client on database 2.
    let other = client
        .iter()
        .find(|s| text(s, "db.query.text") == "SET other ?")
        .expect("SET other");
    assert_eq!(text(other, "db.namespace"), "2");
    // The WRONGTYPE reply fails the LPUSH, on both sides; other errors can only be
    // handshake subcommands an older server rejects (`CLIENT SETINFO`: ERR).
    let errors: Vec<&SpanRow> = spans
        .iter()
        .filter(|s| s.raw["status"]["code"] == "error")
        .collect();
    let wrongtype: Vec<&&SpanRow> = errors
        .iter()
        .filter(|e| text(e, "db.response.status_code") == "WRONGTYPE")
        .collect();
    assert_eq!(wrongtype.len(), 2);
    assert!(wrongtype.iter().all(|e| e.name == "LPUSH"));
    for e in &errors {
        assert!(
            e.name == "LPUSH"
                || (e.name == "CLIENT" && text(e, "db.response.status_code") == "ERR"),
            "{:?}",
            e.raw
        );
    }
}

/// The SDK as the truth: opentelemetry-instrumentation-redis traces the app's Redis calls
/// (one span per command, one per pipeline) under a SERVER span per HTTP request that
/// continues the driver's traceparent. Every SDK Redis span must have podtrace CLIENT
/// spans for each of its commands, at the same time (± the socket/app difference), under
/// podtrace's SERVER span of the same request (same trace id where the request carried
/// one), with the same error status.
#[test]
fn redis_spans_match_the_opentelemetry_sdk() {
    let Some(venv) = prerequisites(false) else {
        return;
    };
    let skip = |why: &str| {
        eprintln!("!!! SKIPPING analyze_redis sdk: {why} (tools/install-deps.sh installs it) !!!")
    };
    if !ok(Command::new("redis-server").arg("--version")) {
        return skip("`redis-server` is not installed");
    }
    let imports = "import redis, opentelemetry.sdk.trace, opentelemetry.instrumentation.redis";
    if !ok(Command::new(venv.join("bin/python")).args(["-c", imports])) {
        return skip("the venv lacks redis-py or opentelemetry-instrumentation-redis");
    }
    if !ok(Command::new("tcpdump").arg("--version")) {
        return skip("`tcpdump` is not installed");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, app_port) = (free_port(), free_port());
    let server = Proc::new(
        Command::new("redis-server")
            .args(["--bind", "127.0.0.1 127.0.0.3", "--port", &port.to_string()])
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
        wait_port(port, Duration::from_secs(10)),
        "redis-server did not listen"
    );
    let pcap = dir.path().join("app.pcap");
    let marker_port = free_port();
    let filter = format!(
        "tcp port {port} or tcp port {app_port} or {}",
        pcap_sync_filter(marker_port)
    );
    let mut tcpdump = Proc::new(
        Command::new("tcpdump")
            .args([
                "-i",
                "lo",
                "--immediate-mode",
                "-U",
                "-B",
                "65536",
                "-Z",
                "root",
                "-s",
                "0",
                "-w",
            ])
            .arg(&pcap)
            .arg(&filter)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tcpdump"),
        "INT",
        Duration::from_secs(5),
    );
    let lines = Lines::collect(tcpdump.stderr().expect("tcpdump stderr"), "tcpdump");
    assert!(lines.wait_for("listening on", Duration::from_secs(10)));
    let sdk_file = dir.path().join("sdk.jsonl");
    let out = run(
        Command::new(venv.join("bin/python"))
            .arg(repo().join("tools/fixtures/redis_app.py"))
            .args([app_port.to_string(), port.to_string()])
            .arg("--sdk")
            .arg(&sdk_file),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "app failed");
    pcap_sync(&pcap, marker_port);
    tcpdump.signal("INT");
    assert!(tcpdump.wait_timeout(Duration::from_secs(10)).is_some());
    assert_tcpdump_complete(&lines);
    drop(server);
    let cap = dir.path().join("app.parquet");
    import_pcap(&pcap, &cap);
    let outdir = dir.path().join("out");
    analyze_capture(&cap, &outdir);
    let spans = read_spans(&outdir);
    let sdk = read_sdk(&sdk_file);
    let mut used = std::collections::HashSet::new();
    let Tally {
        matched,
        total,
        misses,
    } = match_db(&spans, &sdk, &["redis"], "url.path", &mut used, |db| {
        Some(
            db.s("name")
                .split(' ')
                .map(|op| (op.to_string(), String::new()))
                .collect(),
        )
    });
    let podtrace_db = spans
        .iter()
        .filter(|s| s.kind == "client" && text(s, "db.system.name") == "redis")
        .count();
    eprintln!(
        "redis sdk-truth: {matched}/{total} SDK Redis spans matched ({} commands); podtrace has \
         {podtrace_db} Redis CLIENT spans (the rest: connection handshakes the SDK does not trace)",
        used.len()
    );
    assert_eq!(matched, total, "unmatched SDK spans: {misses:#?}");
    assert!(total >= 11, "the app made its calls: {total}");
}

/// `--db-query-text` (and its environment variable) on the Redis fixture: sanitized by
/// default, values as sent with `raw`, no statement with `off`, a bad mode is exit 2.
#[test]
fn db_query_text_modes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cap = dir.path().join("redis.parquet");
    assert!(ok(podtrace()
        .arg("import")
        .arg(repo().join("fixtures/redis/redis.pcap"))
        .arg("-o")
        .arg(&cap)));
    let texts = |mode: Option<&str>, env: Option<&str>| -> Vec<String> {
        let out = dir.path().join(format!("out-{mode:?}-{env:?}"));
        let mut cmd = podtrace();
        cmd.arg("analyze").arg(&cap).arg("--out").arg(&out);
        if let Some(m) = mode {
            cmd.args(["--db-query-text", m]);
        }
        if let Some(e) = env {
            cmd.env("PODTRACE_DB_QUERY_TEXT", e);
        }
        assert!(ok(&mut cmd), "analyze {mode:?} {env:?}");
        read_spans(&out)
            .iter()
            .filter(|s| s.attr("db.system.name").is_some())
            .map(|s| text(s, "db.query.text"))
            .collect()
    };
    let sanitized = texts(None, None);
    assert!(!sanitized.is_empty());
    assert!(sanitized.iter().any(|t| t.contains('?')), "{sanitized:?}");
    let raw = texts(Some("raw"), None);
    assert_eq!(raw.len(), sanitized.len());
    assert_ne!(raw, sanitized, "raw keeps values");
    assert_eq!(texts(None, Some("raw")), raw, "the environment variable");
    assert_eq!(
        texts(Some("sanitized"), Some("raw")),
        sanitized,
        "a flag beats its variable"
    );
    assert!(texts(Some("off"), None).iter().all(String::is_empty));
    let bad = podtrace()
        .arg("analyze")
        .arg(&cap)
        .args(["--db-query-text", "everything"])
        .output()
        .expect("run");
    assert_eq!(bad.status.code(), Some(2));
}
