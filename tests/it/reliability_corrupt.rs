//! Corrupt and foreign captures through the CLI: truncations at every row-group boundary and
//! at random offsets, bit flips in pages and footer, a newer schema version, a non-podtrace
//! Parquet file, an empty file, a directory with one bad file among good ones, and inputs
//! the fuzzers found. Every case must end with exit 0 or a clear error naming the file
//! (exit 2), never a panic.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use podtrace_format::{CaptureReader, CaptureWriter, FileMeta, ReadOptions, Record, WriterOptions};

fn podtrace(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_podtrace"))
        .args(args)
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("run podtrace")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts a clean outcome: success, or exit 2 with an error that names `file`; never a panic.
fn assert_clean(o: &Output, file: &Path, what: &str) {
    let err = stderr(o);
    assert!(!err.contains("panicked"), "{what}: panic\n{err}");
    match o.status.code() {
        Some(0) => {}
        Some(2) => assert!(
            err.contains(&file.display().to_string()),
            "{what}: error does not name {}:\n{err}",
            file.display()
        ),
        c => panic!("{what}: exit {c:?}\n{err}"),
    }
}

/// Asserts exit 2 with an error naming `file`.
fn assert_rejected(o: &Output, file: &Path, what: &str) {
    assert_clean(o, file, what);
    assert_eq!(o.status.code(), Some(2), "{what}: accepted\n{}", stderr(o));
}

/// Real records: the chain fixture imported.
fn fixture_records(dir: &Path) -> Vec<Record> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cap = dir.join("chain.parquet");
    let o = podtrace(&[
        "import",
        root.join("fixtures/chain/chain.pcap").to_str().unwrap(),
        "-o",
        cap.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "import: {}", stderr(&o));
    CaptureReader::open(&[&cap])
        .unwrap()
        .records(&ReadOptions::default())
        .collect::<Result<_, _>>()
        .unwrap()
}

/// A finished capture of `records` in row groups of `rows` rows; returns the file size after
/// each row group (the row-group boundaries).
fn write_capture(path: &Path, records: &[Record], rows: usize) -> Vec<u64> {
    let mut w = CaptureWriter::create(
        path,
        FileMeta::default(),
        WriterOptions::default().row_group_rows(rows),
    )
    .unwrap();
    let mut bounds = Vec::new();
    for chunk in records.chunks(rows) {
        w.write_all(chunk).unwrap();
        w.flush().unwrap();
        bounds.push(std::fs::metadata(path).unwrap().len());
    }
    w.finish().unwrap();
    bounds
}

/// Deterministic pseudo-random numbers (xorshift), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn truncated_captures_are_rejected_with_the_file_name() {
    let dir = tempfile::tempdir().unwrap();
    let records = fixture_records(dir.path());
    let good = dir.path().join("good.parquet");
    let bounds = write_capture(&good, &records, 16);
    assert!(bounds.len() >= 4, "only {} row groups", bounds.len());
    let bytes = std::fs::read(&good).unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut cuts: Vec<u64> = bounds.clone();
    cuts.extend((0..24).map(|_| rng.below(bytes.len() as u64)));
    cuts.extend([0, 3, 4, 8, bytes.len() as u64 - 1, bytes.len() as u64 - 8]);
    let bad = dir.path().join("cut.parquet");
    for cut in cuts {
        std::fs::write(&bad, &bytes[..cut as usize]).unwrap();
        let o = podtrace(&["inspect", s(&bad)]);
        assert_rejected(&o, &bad, &format!("inspect cut at {cut}"));
        let o = podtrace(&["analyze", s(&bad), "--out", s(&dir.path().join("out"))]);
        assert_rejected(&o, &bad, &format!("analyze cut at {cut}"));
    }
}

#[test]
fn bit_flips_in_pages_and_footer_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let records = fixture_records(dir.path());
    let good = dir.path().join("good.parquet");
    write_capture(&good, &records, 64);
    let bytes = std::fs::read(&good).unwrap();
    let footer_len =
        u32::from_le_bytes(bytes[bytes.len() - 8..bytes.len() - 4].try_into().unwrap());
    let footer_start = bytes.len() as u64 - 8 - u64::from(footer_len);
    let mut rng = Rng(42);
    let bad = dir.path().join("flipped.parquet");
    let out = dir.path().join("out");
    // 40 flips in the pages, 40 in the footer, one file each.
    for i in 0..80u64 {
        let mut b = bytes.clone();
        let pos = if i < 40 {
            4 + rng.below(footer_start - 4)
        } else {
            footer_start + rng.below(u64::from(footer_len))
        } as usize;
        b[pos] ^= 1 << rng.below(8);
        std::fs::write(&bad, &b).unwrap();
        let what = format!("flip at {pos}");
        assert_clean(&podtrace(&["inspect", s(&bad)]), &bad, &what);
        assert_clean(
            &podtrace(&["analyze", s(&bad), "--out", s(&out)]),
            &bad,
            &what,
        );
    }
}

#[test]
fn newer_schema_version_is_rejected_with_an_upgrade_hint() {
    let dir = tempfile::tempdir().unwrap();
    let records = fixture_records(dir.path());
    let good = dir.path().join("good.parquet");
    write_capture(&good, &records, 1000);
    let mut b = std::fs::read(&good).unwrap();
    // The footer's key-value metadata is plain Thrift: key, then a short length-prefixed value.
    let key = b"podtrace.schema_version";
    let at = b
        .windows(key.len())
        .rposition(|w| w == key)
        .expect("schema version key in the footer")
        + key.len();
    let v = at
        + b[at..at + 4]
            .iter()
            .position(|&c| c == b'1')
            .expect("value 1");
    b[v] = b'9';
    let newer = dir.path().join("newer.parquet");
    std::fs::write(&newer, &b).unwrap();
    let o = podtrace(&["inspect", s(&newer)]);
    assert_rejected(&o, &newer, "newer schema");
    assert!(stderr(&o).contains("version 9"), "{}", stderr(&o));
}

#[test]
fn foreign_parquet_and_empty_files_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.parquet");
    std::fs::write(&empty, b"").unwrap();
    assert_rejected(&podtrace(&["inspect", s(&empty)]), &empty, "empty file");
    let text = dir.path().join("text.parquet");
    std::fs::write(&text, b"PAR1 this is not parquet PAR1").unwrap();
    assert_rejected(&podtrace(&["inspect", s(&text)]), &text, "text file");

    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let foreign = dir.path().join("foreign.parquet");
    let ok = Command::new(&python)
        .args([
            "-c",
            "import duckdb,sys; duckdb.sql(\"COPY (SELECT range AS ts_ns, 'x' AS record_type FROM range(100)) TO '\" + sys.argv[1] + \"' (FORMAT parquet)\")",
            s(&foreign),
        ])
        .status()
        .is_ok_and(|st| st.success());
    if !ok {
        eprintln!(
            "SKIPPED foreign Parquet case: no duckdb in {}",
            python.display()
        );
        return;
    }
    let o = podtrace(&["inspect", s(&foreign)]);
    assert_rejected(&o, &foreign, "foreign parquet");
    assert!(
        stderr(&o).contains("not a podtrace capture"),
        "{}",
        stderr(&o)
    );
    let o = podtrace(&["analyze", s(&foreign), "--out", s(&dir.path().join("out"))]);
    assert_rejected(&o, &foreign, "analyze foreign parquet");
}

#[test]
fn directory_with_one_bad_file_is_reported_and_skippable() {
    let dir = tempfile::tempdir().unwrap();
    let records = fixture_records(dir.path());
    let caps = dir.path().join("caps");
    std::fs::create_dir(&caps).unwrap();
    write_capture(&caps.join("a.parquet"), &records, 100);
    let bad: PathBuf = caps.join("b.parquet");
    let good_bytes = std::fs::read(caps.join("a.parquet")).unwrap();
    std::fs::write(&bad, &good_bytes[..good_bytes.len() / 2]).unwrap();
    let out = dir.path().join("out");
    let o = podtrace(&["analyze", s(&caps), "--out", s(&out)]);
    assert_rejected(&o, &bad, "directory with a bad file");

    let o = podtrace(&["analyze", s(&caps), "--skip-bad-files", "--out", s(&out)]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"));
    assert!(
        err.contains(&bad.display().to_string()),
        "bad file not reported:\n{err}"
    );
    let spans: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("spans.json")).unwrap()).unwrap();
    let n = spans.as_array().map_or(0, Vec::len);
    assert!(n > 0, "no spans from the good file");
}

#[test]
fn fuzzer_found_captures_are_rejected_without_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/capture_reader");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        assert_clean(&podtrace(&["inspect", s(&p)]), &p, "fuzz regression");
        let out = tempfile::tempdir().unwrap();
        assert_clean(
            &podtrace(&["analyze", s(&p), "--out", s(out.path())]),
            &p,
            "fuzz regression",
        );
        n += 1;
    }
    assert!(n > 0, "no regression inputs in {}", dir.display());
}
