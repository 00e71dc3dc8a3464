//! [`DictColumn`]: a `Dictionary(Int32, Utf8)` column builder for the writer's
//! low-cardinality text columns, cheaper per row than Arrow's `StringDictionaryBuilder`.
//!
//! A capture's rows repeat a handful of values (record types, syscall names, a node's
//! process names and addresses), most often the previous row's. A value equal to the last
//! one appended reuses its key after one short compare; other values are found by a linear
//! scan while the dictionary is small, then by a hash map. No value is hashed on the hot path.
//! Keys are given in first-seen order, as `StringDictionaryBuilder` gives them: the arrays
//! (and so the Parquet bytes) are the same.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::builder::{Int32Builder, StringBuilder};
use arrow_array::types::Int32Type;
use arrow_array::DictionaryArray;

/// Dictionary size up to which a miss of the last-value memo scans the values.
const SCAN_MAX: usize = 8;

/// Builder of one `Dictionary(Int32, Utf8)` column.
#[derive(Default)]
pub(super) struct DictColumn {
    keys: Int32Builder,
    values: StringBuilder,
    /// Each value's text, in key order (the scan) ...
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
        self.keys.append_value(key);
    }

    /// Appends the last value appended again (false, nothing appended, when there is none
    /// since the last [`DictColumn::finish`]).
    pub(super) fn append_last(&mut self) -> bool {
        match self.last {
            Some(k) => {
                self.keys.append_value(k);
                true
            }
            None => false,
        }
    }

    /// Appends a null.
    pub(super) fn append_null(&mut self) {
        self.keys.append_null();
    }

    /// Appends `n` nulls.
    pub(super) fn append_nulls(&mut self, n: usize) {
        self.keys.append_nulls(n);
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
        self.values.append_value(v);
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

    /// The rows appended so far as a dictionary array; the builder starts over empty.
    pub(super) fn finish(&mut self) -> DictionaryArray<Int32Type> {
        // room for as many rows next time (the next batch is about as large)
        let keys = super::finish_primitive(&mut self.keys);
        let values = Arc::new(self.values.finish());
        self.texts.clear();
        self.index.clear();
        self.last = None;
        // every key was given for a value pushed before it: in bounds by construction
        DictionaryArray::try_new(keys, values)
            .unwrap_or_else(|e| unreachable!("dictionary keys out of bounds: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::builder::StringDictionaryBuilder;
    use arrow_array::Array;

    /// Same arrays as Arrow's builder for runs, repeats, nulls, many values and a reuse
    /// after `finish`.
    #[test]
    fn equals_arrows_dictionary_builder() {
        let mut ours = DictColumn::new();
        let mut arrows = StringDictionaryBuilder::<Int32Type>::new();
        for round in 0..2 {
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
            let (a, b) = (ours.finish(), arrows.finish());
            assert_eq!(a, b);
            assert_eq!(a.values().len(), b.values().len());
            assert_eq!(a.null_count(), 72, "every 7th row of 500");
        }
    }
}
