//! Writing rows in timestamp order.
//!
//! Rows are produced in capture order, which is timestamp order except for captures whose
//! packets are not sorted (merged files) and for data delivered at the end of a connection.
//! [`OrderedWriter`] holds rows for a sliding window of capture time and writes them sorted
//! by (timestamp, production order). A row older than what was already written is written
//! with the last written timestamp instead, and counted.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use podtrace_format::{CaptureWriter, Record};

use crate::error::ImportError;

/// How long (capture time) rows are held back for reordering.
pub const REORDER_WINDOW_NS: u64 = 250_000_000;

struct Entry {
    ts_ns: u64,
    seq: u64,
    record: Record,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.ts_ns, self.seq) == (other.ts_ns, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.ts_ns, self.seq).cmp(&(other.ts_ns, other.seq))
    }
}

/// A [`CaptureWriter`] that writes rows in timestamp order.
pub struct OrderedWriter {
    writer: CaptureWriter,
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u64,
    watermark: u64,
    written: u64,
    late: u64,
}

impl OrderedWriter {
    /// Wraps `writer`.
    pub fn new(writer: CaptureWriter) -> Self {
        OrderedWriter {
            writer,
            heap: BinaryHeap::new(),
            seq: 0,
            watermark: 0,
            written: 0,
            late: 0,
        }
    }

    /// Queues a row.
    pub fn push(&mut self, mut record: Record) {
        let mut ts = record.ts_ns();
        if ts < self.watermark {
            ts = self.watermark;
            set_ts(&mut record, ts);
            self.late += 1;
        }
        self.heap.push(Reverse(Entry {
            ts_ns: ts,
            seq: self.seq,
            record,
        }));
        self.seq += 1;
    }

    /// Writes the queued rows older than `now_ns` minus the reorder window.
    pub fn advance(&mut self, now_ns: u64) -> Result<(), ImportError> {
        let limit = now_ns.saturating_sub(REORDER_WINDOW_NS);
        while self.heap.peek().is_some_and(|e| e.0.ts_ns < limit) {
            self.pop()?;
        }
        Ok(())
    }

    /// Writes everything queued and finishes the file. Returns (rows written, late rows).
    pub fn finish(mut self) -> Result<(u64, u64), ImportError> {
        while !self.heap.is_empty() {
            self.pop()?;
        }
        self.writer.finish()?;
        Ok((self.written, self.late))
    }

    fn pop(&mut self) -> Result<(), ImportError> {
        if let Some(Reverse(e)) = self.heap.pop() {
            self.watermark = e.ts_ns;
            self.writer.write(&e.record)?;
            self.written += 1;
        }
        Ok(())
    }
}

fn set_ts(record: &mut Record, ts: u64) {
    match record {
        Record::SocketData(d) => d.meta.ts_ns = ts,
        Record::SocketOpen(e) | Record::SocketClose(e) => e.meta.ts_ns = ts,
        Record::K8sObject(k) => k.ts_ns = ts,
        Record::Stats(s) => s.ts_ns = ts,
    }
}
