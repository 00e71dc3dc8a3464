//! Projection and filters: `payload: false` never decodes the payload column; record-type and
//! time filters skip row groups by their statistics and filter rows.

use crate::common;

use common::*;
use podtrace_format::*;

fn capture(dir: &std::path::Path) -> (std::path::PathBuf, u64) {
    let path = dir.join("cap.parquet");
    let n = 50_000;
    write_capture(&path, n, WriterOptions::default().row_group_rows(5_000));
    (path, n)
}

#[test]
fn without_payload_the_column_is_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let (path, n) = capture(dir.path());
    let r = CaptureReader::open(&[&path]).unwrap();

    let mut full_bytes = 0;
    for b in r.batches(&ReadOptions::default()) {
        let b = b.unwrap();
        assert_eq!(b.schema(), schema());
        full_bytes += b.get_array_memory_size();
    }
    let mut lean_bytes = 0;
    let mut rows = 0;
    for b in r.batches(&ReadOptions::without_payload()) {
        let b = b.unwrap();
        assert!(
            b.column_by_name(col::PAYLOAD).is_none(),
            "payload column present"
        );
        assert_eq!(b.num_columns(), col::ALL.len() - 1);
        assert_eq!(b.schema(), read_schema(false));
        lean_bytes += b.get_array_memory_size();
        rows += b.num_rows() as u64;
    }
    assert_eq!(rows, n);
    assert!(lean_bytes * 2 < full_bytes, "{lean_bytes} vs {full_bytes}");

    // Records without payload: everything but the payload is there; cap_len is not lost
    // to the reader of batches either.
    for (i, rec) in r.records(&ReadOptions::without_payload()).enumerate() {
        let got = rec.unwrap();
        let want = match record(i as u64) {
            Record::SocketData(mut d) => {
                d.payload.clear();
                Record::SocketData(d)
            }
            other => other,
        };
        assert_eq!(got, want, "row {i}");
    }
}

#[test]
fn record_type_filter_skips_row_groups_and_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sorted.parquet");
    // Row groups of one type each: stats first, then socket data.
    let mut w = CaptureWriter::create(&path, file_meta(), WriterOptions::default()).unwrap();
    let (stats, data): (Vec<Record>, Vec<Record>) = (0..20_000)
        .map(record)
        .filter(|r| matches!(r, Record::Stats(_) | Record::SocketData(_)))
        .partition(|r| matches!(r, Record::Stats(_)));
    w.write_all(&stats).unwrap();
    w.flush().unwrap();
    w.write_all(&data).unwrap();
    w.finish().unwrap();

    let r = CaptureReader::open(&[&path]).unwrap();
    assert_eq!(r.row_groups_to_read(&ReadOptions::default()), 2);
    let only_stats = ReadOptions::default().record_types(&[RecordType::Stats]);
    assert_eq!(
        r.row_groups_to_read(&only_stats),
        1,
        "socket_data row group skipped"
    );
    let got: Vec<Record> = r.records(&only_stats).map(|x| x.unwrap()).collect();
    assert_eq!(got, stats);
    let only_k8s = ReadOptions::default().record_types(&[RecordType::K8sObject]);
    assert_eq!(r.row_groups_to_read(&only_k8s), 0);
    assert_eq!(r.records(&only_k8s).count(), 0);
}

#[test]
fn mixed_row_groups_filter_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (path, n) = capture(dir.path());
    let r = CaptureReader::open(&[&path]).unwrap();
    let types = [RecordType::SocketOpen, RecordType::SocketClose];
    let opts = ReadOptions::default().record_types(&types);
    let got: Vec<Record> = r.records(&opts).map(|x| x.unwrap()).collect();
    let want: Vec<Record> = (0..n)
        .map(record)
        .filter(|r| types.contains(&r.record_type()))
        .collect();
    assert!(!want.is_empty());
    assert_eq!(got, want);
}

#[test]
fn time_range_skips_row_groups_and_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (path, n) = capture(dir.path());
    let r = CaptureReader::open(&[&path]).unwrap();
    // Rows 12_345 .. 17_000 (timestamps grow by 1 µs per row).
    let (start, end) = (record(12_345).ts_ns(), record(17_000).ts_ns());
    let opts = ReadOptions::default().time_range(start, end);
    assert_eq!(r.row_groups_to_read(&opts), 2, "row groups 2 and 3 of 10");
    let got: Vec<Record> = r.records(&opts).map(|x| x.unwrap()).collect();
    let want: Vec<Record> = (12_345..17_000).map(record).collect();
    assert_eq!(got, want);
    let opts = ReadOptions::default().time_range(record(n - 1).ts_ns() + 1, u64::MAX);
    assert_eq!(r.row_groups_to_read(&opts), 0);
    let opts = ReadOptions::default().time_range(5, 5);
    assert_eq!(r.records(&opts).count(), 0);
}

#[test]
fn batch_to_records_rejects_foreign_batches() {
    use std::sync::Arc;
    let s = Arc::new(arrow_schema::Schema::new(vec![arrow_schema::Field::new(
        "x",
        arrow_schema::DataType::Int32,
        false,
    )]));
    let b = arrow_array::RecordBatch::try_new(
        s,
        vec![Arc::new(arrow_array::Int32Array::from(vec![1]))],
    )
    .unwrap();
    assert!(matches!(batch_to_records(&b), Err(FormatError::Batch(_))));
}
