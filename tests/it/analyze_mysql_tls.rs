//! MySQL over TLS, as root, with the real recorder: a throw-away MariaDB (the setup of
//! analyze_mysql.rs) with a certificate made by `openssl req` into the test's temporary
//! directory and `require_secure_transport`, and a PyMySQL client with `ssl={...}` (Python's
//! `ssl` module: Debian's libssl.so.3, hooked by the recorder's uprobes) started in its own
//! cgroup after `podtrace record --cgroup` attached. The client's socket carries the
//! cleartext greeting and `SSLRequest`, then TLS records; the recorder adds the plaintext
//! of `SSL_write`/`SSL_read` on the same connection.
//!
//! Every statement the client ran must be a podtrace CLIENT span with its operation and
//! collection (the client reports them, found by its own word scan) and the login's database
//! as `db.namespace`, the failing one an
//! ERROR span with MariaDB's code; no MySQL parse error but the counted `SSLRequest`
//! (`mysql_tls`). The test prints matched/total.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::analyze_mysql::{mariadb, ok};
use crate::reliability_support::{cgroup2_root, is_root, TestCgroup};
use crate::sdk_db::text;
use crate::support::*;

/// The client: waits for the recorder to hook its libssl (loaded by `import ssl`), then
/// runs its statements over one TLS connection and writes what it ran (operation,
/// collection, failed) as JSON lines, then `done`.
const CLIENT: &str = r#"
import json, ssl, sys, time
import pymysql
port, ca, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
time.sleep(3)
conn = pymysql.connect(host="127.0.0.1", port=port, user="app", password="secret",
                       database="shop", ssl={"ca": ca, "check_hostname": False})
ran = []
with conn.cursor() as cur:
    def q(sql, args=None):
        words = sql.split()
        op = words[0].upper()
        coll = ""
        for i, w in enumerate(words[:-1]):
            if w.upper() in ("FROM", "INTO", "UPDATE", "TABLE"):
                coll = words[i + 1]
                if coll.upper() in ("IF", "TABLE"):
                    coll = [x for x in words[i + 1:] if x.upper() not in ("IF", "NOT", "EXISTS", "TABLE")][0]
                coll = coll.split("(")[0]
                break
        failed = False
        try:
            cur.execute(sql, args)
            cur.fetchall()
        except pymysql.MySQLError:
            failed = True
        ran.append({"op": op, "coll": coll, "failed": failed})
    cur.execute("SHOW STATUS LIKE 'Ssl_cipher'")
    cipher = cur.fetchone()[1]
    q("CREATE TABLE IF NOT EXISTS items (id INT PRIMARY KEY, name VARCHAR(40))")
    for i in range(5):
        q("INSERT INTO items VALUES (%s, %s)", (i, "item-%d" % i))
    conn.commit()
    for i in range(5):
        q("SELECT name FROM items WHERE id = %s", (i,))
    q("UPDATE items SET name = %s WHERE id = %s", ("renamed", 1))
    q("REPLACE INTO items VALUES (%s, %s)", (2, "replaced"))
    q("DELETE FROM items WHERE id = %s", (3,))
    q("SELEC 1")
    conn.commit()
conn.close()
with open(out, "w") as f:
    f.write(json.dumps({"cipher": cipher}) + "\n")
    for r in ran:
        f.write(json.dumps(r) + "\n")
    f.write("done\n")
"#;

#[test]
fn mysql_over_tls_is_read_from_the_plaintext() {
    let Some(venv) = prerequisites(false) else {
        return;
    };
    let skip = |why: &str| {
        eprintln!("!!! SKIPPING analyze_mysql_tls: {why} (tools/install-deps.sh installs it) !!!")
    };
    if !is_root() || cgroup2_root().is_none() {
        return skip("needs root and a cgroup v2 mount");
    }
    if !ok(Command::new("mariadbd").arg("--version")) {
        return skip("`mariadbd` (mariadb-server) is not installed");
    }
    if !ok(Command::new("openssl").arg("version")) {
        return skip("`openssl` is not installed");
    }
    let python = venv.join("bin/python");
    if !ok(Command::new(&python).args(["-c", "import pymysql, ssl"])) {
        return skip("the venv lacks PyMySQL");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let out = run(
        Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=127.0.0.1", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db_port = free_port();
    let db = mariadb(
        dir.path(),
        db_port,
        &[
            format!("--ssl-cert={}", cert.display()),
            format!("--ssl-key={}", key.display()),
            "--require-secure-transport=ON".to_string(),
        ],
    );

    let cap = dir.path().join("cap.parquet");
    let mut cg = TestCgroup::new("mysql-tls");
    let cg_path = cg.path.to_string_lossy().to_string();
    let mut record = Proc::new(
        podtrace()
            .args(["record", "--cgroup", &cg_path, "-o"])
            .arg(&cap)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
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
    let script = dir.path().join("client.py");
    std::fs::write(&script, CLIENT).expect("client.py");
    let ran_file = dir.path().join("ran.jsonl");
    cg.spawn(&format!(
        "exec {} {} {db_port} {} {} 2> {}",
        python.display(),
        script.display(),
        cert.display(),
        ran_file.display(),
        dir.path().join("client.err").display()
    ));
    assert!(
        wait_until(Duration::from_secs(60), || {
            std::fs::read_to_string(&ran_file).is_ok_and(|t| t.ends_with("done\n"))
        }),
        "the client did not finish: {}",
        std::fs::read_to_string(dir.path().join("client.err")).unwrap_or_default()
    );
    // The recorder flushes about every second.
    std::thread::sleep(Duration::from_millis(1500));
    drop(cg);
    record.signal("INT");
    assert!(record.wait_timeout(Duration::from_secs(30)).is_some());
    drop(db);

    let ran_text = std::fs::read_to_string(&ran_file).expect("ran.jsonl");
    let mut ran: Vec<Value> = ran_text
        .lines()
        .filter(|l| *l != "done")
        .map(|l| serde_json::from_str(l).expect("client JSON"))
        .collect();
    let head = ran.remove(0);
    let cipher = head["cipher"].as_str().unwrap_or_default();
    assert!(!cipher.is_empty(), "the connection did not use TLS: {head}");

    let outdir = dir.path().join("out");
    analyze_capture(&cap, &outdir);
    let spans = read_spans(&outdir);
    let summary = read_summary(&outdir);
    let mine: Vec<&SpanRow> = spans
        .iter()
        .filter(|s| {
            s.kind == "client" && matches!(text(s, "db.system.name").as_str(), "mysql" | "mariadb")
        })
        .collect();
    let mut used = std::collections::HashSet::new();
    let mut misses = Vec::new();
    for r in &ran {
        let op = r["op"].as_str().unwrap_or_default();
        let coll = r["coll"].as_str().unwrap_or_default();
        let failed = r["failed"].as_bool().unwrap_or(false);
        // In the order the client ran them.
        let found = mine.iter().find(|s| {
            !used.contains(&s.span_id)
                && text(s, "db.namespace") == "shop"
                && text(s, "db.operation.name") == op
                && text(s, "db.collection.name") == coll
                && (s.raw["status"]["code"] == "error") == failed
        });
        match found {
            Some(s) => {
                used.insert(s.span_id.clone());
            }
            None => misses.push(r.clone()),
        }
    }
    let systems: std::collections::BTreeSet<String> =
        mine.iter().map(|s| text(s, "db.system.name")).collect();
    eprintln!(
        "mysql over TLS ({cipher}): {}/{} statements matched by podtrace CLIENT spans \
         (namespace, operation, collection, status); {} MySQL CLIENT spans in all (db.system.name {systems:?}); \
         TLS ciphertext rows skipped: {}",
        ran.len() - misses.len(),
        ran.len(),
        mine.len(),
        summary["tls_ciphertext_skipped"]
    );
    // summary.json is the analysis' stats object.
    let errors = summary["parse_errors"].as_object().expect("parse_errors");
    assert!(
        errors
            .keys()
            .all(|k| !k.starts_with("mysql") || k == "mysql_tls"),
        "{summary}"
    );
    // The socket's TLS records were skipped, not parsed.
    assert!(
        summary["tls_ciphertext_skipped"].as_u64().unwrap_or(0) > 0,
        "{summary}"
    );
    assert!(misses.is_empty(), "unmatched statements: {misses:#?}");
    // 1 CREATE, 5 INSERT, 5 SELECT, UPDATE, REPLACE, DELETE, the failing one.
    assert_eq!(ran.len(), 15, "the client ran its statements");
    assert!(mine
        .iter()
        .any(|s| text(s, "db.response.status_code") == "1064"));
}
