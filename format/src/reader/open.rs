//! Opening one capture file: its footer (or its writer's sidecar), and the checks that make
//! it a podtrace capture of a schema version this build reads.

use super::*;

const MAGIC: &[u8; 4] = b"PAR1";

pub(super) fn open_file(path: &Path) -> Result<CaptureFile> {
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
