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
//!
//! The module is split by step: `open.rs` (a file's footer or sidecar, and the checks that
//! make it a capture this build reads), `prefetch.rs` ([`Prefetch`]: the bounded window of
//! row groups decoded ahead on the rayon pool, yielded in order), `decode.rs` (one row
//! group → projected, cast and filtered batches → [`Record`]s).

mod decode;
mod open;
mod prefetch;

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

pub use decode::batch_to_records;
use decode::{decode_row_group, row_group_may_match};
use open::open_file;
pub use prefetch::Prefetch;

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
        Prefetch::new(self.files.clone(), opts, decode_row_group)
    }

    /// Rows as [`Record`]s, in file order (decoded and converted in parallel).
    pub fn records(&self, opts: &ReadOptions) -> Records {
        Records {
            inner: Prefetch::new(self.files.clone(), opts, |f, rg, o| {
                let batches = decode_row_group(f, rg, o)?;
                let mut out = Vec::with_capacity(batches.iter().map(|b| b.num_rows()).sum());
                for b in &batches {
                    // a value no row can hold (a damaged page that still decompressed) makes
                    // the file corrupt, named as such
                    decode::append_records(b, &mut out).map_err(|e| match e {
                        FormatError::Batch(msg) => {
                            FormatError::corrupt(&f.path, format!("row group {rg}: {msg}"))
                        }
                        e => e,
                    })?;
                }
                Ok(out)
            }),
        }
    }
}

impl CaptureReader {
    /// One record stream per file, in file order (to merge by time, e.g. the analyzer's
    /// `merge_by_time`). A stream ends at its file's first error; the first error of any
    /// file is kept in `first_error` for the caller to report once the streams are done.
    pub fn records_per_file<'e>(
        &self,
        opts: &ReadOptions,
        first_error: &'e std::cell::RefCell<Option<FormatError>>,
    ) -> Vec<impl Iterator<Item = Record> + 'e> {
        (0..self.files.len())
            .map(|i| {
                self.subset(i..i + 1)
                    .records(opts)
                    .map_while(move |r| match r {
                        Ok(rec) => Some(rec),
                        Err(e) => {
                            first_error.borrow_mut().get_or_insert(e);
                            None
                        }
                    })
            })
            .collect()
    }
}

/// Iterator of [`CaptureReader::batches`].
pub type Batches = Prefetch<RecordBatch>;

/// Iterator of [`CaptureReader::records`].
pub struct Records {
    inner: Prefetch<Record>,
}

impl Iterator for Records {
    type Item = Result<Record>;
    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next()
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
