//! Spans as a table: one row per span in a zstd Parquet file (`analyze --spans-parquet`).
//!
//! Where the other local outputs are documents for tracing tools, this one is for query
//! engines: DuckDB, DataFusion, Spark or pandas read it as an ordinary table, one row per
//! span with its ids, name, kind, times, status, the span attributes as a
//! `Map<Utf8, Utf8>` and the workload as resource columns (schema:
//! [`spans_schema`], documented in `docs/capture-format.md`). [`SpansParquetWriter`]
//! consumes the same span batches as the other outputs, in their order, and writes the file
//! under a temporary sibling name renamed into place by [`SpansParquetWriter::finish`]
//! (dropped unfinished, nothing is left behind). Memory is bounded by one row group
//! ([`ROW_GROUP_ROWS`] spans).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{
    MapBuilder, MapFieldNames, StringBuilder, TimestampNanosecondBuilder, UInt32Builder,
    UInt64Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use podtrace_model::{Span, SpanKind, StatusCode};

use crate::file::StagedFile;
use crate::ExportError;

/// File name used when `--spans-parquet` names a directory.
pub const DEFAULT_SPANS_PARQUET_FILE: &str = "spans.parquet";

/// Version of the spans table schema, in the file metadata as `podtrace.spans_schema_version`.
pub const SPANS_SCHEMA_VERSION: &str = "1";

/// Spans per Parquet row group (also the most the writer buffers).
pub const ROW_GROUP_ROWS: usize = 65_536;

/// Resource attributes that get a column of their own (`.` becomes `_` in the name); every
/// resource attribute is also in `resource_attributes`.
pub const RESOURCE_COLUMNS: [&str; 4] = [
    "k8s.namespace.name",
    "k8s.pod.name",
    "k8s.pod.uid",
    "k8s.node.name",
];

fn map_type() -> DataType {
    let entries = Fields::from(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("value", DataType::Utf8, true),
    ]);
    DataType::Map(
        Arc::new(Field::new("entries", DataType::Struct(entries), false)),
        false,
    )
}

/// The Arrow schema of the spans table.
pub fn spans_schema() -> SchemaRef {
    let mut fields = vec![
        Field::new("trace_id", DataType::Utf8, false),
        Field::new("span_id", DataType::Utf8, false),
        Field::new("parent_span_id", DataType::Utf8, true),
        Field::new("trace_state", DataType::Utf8, true),
        Field::new("flags", DataType::UInt32, false),
        Field::new("name", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("start_ns", DataType::UInt64, false),
        Field::new("end_ns", DataType::UInt64, false),
        Field::new("duration_ns", DataType::UInt64, false),
        Field::new(
            "start_time",
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            false,
        ),
        Field::new("status_code", DataType::Utf8, false),
        Field::new("status_message", DataType::Utf8, true),
        Field::new("service_name", DataType::Utf8, false),
    ];
    for key in RESOURCE_COLUMNS {
        fields.push(Field::new(key.replace('.', "_"), DataType::Utf8, true));
    }
    fields.push(Field::new("attributes", map_type(), false));
    fields.push(Field::new("resource_attributes", map_type(), false));
    Arc::new(Schema::new(fields))
}

/// What [`SpansParquetWriter::finish`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpansParquetSummary {
    /// The file.
    pub path: PathBuf,
    /// Rows (spans) written.
    pub spans: u64,
    /// Parquet row groups written.
    pub row_groups: usize,
    /// File size, bytes.
    pub bytes: u64,
}

/// Where `--spans-parquet ARG` writes: `ARG/spans.parquet` when `ARG` is an existing
/// directory or ends with `/`, else `ARG` itself.
pub fn spans_parquet_path(arg: &Path) -> PathBuf {
    let names_dir = arg.as_os_str().to_string_lossy().ends_with('/');
    if names_dir || arg.is_dir() {
        arg.join(DEFAULT_SPANS_PARQUET_FILE)
    } else {
        arg.to_path_buf()
    }
}

/// The staged file as the `Write` the Parquet writer owns.
struct Staged(StagedFile);

impl Write for Staged {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.writer().write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.writer().flush()
    }
}

/// Column builders of one row group.
struct Columns {
    trace_id: StringBuilder,
    span_id: StringBuilder,
    parent_span_id: StringBuilder,
    trace_state: StringBuilder,
    flags: UInt32Builder,
    name: StringBuilder,
    kind: StringBuilder,
    start_ns: UInt64Builder,
    end_ns: UInt64Builder,
    duration_ns: UInt64Builder,
    start_time: TimestampNanosecondBuilder,
    status_code: StringBuilder,
    status_message: StringBuilder,
    service_name: StringBuilder,
    resource: [StringBuilder; RESOURCE_COLUMNS.len()],
    attributes: MapBuilder<StringBuilder, StringBuilder>,
    resource_attributes: MapBuilder<StringBuilder, StringBuilder>,
    rows: usize,
}

impl Columns {
    fn new() -> Self {
        // Field names given, not defaulted: arrow's defaults changed between versions.
        let map = || {
            let names = MapFieldNames {
                entry: "entries".to_string(),
                key: "key".to_string(),
                value: "value".to_string(),
            };
            MapBuilder::new(Some(names), StringBuilder::new(), StringBuilder::new())
        };
        Columns {
            trace_id: StringBuilder::new(),
            span_id: StringBuilder::new(),
            parent_span_id: StringBuilder::new(),
            trace_state: StringBuilder::new(),
            flags: UInt32Builder::new(),
            name: StringBuilder::new(),
            kind: StringBuilder::new(),
            start_ns: UInt64Builder::new(),
            end_ns: UInt64Builder::new(),
            duration_ns: UInt64Builder::new(),
            start_time: TimestampNanosecondBuilder::new().with_timezone("UTC"),
            status_code: StringBuilder::new(),
            status_message: StringBuilder::new(),
            service_name: StringBuilder::new(),
            resource: std::array::from_fn(|_| StringBuilder::new()),
            attributes: map(),
            resource_attributes: map(),
            rows: 0,
        }
    }

    fn push(&mut self, s: &Span) -> Result<(), arrow_schema::ArrowError> {
        self.trace_id.append_value(s.trace_id.to_string());
        self.span_id.append_value(s.span_id.to_string());
        self.parent_span_id
            .append_option(s.parent_span_id.map(|p| p.to_string()));
        self.trace_state
            .append_option((!s.trace_state.is_empty()).then_some(s.trace_state.as_str()));
        self.flags.append_value(s.flags);
        self.name.append_value(&s.name);
        self.kind.append_value(match s.kind {
            SpanKind::Server => "server",
            SpanKind::Client => "client",
        });
        self.start_ns.append_value(s.start_time_unix_nano);
        self.end_ns.append_value(s.end_time_unix_nano);
        self.duration_ns.append_value(s.duration_ns());
        // Nanoseconds since the epoch fit an i64 until 2262.
        self.start_time
            .append_value(i64::try_from(s.start_time_unix_nano).unwrap_or(i64::MAX));
        self.status_code.append_value(match s.status.code {
            StatusCode::Unset => "unset",
            StatusCode::Ok => "ok",
            StatusCode::Error => "error",
        });
        self.status_message
            .append_option((!s.status.message.is_empty()).then_some(s.status.message.as_str()));
        self.service_name.append_value(&s.resource.service_name);
        for (col, key) in self.resource.iter_mut().zip(RESOURCE_COLUMNS) {
            col.append_option(s.resource.get(key));
        }
        for kv in &s.attributes {
            self.attributes.keys().append_value(&kv.key);
            self.attributes.values().append_value(kv.value.to_string());
        }
        self.attributes.append(true)?;
        for (k, v) in &s.resource.attributes {
            self.resource_attributes.keys().append_value(k);
            self.resource_attributes.values().append_value(v);
        }
        self.resource_attributes.append(true)?;
        self.rows += 1;
        Ok(())
    }

    fn finish(&mut self, schema: &SchemaRef) -> Result<RecordBatch, arrow_schema::ArrowError> {
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(self.trace_id.finish()),
            Arc::new(self.span_id.finish()),
            Arc::new(self.parent_span_id.finish()),
            Arc::new(self.trace_state.finish()),
            Arc::new(self.flags.finish()),
            Arc::new(self.name.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.start_ns.finish()),
            Arc::new(self.end_ns.finish()),
            Arc::new(self.duration_ns.finish()),
            Arc::new(self.start_time.finish()),
            Arc::new(self.status_code.finish()),
            Arc::new(self.status_message.finish()),
            Arc::new(self.service_name.finish()),
        ];
        for col in &mut self.resource {
            cols.push(Arc::new(col.finish()));
        }
        cols.push(Arc::new(self.attributes.finish()));
        cols.push(Arc::new(self.resource_attributes.finish()));
        self.rows = 0;
        RecordBatch::try_new(schema.clone(), cols)
    }
}

/// Writes spans to a Parquet file batch by batch (see the module doc).
pub struct SpansParquetWriter {
    path: PathBuf,
    schema: SchemaRef,
    writer: ArrowWriter<Staged>,
    columns: Columns,
    spans: u64,
}

impl std::fmt::Debug for SpansParquetWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpansParquetWriter")
            .field("path", &self.path)
            .field("spans", &self.spans)
            .finish_non_exhaustive()
    }
}

impl SpansParquetWriter {
    /// Starts the file (under a temporary sibling name) for `path`, creating its directory
    /// if needed.
    pub fn create(path: impl AsRef<Path>) -> Result<Self, ExportError> {
        let path = path.as_ref().to_path_buf();
        let io = |source| ExportError::Io {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let file = StagedFile::create(&path).map_err(io)?;
        let schema = spans_schema();
        let zstd = ZstdLevel::try_new(3).map_err(|e| ExportError::Encode(e.to_string()))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(zstd))
            .set_created_by(format!("podtrace {}", env!("CARGO_PKG_VERSION")))
            .set_key_value_metadata(Some(vec![KeyValue::new(
                "podtrace.spans_schema_version".to_string(),
                SPANS_SCHEMA_VERSION.to_string(),
            )]))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .build();
        let writer = ArrowWriter::try_new(Staged(file), schema.clone(), Some(props))
            .map_err(|e| encode_error(&path, e))?;
        Ok(SpansParquetWriter {
            path,
            schema,
            writer,
            columns: Columns::new(),
            spans: 0,
        })
    }

    /// The final path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends the spans (one row each, in the given order).
    pub fn write(&mut self, spans: &[Span]) -> Result<(), ExportError> {
        for span in spans {
            self.columns
                .push(span)
                .map_err(|e| encode_error(&self.path, e))?;
            self.spans += 1;
            if self.columns.rows == ROW_GROUP_ROWS {
                self.flush_rows()?;
            }
        }
        Ok(())
    }

    fn flush_rows(&mut self) -> Result<(), ExportError> {
        if self.columns.rows == 0 {
            return Ok(());
        }
        let batch = self
            .columns
            .finish(&self.schema)
            .map_err(|e| encode_error(&self.path, e))?;
        self.writer
            .write(&batch)
            .map_err(|e| encode_error(&self.path, e))
    }

    /// Writes the last rows and the footer, and renames the file into place.
    pub fn finish(mut self) -> Result<SpansParquetSummary, ExportError> {
        self.flush_rows()?;
        let path = self.path.clone();
        self.writer.flush().map_err(|e| encode_error(&path, e))?;
        let row_groups = self.writer.flushed_row_groups().len();
        let staged = self
            .writer
            .into_inner()
            .map_err(|e| encode_error(&path, e))?;
        let io = |source| ExportError::Io {
            path: path.clone(),
            source,
        };
        let committed = staged.0.commit().map_err(io)?;
        let bytes = std::fs::metadata(&committed).map_err(io)?.len();
        Ok(SpansParquetSummary {
            path: committed,
            spans: self.spans,
            row_groups,
            bytes,
        })
    }
}

fn encode_error(path: &Path, e: impl std::fmt::Display) -> ExportError {
    ExportError::Encode(format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::UInt64Type;
    use arrow_array::Array;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use podtrace_model::{KeyValue as Kv, Resource, SpanId, Status, TraceId};
    use std::fs::File;

    fn span(n: u8) -> Span {
        Span {
            trace_id: TraceId([n; 16]),
            span_id: SpanId([n; 8]),
            parent_span_id: n.is_multiple_of(2).then_some(SpanId([n + 1; 8])),
            trace_state: if n == 3 { "k=v".into() } else { String::new() },
            flags: 1,
            name: format!("GET /{n}"),
            kind: if n.is_multiple_of(2) {
                SpanKind::Client
            } else {
                SpanKind::Server
            },
            start_time_unix_nano: 1_790_000_000_000_000_000 + u64::from(n),
            end_time_unix_nano: 1_790_000_000_000_000_000 + u64::from(n) * 10,
            attributes: vec![
                Kv::new("http.response.status_code", 200i64),
                Kv::new("url.path", format!("/{n}")),
            ],
            status: if n == 2 {
                Status::error("HTTP 500")
            } else {
                Status::unset()
            },
            resource: Resource::new("web")
                .with("k8s.pod.name", format!("web-{n}"))
                .with("k8s.pod.label.app", "web"),
        }
    }

    fn read(path: &Path) -> Vec<RecordBatch> {
        let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
        builder.build().unwrap().map(|b| b.unwrap()).collect()
    }

    #[test]
    fn rows_match_spans_in_order_and_the_file_appears_at_finish() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.parquet");
        let mut w = SpansParquetWriter::create(&path).unwrap();
        w.write(&[span(1), span(2)]).unwrap();
        w.write(&[]).unwrap();
        w.write(&[span(3)]).unwrap();
        assert!(!path.exists(), "staged until finish");
        let sum = w.finish().unwrap();
        assert_eq!(sum.path, path);
        assert_eq!(sum.spans, 3);
        assert_eq!(sum.row_groups, 1);
        assert_eq!(sum.bytes, std::fs::metadata(&path).unwrap().len());
        let batches = read(&path);
        assert_eq!(batches.len(), 1);
        let b = &batches[0];
        assert_eq!(b.schema(), spans_schema());
        assert_eq!(b.num_rows(), 3);
        let col = |name: &str| b.column_by_name(name).unwrap().clone();
        let ids = col("span_id");
        let ids = ids.as_string::<i32>();
        assert_eq!(ids.value(0), SpanId([1; 8]).to_string());
        assert_eq!(ids.value(2), SpanId([3; 8]).to_string());
        let parents = col("parent_span_id");
        assert!(parents.is_null(0));
        assert_eq!(
            parents.as_string::<i32>().value(1),
            SpanId([3; 8]).to_string()
        );
        let durations = col("duration_ns");
        let durations = durations.as_primitive::<UInt64Type>();
        assert_eq!(durations.values().to_vec(), vec![9, 18, 27]);
        assert_eq!(col("status_code").as_string::<i32>().value(1), "error");
        assert_eq!(
            col("status_message").as_string::<i32>().value(1),
            "HTTP 500"
        );
        assert!(col("status_message").is_null(0));
        assert_eq!(col("trace_state").as_string::<i32>().value(2), "k=v");
        assert_eq!(col("kind").as_string::<i32>().value(0), "server");
        assert_eq!(col("k8s_pod_name").as_string::<i32>().value(2), "web-3");
        assert!(col("k8s_namespace_name").is_null(2));
        let attrs = col("attributes");
        let attrs = attrs.as_map();
        let first = attrs.value(0);
        let keys = first.column(0).as_string::<i32>();
        let values = first.column(1).as_string::<i32>();
        assert_eq!(keys.value(0), "http.response.status_code");
        assert_eq!(values.value(0), "200");
        assert_eq!(values.value(1), "/1");
        let res = col("resource_attributes");
        assert_eq!(res.as_map().value(0).len(), 2);
    }

    #[test]
    fn row_groups_are_bounded_and_an_empty_run_is_a_valid_empty_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.parquet");
        let mut w = SpansParquetWriter::create(&path).unwrap();
        let batch: Vec<Span> = (0..1000).map(|i| span((i % 200) as u8)).collect();
        for _ in 0..(ROW_GROUP_ROWS / 1000 + 1) {
            w.write(&batch).unwrap();
        }
        let sum = w.finish().unwrap();
        assert_eq!(sum.spans, (ROW_GROUP_ROWS / 1000 + 1) as u64 * 1000);
        assert_eq!(sum.row_groups, 2);
        let rows: usize = read(&path).iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows as u64, sum.spans);

        let empty = dir.path().join("empty.parquet");
        let sum = SpansParquetWriter::create(&empty)
            .unwrap()
            .finish()
            .unwrap();
        assert_eq!((sum.spans, sum.row_groups), (0, 0));
        assert_eq!(read(&empty).iter().map(|b| b.num_rows()).sum::<usize>(), 0);
    }

    #[test]
    fn dropped_unfinished_leaves_nothing_and_dir_arguments_get_the_default_name() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SpansParquetWriter::create(dir.path().join("x.parquet")).unwrap();
        w.write(&[span(1)]).unwrap();
        drop(w);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert_eq!(
            spans_parquet_path(dir.path()),
            dir.path().join(DEFAULT_SPANS_PARQUET_FILE)
        );
        assert_eq!(
            spans_parquet_path(Path::new("new-dir/")),
            Path::new("new-dir/").join(DEFAULT_SPANS_PARQUET_FILE)
        );
        let file = dir.path().join("t.parquet");
        assert_eq!(spans_parquet_path(&file), file);
        let nested = dir.path().join("new/dir/s.parquet");
        let w = SpansParquetWriter::create(&nested).unwrap();
        assert_eq!(w.finish().unwrap().path, nested, "directories are created");
        std::fs::write(dir.path().join("plain"), b"x").unwrap();
        let bad = SpansParquetWriter::create(dir.path().join("plain/s.parquet"));
        assert!(matches!(bad, Err(ExportError::Io { .. })));
    }
}
