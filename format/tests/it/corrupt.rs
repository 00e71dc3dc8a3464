//! Bad inputs: each kind is its own error variant naming the file, and nothing panics.

use crate::common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Int32Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use common::*;
use parquet::arrow::ArrowWriter;
use podtrace_format::*;

fn open(path: &Path) -> Result<Vec<Record>> {
    let r = CaptureReader::open(&[path])?;
    r.records(&ReadOptions::default()).collect()
}

fn good_capture(dir: &Path) -> (PathBuf, Vec<u8>) {
    let path = dir.join("good.parquet");
    write_capture(
        &path,
        20_000,
        WriterOptions::default().row_group_rows(5_000),
    );
    let bytes = std::fs::read(&path).unwrap();
    (path, bytes)
}

fn error_path(e: &FormatError) -> Option<&Path> {
    match e {
        FormatError::Io { path, .. }
        | FormatError::NotParquet { path, .. }
        | FormatError::Truncated { path, .. }
        | FormatError::WrongSchema { path, .. }
        | FormatError::UnsupportedVersion { path, .. }
        | FormatError::Corrupt { path, .. }
        | FormatError::Write { path, .. } => Some(path),
        _ => None,
    }
}

#[test]
fn zero_bytes_is_not_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zero.parquet");
    std::fs::write(&path, b"").unwrap();
    let e = open(&path).unwrap_err();
    assert!(matches!(e, FormatError::NotParquet { .. }), "{e:?}");
    assert_eq!(error_path(&e), Some(path.as_path()));
    assert!(e.to_string().contains("zero.parquet"), "{e}");
}

#[test]
fn random_bytes_are_not_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("random.parquet");
    let bytes: Vec<u8> = (0..10_000u64).map(|i| mix(i) as u8).collect();
    std::fs::write(&path, bytes).unwrap();
    let e = open(&path).unwrap_err();
    assert!(matches!(e, FormatError::NotParquet { .. }), "{e:?}");
    assert_eq!(error_path(&e), Some(path.as_path()));
}

#[test]
fn truncated_files_without_sidecar_are_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes) = good_capture(dir.path());
    let len = bytes.len();
    for cut in [
        1,
        3,
        4,
        5,
        100,
        4096,
        len / 3,
        len / 2,
        len - 9,
        len - 8,
        len - 5,
        len - 1,
    ] {
        let path = dir.path().join(format!("cut{cut}.parquet"));
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let e = open(&path).unwrap_err();
        assert!(
            matches!(e, FormatError::Truncated { .. }),
            "cut at {cut}: {e:?}"
        );
        assert_eq!(error_path(&e), Some(path.as_path()));
    }
}

#[test]
fn parquet_of_another_schema_is_wrong_schema() {
    let dir = tempfile::tempdir().unwrap();
    // A plain Parquet file (no podtrace metadata).
    let path = dir.path().join("other.parquet");
    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int32, false)]));
    let batch =
        RecordBatch::try_new(schema.clone(), vec![Arc::new(Int32Array::from(vec![1, 2]))]).unwrap();
    let mut w =
        ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema.clone(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let e = open(&path).unwrap_err();
    assert!(matches!(e, FormatError::WrongSchema { .. }), "{e:?}");
    assert_eq!(error_path(&e), Some(path.as_path()));

    // podtrace metadata, but not the podtrace columns.
    let path = dir.path().join("lying.parquet");
    let props = schema_version_props("1");
    let mut w =
        ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), schema, Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let e = open(&path).unwrap_err();
    assert!(
        matches!(e, FormatError::WrongSchema { ref reason, .. } if reason.contains("missing columns")),
        "{e:?}"
    );
}

fn capture_with_version(path: &Path, version: &str) {
    let props = schema_version_props(version);
    let mut w =
        ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema(), Some(props)).unwrap();
    w.write(&RecordBatch::new_empty(schema())).unwrap();
    w.close().unwrap();
}

#[test]
fn newer_schema_version_is_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.parquet");
    capture_with_version(&path, "2");
    let e = open(&path).unwrap_err();
    match &e {
        FormatError::UnsupportedVersion {
            found, supported, ..
        } => {
            assert_eq!(found, "2");
            assert_eq!(*supported, 1);
        }
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    }
    assert_eq!(error_path(&e), Some(path.as_path()));

    // The same file with version 1 is fine: the test above is about the version only.
    capture_with_version(&path, "1");
    assert_eq!(open(&path).unwrap().len(), 0);
    capture_with_version(&path, "one");
    assert!(matches!(open(&path), Err(FormatError::WrongSchema { .. })));
}

#[test]
fn damaged_data_and_footers_are_corrupt_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let (_, bytes) = good_capture(dir.path());
    let len = bytes.len();
    let footer_len = u32::from_le_bytes(bytes[len - 8..len - 4].try_into().unwrap()) as usize;
    let footer_start = len - 8 - footer_len;
    let mut corrupt = 0;
    let mut ok = 0;
    // Overwrite 16 bytes at many places: data pages, page headers, the footer.
    let spots: Vec<usize> = (0..60)
        .map(|k| 4 + (mix(k) as usize) % (len - 12 - 16))
        .chain((0..20).map(|k| footer_start + (mix(k + 100) as usize) % (footer_len - 16)))
        .collect();
    for (k, at) in spots.into_iter().enumerate() {
        let mut damaged = bytes.clone();
        for (j, b) in damaged[at..at + 16].iter_mut().enumerate() {
            *b ^= (mix((k * 16 + j) as u64) as u8) | 1;
        }
        let path = dir.path().join(format!("damaged{k}.parquet"));
        std::fs::write(&path, &damaged).unwrap();
        let result = std::panic::catch_unwind(|| open(&path));
        let result = result.unwrap_or_else(|_| panic!("reader panicked on damage at {at}"));
        match result {
            Ok(_) => ok += 1, // damage in bytes that do not change the decoded values
            Err(FormatError::Corrupt { path: p, .. }) => {
                assert_eq!(p, path);
                corrupt += 1;
            }
            // Damage in the footer's key-value metadata can also hide the podtrace keys.
            Err(FormatError::WrongSchema { .. }) | Err(FormatError::UnsupportedVersion { .. })
                if at >= footer_start => {}
            Err(e) => panic!("damage at {at}: unexpected {e:?}"),
        }
    }
    assert!(corrupt > 10, "only {corrupt} corrupt ({ok} ok)");

    // Both magics present, garbage between.
    let path = dir.path().join("garbage.parquet");
    let mut g = b"PAR1".to_vec();
    g.extend((0..5000u64).map(|i| mix(i) as u8));
    g.extend_from_slice(&100u32.to_le_bytes());
    g.extend_from_slice(b"PAR1");
    std::fs::write(&path, &g).unwrap();
    assert!(matches!(open(&path), Err(FormatError::Corrupt { .. })));

    // A sidecar that is garbage, next to a truncated file.
    let path = dir.path().join("cut.parquet");
    std::fs::write(&path, &bytes[..len / 2]).unwrap();
    std::fs::write(sidecar_path(&path), &g[4..]).unwrap();
    assert!(matches!(open(&path), Err(FormatError::Corrupt { .. })));
}
