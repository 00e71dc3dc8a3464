//! Crash safety: a writer SIGKILLed mid-stream leaves a capture from which every row it
//! reported as flushed reads back, equal to what was written.
//!
//! The child is this test binary re-executed with `PODTRACE_CRASH_CHILD=<path>`: it runs
//! only `crash_child`, which writes rows forever and prints `flushed N` after each flush.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::*;
use podtrace_format::*;

const CHILD_ENV: &str = "PODTRACE_CRASH_CHILD";

/// The child's body (a no-op in a normal test run).
#[test]
fn crash_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let opts = WriterOptions::default().row_group_rows(3_000);
    let mut w = CaptureWriter::create(&path, file_meta(), opts).unwrap();
    let mut i = 0u64;
    let mut last = 0;
    loop {
        // Uneven batches, sometimes an explicit flush of a partial row group.
        let n = 1 + mix(i) % 700;
        let batch: Vec<Record> = (i..i + n).map(record).collect();
        w.write_all(&batch).unwrap();
        i += n;
        if mix(i).is_multiple_of(7) {
            w.flush().unwrap();
        }
        if w.flushed_rows() != last {
            last = w.flushed_rows();
            println!("flushed {last}");
        }
    }
}

fn kill_after(path: &std::path::Path, flushes: usize) -> u64 {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut claimed = 0u64;
    let mut seen = 0;
    while seen < flushes {
        let line = lines.next().expect("child ended early").unwrap();
        if let Some(n) = line.strip_prefix("flushed ") {
            claimed = n.parse().unwrap();
            seen += 1;
        }
    }
    child.kill().unwrap(); // SIGKILL
                           // Lines printed before the kill may still be in the pipe: they are claims too.
    for line in lines.map_while(|l| l.ok()) {
        if let Some(n) = line.strip_prefix("flushed ") {
            claimed = n.parse().unwrap();
        }
    }
    child.wait().unwrap();
    claimed
}

#[test]
fn sigkilled_writer_leaves_every_flushed_row_readable() {
    let dir = tempfile::tempdir().unwrap();
    for (round, flushes) in [1usize, 5, 23].into_iter().enumerate() {
        let path = dir.path().join(format!("crash{round}.parquet"));
        let claimed = kill_after(&path, flushes);
        assert!(claimed > 0);
        assert!(
            sidecar_path(&path).exists(),
            "a killed writer leaves its sidecar"
        );

        let reader = CaptureReader::open(&[&path]).unwrap();
        let file = &reader.files()[0];
        assert!(file.recovered, "read through the sidecar");
        assert_eq!(file.meta, file_meta());
        let rows = file.rows;
        assert!(
            rows >= claimed,
            "{rows} readable rows < {claimed} claimed flushed"
        );
        assert_rows(reader.records(&ReadOptions::default()), rows);
        eprintln!("round {round}: claimed {claimed}, readable {rows}");
    }
}

#[test]
fn killed_file_without_sidecar_is_truncated_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.parquet");
    kill_after(&path, 3);
    std::fs::remove_file(sidecar_path(&path)).unwrap();
    match CaptureReader::open(&[&path]) {
        Err(FormatError::Truncated { path: p, .. }) => assert_eq!(p, path),
        other => panic!("expected Truncated, got {other:?}"),
    }
}
