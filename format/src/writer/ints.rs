//! [`IntColumn`]: the writer's integer columns of socket rows (`cpu`, `pid`, `tid`,
//! `cgroup_id`, `conn_id`, `family`, the ports, `ret`, `cap_len`, `flags`), buffered as
//! dictionary keys for a whole row group and written as column chunks of their own, as
//! [`super::dict`] does for the text columns: a PLAIN dictionary page and one
//! RLE_DICTIONARY data page v2.
//!
//! Parquet's column writer hashed every value of these columns into its dictionary
//! (`Interner::intern`: 13 % of the writer's instructions on a saturated nginx's rows, with
//! the encoder's per-row bookkeeping as much again). A node's rows repeat few values, most
//! often the previous row's (one process writes a burst, one connection answers): a value
//! equal to the last one appended reuses its key after one compare, a miss scans a small
//! dictionary and hashes only past [`SCAN_MAX`] values. The dictionary, its order (first
//! seen) and the keys are the ones Parquet's encoder gives; the file is read the same by
//! every reader. Statistics: min, max (by the column's own order: unsigned columns compare
//! unsigned) and the null count.

use std::hash::Hash;

use foldhash::{HashMap, HashMapExt};

use bytes::Bytes;
use parquet::basic::Encoding;
use parquet::column::page::{CompressedPage, Page};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::Result;
use parquet::file::statistics::{Statistics, ValueStatistics};
use parquet::schema::types::ColumnDescPtr;

use super::chunk::{self, Compressor};
use super::hybrid;

/// Dictionary size up to which a miss of the last-value memo scans the values.
const SCAN_MAX: usize = 8;

/// Key of a null row.
const NULL: i32 = -1;

/// An integer type of a capture column and the Parquet physical type that stores it
/// (INT32 for 8- to 32-bit integers, INT64 for 64-bit ones, two's complement bits).
pub(super) trait IntValue: Copy + Eq + Ord + Hash {
    /// Bytes of the physical value.
    const WIDTH: usize;
    /// Appends the PLAIN encoding of the value (little-endian, 4 or 8 bytes).
    fn plain(self, out: &mut Vec<u8>);
    /// Statistics of a chunk whose values range from `min` to `max` (by this type's order),
    /// with `nulls` nulls.
    fn statistics(min: Option<Self>, max: Option<Self>, nulls: u64) -> Statistics;
}

macro_rules! int_value {
    ($($t:ty => $p:ty, $variant:ident);*) => {$(
        impl IntValue for $t {
            const WIDTH: usize = std::mem::size_of::<$p>();
            fn plain(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&(self as $p).to_le_bytes());
            }
            fn statistics(min: Option<Self>, max: Option<Self>, nulls: u64) -> Statistics {
                Statistics::$variant(ValueStatistics::new(
                    min.map(|v| v as $p),
                    max.map(|v| v as $p),
                    None,
                    Some(nulls),
                    false,
                ))
            }
        }
    )*};
}
int_value!(u8 => i32, Int32; u16 => i32, Int32; u32 => i32, Int32; u64 => i64, Int64; i64 => i64, Int64);

/// One integer column of the open row group.
pub(super) struct IntColumn<T> {
    /// Each row's key ([`NULL`] for a null), for every row of the row group so far.
    keys: Vec<i32>,
    /// Each value, in key order (the scan and the dictionary page) ...
    values: Vec<T>,
    /// ... and by value, once the dictionary outgrows the scan (foldhash, seeded per
    /// process: the values include remote ports, which a peer chooses).
    index: HashMap<T, i32>,
    /// Key of the last value appended.
    last: Option<i32>,
}

impl<T: IntValue> IntColumn<T> {
    /// A new, empty column.
    pub(super) fn new() -> Self {
        IntColumn {
            keys: Vec::new(),
            values: Vec::new(),
            index: HashMap::new(),
            last: None,
        }
    }

    /// Appends `v`.
    #[inline]
    pub(super) fn append_value(&mut self, v: T) {
        let key = match self.last {
            Some(k) if self.values[k as usize] == v => k,
            _ => self.key_of(v),
        };
        self.last = Some(key);
        self.keys.push(key);
    }

    /// Appends `v` or a null.
    pub(super) fn append_option(&mut self, v: Option<T>) {
        match v {
            Some(v) => self.append_value(v),
            None => self.append_null(),
        }
    }

    /// Appends a null.
    pub(super) fn append_null(&mut self) {
        self.keys.push(NULL);
    }

    /// Rows appended since the last chunk.
    pub(super) fn rows(&self) -> usize {
        self.keys.len()
    }

    /// The key of `v`, added to the dictionary if new.
    fn key_of(&mut self, v: T) -> i32 {
        if self.values.len() <= SCAN_MAX {
            if let Some(k) = self.values.iter().position(|&x| x == v) {
                return k as i32;
            }
        } else if let Some(&k) = self.index.get(&v) {
            return k;
        }
        let key = self.values.len() as i32;
        self.values.push(v);
        if self.values.len() > SCAN_MAX {
            if self.index.is_empty() {
                self.index.reserve(self.values.len());
                for (k, &x) in self.values.iter().enumerate() {
                    self.index.insert(x, k as i32);
                }
            } else {
                self.index.insert(v, key);
            }
        }
        key
    }

    /// The rows appended so far as a column chunk of `descr` (see
    /// [`super::dict::DictColumn::chunk`]); the column starts over empty.
    pub(super) fn chunk(
        &mut self,
        descr: &ColumnDescPtr,
        zstd: &mut Compressor,
    ) -> Result<(Bytes, ColumnCloseResult)> {
        let chunk = encode_chunk(&self.values, &self.keys, descr, zstd);
        self.keys.clear();
        self.values.clear();
        self.index.clear();
        self.last = None;
        chunk
    }
}

/// The column chunk of `keys` (indexes into `values`, [`NULL`] for nulls): a PLAIN
/// dictionary page and one RLE_DICTIONARY data page v2, or, when every row is null, no
/// dictionary and a PLAIN data page of levels only.
fn encode_chunk<T: IntValue>(
    values: &[T],
    keys: &[i32],
    descr: &ColumnDescPtr,
    zstd: &mut Compressor,
) -> Result<(Bytes, ColumnCloseResult)> {
    let level = zstd.level();
    let nulls = keys.iter().filter(|&&k| k == NULL).count();
    let required = descr.max_def_level() == 0;
    let defined = |k: &i32| *k != NULL;
    if values.is_empty() {
        let page = chunk::data_page(keys, defined, nulls, required, Encoding::PLAIN, &[], |d| {
            zstd.compress(d)
        })?;
        let statistics = T::statistics(None, None, nulls as u64);
        return chunk::finish(
            descr,
            level,
            None,
            vec![(page, keys.len())],
            Some(statistics),
        );
    }
    let mut plain = Vec::with_capacity(values.len() * T::WIDTH);
    for &v in values {
        v.plain(&mut plain);
    }
    let dictionary = Page::DictionaryPage {
        buf: Bytes::from(zstd.compress(&plain)?),
        num_values: chunk::count(values.len())?,
        encoding: Encoding::PLAIN,
        is_sorted: false,
    };
    let dictionary = CompressedPage::new(dictionary, plain.len());
    let width = hybrid::bit_width(values.len() as u32 - 1);
    let mut encoded = vec![width];
    let indices: Vec<u32> = keys
        .iter()
        .filter(|&&k| k != NULL)
        .map(|&k| k as u32)
        .collect();
    hybrid::encode(&indices, width, &mut encoded);
    let page = chunk::data_page(
        keys,
        defined,
        nulls,
        required,
        Encoding::RLE_DICTIONARY,
        &encoded,
        |d| zstd.compress(d),
    )?;
    let statistics = T::statistics(
        values.iter().min().copied(),
        values.iter().max().copied(),
        nulls as u64,
    );
    chunk::finish(
        descr,
        level,
        Some(dictionary),
        vec![(page, keys.len())],
        Some(statistics),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys in first-seen order (the memo, the scan and the hash all agree), nulls kept,
    /// and statistics by the type's own order: `u64` values past `i64::MAX` are the largest.
    #[test]
    fn keys_and_unsigned_statistics() {
        let descr = crate::writer::tests::column_descr(crate::schema::col::CONN_ID);
        let mut zstd = Compressor::new(parquet::basic::ZstdLevel::default(), None).unwrap();
        let mut col = IntColumn::<u64>::new();
        for round in 0..2 {
            let mut want = Vec::new();
            for i in 0..300u64 {
                let v = match i % 5 {
                    0 => None,
                    1 => Some(u64::MAX - i % 3),
                    _ => Some((i * 7 + round) % 40),
                };
                col.append_option(v);
                want.push(v);
            }
            // the keys name the values appended, numbered in first-seen order
            let mut seen: Vec<u64> = Vec::new();
            for (k, v) in col.keys.iter().zip(&want) {
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
