//! [`DictColumn`]: the writer's low-cardinality text columns (`Dictionary(Int32, Utf8)` in
//! the schema), kept as dictionary keys and written as a Parquet column chunk of their own:
//! RLE_DICTIONARY data pages v2 encoded as the row group fills ([`DictColumn::page`]), and
//! the PLAIN dictionary page before them when it closes.
//!
//! A capture's rows repeat a handful of values (record types, syscall names, a node's
//! process names and addresses), most often the previous row's. A value equal to the last
//! one appended reuses its key after one short compare; other values are found by a linear
//! scan while the dictionary is small, then by a hash map. No value is hashed on the hot path.
//! Keys are given in first-seen order over the row group, which is the order in which
//! Parquet's own dictionary encoder numbers them: the dictionary and the index values are
//! the ones `ArrowWriter` writes for the same rows (it cuts them into pages of 20,000 rows
//! and falls back to plain values past a 1 MiB dictionary; here a data page holds
//! `ENCODE_ROWS` rows, and a dictionary is at most the row group's rows). What the column no longer pays
//! is that encoder's work per row (a hash of the value, a probe, a compare, and a min/max
//! update: about 18 % of the writer's CPU at saturation); min and max come from the
//! dictionary.

use std::collections::HashMap;

use bytes::Bytes;
use parquet::column::page::CompressedPage;
use parquet::column::writer::ColumnCloseResult;
use parquet::data_type::ByteArray;
use parquet::errors::Result;
use parquet::file::statistics::Statistics;
use parquet::schema::types::ColumnDescPtr;

use super::chunk::{self, Compressor, KeyPages, NULL};

/// Dictionary size up to which a miss of the last-value memo scans the values.
const SCAN_MAX: usize = 8;

/// One `Dictionary(Int32, Utf8)` column of the open row group.
#[derive(Default)]
pub(super) struct DictColumn {
    /// The rows' keys, paged as the row group fills.
    keys: KeyPages,
    /// Each value's text, in key order (the scan and the dictionary page) ...
    texts: Vec<Box<str>>,
    /// ... and by text, once the dictionary outgrows the scan.
    index: HashMap<Box<str>, i32>,
    /// Key of the last value appended.
    last: Option<i32>,
}

impl DictColumn {
    /// A new, empty column.
    pub(super) fn new() -> Self {
        Self::default()
    }

    /// Appends `v`.
    pub(super) fn append_value(&mut self, v: &str) {
        let key = match self.last {
            Some(k) if *self.texts[k as usize] == *v => k,
            _ => self.key_of(v),
        };
        self.last = Some(key);
        self.keys.push(key);
    }

    /// Appends the last value appended again (false, nothing appended, when there is none
    /// in this row group).
    pub(super) fn append_last(&mut self) -> bool {
        match self.last {
            Some(k) => {
                self.keys.push(k);
                true
            }
            None => false,
        }
    }

    /// Appends a null.
    pub(super) fn append_null(&mut self) {
        self.keys.push(NULL);
    }

    /// Appends `n` nulls.
    pub(super) fn append_nulls(&mut self, n: usize) {
        self.keys.push_n(NULL, n);
    }

    /// Rows appended since the last chunk.
    pub(super) fn rows(&self) -> usize {
        self.keys.rows()
    }

    /// Encodes a data page of the rows not in one yet once there are enough
    /// ([`KeyPages::page`]).
    pub(super) fn page(&mut self, descr: &ColumnDescPtr, zstd: &mut Compressor) -> Result<()> {
        self.keys.page(descr, zstd)
    }

    /// The key of `v`, added to the dictionary if new.
    fn key_of(&mut self, v: &str) -> i32 {
        if self.texts.len() <= SCAN_MAX {
            if let Some(k) = self.texts.iter().position(|t| **t == *v) {
                return k as i32;
            }
        } else if let Some(&k) = self.index.get(v) {
            return k;
        }
        let key = self.texts.len() as i32;
        self.texts.push(v.into());
        if self.texts.len() > SCAN_MAX {
            if self.index.is_empty() {
                for (k, t) in self.texts.iter().enumerate() {
                    self.index.insert(t.clone(), k as i32);
                }
            } else {
                self.index.insert(v.into(), key);
            }
        }
        key
    }

    /// The rows appended so far as a column chunk of `descr` (the bytes, with offsets from
    /// their start, for `SerializedRowGroupWriter::append_column`): a PLAIN dictionary page
    /// of the values (none when every row is null) and the data pages; the column starts
    /// over empty for the next row group.
    pub(super) fn chunk(
        &mut self,
        descr: &ColumnDescPtr,
        zstd: &mut Compressor,
    ) -> Result<(Bytes, ColumnCloseResult)> {
        let chunk = self
            .keys
            .take(descr, zstd)
            .and_then(|(pages, nulls)| finish_chunk(&self.texts, pages, nulls, descr, zstd));
        self.texts.clear();
        self.index.clear();
        self.last = None;
        chunk
    }
}

/// The column chunk of the data `pages` (with `nulls` nulls in all) of a dictionary of
/// `texts`: a PLAIN dictionary page first when there are values; statistics: min, max,
/// null count. zstd like the file's other columns.
fn finish_chunk(
    texts: &[Box<str>],
    pages: Vec<(CompressedPage, usize)>,
    nulls: usize,
    descr: &ColumnDescPtr,
    zstd: &mut Compressor,
) -> Result<(Bytes, ColumnCloseResult)> {
    let dictionary = if texts.is_empty() {
        None
    } else {
        let mut plain = Vec::with_capacity(texts.iter().map(|t| 4 + t.len()).sum());
        for t in texts {
            plain.extend_from_slice(&(t.len() as u32).to_le_bytes());
            plain.extend_from_slice(t.as_bytes());
        }
        Some(chunk::dictionary_page(&plain, texts.len(), zstd)?)
    };
    let bytes = |t: &str| ByteArray::from(t.as_bytes().to_vec());
    let statistics = Statistics::new(
        texts.iter().min().map(|t| bytes(t)),
        texts.iter().max().map(|t| bytes(t)),
        None,
        Some(nulls as u64),
        false,
    );
    chunk::finish(descr, zstd.level(), dictionary, pages, Some(statistics))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::builder::StringDictionaryBuilder;
    use arrow_array::types::Int32Type;
    use arrow_array::{Array, DictionaryArray, Int32Array, StringArray};
    use std::sync::Arc;

    impl DictColumn {
        /// The rows so far as Arrow would hold them.
        fn to_array(&self) -> DictionaryArray<Int32Type> {
            let keys: Int32Array = self
                .keys
                .pending()
                .iter()
                .map(|&k| (k != NULL).then_some(k))
                .collect();
            let values = StringArray::from_iter_values(self.texts.iter().map(|t| &**t));
            DictionaryArray::try_new(keys, Arc::new(values)).unwrap()
        }
    }

    /// The same keys and values as Arrow's dictionary builder (which numbers values in
    /// first-seen order, as Parquet's encoder does) for runs, repeats, nulls, many values,
    /// and again after a chunk.
    #[test]
    fn equals_arrows_dictionary_builder() {
        let descr = crate::writer::tests::column_descr(crate::schema::col::COMM);
        let mut ours = DictColumn::new();
        for round in 0..2 {
            let mut arrows = StringDictionaryBuilder::<Int32Type>::new();
            for i in 0..500u32 {
                let v = match i % 7 {
                    0 => None,
                    1 | 2 => Some("write".to_string()),
                    3 => Some(format!("comm-{}", (i * 31 + round) % 23)),
                    _ => Some(format!("v{}", i % 3)),
                };
                match &v {
                    Some(s) => {
                        ours.append_value(s);
                        arrows.append_value(s);
                    }
                    None => {
                        ours.append_null();
                        arrows.append_null();
                    }
                }
            }
            let (a, b) = (ours.to_array(), arrows.finish());
            assert_eq!(a, b);
            assert_eq!(a.values().len(), b.values().len());
            assert_eq!(a.null_count(), 72, "every 7th row of 500");
            let mut zstd = Compressor::new(parquet::basic::ZstdLevel::default(), None).unwrap();
            let (bytes, close) = ours.chunk(&descr, &mut zstd).unwrap();
            assert_eq!(close.rows_written, 500);
            assert_eq!(close.bytes_written, bytes.len() as u64);
            assert_eq!(ours.rows(), 0, "a chunk empties the column");
        }
    }
}
