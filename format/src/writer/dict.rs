//! [`DictColumn`]: the writer's dictionary columns: the low-cardinality text columns
//! (`Dictionary(Int32, Utf8)` in the schema: `DictColumn<String>`) and the integer columns of
//! socket rows (`cpu`, `pid`, `tid`, `cgroup_id`, `conn_id`, `family`, the ports, `ret`,
//! `cap_len`, `flags`: `DictColumn<u32>` and so on), kept as dictionary keys and written as
//! Parquet column chunks of their own: RLE_DICTIONARY data pages v2 encoded as the row group
//! fills ([`KeyPages`]), and the PLAIN dictionary page before them when it closes.
//!
//! A capture's rows repeat a handful of values (record types, syscall names, a node's
//! process names and addresses, one process's pid, one connection's id and ports), most
//! often the previous row's. A value equal to the last one appended reuses its key after
//! one short compare; other values are found by a linear scan while the dictionary is
//! small, then by a hash map (foldhash, seeded per process: the values include remote
//! addresses and ports, which a peer chooses). No value is hashed on the hot path.
//! Keys are given in first-seen order over the row group, which is the order in which
//! Parquet's own dictionary encoder numbers them: the dictionary and the index values are
//! the ones `ArrowWriter` writes for the same rows (it cuts them into pages of 20,000 rows
//! and falls back to plain values past a 1 MiB dictionary; here a data page holds
//! [`chunk::PAGE_ROWS`] rows, and a dictionary is at most the row group's rows). What the
//! columns no longer pay is that encoder's work per row (a hash of the value, a probe, a
//! compare, and a min/max update: about 18 % of the writer's CPU at saturation for the text
//! columns; `Interner::intern` alone was 13 % of the writer's instructions for the integer
//! ones); min and max come from the dictionary, by the column's own order (unsigned integer
//! columns compare unsigned, as their logical type says).

use std::borrow::Borrow;
use std::hash::Hash;

use bytes::Bytes;
use foldhash::{HashMap, HashMapExt};
use parquet::column::writer::ColumnCloseResult;
use parquet::data_type::ByteArray;
use parquet::errors::Result;
use parquet::file::statistics::{Statistics, ValueStatistics};
use parquet::schema::types::ColumnDescPtr;

use super::chunk::{self, Compressor, KeyPages, NULL};

/// Dictionary size up to which a miss of the last-value memo scans the values.
const SCAN_MAX: usize = 8;

/// A value type of a dictionary column: its PLAIN encoding and its chunk statistics.
pub(super) trait DictValue: Clone + Eq + Ord + Hash {
    /// Appends the PLAIN encoding of the value (text: 4-byte length and the bytes;
    /// integers: little-endian INT32 for 8- to 32-bit types, INT64 for 64-bit ones, two's
    /// complement bits).
    fn plain(&self, out: &mut Vec<u8>);
    /// Statistics of a chunk whose values range from `min` to `max` (by this type's order),
    /// with `nulls` nulls.
    fn statistics(min: Option<&Self>, max: Option<&Self>, nulls: u64) -> Statistics;
}

impl DictValue for String {
    fn plain(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.len() as u32).to_le_bytes());
        out.extend_from_slice(self.as_bytes());
    }
    fn statistics(min: Option<&Self>, max: Option<&Self>, nulls: u64) -> Statistics {
        let bytes = |t: &String| ByteArray::from(t.as_bytes().to_vec());
        Statistics::ByteArray(ValueStatistics::new(
            min.map(bytes),
            max.map(bytes),
            None,
            Some(nulls),
            false,
        ))
    }
}

macro_rules! int_value {
    ($($t:ty => $p:ty, $variant:ident);*) => {$(
        impl DictValue for $t {
            fn plain(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&(*self as $p).to_le_bytes());
            }
            fn statistics(min: Option<&Self>, max: Option<&Self>, nulls: u64) -> Statistics {
                Statistics::$variant(ValueStatistics::new(
                    min.map(|&v| v as $p),
                    max.map(|&v| v as $p),
                    None,
                    Some(nulls),
                    false,
                ))
            }
        }
    )*};
}
int_value!(u8 => i32, Int32; u16 => i32, Int32; u32 => i32, Int32; u64 => i64, Int64; i64 => i64, Int64);

/// One dictionary column of the open row group.
pub(super) struct DictColumn<V> {
    /// The rows' keys, paged as the row group fills.
    keys: KeyPages,
    /// Each value, in key order (the scan and the dictionary page) ...
    values: Vec<V>,
    /// ... and by value, once the dictionary outgrows the scan.
    index: HashMap<V, i32>,
    /// Key of the last value appended.
    last: Option<i32>,
}

impl<V: DictValue> DictColumn<V> {
    /// A new, empty column.
    pub(super) fn new() -> Self {
        DictColumn {
            keys: KeyPages::default(),
            values: Vec::new(),
            index: HashMap::new(),
            last: None,
        }
    }

    /// Appends `v` (a `&str` for a text column, a `&u32` for a `u32` column, ...).
    #[inline]
    pub(super) fn append_value<Q>(&mut self, v: &Q)
    where
        V: Borrow<Q>,
        Q: ?Sized + Eq + Hash + ToOwned<Owned = V>,
    {
        let key = match self.last {
            Some(k) if self.values[k as usize].borrow() == v => k,
            _ => self.key_of(v),
        };
        self.last = Some(key);
        self.keys.push(key);
    }

    /// Appends `v` or a null.
    pub(super) fn append_option<Q>(&mut self, v: Option<&Q>)
    where
        V: Borrow<Q>,
        Q: ?Sized + Eq + Hash + ToOwned<Owned = V>,
    {
        match v {
            Some(v) => self.append_value(v),
            None => self.append_null(),
        }
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
    fn key_of<Q>(&mut self, v: &Q) -> i32
    where
        V: Borrow<Q>,
        Q: ?Sized + Eq + Hash + ToOwned<Owned = V>,
    {
        if self.values.len() <= SCAN_MAX {
            if let Some(k) = self.values.iter().position(|x| x.borrow() == v) {
                return k as i32;
            }
        } else if let Some(&k) = self.index.get(v) {
            return k;
        }
        let key = self.values.len() as i32;
        self.values.push(v.to_owned());
        if self.values.len() > SCAN_MAX {
            if self.index.is_empty() {
                self.index.reserve(self.values.len());
                for (k, x) in self.values.iter().enumerate() {
                    self.index.insert(x.clone(), k as i32);
                }
            } else {
                self.index.insert(v.to_owned(), key);
            }
        }
        key
    }

    /// The rows appended so far as a column chunk of `descr` (the bytes, with offsets from
    /// their start, for `SerializedRowGroupWriter::append_column`): a PLAIN dictionary page
    /// of the values (none when every row is null) and the data pages; statistics: min,
    /// max, null count. The column starts over empty for the next row group (its buffers
    /// keep their capacity: the next row group is about as large).
    pub(super) fn chunk(
        &mut self,
        descr: &ColumnDescPtr,
        zstd: &mut Compressor,
    ) -> Result<(Bytes, ColumnCloseResult)> {
        let chunk = self.keys.take(descr, zstd).and_then(|(pages, nulls)| {
            let dictionary = if self.values.is_empty() {
                None
            } else {
                let mut plain = Vec::new();
                for v in &self.values {
                    v.plain(&mut plain);
                }
                Some(chunk::dictionary_page(&plain, self.values.len(), zstd)?)
            };
            let statistics = V::statistics(
                self.values.iter().min(),
                self.values.iter().max(),
                nulls as u64,
            );
            chunk::finish(descr, zstd.level(), dictionary, pages, Some(statistics))
        });
        self.values.clear();
        self.index.clear();
        self.last = None;
        chunk
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::builder::StringDictionaryBuilder;
    use arrow_array::types::Int32Type;
    use arrow_array::{Array, DictionaryArray, Int32Array, StringArray};
    use std::sync::Arc;

    impl DictColumn<String> {
        /// The rows so far as Arrow would hold them.
        fn to_array(&self) -> DictionaryArray<Int32Type> {
            let keys: Int32Array = self
                .keys
                .pending()
                .iter()
                .map(|&k| (k != NULL).then_some(k))
                .collect();
            let values = StringArray::from_iter_values(self.values.iter());
            DictionaryArray::try_new(keys, Arc::new(values)).unwrap()
        }
    }

    /// The same keys and values as Arrow's dictionary builder (which numbers values in
    /// first-seen order, as Parquet's encoder does) for runs, repeats, nulls, many values,
    /// and again after a chunk.
    #[test]
    fn equals_arrows_dictionary_builder() {
        let descr = crate::writer::tests::column_descr(crate::schema::col::COMM);
        let mut ours = DictColumn::<String>::new();
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
                        ours.append_value(s.as_str());
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

    /// Keys in first-seen order (the memo, the scan and the hash all agree), nulls kept,
    /// and statistics by the type's own order: `u64` values past `i64::MAX` are the largest.
    #[test]
    fn keys_and_unsigned_statistics() {
        let descr = crate::writer::tests::column_descr(crate::schema::col::CONN_ID);
        let mut zstd = Compressor::new(parquet::basic::ZstdLevel::default(), None).unwrap();
        let mut col = DictColumn::<u64>::new();
        for round in 0..2 {
            let mut want = Vec::new();
            for i in 0..300u64 {
                let v = match i % 5 {
                    0 => None,
                    1 => Some(u64::MAX - i % 3),
                    _ => Some((i * 7 + round) % 40),
                };
                col.append_option(v.as_ref());
                want.push(v);
                if i % 128 == 127 {
                    // a page as the row group fills: the keys go on from the dictionary so far
                    col.keys.flush_page(&descr, &mut zstd).unwrap();
                    assert_eq!(col.rows(), i as usize + 1);
                }
            }
            // the keys name the values appended, numbered in first-seen order (the last 44
            // rows are not paged yet)
            let mut seen: Vec<u64> = Vec::new();
            for v in want[..256].iter().flatten() {
                if !seen.contains(v) {
                    seen.push(*v);
                }
            }
            for (k, v) in col.keys.pending().iter().zip(&want[256..]) {
                match v {
                    None => assert_eq!(*k, NULL),
                    Some(v) => {
                        if !seen.contains(v) {
                            seen.push(*v);
                        }
                        assert_eq!(col.values[*k as usize], *v);
                        assert_eq!(seen.iter().position(|s| s == v), Some(*k as usize));
                    }
                }
            }
            assert_eq!(col.values, seen);
            assert_eq!((col.keys.pending().len(), col.rows()), (44, 300));
            let (bytes, close) = col.chunk(&descr, &mut zstd).unwrap();
            assert_eq!(close.rows_written, 300);
            assert_eq!(close.bytes_written, bytes.len() as u64);
            let stats = close.metadata.statistics().unwrap();
            assert_eq!(stats.null_count_opt(), Some(60));
            let min = u64::from_le_bytes(stats.min_bytes_opt().unwrap().try_into().unwrap());
            let max = u64::from_le_bytes(stats.max_bytes_opt().unwrap().try_into().unwrap());
            let present = || want.iter().flatten().copied();
            assert_eq!(
                (min, max),
                (present().min().unwrap(), present().max().unwrap())
            );
            assert_eq!(max, u64::MAX);
            assert_eq!(col.rows(), 0, "a chunk empties the column");
        }
    }
}
