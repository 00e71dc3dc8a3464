//! [`IntColumn`]: the writer's integer columns of socket rows (`cpu`, `pid`, `tid`,
//! `cgroup_id`, `conn_id`, `family`, the ports, `ret`, `cap_len`, `flags`), kept as
//! dictionary keys and written as column chunks of their own, as [`super::dict`] does for
//! the text columns: RLE_DICTIONARY data pages v2 encoded as the row group fills
//! ([`KeyPages`]) and a PLAIN dictionary page before them at its close.
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
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::Result;
use parquet::file::statistics::{Statistics, ValueStatistics};
use parquet::schema::types::ColumnDescPtr;

use super::chunk::{self, Compressor, KeyPages, NULL};

/// Dictionary size up to which a miss of the last-value memo scans the values.
const SCAN_MAX: usize = 8;

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
    /// The rows' keys, paged as the row group fills.
    keys: KeyPages,
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
            keys: KeyPages::default(),
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
        self.keys.rows()
    }

    /// Encodes a data page of the rows not in one yet once there are enough
    /// ([`KeyPages::page`]).
    pub(super) fn page(&mut self, descr: &ColumnDescPtr, zstd: &mut Compressor) -> Result<()> {
        self.keys.page(descr, zstd)
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
    /// [`super::dict::DictColumn::chunk`]): a PLAIN dictionary page (none when every row is
    /// null) and the data pages; the column starts over empty.
    pub(super) fn chunk(
        &mut self,
        descr: &ColumnDescPtr,
        zstd: &mut Compressor,
    ) -> Result<(Bytes, ColumnCloseResult)> {
        let chunk = self.keys.take(descr, zstd).and_then(|(pages, nulls)| {
            let dictionary = if self.values.is_empty() {
                None
            } else {
                let mut plain = Vec::with_capacity(self.values.len() * T::WIDTH);
                for &v in &self.values {
                    v.plain(&mut plain);
                }
                Some(chunk::dictionary_page(&plain, self.values.len(), zstd)?)
            };
            let statistics = T::statistics(
                self.values.iter().min().copied(),
                self.values.iter().max().copied(),
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
