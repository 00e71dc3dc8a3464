//! Capture reader: many files (directories, globs), row groups decoded in parallel.
//!
//! [`CaptureReader::open`] expands its inputs, reads each file's footer (or, for a file whose
//! writer was killed, its `<file>.footer` sidecar, see [`crate::writer`]) and checks that it
//! is a podtrace capture of a schema version this build reads. Reading is by row group:
//! [`CaptureReader::batches`] yields Arrow record batches of schema v1 (or v1 without
//! `payload`), [`CaptureReader::records`] yields [`Record`]s. Both decode several row groups
//! at once on the rayon pool and yield them in file order, row-group order.
//!
//! [`ReadOptions`] pushes work down: `payload: false` leaves the payload column unread
//! (never fetched from disk nor decompressed); record-type and time filters first skip row
//! groups whose statistics rule them out, then filter rows.

use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, OnceLock};

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, UInt16Type, UInt32Type, UInt64Type, UInt8Type};
use arrow_array::{Array, ArrayRef, BooleanArray, DictionaryArray, RecordBatch, StringArray};
use arrow_schema::{DataType, Schema, SchemaRef};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::ProjectionMask;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader, RowGroupMetaData};

use crate::error::{catch_quiet, panic_message, FormatError, Result};
use crate::model::*;
use crate::schema::{self, col, meta_key};
use crate::sidecar;

/// Rows per decoded batch.
const BATCH_ROWS: usize = 8192;

/// What to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOptions {
    /// Only these record types (`None`: all).
    pub record_types: Option<Vec<RecordType>>,
    /// Only rows with `start <= ts_ns < end` (`None`: all).
    pub time_range: Option<(u64, u64)>,
    /// Read the payload column (default true). With false the column is absent from the
    /// batches and [`SocketData::payload`] is empty.
    pub payload: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            record_types: None,
            time_range: None,
            payload: true,
        }
    }
}

impl ReadOptions {
    /// Everything except the payload column.
    pub fn without_payload() -> Self {
        ReadOptions {
            payload: false,
            ..Default::default()
        }
    }
    /// Only these record types.
    pub fn record_types(mut self, types: &[RecordType]) -> Self {
        self.record_types = Some(types.to_vec());
        self
    }
    /// Only rows with `start <= ts_ns < end`.
    pub fn time_range(mut self, start: u64, end: u64) -> Self {
        self.time_range = Some((start, end));
        self
    }
    fn wants_type(&self, t: RecordType) -> bool {
        self.record_types.as_ref().is_none_or(|ts| ts.contains(&t))
    }
}

/// The schema of the batches [`CaptureReader::batches`] yields: schema v1, or schema v1
/// without `payload` when `payload` is false.
pub fn read_schema(payload: bool) -> SchemaRef {
    static NO_PAYLOAD: OnceLock<SchemaRef> = OnceLock::new();
    if payload {
        return schema::schema();
    }
    NO_PAYLOAD
        .get_or_init(|| {
            let full = schema::schema();
            let fields: Vec<_> = full
                .fields()
                .iter()
                .filter(|f| f.name() != col::PAYLOAD)
                .cloned()
                .collect();
            Arc::new(Schema::new(fields))
        })
        .clone()
}

/// One capture file, opened.
#[derive(Debug, Clone)]
pub struct CaptureFile {
    /// Where it is.
    pub path: PathBuf,
    /// Its file metadata.
    pub meta: FileMeta,
    /// `podtrace.schema_version`.
    pub schema_version: u32,
    /// `podtrace.start_ns`, if written.
    pub start_ns: Option<u64>,
    /// `podtrace.end_ns`, if written.
    pub end_ns: Option<u64>,
    /// Rows readable.
    pub rows: u64,
    /// Row groups readable.
    pub row_groups: usize,
    /// File size in bytes.
    pub bytes: u64,
    /// The file had no footer and was read through its sidecar (its writer was killed or is
    /// still writing).
    pub recovered: bool,
    arrow: ArrowReaderMetadata,
    /// The file's Arrow schema is not exactly schema v1 (other writer): batches are cast.
    needs_cast: bool,
    /// Leaf column index of `record_type` and `ts_ns` (row-group statistics).
    rt_leaf: usize,
    ts_leaf: usize,
}

impl CaptureFile {
    /// Opens one capture file (see [`CaptureReader::open`] for the checks).
    pub fn open(path: impl AsRef<Path>) -> Result<CaptureFile> {
        let path = path.as_ref();
        catch_quiet(|| open_file(path))
            .unwrap_or_else(|p| Err(FormatError::corrupt(path, panic_message(p))))
    }
}

/// A set of capture files read as one capture.
#[derive(Debug, Clone)]
pub struct CaptureReader {
    files: Arc<Vec<CaptureFile>>,
}

impl CaptureReader {
    /// Opens captures: each input is a file, a directory (every `*.parquet` in it, sorted by
    /// name; sidecars and other files are ignored) or a glob (`caps/*.parquet`, sorted). A
    /// file named twice is read once. Every file must be a podtrace capture of a schema
    /// version this build reads; the first that is not is the error.
    pub fn open<P: AsRef<Path>>(inputs: &[P]) -> Result<CaptureReader> {
        let mut seen = HashSet::new();
        let mut files = Vec::new();
        for input in inputs {
            for path in expand(input.as_ref())? {
                let key = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
                if seen.insert(key) {
                    files.push(CaptureFile::open(&path)?);
                }
            }
        }
        Ok(CaptureReader {
            files: Arc::new(files),
        })
    }

    /// The files, in reading order.
    pub fn files(&self) -> &[CaptureFile] {
        &self.files
    }

    /// The files in `range` as a capture of their own (nothing is reopened).
    pub fn subset(&self, range: std::ops::Range<usize>) -> CaptureReader {
        CaptureReader {
            files: Arc::new(self.files[range].to_vec()),
        }
    }

    /// How many row groups a read with `opts` decodes (the others are skipped by their
    /// statistics).
    pub fn row_groups_to_read(&self, opts: &ReadOptions) -> usize {
        self.files
            .iter()
            .map(|f| {
                (0..f.row_groups)
                    .filter(|&rg| row_group_may_match(f, rg, opts))
                    .count()
            })
            .sum()
    }

    /// Rows in all files (before any filter).
    pub fn num_rows(&self) -> u64 {
        self.files.iter().map(|f| f.rows).sum()
    }

    /// Record batches of [`read_schema`]`(opts.payload)`, filtered, in file and row-group
    /// order; row groups are decoded in parallel. Empty batches are not yielded. After an
    /// error the iterator ends.
    pub fn batches(&self, opts: &ReadOptions) -> Batches {
        Pipeline::new(self.files.clone(), opts, decode_row_group)
    }

    /// Rows as [`Record`]s, in file order (decoded and converted in parallel).
    pub fn records(&self, opts: &ReadOptions) -> Records {
        Records {
            inner: Pipeline::new(self.files.clone(), opts, |f, rg, o| {
                let mut out = Vec::new();
                for b in decode_row_group(f, rg, o)? {
                    out.extend(batch_to_records(&b)?);
                }
                Ok(out)
            }),
        }
    }
}

/// Iterator of [`CaptureReader::batches`].
pub type Batches = Pipeline<RecordBatch>;

/// Iterator of [`CaptureReader::records`].
pub struct Records {
    inner: Pipeline<Record>,
}

impl Iterator for Records {
    type Item = Result<Record>;
    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next()
    }
}

type Work<T> = fn(&CaptureFile, usize, &ReadOptions) -> Result<Vec<T>>;

/// Decodes row groups on the rayon pool, a bounded window ahead of the consumer, and
/// yields their items in order.
pub struct Pipeline<T: Send + 'static> {
    files: Arc<Vec<CaptureFile>>,
    opts: Arc<ReadOptions>,
    work: Work<T>,
    /// Row groups still to start: (file index, row group index).
    todo: VecDeque<(usize, usize)>,
    in_flight: VecDeque<Receiver<Result<Vec<T>>>>,
    ready: std::vec::IntoIter<T>,
    window: usize,
    done: bool,
}

impl<T: Send + 'static> Pipeline<T> {
    fn new(files: Arc<Vec<CaptureFile>>, opts: &ReadOptions, work: Work<T>) -> Self {
        let todo = files
            .iter()
            .enumerate()
            .flat_map(|(fi, f)| {
                (0..f.row_groups)
                    .filter(|&rg| row_group_may_match(f, rg, opts))
                    .map(move |rg| (fi, rg))
                    .collect::<Vec<_>>()
            })
            .collect();
        // Inside a rayon worker (e.g. the caller's own par_iter), blocking on tasks queued
        // behind us could starve the pool: decode inline there.
        let window = if rayon::current_thread_index().is_some() {
            0
        } else {
            (rayon::current_num_threads() * 2).max(2)
        };
        Pipeline {
            files,
            opts: Arc::new(opts.clone()),
            work,
            todo,
            in_flight: VecDeque::new(),
            ready: Vec::new().into_iter(),
            window,
            done: false,
        }
    }

    fn start(&mut self) {
        while self.in_flight.len() < self.window {
            let Some((fi, rg)) = self.todo.pop_front() else {
                break;
            };
            let (tx, rx) = sync_channel(1);
            let (files, opts, work) = (self.files.clone(), self.opts.clone(), self.work);
            rayon::spawn(move || {
                let _ = tx.send(guarded(&files[fi], rg, &opts, work));
            });
            self.in_flight.push_back(rx);
        }
    }

    fn next_group(&mut self) -> Option<Result<Vec<T>>> {
        if self.window == 0 {
            let (fi, rg) = self.todo.pop_front()?;
            return Some(guarded(&self.files[fi], rg, &self.opts, self.work));
        }
        self.start();
        let rx = self.in_flight.pop_front()?;
        Some(
            rx.recv().unwrap_or_else(|_| {
                Err(FormatError::Batch("row group decoder stopped".to_string()))
            }),
        )
    }
}

fn guarded<T>(f: &CaptureFile, rg: usize, opts: &ReadOptions, work: Work<T>) -> Result<Vec<T>> {
    catch_quiet(|| work(f, rg, opts))
        .unwrap_or_else(|p| Err(FormatError::corrupt(&f.path, panic_message(p))))
}

impl<T: Send + 'static> Iterator for Pipeline<T> {
    type Item = Result<T>;
    fn next(&mut self) -> Option<Result<T>> {
        loop {
            if let Some(item) = self.ready.next() {
                return Some(Ok(item));
            }
            if self.done {
                return None;
            }
            match self.next_group() {
                None => {
                    self.done = true;
                    return None;
                }
                Some(Ok(items)) => self.ready = items.into_iter(),
                Some(Err(e)) => {
                    self.done = true;
                    self.todo.clear();
                    self.in_flight.clear();
                    return Some(Err(e));
                }
            }
        }
    }
}

/// Expands one input — a file, a directory (its `*.parquet` files, sorted) or a glob — to
/// capture file paths; a path that does not exist is returned as is (opening it says so).
pub fn expand(input: &Path) -> Result<Vec<PathBuf>> {
    let shown = input.display().to_string();
    if input.is_dir() {
        let rd = std::fs::read_dir(input).map_err(|e| FormatError::io(input, e))?;
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| FormatError::io(input, e))?;
            let p = entry.path();
            if p.extension().is_some_and(|e| e == "parquet") && p.is_file() {
                out.push(p);
            }
        }
        out.sort();
        if out.is_empty() {
            return Err(FormatError::NoInput { input: shown });
        }
        return Ok(out);
    }
    if !input.exists() && shown.contains(['*', '?', '[']) {
        let paths = glob::glob(&shown).map_err(|e| FormatError::NoInput {
            input: format!("{shown} ({e})"),
        })?;
        let mut out: Vec<PathBuf> = paths
            .filter_map(|p| p.ok())
            .filter(|p| p.is_file())
            .collect();
        out.sort();
        if out.is_empty() {
            return Err(FormatError::NoInput { input: shown });
        }
        return Ok(out);
    }
    Ok(vec![input.to_path_buf()])
}

const MAGIC: &[u8; 4] = b"PAR1";

fn open_file(path: &Path) -> Result<CaptureFile> {
    let file = File::open(path).map_err(|e| FormatError::io(path, e))?;
    let len = file.metadata().map_err(|e| FormatError::io(path, e))?.len();
    let not_parquet = |reason: &str| FormatError::NotParquet {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    if len == 0 {
        return Err(not_parquet("empty file"));
    }
    let mut head = [0u8; 4];
    let n = read_at_most(&file, &mut head, 0).map_err(|e| FormatError::io(path, e))?;
    if n < 4 && head[..n] == MAGIC[..n] {
        return Err(FormatError::Truncated {
            path: path.to_path_buf(),
            reason: format!("{len} bytes"),
        });
    }
    if &head != MAGIC {
        return Err(not_parquet("no PAR1 magic at the start"));
    }
    let mut tail = [0u8; 8];
    let complete = len >= 12 && {
        file.read_exact_at(&mut tail, len - 8)
            .map_err(|e| FormatError::io(path, e))?;
        &tail[4..] == MAGIC
    };
    let (metadata, recovered) = if complete {
        let meta_len = u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]) as u64;
        if meta_len + 12 > len {
            return Err(FormatError::corrupt(
                path,
                format!("footer length {meta_len} exceeds the file ({len} bytes)"),
            ));
        }
        let mut buf = vec![0u8; meta_len as usize];
        file.read_exact_at(&mut buf, len - 8 - meta_len)
            .map_err(|e| FormatError::io(path, e))?;
        let meta = ParquetMetaDataReader::decode_metadata(&buf)
            .map_err(|e| FormatError::corrupt(path, format!("footer: {e}")))?;
        (meta, false)
    } else {
        (sidecar::recover(path, len)?, true)
    };
    check_row_groups(path, &metadata, len)?;

    let kv = metadata.file_metadata().key_value_metadata();
    let get = |key: &str| {
        kv.and_then(|kv| kv.iter().find(|e| e.key == key))
            .and_then(|e| e.value.as_deref())
    };
    let wrong = |reason: String| FormatError::WrongSchema {
        path: path.to_path_buf(),
        reason,
    };
    let version = get(meta_key::SCHEMA_VERSION).ok_or_else(|| {
        wrong(format!(
            "no {} in the file metadata",
            meta_key::SCHEMA_VERSION
        ))
    })?;
    let schema_version: u32 = match version.trim().parse() {
        Ok(v) if v > crate::SCHEMA_VERSION => {
            return Err(FormatError::UnsupportedVersion {
                path: path.to_path_buf(),
                found: version.to_string(),
                supported: crate::SCHEMA_VERSION,
            })
        }
        Ok(v) if v >= 1 => v,
        _ => {
            return Err(wrong(format!(
                "{} is {version:?}",
                meta_key::SCHEMA_VERSION
            )))
        }
    };
    let meta = schema::file_meta_from_kv(
        kv.into_iter()
            .flatten()
            .filter_map(|e| Some((e.key.as_str(), e.value.as_deref()?))),
    );
    let start_ns = get(meta_key::START_NS).and_then(|v| v.parse().ok());
    let end_ns = get(meta_key::END_NS).and_then(|v| v.parse().ok());
    let rows = metadata
        .row_groups()
        .iter()
        .map(|rg| rg.num_rows() as u64)
        .sum();
    let row_groups = metadata.num_row_groups();

    let arrow = ArrowReaderMetadata::try_new(Arc::new(metadata), ArrowReaderOptions::new())
        .map_err(|e| wrong(format!("unreadable Arrow schema: {e}")))?;
    let needs_cast = check_columns(arrow.schema()).map_err(wrong)?;
    let leaf = |name: &str| {
        let descr = arrow.parquet_schema();
        (0..descr.num_columns())
            .find(|&i| descr.column(i).path().parts() == [name])
            .ok_or_else(|| wrong(format!("no leaf column {name}")))
    };
    let rt_leaf = leaf(col::RECORD_TYPE)?;
    let ts_leaf = leaf(col::TS_NS)?;
    Ok(CaptureFile {
        path: path.to_path_buf(),
        meta,
        schema_version,
        start_ns,
        end_ns,
        rows,
        row_groups,
        bytes: len,
        recovered,
        arrow,
        needs_cast,
        rt_leaf,
        ts_leaf,
    })
}

fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], offset + n as u64)? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Every column chunk must lie inside the file, before reading anything.
fn check_row_groups(path: &Path, meta: &ParquetMetaData, len: u64) -> Result<()> {
    for (i, rg) in meta.row_groups().iter().enumerate() {
        if sidecar::row_group_end(rg) > len || rg.num_rows() < 0 {
            return Err(FormatError::corrupt(
                path,
                format!("row group {i} lies outside the file"),
            ));
        }
    }
    Ok(())
}

/// Checks that every schema v1 column is present with a compatible type; returns whether
/// batches need a cast to schema v1 (true for files of other writers).
fn check_columns(found: &Schema) -> std::result::Result<bool, String> {
    let want = schema::schema();
    let mut missing = Vec::new();
    let mut needs_cast = found.fields().len() != want.fields().len();
    for (i, w) in want.fields().iter().enumerate() {
        match found.column_with_name(w.name()) {
            None => missing.push(w.name().as_str()),
            Some((j, f)) => {
                if base_type(f.data_type()) != base_type(w.data_type()) {
                    return Err(format!(
                        "column {} is {}, expected {}",
                        w.name(),
                        f.data_type(),
                        w.data_type()
                    ));
                }
                needs_cast |= i != j || f.data_type() != w.data_type();
            }
        }
    }
    if !missing.is_empty() {
        return Err(format!("missing columns: {}", missing.join(", ")));
    }
    Ok(needs_cast)
}

/// The type a column's values have, ignoring dictionary encoding and string/binary layout.
fn base_type(t: &DataType) -> DataType {
    match t {
        DataType::Dictionary(_, v) => base_type(v),
        DataType::LargeUtf8 | DataType::Utf8View => DataType::Utf8,
        DataType::LargeBinary | DataType::BinaryView => DataType::Binary,
        other => other.clone(),
    }
}

/// Could row group `rg` hold rows `opts` wants? (From its statistics; `true` if unknown.)
fn row_group_may_match(f: &CaptureFile, rg: usize, opts: &ReadOptions) -> bool {
    let meta = f.arrow.metadata().row_group(rg);
    if let Some((start, end)) = opts.time_range {
        if start >= end {
            return false;
        }
        if let Some((min, max)) = stats_bytes(meta, f.ts_leaf) {
            if let (Ok(min), Ok(max)) = (<[u8; 8]>::try_from(min), <[u8; 8]>::try_from(max)) {
                let (min, max) = (u64::from_le_bytes(min), u64::from_le_bytes(max));
                if max < start || min >= end {
                    return false;
                }
            }
        }
    }
    if let Some(types) = &opts.record_types {
        if let Some((min, max)) = stats_bytes(meta, f.rt_leaf) {
            let hit = types.iter().any(|t| {
                let s = t.as_str().as_bytes();
                min <= s && s <= max
            });
            if !hit {
                return false;
            }
        }
    }
    true
}

fn stats_bytes(rg: &RowGroupMetaData, leaf: usize) -> Option<(&[u8], &[u8])> {
    let stats = rg.column(leaf).statistics()?;
    Some((stats.min_bytes_opt()?, stats.max_bytes_opt()?))
}

/// Reads one row group: projected, cast to schema v1 if needed, filtered.
///
/// Columns that the row group's statistics show to be entirely null (the `k8s_*` columns of
/// a row group of socket rows, ...) are not decoded but made as null arrays: cheaper, and
/// the parquet reader is slow on all-null dictionary columns.
fn decode_row_group(f: &CaptureFile, rg: usize, opts: &ReadOptions) -> Result<Vec<RecordBatch>> {
    let file = File::open(&f.path).map_err(|e| FormatError::io(&f.path, e))?;
    let target = read_schema(opts.payload);
    let arrow_schema = f.arrow.schema();
    let descr = f.arrow.parquet_schema();
    let rg_meta = f.arrow.metadata().row_group(rg);
    let rows = rg_meta.num_rows().max(0) as u64;
    let all_null = |root: usize| {
        let mut leaves = (0..descr.num_columns()).filter(|&l| descr.get_column_root_idx(l) == root);
        match (leaves.next(), leaves.next()) {
            (Some(leaf), None) => rg_meta
                .column(leaf)
                .statistics()
                .and_then(|s| s.null_count_opt())
                .is_some_and(|nulls| rows > 0 && nulls == rows),
            _ => false,
        }
    };
    let mut roots = Vec::with_capacity(target.fields().len());
    let mut null_columns = Vec::new();
    for field in target.fields() {
        match arrow_schema.index_of(field.name()) {
            Ok(root) if all_null(root) => null_columns.push(field.name().as_str()),
            Ok(root) => roots.push(root),
            Err(_) => {}
        }
    }
    let mask = ProjectionMask::roots(descr, roots);
    let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file, f.arrow.clone())
        .with_row_groups(vec![rg])
        .with_projection(mask)
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| FormatError::corrupt(&f.path, format!("row group {rg}: {e}")))?;
    let mut out = Vec::new();
    let exact = !f.needs_cast && null_columns.is_empty();
    for batch in reader {
        let batch =
            batch.map_err(|e| FormatError::corrupt(&f.path, format!("row group {rg}: {e}")))?;
        let batch = conform(&f.path, batch, &target, exact, &null_columns)?;
        let batch = filter_rows(batch, opts)
            .map_err(|e| FormatError::corrupt(&f.path, format!("row group {rg}: {e}")))?;
        if batch.num_rows() > 0 {
            out.push(batch);
        }
    }
    Ok(out)
}

/// Gives `batch` exactly the `target` schema (column order and types): when the batch is
/// not already `exact`, looks columns up by name, casts them, and makes `nulls` columns.
fn conform(
    path: &Path,
    batch: RecordBatch,
    target: &SchemaRef,
    exact: bool,
    nulls: &[&str],
) -> Result<RecordBatch> {
    let columns: Vec<ArrayRef> = if exact {
        batch.columns().to_vec()
    } else {
        let mut cols = Vec::with_capacity(target.fields().len());
        for field in target.fields() {
            let Some(c) = batch.column_by_name(field.name()) else {
                if nulls.contains(&field.name().as_str()) {
                    cols.push(arrow_array::new_null_array(
                        field.data_type(),
                        batch.num_rows(),
                    ));
                    continue;
                }
                return Err(FormatError::corrupt(
                    path,
                    format!("column {} not decoded", field.name()),
                ));
            };
            let c = if c.data_type() == field.data_type() {
                c.clone()
            } else {
                arrow::compute::cast(c, field.data_type()).map_err(|e| {
                    FormatError::WrongSchema {
                        path: path.to_path_buf(),
                        reason: format!("column {}: {e}", field.name()),
                    }
                })?
            };
            cols.push(c);
        }
        cols
    };
    RecordBatch::try_new(target.clone(), columns)
        .map_err(|e| FormatError::corrupt(path, format!("decoded batch: {e}")))
}

/// Drops the rows `opts` does not want.
fn filter_rows(
    batch: RecordBatch,
    opts: &ReadOptions,
) -> std::result::Result<RecordBatch, arrow_schema::ArrowError> {
    if opts.record_types.is_none() && opts.time_range.is_none() {
        return Ok(batch);
    }
    let n = batch.num_rows();
    let mut keep = vec![true; n];
    if opts.record_types.is_some() {
        let rt = batch
            .column(schema::idx::RECORD_TYPE)
            .as_dictionary::<Int32Type>();
        let values = rt.values().as_string::<i32>();
        let wanted: Vec<bool> = (0..values.len())
            .map(|i| RecordType::parse(values.value(i)).is_some_and(|t| opts.wants_type(t)))
            .collect();
        for (k, key) in keep.iter_mut().zip(rt.keys().values().iter()) {
            *k &= wanted.get(*key as usize).copied().unwrap_or(false);
        }
    }
    if let Some((start, end)) = opts.time_range {
        let ts = batch
            .column(schema::idx::TS_NS)
            .as_primitive::<UInt64Type>();
        for (k, t) in keep.iter_mut().zip(ts.values().iter()) {
            *k &= start <= *t && *t < end;
        }
    }
    if keep.iter().all(|k| *k) {
        return Ok(batch);
    }
    arrow::compute::filter_record_batch(&batch, &BooleanArray::from(keep))
}

/// A dictionary string column: keys and values, for per-row lookups without hashing.
struct Dict<'a> {
    keys: &'a arrow_array::PrimitiveArray<Int32Type>,
    values: &'a StringArray,
}

impl<'a> Dict<'a> {
    fn new(batch: &'a RecordBatch, name: &str) -> Result<Dict<'a>> {
        let a: &DictionaryArray<Int32Type> = column(batch, name)?
            .as_dictionary_opt::<Int32Type>()
            .ok_or_else(|| type_error(name))?;
        let values = a
            .values()
            .as_string_opt::<i32>()
            .ok_or_else(|| type_error(name))?;
        Ok(Dict {
            keys: a.keys(),
            values,
        })
    }
    /// The value at row `i`, `None` if null or if the key is out of range.
    #[inline]
    fn get(&self, i: usize) -> Option<usize> {
        if self.keys.is_null(i) {
            return None;
        }
        let k = self.keys.value(i) as usize;
        (k < self.values.len()).then_some(k)
    }
    /// Maps each distinct value once.
    fn map<T>(&self, f: impl Fn(&str) -> T) -> Vec<T> {
        (0..self.values.len())
            .map(|i| f(self.values.value(i)))
            .collect()
    }
    #[inline]
    fn string(&self, i: usize) -> String {
        self.get(i)
            .map(|k| self.values.value(k).to_string())
            .unwrap_or_default()
    }
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    batch
        .column_by_name(name)
        .ok_or_else(|| FormatError::Batch(format!("no column {name}")))
}

fn type_error(name: &str) -> FormatError {
    FormatError::Batch(format!("column {name} has an unexpected type"))
}

macro_rules! prim {
    ($batch:expr, $name:expr, $t:ty) => {
        column($batch, $name)?
            .as_primitive_opt::<$t>()
            .ok_or_else(|| type_error($name))?
    };
}

/// Converts a batch of [`read_schema`] (with or without `payload`) to [`Record`]s. Nulls in
/// columns a record type needs read as zero / empty.
pub fn batch_to_records(batch: &RecordBatch) -> Result<Vec<Record>> {
    let n = batch.num_rows();
    let rt = Dict::new(batch, col::RECORD_TYPE)?;
    let types: Vec<Option<RecordType>> = rt.map(RecordType::parse);
    let ts = prim!(batch, col::TS_NS, UInt64Type);
    let cpu = prim!(batch, col::CPU, UInt32Type);
    let pid = prim!(batch, col::PID, UInt32Type);
    let tid = prim!(batch, col::TID, UInt32Type);
    let comm = Dict::new(batch, col::COMM)?;
    let cgroup = prim!(batch, col::CGROUP_ID, UInt64Type);
    let conn = prim!(batch, col::CONN_ID, UInt64Type);
    let _family = prim!(batch, col::FAMILY, UInt8Type);
    let laddr = Dict::new(batch, col::LOCAL_ADDR)?;
    let lips: Vec<Option<IpAddr>> = laddr.map(|s| s.parse().ok());
    let lport = prim!(batch, col::LOCAL_PORT, UInt16Type);
    let raddr = Dict::new(batch, col::REMOTE_ADDR)?;
    let rips: Vec<Option<IpAddr>> = raddr.map(|s| s.parse().ok());
    let rport = prim!(batch, col::REMOTE_PORT, UInt16Type);
    let dir = Dict::new(batch, col::DIRECTION)?;
    let dirs: Vec<Option<Direction>> = dir.map(Direction::parse);
    let role = Dict::new(batch, col::ROLE)?;
    let roles: Vec<Option<Role>> = role.map(Role::parse);
    let syscall = Dict::new(batch, col::SYSCALL)?;
    let ret = prim!(batch, col::RET, Int64Type);
    let payload = match batch.column_by_name(col::PAYLOAD) {
        Some(p) => Some(
            p.as_binary_opt::<i32>()
                .ok_or_else(|| type_error(col::PAYLOAD))?,
        ),
        None => None,
    };
    let flags = prim!(batch, col::FLAGS, UInt32Type);
    let kind = Dict::new(batch, col::K8S_KIND)?;
    let uid = column(batch, col::K8S_UID)?
        .as_string_opt::<i32>()
        .ok_or_else(|| type_error(col::K8S_UID))?;
    let ns = Dict::new(batch, col::K8S_NAMESPACE)?;
    let name = column(batch, col::K8S_NAME)?
        .as_string_opt::<i32>()
        .ok_or_else(|| type_error(col::K8S_NAME))?;
    let event = Dict::new(batch, col::K8S_EVENT)?;
    let events: Vec<Option<K8sEvent>> = event.map(K8sEvent::parse);
    let json = column(batch, col::K8S_JSON)?
        .as_string_opt::<i32>()
        .ok_or_else(|| type_error(col::K8S_JSON))?;
    let stat_name = Dict::new(batch, col::STAT_NAME)?;
    let stat_value = prim!(batch, col::STAT_VALUE, UInt64Type);

    let ip = |d: &Dict, ips: &[Option<IpAddr>], port: &arrow_array::UInt16Array, i: usize| {
        d.get(i)
            .and_then(|k| ips[k])
            .map(|ip| SocketAddr::new(ip, port.value(i)))
    };
    let meta = |i: usize| SocketMeta {
        ts_ns: ts.value(i),
        cpu: cpu.value(i),
        pid: pid.value(i),
        tid: tid.value(i),
        comm: comm.string(i),
        cgroup_id: cgroup.value(i),
        conn_id: conn.value(i),
        local: ip(&laddr, &lips, lport, i),
        remote: ip(&raddr, &rips, rport, i),
    };
    let text = |a: &StringArray, i: usize| {
        if a.is_valid(i) {
            a.value(i).to_string()
        } else {
            String::new()
        }
    };

    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let Some(t) = rt.get(i).and_then(|k| types[k]) else {
            return Err(FormatError::Batch(format!(
                "row {i}: unknown record_type {:?}",
                rt.get(i).map(|k| rt.values.value(k))
            )));
        };
        let rec = match t {
            RecordType::SocketData => Record::SocketData(SocketData {
                meta: meta(i),
                direction: dir
                    .get(i)
                    .and_then(|k| dirs[k])
                    .ok_or_else(|| FormatError::Batch(format!("row {i}: bad direction")))?,
                syscall: syscall.string(i),
                ret: ret.value(i),
                payload: match payload {
                    Some(p) if p.is_valid(i) => p.value(i).to_vec(),
                    _ => Vec::new(),
                },
                flags: flags.value(i),
            }),
            RecordType::SocketOpen | RecordType::SocketClose => {
                let e = SocketEvent {
                    meta: meta(i),
                    role: role.get(i).and_then(|k| roles[k]).unwrap_or(Role::Unknown),
                    syscall: syscall.string(i),
                };
                if t == RecordType::SocketOpen {
                    Record::SocketOpen(e)
                } else {
                    Record::SocketClose(e)
                }
            }
            RecordType::K8sObject => Record::K8sObject(K8sObject {
                ts_ns: ts.value(i),
                kind: kind.string(i),
                uid: text(uid, i),
                namespace: ns.string(i),
                name: text(name, i),
                event: event
                    .get(i)
                    .and_then(|k| events[k])
                    .ok_or_else(|| FormatError::Batch(format!("row {i}: bad k8s_event")))?,
                json: text(json, i),
            }),
            RecordType::Stats => Record::Stats(Stat {
                ts_ns: ts.value(i),
                cpu: cpu.is_valid(i).then(|| cpu.value(i)),
                name: stat_name.string(i),
                value: stat_value.value(i),
            }),
        };
        out.push(rec);
    }
    Ok(out)
}
