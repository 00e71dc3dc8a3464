//! Rotation: numbered segments, each a complete capture, read back as one capture from the
//! directory or a glob.

use crate::common;

use std::time::Duration;

use common::*;
use podtrace_format::*;

#[test]
fn rotate_by_bytes_makes_numbered_segments_readable_as_one_capture() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("cap.parquet");
    let n = 60_000;
    let opts = WriterOptions::default()
        .row_group_rows(2_000)
        .rotate_bytes(Some(1 << 20));
    let summary = write_capture(&base, n, opts);

    assert!(summary.files.len() >= 3, "{} segments", summary.files.len());
    for (i, f) in summary.files.iter().enumerate() {
        assert_eq!(f, &dir.path().join(format!("cap.{i:04}.parquet")));
        assert!(f.exists());
        assert!(
            !sidecar_path(f).exists(),
            "sidecar of a closed segment removed"
        );
    }
    assert!(
        !base.exists(),
        "with rotation the base name itself is not written"
    );
    let total_bytes: u64 = summary
        .files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    assert_eq!(summary.bytes, total_bytes);
    assert_eq!(summary.rows, n);

    // Directory input, glob input, and an explicit list all read the same rows in order.
    let by_dir = CaptureReader::open(&[dir.path()]).unwrap();
    assert_eq!(by_dir.files().len(), summary.files.len());
    for f in by_dir.files() {
        assert_eq!(
            f.meta,
            file_meta(),
            "every segment carries the file metadata"
        );
        assert!(f.start_ns.is_some() && f.end_ns.is_some());
    }
    assert_rows(by_dir.records(&ReadOptions::default()), n);

    let glob = dir.path().join("cap.*.parquet");
    let by_glob = CaptureReader::open(&[glob]).unwrap();
    assert_eq!(by_glob.num_rows(), n);
    assert_rows(by_glob.records(&ReadOptions::default()), n);

    let by_list = CaptureReader::open(&summary.files).unwrap();
    assert_rows(by_list.records(&ReadOptions::default()), n);

    // A file given twice (directory + file) is read once.
    let twice = CaptureReader::open(&[dir.path(), &summary.files[0]]).unwrap();
    assert_eq!(twice.num_rows(), n);
}

#[test]
fn rotate_by_duration() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("live");
    let opts = WriterOptions::default().rotate_duration(Some(Duration::from_millis(30)));
    let mut w = CaptureWriter::create(&base, file_meta(), opts).unwrap();
    for i in 0..3u64 {
        w.write(&record(i)).unwrap();
        w.flush().unwrap();
        std::thread::sleep(Duration::from_millis(40));
        w.tick().unwrap();
    }
    let s = w.finish().unwrap();
    let names: Vec<String> = s
        .files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "live.0000.parquet",
            "live.0001.parquet",
            "live.0002.parquet"
        ]
    );
    let r = CaptureReader::open(&[dir.path()]).unwrap();
    assert_rows(r.records(&ReadOptions::default()), 3);
}

#[test]
fn segment_naming() {
    use std::path::Path;
    assert_eq!(
        segment_path(Path::new("/x/cap.parquet"), 0),
        Path::new("/x/cap.0000.parquet")
    );
    assert_eq!(
        segment_path(Path::new("cap"), 12),
        Path::new("cap.0012.parquet")
    );
    assert_eq!(
        sidecar_path(Path::new("/x/cap.parquet")),
        Path::new("/x/cap.parquet.footer")
    );
}

#[test]
fn missing_inputs_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        CaptureReader::open(&[dir.path()]),
        Err(FormatError::NoInput { .. })
    ));
    assert!(matches!(
        CaptureReader::open(&[dir.path().join("*.parquet")]),
        Err(FormatError::NoInput { .. })
    ));
    assert!(matches!(
        CaptureReader::open(&[dir.path().join("nope.parquet")]),
        Err(FormatError::Io { .. })
    ));
}
