//! A column chunk from pages podtrace encoded itself ([`super::dict`], [`super::payload`]):
//! the bytes and the [`ColumnCloseResult`] that `SerializedRowGroupWriter::append_column`
//! takes (offsets from the start of the bytes; it moves them to the chunk's place).

use bytes::Bytes;
use parquet::basic::{Compression, Encoding, PageType, ZstdLevel};
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::{ColumnChunkMetaData, OffsetIndexBuilder, PageEncodingStats};
use parquet::file::statistics::Statistics;
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;

use super::hybrid;

/// A zstd context, kept: making one per page (what `zstd::bulk::compress` does) took about
/// 0.5 ms of closing a row group of 150,000 rows (its 22 dictionary-column pages).
pub(super) struct Compressor {
    level: ZstdLevel,
    inner: zstd::bulk::Compressor<'static>,
}

impl Compressor {
    /// A context compressing at `level`; with `hash_log`, a hash table of that size (log2)
    /// instead of the level's.
    pub(super) fn new(level: ZstdLevel, hash_log: Option<u32>) -> Result<Self> {
        let mut inner = zstd::bulk::Compressor::new(level.compression_level()).map_err(external)?;
        if let Some(log) = hash_log {
            inner
                .set_parameter(zstd::zstd_safe::CParameter::HashLog(log))
                .map_err(external)?;
        }
        Ok(Compressor { level, inner })
    }

    /// The level, for the chunk's metadata.
    pub(super) fn level(&self) -> ZstdLevel {
        self.level
    }

    /// `data` as one zstd frame.
    pub(super) fn compress(&mut self, data: &[u8]) -> Result<Vec<u8>> {
        self.inner.compress(data).map_err(external)
    }
}

fn external(e: std::io::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

/// A data page v2 of `rows` rows of which `nulls` are null: its definition levels
/// (`defined` per row, none for a required column) and its `values`, compressed by
/// `compress`.
pub(super) fn data_page<T>(
    rows: &[T],
    defined: impl Fn(&T) -> bool + Copy,
    nulls: usize,
    required: bool,
    encoding: Encoding,
    values: &[u8],
    compress: impl FnOnce(&[u8]) -> Result<Vec<u8>>,
) -> Result<CompressedPage> {
    let mut buf = Vec::new();
    if !required {
        // a page without nulls (most), or of nulls only: one run, no pass over the rows
        match nulls {
            0 => hybrid::encode_repeated(1, rows.len(), 1, &mut buf),
            n if n == rows.len() => hybrid::encode_repeated(0, n, 1, &mut buf),
            _ => hybrid::encode_by(rows, |r| u32::from(defined(r)), 1, &mut buf),
        }
    }
    let levels = buf.len();
    buf.extend_from_slice(&compress(values)?);
    let page = Page::DataPageV2 {
        buf: Bytes::from(buf),
        num_values: count(rows.len())?,
        encoding,
        num_nulls: count(nulls)?,
        num_rows: count(rows.len())?,
        def_levels_byte_len: count(levels)?,
        rep_levels_byte_len: 0,
        is_compressed: true,
        statistics: None,
    };
    Ok(CompressedPage::new(page, levels + values.len()))
}

/// Rows of a dictionary column's data page ([`key_page`]) encoded while its row group
/// fills: a read pays per page (a header, a zstd frame, a decoder), a row group's close pays
/// for the rows not in a page yet.
pub(super) const PAGE_ROWS: usize = 8192;

/// Key of a null row in a dictionary column's keys ([`key_page`]).
pub(super) const NULL: i32 = -1;

/// The keys of a dictionary column of the open row group: the data pages encoded so far
/// (with their rows) and the keys not in a page yet.
#[derive(Default)]
pub(super) struct KeyPages {
    /// Each row's key ([`NULL`] for a null), for the rows not in a page yet.
    keys: Vec<i32>,
    /// Data pages of the row group so far, with their rows.
    pages: Vec<(CompressedPage, usize)>,
    /// Rows in `pages`.
    paged_rows: usize,
    /// Nulls in `pages`.
    paged_nulls: usize,
}

impl KeyPages {
    /// Appends a row's key.
    #[inline]
    pub(super) fn push(&mut self, key: i32) {
        self.keys.push(key);
    }

    /// Appends `n` rows of key `key`.
    pub(super) fn push_n(&mut self, key: i32, n: usize) {
        self.keys.resize(self.keys.len() + n, key);
    }

    /// The keys not in a page yet.
    #[cfg(test)]
    pub(super) fn pending(&self) -> &[i32] {
        &self.keys
    }

    /// Rows appended since the last [`KeyPages::take`].
    pub(super) fn rows(&self) -> usize {
        self.paged_rows + self.keys.len()
    }

    /// Encodes the keys not in a page yet as a data page once they are [`PAGE_ROWS`] or
    /// more (the writer calls it as the row group fills, so that its close has at most that
    /// many rows per column left to encode, not the row group's; each page has the bit
    /// width of its own largest index, as Parquet allows).
    pub(super) fn page(&mut self, descr: &ColumnDescPtr, zstd: &mut Compressor) -> Result<()> {
        if self.keys.len() < PAGE_ROWS {
            return Ok(());
        }
        self.flush_page(descr, zstd)
    }

    /// Encodes the keys not in a page yet (if any) as a data page.
    pub(super) fn flush_page(
        &mut self,
        descr: &ColumnDescPtr,
        zstd: &mut Compressor,
    ) -> Result<()> {
        if self.keys.is_empty() {
            return Ok(());
        }
        let nulls = self.keys.iter().filter(|&&k| k == NULL).count();
        let page = key_page(&self.keys, nulls, descr, zstd)?;
        self.pages.push((page, self.keys.len()));
        self.paged_rows += self.keys.len();
        self.paged_nulls += nulls;
        self.keys.clear();
        Ok(())
    }

    /// Every row appended as data pages, with the number of nulls among them; empty again
    /// after (also on an error).
    pub(super) fn take(
        &mut self,
        descr: &ColumnDescPtr,
        zstd: &mut Compressor,
    ) -> Result<(Vec<(CompressedPage, usize)>, usize)> {
        let done = self.flush_page(descr, zstd);
        let pages = std::mem::take(&mut self.pages);
        let nulls = self.paged_nulls;
        // the keys' capacity stays for the next row group, about as large
        self.keys.clear();
        self.paged_rows = 0;
        self.paged_nulls = 0;
        done.map(|()| (pages, nulls))
    }
}

/// A data page v2 of dictionary `keys` (indexes into the column's dictionary, [`NULL`] for
/// nulls), of which `nulls` are null: the indices RLE_DICTIONARY-encoded after the
/// definition levels, or, when every row of the page is null, PLAIN with levels only (no
/// index refers to a dictionary the chunk may not have).
pub(super) fn key_page(
    keys: &[i32],
    nulls: usize,
    descr: &ColumnDescPtr,
    zstd: &mut Compressor,
) -> Result<CompressedPage> {
    let required = descr.max_def_level() == 0;
    let defined = |k: &i32| *k != NULL;
    let Some(max) = keys.iter().copied().max().filter(|&k| k != NULL) else {
        return data_page(keys, defined, nulls, required, Encoding::PLAIN, &[], |d| {
            zstd.compress(d)
        });
    };
    let width = hybrid::bit_width(max as u32);
    let mut encoded = vec![width];
    if nulls == 0 {
        // one key for the whole page (a process's pid, an address, ...): one run
        match keys.iter().copied().min() {
            Some(min) if min == max => {
                hybrid::encode_repeated(max as u32, keys.len(), width, &mut encoded)
            }
            _ => hybrid::encode_by(keys, |&k| k as u32, width, &mut encoded),
        }
    } else {
        let indices: Vec<u32> = keys
            .iter()
            .filter(|&&k| k != NULL)
            .map(|&k| k as u32)
            .collect();
        hybrid::encode(&indices, width, &mut encoded);
    }
    data_page(
        keys,
        defined,
        nulls,
        required,
        Encoding::RLE_DICTIONARY,
        &encoded,
        |d| zstd.compress(d),
    )
}

/// The PLAIN dictionary page of `values` values whose PLAIN encoding is `plain`.
pub(super) fn dictionary_page(
    plain: &[u8],
    values: usize,
    zstd: &mut Compressor,
) -> Result<CompressedPage> {
    let page = Page::DictionaryPage {
        buf: Bytes::from(zstd.compress(plain)?),
        num_values: count(values)?,
        encoding: Encoding::PLAIN,
        is_sorted: false,
    };
    Ok(CompressedPage::new(page, plain.len()))
}

/// A page's count field.
pub(super) fn count(n: usize) -> Result<u32> {
    i32::try_from(n)
        .map(|n| n as u32)
        .map_err(|_| ParquetError::General(format!("{n} values in one page")))
}

/// The chunk of `descr` made of `dictionary` (if any) and the `data` pages (each with its
/// number of rows), zstd-compressed at `zstd`, with `statistics` and an offset index (the
/// file's other chunks have one: a file has one for every chunk or for none).
pub(super) fn finish(
    descr: &ColumnDescPtr,
    zstd: ZstdLevel,
    dictionary: Option<CompressedPage>,
    data: Vec<(CompressedPage, usize)>,
    statistics: Option<Statistics>,
) -> Result<(Bytes, ColumnCloseResult)> {
    let mut sink = TrackedWrite::new(Vec::new());
    let mut pages = SerializedPageWriter::new(&mut sink);
    let mut encodings = vec![Encoding::RLE];
    let mut stats: Vec<PageEncodingStats> = Vec::new();
    let mut note = |page_type: PageType, encoding: Encoding| {
        if !encodings.contains(&encoding) {
            encodings.push(encoding);
        }
        match stats
            .iter_mut()
            .find(|s| s.page_type == page_type && s.encoding == encoding)
        {
            Some(s) => s.count += 1,
            None => stats.push(PageEncodingStats {
                page_type,
                encoding,
                count: 1,
            }),
        }
    };
    let (mut compressed, mut uncompressed) = (0i64, 0i64);
    let dictionary_offset = match dictionary {
        Some(page) => {
            note(PageType::DICTIONARY_PAGE, page.encoding());
            let spec = pages.write_page(page)?;
            compressed += spec.compressed_size as i64;
            uncompressed += spec.uncompressed_size as i64;
            Some(spec.offset as i64)
        }
        None => None,
    };
    let mut offsets = OffsetIndexBuilder::new();
    let mut first_data = None;
    let mut rows = 0i64;
    for (page, page_rows) in data {
        note(PageType::DATA_PAGE_V2, page.encoding());
        let spec = pages.write_page(page)?;
        compressed += spec.compressed_size as i64;
        uncompressed += spec.uncompressed_size as i64;
        first_data.get_or_insert(spec.offset as i64);
        offsets.append_offset_and_size(spec.offset as i64, spec.compressed_size as i32);
        offsets.append_row_count(page_rows as i64);
        rows += page_rows as i64;
    }
    pages.close()?;
    let bytes = Bytes::from(sink.into_inner()?);
    let mut metadata = ColumnChunkMetaData::builder(descr.clone())
        .set_compression(Compression::ZSTD(zstd))
        .set_encodings(encodings)
        .set_page_encoding_stats(stats)
        .set_total_compressed_size(compressed)
        .set_total_uncompressed_size(uncompressed)
        .set_num_values(rows)
        .set_data_page_offset(first_data.unwrap_or(0))
        .set_dictionary_page_offset(dictionary_offset);
    if let Some(s) = statistics {
        metadata = metadata.set_statistics(s);
    }
    let close = ColumnCloseResult {
        bytes_written: bytes.len() as u64,
        rows_written: rows as u64,
        metadata: metadata.build()?,
        bloom_filter: None,
        column_index: None,
        offset_index: Some(offsets.build()),
    };
    Ok((bytes, close))
}
