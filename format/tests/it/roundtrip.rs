//! Roundtrip: a million mixed rows written in batches read back equal, in order.

use crate::common;

use std::collections::BTreeMap;

use common::*;
use podtrace_format::*;

#[test]
fn million_mixed_rows_roundtrip() {
    let n: u64 = std::env::var("PODTRACE_ROUNDTRIP_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cap.parquet");
    let t = std::time::Instant::now();
    // Row groups cut by rows only: the 1 s time flush would make their count depend on how
    // fast this machine writes.
    let summary = write_capture(&path, n, WriterOptions::default().flush_interval(None));
    let write_time = t.elapsed();

    // The summary counts what was written.
    let mut by_type = BTreeMap::new();
    for i in 0..n {
        *by_type.entry(record(i).record_type()).or_insert(0u64) += 1;
    }
    assert_eq!(summary.rows, n);
    assert_eq!(summary.rows_by_type, by_type);
    assert_eq!(summary.files, vec![path.clone()]);
    assert_eq!(summary.row_groups, n.div_ceil(65_536) as usize);
    assert_eq!(summary.bytes, std::fs::metadata(&path).unwrap().len());
    assert_eq!(
        RecordType::ALL.len(),
        by_type.len(),
        "every record type is exercised"
    );
    assert!(!sidecar_path(&path).exists(), "finish removes the sidecar");

    let t = std::time::Instant::now();
    let reader = CaptureReader::open(&[&path]).unwrap();
    let file = &reader.files()[0];
    assert_eq!(file.meta, file_meta());
    assert_eq!(file.schema_version, 1);
    assert!(!file.recovered);
    assert_eq!(file.rows, n);
    assert_eq!(file.start_ns, Some(record(0).ts_ns()));
    assert_eq!(file.end_ns, Some(record(n - 1).ts_ns()));
    assert_rows(reader.records(&ReadOptions::default()), n);
    eprintln!(
        "{n} rows: write {write_time:?}, read+compare {:?}, {} bytes",
        t.elapsed(),
        summary.bytes
    );
}

#[test]
fn empty_capture_is_a_valid_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.parquet");
    let summary = write_capture(&path, 0, WriterOptions::default());
    assert_eq!(summary.rows, 0);
    let reader = CaptureReader::open(&[&path]).unwrap();
    assert_eq!(reader.files()[0].meta, file_meta());
    assert_eq!(reader.files()[0].start_ns, None);
    assert_eq!(reader.records(&ReadOptions::default()).count(), 0);
}

#[test]
fn files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cap.parquet");
    std::fs::write(&path, b"old contents").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    write_capture(&path, 10, WriterOptions::default());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn flush_interval_cuts_row_groups_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cap.parquet");
    let opts = WriterOptions::default().flush_interval(Some(std::time::Duration::from_millis(50)));
    let mut w = CaptureWriter::create(&path, file_meta(), opts).unwrap();
    w.write(&record(0)).unwrap();
    assert_eq!(w.flushed_rows(), 0);
    w.tick().unwrap();
    assert_eq!(w.flushed_rows(), 0, "not yet due");
    std::thread::sleep(std::time::Duration::from_millis(60));
    w.tick().unwrap();
    assert_eq!(w.flushed_rows(), 1, "tick flushes a due row group");
    w.write(&record(1)).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(60));
    w.write(&record(2)).unwrap();
    assert_eq!(w.flushed_rows(), 3, "a write checks the interval too");
    let s = w.finish().unwrap();
    assert_eq!(s.row_groups, 2);
    assert_rows(
        CaptureReader::open(&[&path])
            .unwrap()
            .records(&ReadOptions::default()),
        3,
    );
}

#[test]
fn same_columns_from_another_writer_are_read() {
    use std::sync::Arc;

    use arrow_array::RecordBatch;
    use arrow_schema::{DataType, Field, Schema};
    use parquet::arrow::ArrowWriter;

    // Write a capture, read it as batches, and rewrite it the way another tool might:
    // dictionaries as plain strings, columns in another order, an extra column, no
    // Arrow schema in the footer.
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("ours.parquet");
    let n = 5_000;
    write_capture(&ours, n, WriterOptions::default());
    let batches: Vec<RecordBatch> = CaptureReader::open(&[&ours])
        .unwrap()
        .batches(&ReadOptions::default())
        .map(|b| b.unwrap())
        .collect();

    let mut fields: Vec<Field> = Vec::new();
    for f in schema().fields().iter().rev() {
        let t = match f.data_type() {
            DataType::Dictionary(_, v) => v.as_ref().clone(),
            t => t.clone(),
        };
        fields.push(Field::new(f.name(), t, true));
    }
    fields.push(Field::new("note", DataType::Utf8, true));
    let theirs_schema = Arc::new(Schema::new(fields));
    let theirs = dir.path().join("theirs.parquet");
    let props = schema_version_props("1");
    let opts = parquet::arrow::arrow_writer::ArrowWriterOptions::new()
        .with_properties(props)
        .with_skip_arrow_metadata(true);
    let mut w = ArrowWriter::try_new_with_options(
        std::fs::File::create(&theirs).unwrap(),
        theirs_schema.clone(),
        opts,
    )
    .unwrap();
    for b in &batches {
        let mut cols = Vec::new();
        for f in theirs_schema.fields() {
            match b.column_by_name(f.name()) {
                Some(c) => cols.push(arrow::compute::cast(c, f.data_type()).unwrap()),
                None => cols.push(arrow_array::new_null_array(&DataType::Utf8, b.num_rows())),
            }
        }
        w.write(&RecordBatch::try_new(theirs_schema.clone(), cols).unwrap())
            .unwrap();
    }
    w.close().unwrap();

    let r = CaptureReader::open(&[&theirs]).unwrap();
    for b in r.batches(&ReadOptions::default()) {
        assert_eq!(b.unwrap().schema(), schema());
    }
    assert_rows(r.records(&ReadOptions::default()), n);
}

#[test]
fn reading_inside_a_rayon_pool_does_not_starve_it() {
    use rayon::prelude::*;
    let dir = tempfile::tempdir().unwrap();
    let paths: Vec<_> = (0..4)
        .map(|k| {
            let p = dir.path().join(format!("c{k}.parquet"));
            write_capture(&p, 20_000, WriterOptions::default().row_group_rows(1_000));
            p
        })
        .collect();
    // One-thread pool: a reader that waited for tasks queued behind itself would hang.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let counts: Vec<usize> = pool.install(|| {
        paths
            .par_iter()
            .map(|p| {
                let r = CaptureReader::open(&[p]).unwrap();
                r.records(&ReadOptions::default())
                    .collect::<Result<Vec<_>>>()
                    .unwrap()
                    .len()
            })
            .collect()
    });
    assert_eq!(counts, vec![20_000; 4]);
}

/// The open row group is encoded as it fills (ENCODE_ROWS at a time) but is readable only
/// once flushed: until then its rows count as buffered, none as flushed, and a reader of the
/// unfinished file (through the sidecar) sees none of them.
#[test]
fn encoded_rows_are_not_flushed_rows_until_the_row_group_closes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cap.parquet");
    let opts = WriterOptions::default()
        .row_group_rows(10_000)
        .flush_interval(None);
    let mut w = CaptureWriter::create(&path, file_meta(), opts).unwrap();
    let n = 3 * writer::ENCODE_ROWS as u64 + 5; // three encoded chunks and a partial one
    let rows: Vec<Record> = (0..n).map(record).collect();
    w.write_all(&rows).unwrap();
    assert_eq!(w.flushed_rows(), 0);
    assert_eq!(w.buffered_rows() as u64, n);
    // no row group yet: nothing to read (the file has neither a footer nor a sidecar entry)
    assert_eq!(CaptureReader::open(&[&path]).map_or(0, |r| r.num_rows()), 0);
    w.flush().unwrap();
    assert_eq!((w.flushed_rows(), w.buffered_rows()), (n, 0));
    assert_eq!(CaptureReader::open(&[&path]).unwrap().num_rows(), n);
    // the next row group starts empty and is cut at row_group_rows counting encoded rows
    let more: Vec<Record> = (n..n + 10_000).map(record).collect();
    w.write_all(&more).unwrap();
    assert_eq!(w.flushed_rows(), n + 10_000);
    assert_eq!(w.buffered_rows(), 0);
    let summary = w.finish().unwrap();
    assert_eq!(summary.row_groups, 2);
    assert_rows(
        CaptureReader::open(&[&path])
            .unwrap()
            .records(&ReadOptions::default()),
        n + 10_000,
    );
}

/// The index of column `name` in a row group.
fn column_of(group: &parquet::file::metadata::RowGroupMetaData, name: &str) -> usize {
    group
        .columns()
        .iter()
        .position(|c| c.column_path().string() == name)
        .unwrap()
}

/// The values of an integer column of the capture schema, widened.
fn int_values(a: &dyn arrow_array::Array) -> Vec<Option<i128>> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int64Type, UInt16Type, UInt32Type, UInt64Type, UInt8Type};
    use arrow_array::ArrowPrimitiveType;
    use arrow_schema::DataType;
    fn widen<T: ArrowPrimitiveType>(a: &dyn arrow_array::Array) -> Vec<Option<i128>>
    where
        T::Native: Into<i128>,
    {
        a.as_primitive::<T>()
            .iter()
            .map(|v| v.map(Into::into))
            .collect()
    }
    match a.data_type() {
        DataType::UInt8 => widen::<UInt8Type>(a),
        DataType::UInt16 => widen::<UInt16Type>(a),
        DataType::UInt32 => widen::<UInt32Type>(a),
        DataType::UInt64 => widen::<UInt64Type>(a),
        DataType::Int64 => widen::<Int64Type>(a),
        t => panic!("not an integer column: {t}"),
    }
}

/// The chunks the writer encodes itself (the dictionary text columns, the integer columns,
/// `payload`) carry the
/// statistics the data has, row group by row group: the null count, and min / max of the
/// values present (what readers prune row groups by); `payload` has an offset index of
/// several pages.
#[test]
fn own_chunks_have_the_statistics_of_their_rows() {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int32Type;
    use arrow_array::Array;
    use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
    use parquet::file::metadata::PageIndexPolicy;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cap.parquet");
    let opts = WriterOptions::default()
        .flush_interval(None)
        .row_group_rows(40_000);
    write_capture(&path, 100_000, opts);
    let texts = [
        "record_type",
        "comm",
        "local_addr",
        "remote_addr",
        "direction",
        "role",
        "syscall",
        "k8s_kind",
        "k8s_namespace",
        "k8s_event",
        "stat_name",
    ];
    // the dictionary columns' pages: 8,192 rows (writer/chunk.rs, PAGE_ROWS)
    const PAGE_ROWS: usize = 8192;
    // (name, signed)
    let ints = [
        ("cpu", false),
        ("pid", false),
        ("tid", false),
        ("cgroup_id", false),
        ("conn_id", false),
        ("family", false),
        ("local_port", false),
        ("remote_port", false),
        ("ret", true),
        ("cap_len", false),
        ("flags", false),
    ];
    let file = std::fs::File::open(&path).unwrap();
    let options = ArrowReaderOptions::new().with_offset_index_policy(PageIndexPolicy::Required);
    let builder = ParquetRecordBatchReaderBuilder::try_new_with_options(file, options).unwrap();
    let meta = builder.metadata().clone();
    assert_eq!(meta.num_row_groups(), 3);
    let offsets = meta.offset_index().expect("an offset index");
    for (rg, offsets) in offsets.iter().enumerate() {
        let file = std::fs::File::open(&path).unwrap();
        let batches: Vec<_> = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .with_row_groups(vec![rg])
            .build()
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let group = meta.row_group(rg);
        for name in texts {
            let col = column_of(group, name);
            let (mut nulls, mut min, mut max) = (0u64, None::<String>, None::<String>);
            for b in &batches {
                let a = b.column_by_name(name).unwrap().as_dictionary::<Int32Type>();
                nulls += a.null_count() as u64;
                let values = a.values().as_string::<i32>();
                for k in a.keys().iter().flatten() {
                    let v = values.value(k as usize).to_string();
                    if min.as_ref().is_none_or(|m| v < *m) {
                        min = Some(v.clone());
                    }
                    if max.as_ref().is_none_or(|m| v > *m) {
                        max = Some(v);
                    }
                }
            }
            let stats = group.column(col).statistics().expect("statistics");
            assert_eq!(stats.null_count_opt(), Some(nulls), "{name} in {rg}");
            let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8(b.to_vec()).unwrap());
            assert_eq!(text(stats.min_bytes_opt()), min, "{name} in {rg}");
            assert_eq!(text(stats.max_bytes_opt()), max, "{name} in {rg}");
            let rows = group.num_rows() as usize;
            let pages = offsets[col].page_locations().len();
            assert_eq!(pages, rows.div_ceil(PAGE_ROWS), "{name} in {rg}");
        }
        // the integer columns: min / max by the column's own order (unsigned ones unsigned)
        for (name, signed) in ints {
            let col = column_of(group, name);
            let (mut nulls, mut min, mut max) = (0u64, None::<i128>, None::<i128>);
            for b in &batches {
                let a = b.column_by_name(name).unwrap();
                nulls += a.null_count() as u64;
                for v in int_values(a.as_ref()).into_iter().flatten() {
                    min = Some(min.map_or(v, |m| m.min(v)));
                    max = Some(max.map_or(v, |m| m.max(v)));
                }
            }
            let stats = group.column(col).statistics().expect("statistics");
            assert_eq!(stats.null_count_opt(), Some(nulls), "{name} in {rg}");
            let value = |b: Option<&[u8]>| {
                b.map(|b| match (b.len(), signed) {
                    (4, _) => i128::from(u32::from_le_bytes(b.try_into().unwrap())),
                    (8, false) => i128::from(u64::from_le_bytes(b.try_into().unwrap())),
                    _ => i128::from(i64::from_le_bytes(b.try_into().unwrap())),
                })
            };
            assert_eq!(value(stats.min_bytes_opt()), min, "{name} in {rg}");
            assert_eq!(value(stats.max_bytes_opt()), max, "{name} in {rg}");
            // pages encoded as the row group filled, PAGE_ROWS rows each
            let pages = offsets[col].page_locations();
            let rows = group.num_rows() as usize;
            assert_eq!(pages.len(), rows.div_ceil(PAGE_ROWS), "{name} in {rg}");
            let first_rows: Vec<i64> = pages.iter().map(|p| p.first_row_index).collect();
            assert!(first_rows
                .windows(2)
                .all(|w| w[1] - w[0] == PAGE_ROWS as i64));
        }
        let payload = column_of(group, "payload");
        let pages = offsets[payload].page_locations();
        assert!(pages.len() > 1, "payload pages in {rg}: {}", pages.len());
        let first_rows: Vec<i64> = pages.iter().map(|p| p.first_row_index).collect();
        assert_eq!(first_rows[0], 0);
        assert!(first_rows.windows(2).all(|w| w[0] < w[1]), "{first_rows:?}");
    }
}
