//! DuckDB reads captures as plain Parquet: counts per record type and decoded payloads
//! agree with what was written. Needs the project venv (`make venv`); without it the test
//! says so loudly and passes (set `PODTRACE_REQUIRE_DUCKDB=1` to make that a failure).

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use podtrace_format::*;

fn python() -> Option<PathBuf> {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    let ok = venv.exists()
        && Command::new(&venv)
            .args(["-c", "import duckdb"])
            .status()
            .is_ok_and(|s| s.success());
    if ok {
        return Some(venv);
    }
    let msg = format!(
        "SKIPPED: no {} with duckdb (run `make venv`)",
        venv.display()
    );
    assert!(
        std::env::var_os("PODTRACE_REQUIRE_DUCKDB").is_none(),
        "{msg}"
    );
    eprintln!("\n\n*** {msg} ***\n");
    None
}

/// Runs the Python `script` with the capture `path` as its argument; asserts it succeeded
/// and returns its stdout.
fn run_python(py: &Path, script: &str, path: &Path) -> Vec<u8> {
    let out = Command::new(py)
        .args(["-c", script])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "duckdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn duckdb_counts_and_decodes_a_capture() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cap.parquet");
    let n = 40_000;
    let summary = write_capture(&path, n, WriterOptions::default().row_group_rows(10_000));

    let script = r#"
import duckdb, sys, json
p = sys.argv[1]
counts = dict(duckdb.sql(f"select record_type, count(*) from '{p}' group by 1").fetchall())
# HTTP requests: socket_data payloads that start with a method, decoded to text.
reqs = duckdb.sql(f"""
  select count(*) from '{p}'
  where record_type = 'socket_data' and cap_len >= 4
    and payload[1:4] = 'GET '::BLOB
""").fetchall()[0][0]
first = duckdb.sql(f"""
  select ts_ns, decode(payload[1:14]) from '{p}'
  where record_type = 'socket_data' and payload[1:4] = 'GET '::BLOB
  order by ts_ns limit 1
""").fetchall()[0]
lens = duckdb.sql(f"""
  select count(*) from '{p}' where record_type = 'socket_data' and octet_length(payload) = cap_len
""").fetchall()[0][0]
v6 = duckdb.sql(f"select count(*) from '{p}' where family = 10").fetchall()[0][0]
meta = dict(duckdb.sql(f"select decode(key), decode(value) from parquet_kv_metadata('{p}')").fetchall())
print(json.dumps({"counts": counts, "reqs": reqs, "first": [first[0], first[1]], "lens": lens,
                  "v6": v6, "version": meta.get("podtrace.schema_version"), "node": meta.get("podtrace.node")}))
"#;
    let out = run_python(&py, script, &path);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();

    for t in RecordType::ALL {
        assert_eq!(
            v["counts"][t.as_str()].as_u64().unwrap_or(0),
            summary.rows_of(t),
            "{}",
            t.as_str()
        );
    }
    let data: Vec<(u64, Vec<u8>, bool)> = (0..n)
        .filter_map(|i| match record(i) {
            Record::SocketData(d) => {
                let v6 = d.meta.local.or(d.meta.remote).is_some_and(|a| a.is_ipv6());
                Some((d.meta.ts_ns, d.payload, v6))
            }
            _ => None,
        })
        .collect();
    let gets: Vec<&(u64, Vec<u8>, bool)> =
        data.iter().filter(|d| d.1.starts_with(b"GET ")).collect();
    assert!(!gets.is_empty());
    assert_eq!(v["reqs"].as_u64().unwrap(), gets.len() as u64);
    assert_eq!(v["first"][0].as_u64().unwrap(), gets[0].0);
    assert_eq!(v["first"][1].as_str().unwrap().as_bytes(), &gets[0].1[..14]);
    assert_eq!(v["lens"].as_u64().unwrap(), data.len() as u64);
    let v6_rows = (0..n)
        .filter_map(|i| match record(i) {
            Record::SocketData(SocketData { meta, .. })
            | Record::SocketOpen(SocketEvent { meta, .. })
            | Record::SocketClose(SocketEvent { meta, .. }) => meta.local.or(meta.remote),
            _ => None,
        })
        .filter(|a| a.is_ipv6())
        .count();
    assert_eq!(v["v6"].as_u64().unwrap(), v6_rows as u64);
    assert_eq!(v["version"], "1");
    assert_eq!(v["node"], "node-a");
}

#[test]
fn repaired_capture_is_plain_parquet_for_duckdb() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("killed.parquet");
    let mut w = CaptureWriter::create(&path, file_meta(), WriterOptions::default()).unwrap();
    for i in 0..5_000 {
        w.write(&record(i)).unwrap();
        if i % 1_500 == 0 {
            w.flush().unwrap();
        }
    }
    let flushed = w.flushed_rows();
    assert!(flushed > 0 && flushed < 5_000);
    std::mem::forget(w); // as if killed: no footer, the sidecar stays

    // What podtrace's reader recovers through the sidecar...
    let r = CaptureReader::open(&[&path]).unwrap();
    assert!(r.files()[0].recovered);
    assert_rows(r.records(&ReadOptions::default()), flushed);
    // ...`repair` makes a plain Parquet file of, in place.
    let repaired = repair(&path).unwrap().expect("repaired");
    assert_eq!(repaired.rows, flushed);
    assert!(!sidecar_path(&path).exists());
    let recovered = path.clone();

    let out = run_python(
        &py,
        "import duckdb, sys; print(duckdb.sql(f\"select count(*), max(ts_ns) from '{sys.argv[1]}'\").fetchall()[0])",
        &recovered,
    );
    let text = String::from_utf8_lossy(&out);
    let want = format!("({flushed}, {})", record(flushed - 1).ts_ns());
    assert_eq!(text.trim(), want);

    let r = CaptureReader::open(&[&path]).unwrap();
    assert!(!r.files()[0].recovered);
    assert_eq!(r.files()[0].meta, file_meta());
    assert_rows(r.records(&ReadOptions::default()), flushed);
    assert_eq!(repair(&path).unwrap(), None, "nothing left to repair");
}
