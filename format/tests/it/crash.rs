//! Crash safety: a writer SIGKILLed mid-stream leaves a capture from which every row it
//! reported as flushed reads back, equal to what was written.
//!
//! The child is this test binary re-executed with `PODTRACE_CRASH_CHILD=<path>`: it runs
//! only `crash_child`, which writes rows forever and prints `flushed N` after each flush.

use crate::common;

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
        .args([
            "--exact",
            "crash::crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
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

#[test]
fn writer_killed_mid_sidecar_append_keeps_earlier_row_groups() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cap.parquet");
    let mut w = CaptureWriter::create(&path, file_meta(), WriterOptions::default()).unwrap();
    for i in 0..300u64 {
        w.write(&record(i)).unwrap();
        if i % 100 == 99 {
            w.flush().unwrap();
        }
    }
    std::mem::forget(w); // killed: no footer
    let sidecar = sidecar_path(&path);
    let full = std::fs::read(&sidecar).unwrap();

    // Cut the last entry at several points, or damage a byte of it: the first two row
    // groups remain readable.
    for cut in [1usize, 7, 12, 40, 500] {
        std::fs::write(&sidecar, &full[..full.len() - cut]).unwrap();
        let r = CaptureReader::open(&[&path]).unwrap();
        assert_eq!(r.files()[0].rows, 200, "cut {cut}");
        assert_rows(r.records(&ReadOptions::default()), 200);
    }
    let mut damaged = full.clone();
    let n = damaged.len();
    damaged[n - 30] ^= 0xff;
    std::fs::write(&sidecar, &damaged).unwrap();
    assert_eq!(CaptureReader::open(&[&path]).unwrap().num_rows(), 200);

    // The whole log: all three.
    std::fs::write(&sidecar, &full).unwrap();
    let r = CaptureReader::open(&[&path]).unwrap();
    assert_eq!(r.files()[0].end_ns, Some(record(299).ts_ns()));
    assert_rows(r.records(&ReadOptions::default()), 300);
}

#[test]
fn sidecar_grows_by_one_small_entry_per_row_group() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cap.parquet");
    let mut w = CaptureWriter::create(&path, file_meta(), WriterOptions::default()).unwrap();
    let mut sizes = Vec::new();
    for i in 0..400u64 {
        w.write(&record(i)).unwrap();
        w.flush().unwrap(); // a quiet recording: one row per 1 s flush
        sizes.push(std::fs::metadata(sidecar_path(&path)).unwrap().len());
    }
    let growth: Vec<u64> = sizes.windows(2).map(|s| s[1] - s[0]).collect();
    let (first, last) = (growth[0], *growth.last().unwrap());
    assert!(last < 2 * first, "entry size grows: {first} then {last}"); // a whole footer would be ~400x
    assert!(last < 8_192, "entry of {last} bytes");
    drop(w);
    assert!(!sidecar_path(&path).exists());
    assert_rows(
        CaptureReader::open(&[&path])
            .unwrap()
            .records(&ReadOptions::default()),
        400,
    );
}

#[test]
fn repair_of_a_killed_capture() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("killed.parquet");
    let claimed = kill_after(&path, 7);
    let before = CaptureReader::open(&[&path]).unwrap().num_rows();
    assert!(before >= claimed);
    let repaired = repair(&path).unwrap().expect("needed repair");
    assert_eq!(repaired.rows, before);
    assert!(!sidecar_path(&path).exists());
    let r = CaptureReader::open(&[&path]).unwrap();
    assert!(!r.files()[0].recovered);
    assert_eq!(r.files()[0].meta, file_meta());
    assert_rows(r.records(&ReadOptions::default()), before);
    // Without its sidecar, a file that was never repaired has nothing to repair from.
    let other = dir.path().join("other.parquet");
    kill_after(&other, 2);
    std::fs::remove_file(sidecar_path(&other)).unwrap();
    assert!(matches!(repair(&other), Err(FormatError::Truncated { .. })));
}
