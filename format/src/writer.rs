//! Streaming capture writer: rows in, zstd Parquet row groups out, crash-safe.
//!
//! Rows are buffered in Arrow builders and written as one Parquet row group when the buffer
//! holds [`WriterOptions::row_group_rows`] rows or [`WriterOptions::row_group_bytes`] payload
//! bytes, when its oldest row is older than [`WriterOptions::flush_interval`] (checked on each
//! write and by [`CaptureWriter::tick`]), or when the caller asks ([`CaptureWriter::flush`]).
//! The open row group is encoded as it fills, [`ENCODE_ROWS`] rows at a time, so that
//! closing it costs its last pages and the footer, not the encoding and compression of every
//! row in one burst (a recorder beside a latency-sensitive pod: a second's rows in one go
//! took 2–7 ms of one core at 20 k events/s).
//!
//! The dictionary text columns and the integer columns of socket rows (`writer/dict.rs`:
//! key pages encoded as the row group fills, the dictionary at its close) and `payload`
//! (`writer/payload.rs`: pages compressed as they fill, by one zstd context) are encoded by
//! the writer itself: Parquet's encoders hashed every value again and offer no zstd setting
//! but the level (docs/capture-format.md has the figures). `ts_ns`, the k8s text
//! columns and `stat_value` go through Parquet's Arrow column writers.
//!
//! # Crash safety
//! A Parquet footer is written only when a file is closed, so a writer killed with SIGKILL
//! would leave a file no reader can open. After every row group the writer therefore also
//! appends that row group's footer to a sidecar log, `<file>.footer` (for `cap.parquet`:
//! `cap.parquet.footer`; format in [`crate::sidecar`]). The row group's bytes reach the file
//! (the kernel's page cache) before its entry reaches the sidecar, so the sidecar never
//! names bytes the file does not have. [`crate::CaptureReader`] uses the sidecar for a file
//! without a trailing `PAR1` and reads every row group flushed so far;
//! [`crate::sidecar::repair`] turns such a file into a complete Parquet file.
//! [`CaptureWriter::finish`] writes the real footer and then removes the sidecar. With
//! [`WriterOptions::sync`] the file and the sidecar are also `fsync`ed at each flush, which
//! extends the guarantee from a killed process to a crashed machine.
//!
//! [`CaptureWriter::flushed_rows`] is the number of rows that a reader is guaranteed to get
//! back even if the process dies right now.
//!
//! # Segments
//! With [`WriterOptions::rotate_bytes`] or [`WriterOptions::rotate_duration`] the capture is
//! split into numbered segments: `cap.parquet` becomes `cap.0000.parquet`,
//! `cap.0001.parquet`, ... (see [`segment_path`]). Each segment is a complete capture with
//! the same file metadata; rotation happens after a row group is flushed, so no row group
//! spans two segments. A reader given the directory or a glob reads them as one capture.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::builder::{ArrayBuilder, GenericByteBuilder, PrimitiveBuilder};
use arrow_array::builder::{StringBuilder, UInt64Builder};
use arrow_array::types::{ArrowPrimitiveType, ByteArrayType};
use arrow_array::{ArrayRef, GenericByteArray, PrimitiveArray, UInt64Array};
use parquet::arrow::arrow_writer::{compute_leaves, ArrowColumnWriter, ArrowRowGroupWriterFactory};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;

use crate::error::{FormatError, Result};
use crate::model::{FileMeta, Record, RecordType, SocketMeta};
use crate::schema::{self, col, idx, meta_key};
use crate::sidecar::SidecarWriter;
use dict::{DictColumn, DictValue};
use parquet::column::writer::ColumnCloseResult;
use parquet::schema::types::ColumnDescPtr;

mod chunk;
mod dict;
mod hybrid;
mod payload;

/// How the writer cuts row groups and segments. `WriterOptions::default()` is what the
/// recorder uses; each field has a chainable setter of the same name.
///
/// ```
/// use std::time::Duration;
/// use podtrace_format::WriterOptions;
/// let opts = WriterOptions::default()
///     .row_group_rows(10_000)
///     .flush_interval(Some(Duration::from_millis(500)))
///     .rotate_bytes(Some(256 << 20));
/// assert_eq!(opts.zstd_level, 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterOptions {
    /// Flush a row group when this many rows are buffered (default 65536).
    pub row_group_rows: usize,
    /// Flush a row group when the buffered payload (+ k8s JSON) bytes reach this (default 64 MiB).
    pub row_group_bytes: usize,
    /// Flush when the oldest buffered row is older than this (default 1 s; `None`: never).
    pub flush_interval: Option<Duration>,
    /// zstd level (default 1, the fastest: on a node the recorder's CPU is what is scarce,
    /// and a capture's repetitive rows compress about as well as at 3; up to 22).
    pub zstd_level: i32,
    /// Start a new segment once the current one has this many bytes (default: never).
    pub rotate_bytes: Option<u64>,
    /// Start a new segment once the current one is this old (default: never).
    pub rotate_duration: Option<Duration>,
    /// `fsync` the file and the sidecar at each flush (default false: SIGKILL-safe, not
    /// power-loss-safe).
    pub sync: bool,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            row_group_rows: 65_536,
            row_group_bytes: 64 << 20,
            flush_interval: Some(Duration::from_secs(1)),
            zstd_level: 1,
            rotate_bytes: None,
            rotate_duration: None,
            sync: false,
        }
    }
}

impl WriterOptions {
    /// Sets [`Self::row_group_rows`] (at least 1).
    pub fn row_group_rows(mut self, rows: usize) -> Self {
        self.row_group_rows = rows.max(1);
        self
    }
    /// Sets [`Self::row_group_bytes`].
    pub fn row_group_bytes(mut self, bytes: usize) -> Self {
        self.row_group_bytes = bytes.max(1);
        self
    }
    /// Sets [`Self::flush_interval`].
    pub fn flush_interval(mut self, interval: Option<Duration>) -> Self {
        self.flush_interval = interval;
        self
    }
    /// Sets [`Self::zstd_level`].
    pub fn zstd_level(mut self, level: i32) -> Self {
        self.zstd_level = level;
        self
    }
    /// Sets [`Self::rotate_bytes`].
    pub fn rotate_bytes(mut self, bytes: Option<u64>) -> Self {
        self.rotate_bytes = bytes;
        self
    }
    /// Sets [`Self::rotate_duration`].
    pub fn rotate_duration(mut self, duration: Option<Duration>) -> Self {
        self.rotate_duration = duration;
        self
    }
    /// Sets [`Self::sync`].
    pub fn sync(mut self, sync: bool) -> Self {
        self.sync = sync;
        self
    }
    fn rotates(&self) -> bool {
        self.rotate_bytes.is_some() || self.rotate_duration.is_some()
    }
}

/// What a finished writer wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteSummary {
    /// Rows written.
    pub rows: u64,
    /// Rows per record type (types without rows are absent).
    pub rows_by_type: BTreeMap<RecordType, u64>,
    /// Bytes of all files.
    pub bytes: u64,
    /// Row groups in all files.
    pub row_groups: usize,
    /// The files written, in order (one unless rotating).
    pub files: Vec<PathBuf>,
}

impl WriteSummary {
    /// Rows of one record type.
    pub fn rows_of(&self, t: RecordType) -> u64 {
        self.rows_by_type.get(&t).copied().unwrap_or(0)
    }
}

/// The path of segment `n` of a rotating capture named `base`:
/// `cap.parquet` → `cap.0003.parquet`; a name without `.parquet` gets it appended
/// (`cap` → `cap.0003.parquet`).
pub fn segment_path(base: &Path, n: u32) -> PathBuf {
    let name = base
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".parquet").unwrap_or(&name);
    base.with_file_name(format!("{stem}.{n:04}.parquet"))
}

/// Streaming writer of a capture (one file, or numbered segments when rotating).
///
/// ```
/// use podtrace_format::*;
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("cap.parquet");
/// let mut w = CaptureWriter::create(&path, FileMeta::default(), WriterOptions::default()).unwrap();
/// w.write(&Record::Stats(Stat { ts_ns: 1, cpu: None, name: "events_seen".into(), value: 7 })).unwrap();
/// let summary = w.finish().unwrap();
/// assert_eq!(summary.rows, 1);
/// let reader = CaptureReader::open(&[&path]).unwrap();
/// let rows: Vec<Record> = reader.records(&ReadOptions::default()).collect::<Result<_, _>>().unwrap();
/// assert_eq!(rows.len(), 1);
/// ```
pub struct CaptureWriter {
    base: PathBuf,
    opts: WriterOptions,
    props: WriterProperties,
    /// Key-value metadata of every segment (podtrace keys + `ARROW:schema`).
    base_kv: Vec<KeyValue>,
    buf: Columns,
    /// Rows of the open row group already encoded into the segment's writer (not flushed).
    encoded: Encoded,
    /// When the oldest row of the open row group was buffered.
    oldest: Option<Instant>,
    segment: Option<Segment>,
    next_segment: u32,
    flushed_rows: u64,
    summary: WriteSummary,
    /// Rows per record type, in [`RecordType::ALL`] order (an array add per row; the
    /// summary's row count and map are filled from it when it is handed out).
    rows_by_type: [u64; RecordType::ALL.len()],
    closed: bool,
}

/// The rows of the open row group that were already handed to the Parquet writer.
#[derive(Clone, Copy)]
struct Encoded {
    rows: u64,
    payload_bytes: usize,
    min_ts: u64,
    max_ts: u64,
}

impl Encoded {
    const NONE: Encoded = Encoded {
        rows: 0,
        payload_bytes: 0,
        min_ts: u64::MAX,
        max_ts: 0,
    };
}

/// One open file.
struct Segment {
    path: PathBuf,
    sidecar: SidecarWriter,
    writer: SerializedFileWriter<File>,
    /// Makes the column writers of each row group.
    columns: ArrowRowGroupWriterFactory,
    /// The column writers of the open row group, once it has rows (those of the dictionary
    /// text columns and of `payload` are not used: the writer encodes those chunks itself).
    open: Option<Vec<ArrowColumnWriter>>,
    opened: Instant,
    rows: u64,
    min_ts: u64,
    max_ts: u64,
}

impl CaptureWriter {
    /// Creates the capture file (mode 0600; with rotation, its first segment) and writes
    /// `meta` into every file it produces.
    pub fn create(
        path: impl AsRef<Path>,
        meta: FileMeta,
        opts: WriterOptions,
    ) -> Result<CaptureWriter> {
        let base = path.as_ref().to_path_buf();
        let zstd = ZstdLevel::try_new(opts.zstd_level).map_err(|e| FormatError::Write {
            path: base.clone(),
            source: e,
        })?;
        let kv: Vec<KeyValue> = schema::file_meta_to_kv(&meta)
            .into_iter()
            .map(|(k, v)| KeyValue::new(k, v))
            .collect();
        let mut props = writer_properties(zstd, kv);
        parquet::arrow::add_encoded_arrow_schema_to_metadata(&schema::schema(), &mut props);
        let base_kv = props.key_value_metadata().cloned().unwrap_or_default();
        let buf = Columns::new(zstd).map_err(|e| FormatError::Write {
            path: base.clone(),
            source: e,
        })?;
        let mut w = CaptureWriter {
            base,
            opts,
            props,
            base_kv,
            buf,
            encoded: Encoded::NONE,
            oldest: None,
            segment: None,
            next_segment: 0,
            flushed_rows: 0,
            summary: WriteSummary::default(),
            rows_by_type: [0; RecordType::ALL.len()],
            closed: false,
        };
        w.open_segment()?;
        Ok(w)
    }

    /// Buffers one row; flushes a row group if a limit is reached.
    pub fn write(&mut self, record: &Record) -> Result<()> {
        self.buffer(record);
        self.after_write()
    }

    /// Buffers many rows; flushes row groups as limits are reached.
    pub fn write_all(&mut self, records: &[Record]) -> Result<()> {
        for r in records {
            self.buffer(r);
            if self.limit_reached() {
                self.flush()?;
            } else if self.buf.rows >= ENCODE_ROWS {
                self.encode()?;
            }
        }
        self.after_write()
    }

    /// Writes the buffered rows as a row group now (no-op when nothing is buffered). When it
    /// returns, those rows are readable even if the process is killed.
    pub fn flush(&mut self) -> Result<()> {
        if self.buf.rows > 0 {
            self.encode()?;
        }
        let done = std::mem::replace(&mut self.encoded, Encoded::NONE);
        if done.rows == 0 {
            return Ok(());
        }
        self.oldest = None;
        let Some(seg) = self.segment.as_mut() else {
            return Ok(()); // unreachable: encode opened it
        };
        let werr = |e| FormatError::Write {
            path: seg.path.clone(),
            source: e,
        };
        let writers = seg.open.take().unwrap_or_default();
        self.buf
            .write_row_group(&mut seg.writer, writers, done.rows)
            .map_err(werr)?;
        seg.writer
            .flush()
            .map_err(|e| FormatError::io(&seg.path, e))?;
        if self.opts.sync {
            seg.writer
                .inner()
                .sync_data()
                .map_err(|e| FormatError::io(&seg.path, e))?;
        }
        seg.rows += done.rows;
        seg.min_ts = seg.min_ts.min(done.min_ts);
        seg.max_ts = seg.max_ts.max(done.max_ts);
        seg.sidecar.append(
            seg.writer.flushed_row_groups(),
            &self.base_kv,
            (seg.min_ts, seg.max_ts),
        )?;
        self.flushed_rows += done.rows;
        self.maybe_rotate()
    }

    /// Encodes the buffered rows into the open row group (not flushed: not yet readable).
    fn encode(&mut self) -> Result<()> {
        if self.buf.rows == 0 {
            return Ok(());
        }
        if self.segment.is_none() {
            self.open_segment()?;
        }
        let Some(seg) = self.segment.as_mut() else {
            return Ok(()); // unreachable: opened above
        };
        let werr = |e| FormatError::Write {
            path: seg.path.clone(),
            source: e,
        };
        let payload_bytes = self.buf.payload_bytes;
        let rows = self.buf.rows as u64;
        let (min_ts, max_ts) = self.buf.ts_range();
        let writers = match &mut seg.open {
            Some(writers) => writers,
            None => {
                let group = seg.writer.flushed_row_groups().len();
                let writers = seg.columns.create_column_writers(group).map_err(werr)?;
                seg.open.insert(writers)
            }
        };
        let columns = seg.writer.schema_descr().columns();
        self.buf.encode(writers, columns).map_err(werr)?;
        let e = &mut self.encoded;
        e.rows += rows;
        e.payload_bytes += payload_bytes;
        e.min_ts = e.min_ts.min(min_ts);
        e.max_ts = e.max_ts.max(max_ts);
        Ok(())
    }

    /// Flushes if the oldest buffered row is older than the flush interval, and rotates if
    /// the segment is older than the rotation duration. Call it from a timer so that a quiet
    /// recording still reaches the disk.
    pub fn tick(&mut self) -> Result<()> {
        if self.interval_due() {
            self.flush()?;
        }
        self.maybe_rotate()
    }

    /// Rows that are on disk and readable even if the process is killed now.
    pub fn flushed_rows(&self) -> u64 {
        self.flushed_rows
    }

    /// Rows buffered, not yet flushed.
    pub fn buffered_rows(&self) -> usize {
        self.buf.rows + self.encoded.rows as usize
    }

    /// The file currently written to (the base path, or the current segment).
    pub fn current_path(&self) -> PathBuf {
        match &self.segment {
            Some(s) => s.path.clone(),
            None => self.path_of(self.next_segment),
        }
    }

    /// Flushes, writes the footer(s), removes the sidecar and reports what was written.
    pub fn finish(mut self) -> Result<WriteSummary> {
        self.close()
    }

    fn close(&mut self) -> Result<WriteSummary> {
        self.closed = true;
        self.flush()?;
        self.close_segment()?;
        self.summary.rows = self.rows_by_type.iter().sum();
        self.summary.rows_by_type = RecordType::ALL
            .into_iter()
            .zip(self.rows_by_type)
            .filter(|&(_, n)| n > 0)
            .collect();
        Ok(self.summary.clone())
    }

    fn buffer(&mut self, record: &Record) {
        if self.oldest.is_none() {
            self.oldest = Some(Instant::now());
        }
        self.buf.push(record);
        self.rows_by_type[record.record_type() as usize] += 1;
    }

    fn after_write(&mut self) -> Result<()> {
        if self.limit_reached() || self.interval_due() {
            self.flush()?;
        } else if self.buf.rows >= ENCODE_ROWS {
            self.encode()?;
        }
        Ok(())
    }

    fn limit_reached(&self) -> bool {
        self.buf.rows + self.encoded.rows as usize >= self.opts.row_group_rows
            || self.buf.payload_bytes + self.encoded.payload_bytes >= self.opts.row_group_bytes
    }

    fn interval_due(&self) -> bool {
        match (self.oldest, self.opts.flush_interval) {
            (Some(t), Some(iv)) => t.elapsed() >= iv,
            _ => false,
        }
    }

    fn maybe_rotate(&mut self) -> Result<()> {
        let Some(seg) = &self.segment else {
            return Ok(());
        };
        if seg.rows == 0 {
            return Ok(());
        }
        let by_bytes = self
            .opts
            .rotate_bytes
            .is_some_and(|b| seg.writer.bytes_written() as u64 >= b);
        let by_time = self
            .opts
            .rotate_duration
            .is_some_and(|d| seg.opened.elapsed() >= d);
        if by_bytes || by_time {
            self.close_segment()?;
        }
        Ok(())
    }

    fn path_of(&self, n: u32) -> PathBuf {
        if self.opts.rotates() {
            segment_path(&self.base, n)
        } else {
            self.base.clone()
        }
    }

    fn open_segment(&mut self) -> Result<()> {
        let path = self.path_of(self.next_segment);
        self.next_segment += 1;
        let sidecar = SidecarWriter::new(&path, self.opts.sync)?;
        let file = create_private(&path)?;
        let (writer, columns) =
            ArrowWriter::try_new(file, schema::schema(), Some(self.props.clone()))
                .and_then(ArrowWriter::into_serialized_writer)
                .map_err(|e| FormatError::Write {
                    path: path.clone(),
                    source: e,
                })?;
        self.summary.files.push(path.clone());
        self.segment = Some(Segment {
            path,
            sidecar,
            writer,
            columns,
            open: None,
            opened: Instant::now(),
            rows: 0,
            min_ts: u64::MAX,
            max_ts: 0,
        });
        Ok(())
    }

    fn close_segment(&mut self) -> Result<()> {
        let Some(mut seg) = self.segment.take() else {
            return Ok(());
        };
        if seg.rows > 0 {
            for (k, v) in [
                (meta_key::START_NS, seg.min_ts),
                (meta_key::END_NS, seg.max_ts),
            ] {
                seg.writer
                    .append_key_value_metadata(KeyValue::new(k.to_string(), v.to_string()));
            }
        }
        let meta = seg.writer.finish().map_err(|e| FormatError::Write {
            path: seg.path.clone(),
            source: e,
        })?;
        let bytes = seg.writer.bytes_written() as u64;
        if self.opts.sync {
            seg.writer
                .inner()
                .sync_all()
                .map_err(|e| FormatError::io(&seg.path, e))?;
        }
        seg.sidecar.remove()?;
        self.summary.bytes += bytes;
        self.summary.row_groups += meta.num_row_groups();
        Ok(())
    }
}

impl Drop for CaptureWriter {
    /// A writer dropped without [`CaptureWriter::finish`] (an error path) still closes its
    /// file properly, best effort.
    fn drop(&mut self) {
        if !self.closed {
            if let Err(e) = self.close() {
                tracing::warn!("closing capture {} on drop: {e}", self.base.display());
            }
        }
    }
}

/// Parquet properties of every capture file.
fn writer_properties(zstd: ZstdLevel, kv: Vec<KeyValue>) -> WriterProperties {
    let path = |c: &str| ColumnPath::from(c);
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(zstd))
        .set_created_by(format!("podtrace-format {}", env!("CARGO_PKG_VERSION")))
        .set_key_value_metadata(Some(kv))
        // Row groups are cut by the CaptureWriter (one per flush), never by parquet.
        .set_max_row_group_row_count(None)
        .set_max_row_group_bytes(None)
        // Data pages v2: the values are compressed straight into the page, where a v1 page
        // first copies levels and values into one buffer and compresses that copy (-5 % of
        // the writer's instructions, same bytes). Every Parquet reader of the last years
        // (parquet-rs, DuckDB, Spark, pyarrow) reads v2 pages.
        .set_writer_version(WriterVersion::PARQUET_2_0)
        .set_dictionary_enabled(true)
        .set_column_dictionary_enabled(path(col::TS_NS), false)
        .set_column_encoding(path(col::TS_NS), Encoding::DELTA_BINARY_PACKED)
        // The dictionary text columns and `payload` are encoded by writer/dict.rs and
        // writer/payload.rs, not by these properties.
        // plain, not the v2 default DELTA_BYTE_ARRAY (prefix sharing that zstd does anyway)
        .set_column_dictionary_enabled(path(col::K8S_JSON), false)
        .set_column_encoding(path(col::K8S_JSON), Encoding::PLAIN)
        .set_column_statistics_enabled(path(col::K8S_JSON), EnabledStatistics::None)
        .build()
}

/// Creates (or truncates) `path` with mode 0600.
fn create_private(path: &Path) -> Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| FormatError::io(path, e))?;
    // `mode` applies only to new files; an existing file keeps its bits otherwise.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(|e| FormatError::io(path, e))?;
    Ok(file)
}

/// Buffered rows encoded into the open row group at a time (see the module doc).
pub const ENCODE_ROWS: usize = 2048;

/// Column builders of the buffered rows, in schema order.
/// Most addresses [`Columns`] keeps formatted.
const ADDR_TEXT_MAX: usize = 4096;

struct Columns {
    rows: usize,
    payload_bytes: usize,
    /// Addresses as text, formatted once (a node's rows name few addresses; cleared at
    /// [`ADDR_TEXT_MAX`] entries).
    addr_text: std::collections::HashMap<std::net::IpAddr, String>,
    /// The address of the last local / remote address value appended (its dictionary key
    /// is the column's last key).
    last_ip: [Option<std::net::IpAddr>; 2],
    record_type: DictColumn<String>,
    ts_ns: Vec<u64>,
    cpu: DictColumn<u32>,
    pid: DictColumn<u32>,
    tid: DictColumn<u32>,
    comm: DictColumn<String>,
    cgroup_id: DictColumn<u64>,
    conn_id: DictColumn<u64>,
    family: DictColumn<u8>,
    local_addr: DictColumn<String>,
    local_port: DictColumn<u16>,
    remote_addr: DictColumn<String>,
    remote_port: DictColumn<u16>,
    direction: DictColumn<String>,
    role: DictColumn<String>,
    syscall: DictColumn<String>,
    ret: DictColumn<i64>,
    cap_len: DictColumn<u32>,
    payload: payload::PayloadColumn,
    /// The zstd context of the dictionary columns' pages.
    zstd: chunk::Compressor,
    flags: DictColumn<u32>,
    k8s_kind: DictColumn<String>,
    k8s_uid: StringBuilder,
    k8s_namespace: DictColumn<String>,
    k8s_name: StringBuilder,
    k8s_event: DictColumn<String>,
    k8s_json: StringBuilder,
    stat_name: DictColumn<String>,
    stat_value: UInt64Builder,
    /// Nulls owed to the six k8s columns and to the two stats columns: most rows are socket
    /// rows, null in all eight, which are appended as one run each (before the group's next
    /// value, or when the batch is taken) instead of eight appends per row.
    k8s_nulls: usize,
    stat_nulls: usize,
}

/// The columns of `$c` (a [`Columns`]) that the writer encodes itself as dictionary
/// columns, with their schema indexes, in schema order (the order in which a row group
/// takes its columns): the text columns and the integer columns of socket rows. A macro,
/// not a method, so that the caller can use the other fields (the zstd context, `payload`)
/// beside these borrows.
macro_rules! own_columns {
    ($c:expr) => {
        [
            (idx::RECORD_TYPE, &mut $c.record_type as &mut dyn OwnChunk),
            (idx::CPU, &mut $c.cpu),
            (idx::PID, &mut $c.pid),
            (idx::TID, &mut $c.tid),
            (idx::COMM, &mut $c.comm),
            (idx::CGROUP_ID, &mut $c.cgroup_id),
            (idx::CONN_ID, &mut $c.conn_id),
            (idx::FAMILY, &mut $c.family),
            (idx::LOCAL_ADDR, &mut $c.local_addr),
            (idx::LOCAL_PORT, &mut $c.local_port),
            (idx::REMOTE_ADDR, &mut $c.remote_addr),
            (idx::REMOTE_PORT, &mut $c.remote_port),
            (idx::DIRECTION, &mut $c.direction),
            (idx::ROLE, &mut $c.role),
            (idx::SYSCALL, &mut $c.syscall),
            (idx::RET, &mut $c.ret),
            (idx::CAP_LEN, &mut $c.cap_len),
            (idx::FLAGS, &mut $c.flags),
            (idx::K8S_KIND, &mut $c.k8s_kind),
            (idx::K8S_NAMESPACE, &mut $c.k8s_namespace),
            (idx::K8S_EVENT, &mut $c.k8s_event),
            (idx::STAT_NAME, &mut $c.stat_name),
        ]
    };
}

impl Columns {
    fn new(zstd: ZstdLevel) -> parquet::errors::Result<Self> {
        Ok(Columns {
            rows: 0,
            payload_bytes: 0,
            addr_text: std::collections::HashMap::new(),
            last_ip: [None; 2],
            record_type: DictColumn::new(),
            ts_ns: Vec::new(),
            cpu: DictColumn::new(),
            pid: DictColumn::new(),
            tid: DictColumn::new(),
            comm: DictColumn::new(),
            cgroup_id: DictColumn::new(),
            conn_id: DictColumn::new(),
            family: DictColumn::new(),
            local_addr: DictColumn::new(),
            local_port: DictColumn::new(),
            remote_addr: DictColumn::new(),
            remote_port: DictColumn::new(),
            direction: DictColumn::new(),
            role: DictColumn::new(),
            syscall: DictColumn::new(),
            ret: DictColumn::new(),
            cap_len: DictColumn::new(),
            payload: payload::PayloadColumn::new(zstd)?,
            zstd: chunk::Compressor::new(zstd, None)?,
            flags: DictColumn::new(),
            k8s_kind: DictColumn::new(),
            k8s_uid: StringBuilder::new(),
            k8s_namespace: DictColumn::new(),
            k8s_name: StringBuilder::new(),
            k8s_event: DictColumn::new(),
            k8s_json: StringBuilder::new(),
            stat_name: DictColumn::new(),
            stat_value: UInt64Builder::new(),
            k8s_nulls: 0,
            stat_nulls: 0,
        })
    }

    fn push(&mut self, r: &Record) {
        self.rows += 1;
        self.record_type.append_value(r.record_type().as_str());
        self.ts_ns.push(r.ts_ns());
        match r {
            Record::SocketData(d) => {
                self.socket_meta(&d.meta);
                self.direction.append_value(d.direction.as_str());
                self.role.append_null();
                self.syscall.append_value(&*d.syscall);
                self.ret.append_value(&d.ret);
                self.cap_len.append_value(&(d.payload.len() as u32));
                self.payload.append_value(&d.payload);
                self.payload_bytes += d.payload.len();
                self.flags.append_value(&d.flags);
                self.no_k8s();
                self.no_stat();
            }
            Record::SocketOpen(e) | Record::SocketClose(e) => {
                self.socket_meta(&e.meta);
                self.direction.append_null();
                self.role.append_value(e.role.as_str());
                self.syscall.append_value(&*e.syscall);
                self.no_data();
                self.no_k8s();
                self.no_stat();
            }
            Record::K8sObject(k) => {
                self.cpu.append_null();
                self.no_socket();
                self.no_data();
                self.pay_k8s_nulls();
                self.k8s_kind.append_value(&k.kind);
                self.k8s_uid.append_value(&k.uid);
                self.k8s_namespace.append_value(&k.namespace);
                self.k8s_name.append_value(&k.name);
                self.k8s_event.append_value(k.event.as_str());
                self.k8s_json.append_value(&k.json);
                self.payload_bytes += k.json.len();
                self.no_stat();
            }
            Record::Stats(s) => {
                self.cpu.append_option(s.cpu.as_ref());
                self.no_socket();
                self.no_data();
                self.no_k8s();
                self.pay_stat_nulls();
                self.stat_name.append_value(&s.name);
                self.stat_value.append_value(s.value);
            }
        }
    }

    /// cpu .. syscall-less socket columns of a socket row (direction/role/syscall apart).
    fn socket_meta(&mut self, m: &SocketMeta) {
        self.cpu.append_value(&m.cpu);
        self.pid.append_value(&m.pid);
        self.tid.append_value(&m.tid);
        self.comm.append_value(&*m.comm);
        self.cgroup_id.append_value(&m.cgroup_id);
        self.conn_id.append_value(&m.conn_id);
        let family = m
            .local
            .or(m.remote)
            .map(|a| if a.is_ipv4() { 2 } else { 10 });
        self.family.append_option(family.as_ref());
        let [last_local, last_remote] = &mut self.last_ip;
        for (addr, addr_col, port_col, last) in [
            (
                m.local,
                &mut self.local_addr,
                &mut self.local_port,
                last_local,
            ),
            (
                m.remote,
                &mut self.remote_addr,
                &mut self.remote_port,
                last_remote,
            ),
        ] {
            match addr {
                Some(a) => {
                    let ip = a.ip();
                    // most rows name the previous row's addresses: no lookup at all
                    if *last != Some(ip) || !addr_col.append_last() {
                        if self.addr_text.len() >= ADDR_TEXT_MAX {
                            self.addr_text.clear();
                        }
                        let text = self.addr_text.entry(ip).or_insert_with(|| ip.to_string());
                        addr_col.append_value(text);
                        *last = Some(ip);
                    }
                    port_col.append_value(&a.port());
                }
                None => {
                    addr_col.append_null();
                    port_col.append_null();
                }
            }
        }
    }

    /// Nulls for pid .. syscall (cpu is set by the caller).
    fn no_socket(&mut self) {
        self.pid.append_null();
        self.tid.append_null();
        self.comm.append_null();
        self.cgroup_id.append_null();
        self.conn_id.append_null();
        self.family.append_null();
        self.local_addr.append_null();
        self.local_port.append_null();
        self.remote_addr.append_null();
        self.remote_port.append_null();
        self.direction.append_null();
        self.role.append_null();
        self.syscall.append_null();
    }

    /// Nulls for ret, cap_len, payload, flags.
    fn no_data(&mut self) {
        self.ret.append_null();
        self.cap_len.append_null();
        self.payload.append_null();
        self.flags.append_null();
    }

    /// A null in each k8s column (owed until [`Columns::pay_k8s_nulls`]).
    fn no_k8s(&mut self) {
        self.k8s_nulls += 1;
    }

    /// Appends the nulls owed to the k8s columns.
    fn pay_k8s_nulls(&mut self) {
        let n = std::mem::take(&mut self.k8s_nulls);
        if n > 0 {
            self.k8s_kind.append_nulls(n);
            self.k8s_uid.append_nulls(n);
            self.k8s_namespace.append_nulls(n);
            self.k8s_name.append_nulls(n);
            self.k8s_event.append_nulls(n);
            self.k8s_json.append_nulls(n);
        }
    }

    /// A null in each stats column (owed until [`Columns::pay_stat_nulls`]).
    fn no_stat(&mut self) {
        self.stat_nulls += 1;
    }

    /// Appends the nulls owed to the stats columns.
    fn pay_stat_nulls(&mut self) {
        let n = std::mem::take(&mut self.stat_nulls);
        if n > 0 {
            self.stat_name.append_nulls(n);
            self.stat_value.append_nulls(n);
        }
    }

    /// The smallest and largest timestamp of the rows not yet encoded.
    fn ts_range(&self) -> (u64, u64) {
        self.ts_ns
            .iter()
            .fold((u64::MAX, 0), |(lo, hi), &t| (lo.min(t), hi.max(t)))
    }

    /// Encodes the rows not yet encoded into the row group's column `writers` (schema
    /// order) and empties the builders; the dictionary columns encode a page of their keys
    /// once they have enough ([`OwnChunk::page`]) and keep their dictionaries until
    /// [`Columns::write_row_group`].
    fn encode(
        &mut self,
        writers: &mut [ArrowColumnWriter],
        columns: &[ColumnDescPtr],
    ) -> parquet::errors::Result<()> {
        self.pay_k8s_nulls();
        self.pay_stat_nulls();
        for (i, col) in own_columns!(self) {
            col.page(&columns[i], &mut self.zstd)?;
        }
        let ts = std::mem::replace(&mut self.ts_ns, Vec::with_capacity(self.rows));
        let columns: [(usize, ArrayRef); 5] = [
            (idx::TS_NS, Arc::new(UInt64Array::from(ts))),
            (idx::K8S_UID, Arc::new(finish_bytes(&mut self.k8s_uid))),
            (idx::K8S_NAME, Arc::new(finish_bytes(&mut self.k8s_name))),
            (idx::K8S_JSON, Arc::new(finish_bytes(&mut self.k8s_json))),
            (
                idx::STAT_VALUE,
                Arc::new(finish_primitive(&mut self.stat_value)),
            ),
        ];
        self.rows = 0;
        self.payload_bytes = 0;
        let schema = schema::schema();
        for (i, array) in columns {
            let writer = writers.get_mut(i).ok_or_else(|| {
                parquet::errors::ParquetError::General(format!("no writer for column {i}"))
            })?;
            for leaf in compute_leaves(schema.field(i), &array)? {
                writer.write(&leaf)?;
            }
        }
        Ok(())
    }

    /// Writes the open row group of `rows` rows, all encoded: the chunks of the column
    /// `writers`, of the dictionary text columns and of `payload`, in schema order. Those
    /// columns start over (the next row group has dictionaries of its own).
    fn write_row_group(
        &mut self,
        file: &mut SerializedFileWriter<File>,
        writers: Vec<ArrowColumnWriter>,
        rows: u64,
    ) -> parquet::errors::Result<()> {
        let columns: Vec<_> = file.schema_descr().columns().to_vec();
        let mut group = file.next_row_group()?;
        let payload = &mut self.payload;
        let mut dicts = own_columns!(self).into_iter().peekable();
        for (i, writer) in writers.into_iter().enumerate() {
            match dicts.next_if(|(c, _)| *c == i) {
                Some((_, col)) => {
                    same_rows(i, col.rows(), rows)?;
                    let (bytes, close) = col.chunk(&columns[i], &mut self.zstd)?;
                    group.append_column(&bytes, close)?;
                }
                None if i == idx::PAYLOAD => {
                    same_rows(i, payload.rows(), rows)?;
                    let (bytes, close) = payload.chunk(&columns[i])?;
                    group.append_column(&bytes, close)?;
                }
                None => writer.close()?.append_to_row_group(&mut group)?,
            }
        }
        drop(dicts);
        group.close()?;
        // the address columns' memo names keys of the dictionaries just emptied
        self.last_ip = [None; 2];
        Ok(())
    }
}

/// A column that the writer encodes itself, as one chunk per row group: a [`DictColumn`]
/// of any value type (the text columns and the integer columns of socket rows).
trait OwnChunk {
    /// Rows appended since the last chunk.
    fn rows(&self) -> usize;
    /// Encodes a data page of the rows not in one yet once there are enough (as the row
    /// group fills).
    fn page(
        &mut self,
        descr: &ColumnDescPtr,
        zstd: &mut chunk::Compressor,
    ) -> parquet::errors::Result<()>;
    /// Those rows as a column chunk of `descr`; the column starts over empty.
    fn chunk(
        &mut self,
        descr: &ColumnDescPtr,
        zstd: &mut chunk::Compressor,
    ) -> parquet::errors::Result<(bytes::Bytes, ColumnCloseResult)>;
}

impl<V: DictValue> OwnChunk for DictColumn<V> {
    fn rows(&self) -> usize {
        DictColumn::rows(self)
    }
    fn page(
        &mut self,
        descr: &ColumnDescPtr,
        zstd: &mut chunk::Compressor,
    ) -> parquet::errors::Result<()> {
        DictColumn::page(self, descr, zstd)
    }
    fn chunk(
        &mut self,
        descr: &ColumnDescPtr,
        zstd: &mut chunk::Compressor,
    ) -> parquet::errors::Result<(bytes::Bytes, ColumnCloseResult)> {
        DictColumn::chunk(self, descr, zstd)
    }
}

/// An error unless column `i`, of a chunk of its own, has the row group's `rows` rows.
fn same_rows(i: usize, has: usize, rows: u64) -> parquet::errors::Result<()> {
    if has as u64 == rows {
        Ok(())
    } else {
        Err(parquet::errors::ParquetError::General(format!(
            "column {i} has {has} rows of {rows}"
        )))
    }
}

/// The rows of a primitive builder as an array; the builder starts over with room for as
/// many rows, since the next batch is about as large (Arrow's `finish` leaves it empty, and
/// every batch would grow its buffers again from nothing, copying them at each doubling).
fn finish_primitive<T: ArrowPrimitiveType>(b: &mut PrimitiveBuilder<T>) -> PrimitiveArray<T> {
    let rows = b.len();
    let array = b.finish();
    *b = PrimitiveBuilder::with_capacity(rows);
    array
}

/// [`finish_primitive`] for a byte-array builder: room for as many rows and value bytes.
fn finish_bytes<T: ByteArrayType>(b: &mut GenericByteBuilder<T>) -> GenericByteArray<T> {
    let (rows, bytes) = (b.len(), b.values_slice().len());
    let array = b.finish();
    *b = GenericByteBuilder::with_capacity(rows, bytes);
    array
}

#[cfg(test)]
pub(crate) mod tests {
    use parquet::arrow::ArrowSchemaConverter;
    use parquet::schema::types::ColumnDescPtr;

    use crate::schema;

    /// The Parquet descriptor of the capture column `name`.
    pub(crate) fn column_descr(name: &str) -> ColumnDescPtr {
        let descr = ArrowSchemaConverter::new()
            .convert(&schema::schema())
            .unwrap();
        let idx = schema::col::ALL.iter().position(|c| *c == name).unwrap();
        descr.column(idx)
    }
}
