//! Shared support of the golden tests (`golden.rs`, `grpc_golden.rs`): a fixture pcap
//! imported with its Kubernetes objects, comparison with the checked-in golden files
//! (`UPDATE_GOLDEN=1` rewrites them), and span attribute look-ups.

use std::path::{Path, PathBuf};

use podtrace_format::{CaptureReader, ReadOptions, Record};
use podtrace_import::{import, ImportOptions};
use podtrace_model::{AttrValue, Span};

/// The repository's `fixtures/` directory.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

/// The records of `fixtures/<dir>/<pcap>`, imported (both sockets of every connection)
/// together with `fixtures/<dir>/k8s-objects.json` (when there is one) as node `node-1`.
pub fn import_records(dir: &str, pcap: &str) -> Vec<Record> {
    let dir = fixtures().join(dir);
    let tmp = tempfile::tempdir().expect("tempdir");
    let cap = tmp.path().join("cap.parquet");
    let opts = ImportOptions {
        k8s_objects: Some(dir.join("k8s-objects.json")).filter(|p| p.exists()),
        node: "node-1".into(),
        ..ImportOptions::default()
    };
    import(&dir.join(pcap), &cap, &opts).unwrap_or_else(|e| panic!("import {pcap}: {e}"));
    CaptureReader::open(&[&cap])
        .expect("open capture")
        .records(&ReadOptions::default())
        .collect::<Result<Vec<_>, _>>()
        .expect("read capture")
}

/// Compares `actual` with `fixtures/<dir>/<name>` (or rewrites it under `UPDATE_GOLDEN`).
pub fn check_golden(dir: &str, name: &str, actual: &str) {
    let path = fixtures().join(dir).join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).expect("write golden");
        eprintln!("updated {}", path.display());
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", path.display()));
    if expected != actual {
        let diff = expected
            .lines()
            .zip(actual.lines())
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .map(|(i, (a, b))| format!("line {}: expected {a:?}, got {b:?}", i + 1))
            .unwrap_or_else(|| "lengths differ".into());
        panic!("{name} differs from the golden file ({diff}); UPDATE_GOLDEN=1 rewrites it");
    }
}

/// A string attribute of `s`.
pub fn attr_str<'a>(s: &'a Span, key: &str) -> Option<&'a str> {
    match s.attribute(key) {
        Some(AttrValue::Str(v)) => Some(v),
        _ => None,
    }
}

/// An integer attribute of `s`.
pub fn attr_int(s: &Span, key: &str) -> Option<i64> {
    match s.attribute(key) {
        Some(AttrValue::Int(v)) => Some(*v),
        _ => None,
    }
}
