//! MySQL spans against the OpenTelemetry SDK, as root, with the real recorder: a throw-away
//! MariaDB (Debian `mariadb-server`: `mariadb-install-db` into a temporary datadir,
//! `mariadbd` on a free loopback port, stopped at the end), and a Flask app
//! (tools/fixtures/mysql_app.py) querying it through PyMySQL, traced by
//! opentelemetry-instrumentation-flask and -pymysql, started in its own cgroup after
//! `podtrace record --cgroup` attached (so its MariaDB connection is recorded from the
//! server greeting on). An uninstrumented driver outside the cgroup sends requests, half
//! with a traceparent; one makes the app send a 17 MiB statement and read a 17 MiB row
//! (continuation packets, payloads the recorder did not copy whole), the last one a syntax
//! error.
//!
//! Every SDK MySQL span must have a podtrace CLIENT span with the same operation (the
//! SDK's span name, the statement's first word) and the same collection (the first table
//! of the SDK's `db.statement`, found by the test's own word scan), at the same time (± the socket/app difference), with the
//! same error status, under podtrace's SERVER span of the same request (same trace id where
//! the request carried one); startup statements outside a request have no parent on both
//! sides. The test prints matched/total.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::reliability_support::{cgroup2_root, is_root, TestCgroup};
use crate::sdk_db::{match_db, read_sdk, sdk_collection, text, Tally};
use crate::support::*;

/// Requests the driver sends.
const REQUESTS: usize = 12;

/// Whether `cmd` runs and exits 0 (output discarded).
pub(crate) fn ok(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A throw-away MariaDB on 127.0.0.1:`port` with its datadir and socket under `dir`: user
/// `app` / `secret` with all privileges, database `shop`; `extra` server options (TLS
/// certificates); temporary files under `dir` too. Stopped (SIGTERM) on drop.
pub(crate) fn mariadb(dir: &Path, port: u16, extra: &[String]) -> Proc {
    let init = dir.join("init.sql");
    std::fs::write(
        &init,
        "CREATE DATABASE IF NOT EXISTS shop;\n\
         CREATE USER IF NOT EXISTS 'app'@'%' IDENTIFIED BY 'secret';\n\
         GRANT ALL PRIVILEGES ON *.* TO 'app'@'%';\n",
    )
    .expect("init.sql");
    let data = dir.join("data");
    // its own temporary directory: the bootstrap's temporary tables in the shared /tmp
    // went missing once under the parallel tests ("Could not remove temporary table")
    let tmp = dir.join("tmp");
    std::fs::create_dir_all(&tmp).expect("mariadb tmpdir");
    let out = run(
        Command::new("mariadb-install-db")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .args([
                "--user=root",
                "--auth-root-authentication-method=socket",
                "--skip-test-db",
            ]),
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "mariadb-install-db: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let server = Proc::new(
        Command::new("mariadbd")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .arg("--user=root")
            .arg(format!("--socket={}", dir.join("mysqld.sock").display()))
            .arg(format!("--port={port}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--pid-file={}", dir.join("mysqld.pid").display()))
            .arg(format!("--init-file={}", init.display()))
            .args([
                "--skip-log-bin",
                "--innodb-buffer-pool-size=16M",
                "--max-allowed-packet=64M",
            ])
            .args(extra)
            .arg(format!("--log-error={}", dir.join("mariadb.err").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mariadbd"),
        "TERM",
        Duration::from_secs(15),
    );
    let err_log = dir.join("mariadb.err");
    assert!(
        wait_until(Duration::from_secs(60), || {
            std::fs::read_to_string(&err_log).is_ok_and(|l| l.contains("ready for connections"))
        }),
        "mariadbd did not start: {}",
        std::fs::read_to_string(&err_log).unwrap_or_default()
    );
    server
}

#[test]
fn mysql_spans_match_the_opentelemetry_sdk() {
    let Some(venv) = prerequisites(false) else {
        return;
    };
    let skip = |why: &str| {
        eprintln!("!!! SKIPPING analyze_mysql: {why} (tools/install-deps.sh installs it) !!!")
    };
    if !is_root() || cgroup2_root().is_none() {
        return skip("needs root and a cgroup v2 mount");
    }
    if !ok(Command::new("mariadbd").arg("--version")) {
        return skip("`mariadbd` (mariadb-server) is not installed");
    }
    let python = venv.join("bin/python");
    let imports = "import flask, pymysql, opentelemetry.sdk.trace, \
                   opentelemetry.instrumentation.flask, opentelemetry.instrumentation.pymysql";
    if !ok(Command::new(&python).args(["-c", imports])) {
        return skip("the venv lacks PyMySQL or the OpenTelemetry instrumentations");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (db_port, app_port) = (free_port(), free_port());
    let db = mariadb(dir.path(), db_port, &[]);

    let cap = dir.path().join("cap.parquet");
    let mut cg = TestCgroup::new("mysql-sdk");
    let cg_path = cg.path.to_string_lossy().to_string();
    let mut record = Proc::new(
        podtrace()
            .args(["record", "--cgroup", &cg_path, "-o"])
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
    let sdk_file = dir.path().join("sdk.jsonl");
    let app = repo().join("tools/fixtures/mysql_app.py");
    cg.spawn(&format!(
        "exec {} {} serve {app_port} {db_port} {}",
        python.display(),
        app.display(),
        sdk_file.display()
    ));
    assert!(
        wait_port(app_port, Duration::from_secs(30)),
        "the app did not listen"
    );
    let out = run(
        Command::new(&python).arg(&app).args([
            "drive",
            &app_port.to_string(),
            &REQUESTS.to_string(),
        ]),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "driver: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The recorder flushes about every second.
    std::thread::sleep(Duration::from_millis(1500));
    drop(cg);
    record.signal("INT");
    assert!(record.wait_timeout(Duration::from_secs(30)).is_some());
    drop(db);

    let outdir = dir.path().join("out");
    analyze_capture(&cap, &outdir);
    let spans = read_spans(&outdir);
    let summary = read_summary(&outdir);
    let sdk = read_sdk(&sdk_file);
    let is_mysql = |p: &SpanRow| matches!(text(p, "db.system.name").as_str(), "mysql" | "mariadb");
    let mut used = std::collections::HashSet::new();
    let Tally {
        matched,
        total,
        misses,
    } = match_db(
        &spans,
        &sdk,
        &["mysql", "mariadb"],
        "http.target",
        &mut used,
        |db| {
            let coll = sdk_collection(db.attr("db.statement")).unwrap_or_default();
            Some(vec![(db.s("name").to_ascii_uppercase(), coll)])
        },
    );
    let podtrace_db = spans
        .iter()
        .filter(|s| s.kind == "client" && is_mysql(s))
        .count();
    eprintln!(
        "mysql sdk-truth: {matched}/{total} SDK MySQL spans matched by podtrace CLIENT spans \
         (same operation, collection, time, status, parent request); podtrace has \
         {podtrace_db} MySQL CLIENT spans (the rest: connection setup the SDK does not trace)"
    );
    // summary.json is the analysis' stats object.
    let errors = summary["parse_errors"].as_object().expect("parse_errors");
    assert!(errors.keys().all(|k| !k.starts_with("mysql")), "{summary}");
    assert_eq!(matched, total, "unmatched SDK spans: {misses:#?}");
    // Three startup statements, two per order request, two 17 MiB ones, one failing.
    assert_eq!(
        total,
        3 + 2 * (REQUESTS - 2) + 2 + 1,
        "the app made its calls"
    );
    // The 17 MiB statement (its text cut at the kept 4 KiB) and the 17 MiB row.
    let client_text = |t: &str| -> Vec<&SpanRow> {
        spans
            .iter()
            .filter(|s| s.kind == "client" && text(s, "db.query.text") == t)
            .collect()
    };
    assert_eq!(client_text("SELECT LENGTH(?…").len(), 1);
    let big = client_text("SELECT REPEAT(?, ?) AS big");
    assert_eq!(big.len(), 1);
    assert_eq!(text(big[0], "db.response.returned_rows"), "1");
    // The syntax error: an ERROR span with MariaDB's code.
    assert!(spans.iter().any(|s| s.kind == "client"
        && s.raw["status"]["code"] == "error"
        && text(s, "db.response.status_code") == "1064"));
}
