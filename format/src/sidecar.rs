//! The sidecar footer log that makes a capture readable after its writer was killed.
//!
//! A Parquet footer is written only when a file is closed. While a capture file is being
//! written, `<file>.footer` holds the footers of its flushed row groups, so that a reader
//! can find them even if the writer never closes the file.
//!
//! # Format
//! ```text
//! "PTFOOT01"                                   8 bytes, magic and version
//! entry*                                       one per flush, appended
//! entry = len: u32 LE | fnv1a64(footer): u64 LE | footer: len bytes
//! footer = a standard Parquet footer (Thrift FileMetaData, u32 LE length, "PAR1")
//!          listing the row groups flushed since the previous entry
//! ```
//! The first entry also carries the file's key-value metadata (podtrace keys,
//! `ARROW:schema`); every entry carries `podtrace.start_ns` / `podtrace.end_ns` as of its
//! flush. The log grows by one small entry per row group (not by the whole footer each
//! time), so a long recording with 1 s flushes costs a few KiB per second.
//!
//! The sidecar is created atomically with its first entry (written to `<file>.footer.tmp`,
//! renamed). Later entries are appended with one `write`; a writer killed in the middle of
//! one leaves a short or mismatching last entry, which the reader ignores. A row group's
//! bytes reach the file before its entry is appended, and the reader also keeps only row
//! groups whose bytes are all in the file.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use parquet::file::metadata::{
    FileMetaData, KeyValue, ParquetMetaData, ParquetMetaDataReader, ParquetMetaDataWriter,
    RowGroupMetaData,
};

use crate::error::{FormatError, Result};
use crate::schema::meta_key;

const MAGIC: &[u8; 8] = b"PTFOOT01";
const PAR1: &[u8; 4] = b"PAR1";

/// The sidecar footer log of a capture file being written: `<file>.footer`.
pub fn sidecar_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(".footer");
    PathBuf::from(s)
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn created_by() -> String {
    format!("podtrace-format {}", env!("CARGO_PKG_VERSION"))
}

/// Appends footer entries to a segment's sidecar.
pub(crate) struct SidecarWriter {
    path: PathBuf,
    file: Option<File>,
    /// Row groups already in the log.
    logged: usize,
    sync: bool,
}

impl SidecarWriter {
    /// Removes a stale sidecar of `data` (from an earlier run) and prepares a new one.
    pub(crate) fn new(data: &Path, sync: bool) -> Result<SidecarWriter> {
        let path = sidecar_path(data);
        remove_if_exists(&path)?;
        Ok(SidecarWriter {
            path,
            file: None,
            logged: 0,
            sync,
        })
    }

    /// Logs the row groups of `all` not logged yet. `base_kv` goes into the first entry.
    pub(crate) fn append(
        &mut self,
        all: &[RowGroupMetaData],
        base_kv: &[KeyValue],
        start_end: (u64, u64),
    ) -> Result<()> {
        let new = &all[self.logged.min(all.len())..];
        let Some(first) = new.first() else {
            return Ok(());
        };
        let mut kv = if self.file.is_none() {
            base_kv.to_vec()
        } else {
            Vec::new()
        };
        kv.push(KeyValue::new(
            meta_key::START_NS.to_string(),
            start_end.0.to_string(),
        ));
        kv.push(KeyValue::new(
            meta_key::END_NS.to_string(),
            start_end.1.to_string(),
        ));
        let num_rows = new.iter().map(|rg| rg.num_rows()).sum();
        let file_meta = FileMetaData::new(
            1,
            num_rows,
            Some(created_by()),
            Some(kv),
            first.schema_descr_ptr(),
            None,
        );
        let meta = ParquetMetaData::new(file_meta, new.to_vec());
        let footer = footer_bytes(&meta).map_err(|e| FormatError::Write {
            path: self.path.clone(),
            source: e,
        })?;
        let mut entry = Vec::with_capacity(footer.len() + 20);
        if self.file.is_none() {
            entry.extend_from_slice(MAGIC);
        }
        entry.extend_from_slice(&(footer.len() as u32).to_le_bytes());
        entry.extend_from_slice(&fnv1a64(&footer).to_le_bytes());
        entry.extend_from_slice(&footer);

        let io = |e| FormatError::io(&self.path, e);
        match &mut self.file {
            Some(f) => {
                f.write_all(&entry).map_err(io)?;
                if self.sync {
                    f.sync_data().map_err(io)?;
                }
            }
            None => {
                // First entry: create atomically, so the sidecar is never empty or partial.
                let mut tmp = self.path.as_os_str().to_os_string();
                tmp.push(".tmp");
                let tmp = PathBuf::from(tmp);
                let mut f = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&tmp)
                    .map_err(|e| FormatError::io(&tmp, e))?;
                f.write_all(&entry).map_err(|e| FormatError::io(&tmp, e))?;
                if self.sync {
                    f.sync_data().map_err(|e| FormatError::io(&tmp, e))?;
                }
                std::fs::rename(&tmp, &self.path).map_err(io)?;
                if self.sync {
                    sync_parent(&self.path)?;
                }
                // Appends go to the renamed file (same inode).
                self.file = Some(f);
            }
        }
        self.logged = all.len();
        Ok(())
    }

    /// The data file is complete: the log is no longer needed.
    pub(crate) fn remove(self) -> Result<()> {
        drop(self.file);
        remove_if_exists(&self.path)
    }
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(FormatError::io(path, e)),
    }
}

fn sync_parent(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| FormatError::io(dir, e))?;
    }
    Ok(())
}

/// Decodes a standard Parquet footer (`FileMetaData`, length, `PAR1`).
fn decode_footer(bytes: &[u8]) -> std::result::Result<ParquetMetaData, String> {
    let n = bytes.len();
    if n < 8 || &bytes[n - 4..] != PAR1 {
        return Err("footer without PAR1".to_string());
    }
    let len = u32::from_le_bytes([bytes[n - 8], bytes[n - 7], bytes[n - 6], bytes[n - 5]]) as usize;
    if len + 8 > n {
        return Err(format!("footer length {len} exceeds the footer"));
    }
    ParquetMetaDataReader::decode_metadata(&bytes[n - 8 - len..n - 8]).map_err(|e| e.to_string())
}

/// End offset of a row group's bytes in its file; `u64::MAX` (never inside a file) when a
/// corrupt footer gives a negative offset or size (`byte_range()` would panic on those).
pub(crate) fn row_group_end(rg: &RowGroupMetaData) -> u64 {
    rg.columns()
        .iter()
        .map(|c| {
            let start = c.dictionary_page_offset().unwrap_or(c.data_page_offset());
            match (u64::try_from(start), u64::try_from(c.compressed_size())) {
                (Ok(start), Ok(len)) => start.saturating_add(len),
                _ => u64::MAX,
            }
        })
        .max()
        .unwrap_or(0)
}

/// The footer of a data file of `len` bytes without one, from its sidecar: every row
/// group the log lists whose bytes are all in the file. `Truncated` when there is no
/// sidecar.
/// A Parquet footer for `meta` without page index locations: the sidecar's footers and the
/// repaired file's footer carry no page index (the writer's page indexes follow the data it
/// had not yet finished), so the four offsets/lengths of every column chunk are cleared
/// before writing. (parquet 60 has `with_preserve_page_index_locations(false)` for this;
/// the workspace is on parquet 59, the version DataFusion 55 uses — docs/scale-out.md D3.)
fn footer_bytes(meta: &ParquetMetaData) -> parquet::errors::Result<Vec<u8>> {
    let mut groups = Vec::with_capacity(meta.num_row_groups());
    for rg in meta.row_groups() {
        let mut columns = Vec::with_capacity(rg.num_columns());
        for c in rg.columns() {
            columns.push(
                c.clone()
                    .into_builder()
                    .set_offset_index_offset(None)
                    .set_offset_index_length(None)
                    .set_column_index_offset(None)
                    .set_column_index_length(None)
                    .build()?,
            );
        }
        groups.push(
            rg.clone()
                .into_builder()
                .set_column_metadata(columns)
                .build()?,
        );
    }
    let stripped = ParquetMetaData::new(meta.file_metadata().clone(), groups);
    let mut footer = Vec::new();
    ParquetMetaDataWriter::new(&mut footer, &stripped).finish()?;
    Ok(footer)
}

pub(crate) fn recover(data: &Path, len: u64) -> Result<ParquetMetaData> {
    let path = sidecar_path(data);
    let mut bytes = Vec::new();
    match File::open(&path) {
        Ok(mut f) => f
            .read_to_end(&mut bytes)
            .map_err(|e| FormatError::io(&path, e))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(FormatError::Truncated {
                path: data.to_path_buf(),
                reason: format!("{len} bytes, no trailing PAR1"),
            })
        }
        Err(e) => return Err(FormatError::io(&path, e)),
    };
    let bad = |reason: String| FormatError::corrupt(&path, reason);
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(bad("not a podtrace sidecar footer log".to_string()));
    }
    let mut at = MAGIC.len();
    let mut row_groups: Vec<RowGroupMetaData> = Vec::new();
    let mut first: Option<ParquetMetaData> = None;
    let mut start_end: Option<(String, String)> = None;
    // Entries up to the first short or damaged one (a writer killed mid-append).
    while at + 12 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or_default()) as usize;
        let sum = u64::from_le_bytes(bytes[at + 4..at + 12].try_into().unwrap_or_default());
        let body = at + 12;
        if len > bytes.len() - body || fnv1a64(&bytes[body..body + len]) != sum {
            break;
        }
        let meta = decode_footer(&bytes[body..body + len])
            .map_err(|e| bad(format!("entry at byte {at}: {e}")))?;
        let kv = meta.file_metadata().key_value_metadata();
        let get = |k: &str| {
            kv.and_then(|kv| kv.iter().find(|e| e.key == k))
                .and_then(|e| e.value.clone())
        };
        if let (Some(s), Some(e)) = (get(meta_key::START_NS), get(meta_key::END_NS)) {
            start_end = Some((s, e));
        }
        row_groups.extend(meta.row_groups().iter().cloned());
        if first.is_none() {
            first = Some(meta);
        }
        at = body + len;
    }
    let Some(first) = first else {
        return Err(bad("no complete entry".to_string()));
    };
    let kept: Vec<RowGroupMetaData> = row_groups
        .into_iter()
        .take_while(|rg| row_group_end(rg) <= len)
        .collect();
    let fm = first.file_metadata();
    let mut kv: Vec<KeyValue> = fm
        .key_value_metadata()
        .into_iter()
        .flatten()
        .filter(|e| e.key != meta_key::START_NS && e.key != meta_key::END_NS)
        .cloned()
        .collect();
    if let Some((s, e)) = start_end.filter(|_| !kept.is_empty()) {
        kv.push(KeyValue::new(meta_key::START_NS.to_string(), s));
        kv.push(KeyValue::new(meta_key::END_NS.to_string(), e));
    }
    let num_rows = kept.iter().map(|rg| rg.num_rows()).sum();
    let file_meta = FileMetaData::new(
        fm.version(),
        num_rows,
        fm.created_by().map(str::to_string),
        Some(kv),
        fm.schema_descr_ptr(),
        fm.column_orders().cloned(),
    );
    Ok(ParquetMetaData::new(file_meta, kept))
}

/// What [`repair`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repaired {
    /// Rows in the repaired file.
    pub rows: u64,
    /// Row groups in the repaired file.
    pub row_groups: usize,
    /// Bytes cut from the end (a row group that was being written when the writer died).
    pub bytes_dropped: u64,
}

/// Turns a capture whose writer was killed (`<file>` without footer + `<file>.footer`)
/// into a complete Parquet file in place: cuts bytes after the last flushed row group,
/// appends the footer and removes the sidecar. Any Parquet reader can then read it.
/// Returns `None` when the file already has its footer (a stale sidecar is removed).
/// Safe to re-run if interrupted.
pub fn repair(path: impl AsRef<Path>) -> Result<Option<Repaired>> {
    let path = path.as_ref();
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| FormatError::io(path, e))?;
    let len = file.metadata().map_err(|e| FormatError::io(path, e))?.len();
    let mut tail = [0u8; 4];
    if len >= 12 {
        use std::os::unix::fs::FileExt;
        file.read_exact_at(&mut tail, len - 4)
            .map_err(|e| FormatError::io(path, e))?;
        if &tail == PAR1 {
            remove_if_exists(&sidecar_path(path))?;
            return Ok(None);
        }
    }
    let meta = recover(path, len)?;
    let end = meta
        .row_groups()
        .iter()
        .map(row_group_end)
        .max()
        .unwrap_or(0)
        .max(4);
    file.set_len(end).map_err(|e| FormatError::io(path, e))?;
    let footer = footer_bytes(&meta).map_err(|e| FormatError::Write {
        path: path.to_path_buf(),
        source: e,
    })?;
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(end))
        .and_then(|_| file.write_all(&footer))
        .and_then(|_| file.sync_all())
        .map_err(|e| FormatError::io(path, e))?;
    remove_if_exists(&sidecar_path(path))?;
    Ok(Some(Repaired {
        rows: meta
            .row_groups()
            .iter()
            .map(|rg| rg.num_rows() as u64)
            .sum(),
        row_groups: meta.num_row_groups(),
        bytes_dropped: len - end,
    }))
}
