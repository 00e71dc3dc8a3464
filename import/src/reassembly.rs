//! TCP byte-stream reassembly for one direction of one connection.
//!
//! Segments go in as they were captured; [`Chunk`]s of contiguous, in-order payload come
//! out, each stamped with the time the bytes became readable by the receiving process:
//! the time of the packet that made them contiguous. The reassembler
//!
//! - anchors the stream at the SYN's ISN (data starts at ISN + 1) or, for a connection seen
//!   mid-stream, at the first segment of this direction (or the peer's first ACK number,
//!   whichever comes first);
//! - drops bytes that were already delivered (retransmits, overlapping segments);
//! - buffers segments that arrive ahead of a hole (out of order), up to a byte bound;
//! - declares a hole lost (a *gap*: the next chunk has `gap_before`) when the peer
//!   acknowledges bytes past it (the receiver had them, the capture missed them), when the
//!   out-of-order buffer is full, or when the connection ends ([`StreamReassembler::flush`]);
//! - finds the end of the stream at the FIN's sequence number.
//!
//! Offsets are 64-bit positions in the stream; sequence numbers are mapped to them relative
//! to the next expected byte, so 32-bit wraparound is handled.

use std::collections::BTreeMap;

/// Contiguous payload delivered in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// When the bytes became readable (time of the packet that completed them), ns.
    pub ts_ns: u64,
    /// The bytes.
    pub data: Vec<u8>,
    /// Bytes are missing right before this chunk.
    pub gap_before: bool,
}

/// Counters of one direction.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct StreamStats {
    /// Segments carrying payload.
    pub segments: u64,
    /// Payload bytes delivered.
    pub bytes: u64,
    /// Segments whose bytes had (all or partly) been received already.
    pub retransmits: u64,
    /// Segments that arrived ahead of a hole and were buffered.
    pub out_of_order: u64,
    /// Holes declared lost.
    pub gaps: u64,
    /// Bytes missing in those holes.
    pub gap_bytes: u64,
}

/// A buffered out-of-order segment.
#[derive(Debug)]
struct Pending {
    data: Vec<u8>,
}

/// Reassembles one direction of a TCP connection. See the module doc.
#[derive(Debug)]
pub struct StreamReassembler {
    /// Sequence number of stream offset 0 (ISN + 1 after a SYN).
    origin: Option<u32>,
    /// Offset of the next byte to deliver.
    next: u64,
    /// Out-of-order segments by offset (every key > `next` when not draining).
    pending: BTreeMap<u64, Pending>,
    pending_bytes: usize,
    max_pending: usize,
    /// Offset of the FIN (the stream's length), once seen.
    fin_at: Option<u64>,
    finished: bool,
    /// A hole was declared with no data after it yet: the next chunk gets `gap_before`.
    gap_pending: bool,
    stats: StreamStats,
}

impl StreamReassembler {
    /// A reassembler that buffers at most `max_pending` bytes of out-of-order data.
    pub fn new(max_pending: usize) -> Self {
        StreamReassembler {
            origin: None,
            next: 0,
            pending: BTreeMap::new(),
            pending_bytes: 0,
            max_pending,
            fin_at: None,
            finished: false,
            gap_pending: false,
            stats: StreamStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> StreamStats {
        self.stats
    }

    /// Whether the stream's first sequence number is known.
    pub fn is_anchored(&self) -> bool {
        self.origin.is_some()
    }

    /// The sequence number of stream offset 0, once known.
    pub fn origin(&self) -> Option<u32> {
        self.origin
    }

    /// Whether every byte up to the FIN has been delivered (or declared lost).
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Stream offset of a sequence number, relative to the next expected byte.
    fn offset(&self, origin: u32, seq: u32) -> i64 {
        let next_seq = origin.wrapping_add(self.next as u32);
        self.next as i64 + i64::from(seq.wrapping_sub(next_seq) as i32)
    }

    /// Feeds one segment of this direction. Delivered chunks are appended to `out`.
    pub fn segment(
        &mut self,
        ts_ns: u64,
        seq: u32,
        syn: bool,
        fin: bool,
        payload: &[u8],
        out: &mut Vec<Chunk>,
    ) {
        let data_seq = if syn { seq.wrapping_add(1) } else { seq };
        let origin = *self.origin.get_or_insert(data_seq);
        if !payload.is_empty() {
            self.stats.segments += 1;
        }
        if self.finished {
            if !payload.is_empty() {
                self.stats.retransmits += 1;
            }
            return;
        }
        let off = self.offset(origin, data_seq);
        if !payload.is_empty() {
            self.accept(ts_ns, off, payload, out);
        }
        if fin && self.fin_at.is_none() {
            let end = off + payload.len() as i64;
            if end >= self.next as i64 {
                self.fin_at = Some(end as u64);
            }
        }
        self.check_fin();
    }

    /// The peer acknowledged everything before `ack`: a hole below it was lost by the
    /// capture, not by the network. Anchors a stream not seen yet.
    pub fn peer_ack(&mut self, ts_ns: u64, ack: u32, out: &mut Vec<Chunk>) {
        let Some(origin) = self.origin else {
            self.origin = Some(ack);
            return;
        };
        if self.finished {
            return;
        }
        let mut ack_off = self.offset(origin, ack);
        if let Some(fin) = self.fin_at {
            ack_off = ack_off.min(fin as i64);
        }
        while ack_off > self.next as i64 {
            match self.pending.keys().next() {
                Some(&first) if first as i64 <= ack_off => self.skip_to_pending(ts_ns, out),
                _ => {
                    self.declare_gap(ack_off as u64);
                    break;
                }
            }
        }
        self.check_fin();
    }

    /// The connection ended (RST, or the end of the capture): delivers what is buffered,
    /// declaring the holes before it lost.
    pub fn flush(&mut self, ts_ns: u64, out: &mut Vec<Chunk>) {
        while !self.pending.is_empty() {
            self.skip_to_pending(ts_ns, out);
        }
        if let Some(fin) = self.fin_at {
            if fin > self.next {
                self.declare_gap(fin);
            }
        }
        self.check_fin();
    }

    fn check_fin(&mut self) {
        if !self.finished && self.fin_at == Some(self.next) {
            self.finished = true;
        }
    }

    fn accept(&mut self, ts_ns: u64, off: i64, payload: &[u8], out: &mut Vec<Chunk>) {
        let next = self.next as i64;
        let end = off + payload.len() as i64;
        if end <= next {
            self.stats.retransmits += 1;
            return;
        }
        if off <= next {
            if off < next {
                self.stats.retransmits += 1;
            }
            let mut buf = payload[(next - off) as usize..].to_vec();
            self.next = end as u64;
            self.drain(&mut buf);
            self.emit(ts_ns, buf, out);
            return;
        }
        self.stats.out_of_order += 1;
        let key = off as u64;
        let keep_existing = self
            .pending
            .get(&key)
            .is_some_and(|p| p.data.len() >= payload.len());
        if keep_existing {
            self.stats.retransmits += 1;
            return;
        }
        if let Some(old) = self.pending.insert(
            key,
            Pending {
                data: payload.to_vec(),
            },
        ) {
            self.pending_bytes -= old.data.len();
        }
        self.pending_bytes += payload.len();
        while self.pending_bytes > self.max_pending && !self.pending.is_empty() {
            self.skip_to_pending(ts_ns, out);
        }
    }

    /// Appends the buffered segments that are now contiguous to `buf`.
    fn drain(&mut self, buf: &mut Vec<u8>) {
        while let Some(entry) = self.pending.first_entry() {
            let key = *entry.key();
            if key > self.next {
                break;
            }
            let p = entry.remove();
            self.pending_bytes -= p.data.len();
            let end = key + p.data.len() as u64;
            if end <= self.next {
                self.stats.retransmits += 1;
                continue;
            }
            buf.extend_from_slice(&p.data[(self.next - key) as usize..]);
            self.next = end;
        }
    }

    /// Declares the hole before the first buffered segment lost and delivers from there.
    fn skip_to_pending(&mut self, ts_ns: u64, out: &mut Vec<Chunk>) {
        let Some(&first) = self.pending.keys().next() else {
            return;
        };
        if first > self.next {
            self.declare_gap(first);
        }
        let mut buf = Vec::new();
        self.drain(&mut buf);
        self.emit(ts_ns, buf, out);
    }

    fn declare_gap(&mut self, to: u64) {
        self.stats.gaps += 1;
        self.stats.gap_bytes += to - self.next;
        self.next = to;
        self.gap_pending = true;
    }

    fn emit(&mut self, ts_ns: u64, data: Vec<u8>, out: &mut Vec<Chunk>) {
        if data.is_empty() {
            return;
        }
        self.stats.bytes += data.len() as u64;
        out.push(Chunk {
            ts_ns,
            data,
            gap_before: std::mem::take(&mut self.gap_pending),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISN: u32 = 1000;

    fn started() -> StreamReassembler {
        let mut r = StreamReassembler::new(1 << 20);
        let mut out = Vec::new();
        r.segment(1, ISN, true, false, &[], &mut out);
        assert!(out.is_empty());
        r
    }

    fn feed(r: &mut StreamReassembler, ts: u64, rel: u32, data: &[u8]) -> Vec<Chunk> {
        let mut out = Vec::new();
        r.segment(ts, ISN + 1 + rel, false, false, data, &mut out);
        out
    }

    fn chunk(ts: u64, data: &[u8], gap: bool) -> Chunk {
        Chunk {
            ts_ns: ts,
            data: data.to_vec(),
            gap_before: gap,
        }
    }

    #[test]
    fn in_order_and_retransmit() {
        let mut r = started();
        assert_eq!(
            feed(&mut r, 2, 0, b"hello"),
            vec![chunk(2, b"hello", false)]
        );
        assert_eq!(feed(&mut r, 3, 0, b"hello"), vec![]);
        assert_eq!(
            feed(&mut r, 4, 3, b"lo world"),
            vec![chunk(4, b" world", false)]
        );
        let s = r.stats();
        assert_eq!((s.retransmits, s.bytes, s.segments), (2, 11, 3));
    }

    #[test]
    fn out_of_order_is_buffered_then_delivered_together() {
        let mut r = started();
        assert_eq!(feed(&mut r, 2, 5, b"world"), vec![]);
        assert_eq!(
            feed(&mut r, 3, 0, b"hello"),
            vec![chunk(3, b"helloworld", false)]
        );
        assert_eq!(r.stats().out_of_order, 1);
        assert_eq!(r.stats().gaps, 0);
    }

    #[test]
    fn ack_past_a_hole_declares_a_gap() {
        let mut r = started();
        feed(&mut r, 2, 0, b"aaaa");
        assert_eq!(feed(&mut r, 3, 8, b"cccc"), vec![]);
        let mut out = Vec::new();
        r.peer_ack(4, ISN + 1 + 12, &mut out);
        assert_eq!(out, vec![chunk(4, b"cccc", true)]);
        assert_eq!((r.stats().gaps, r.stats().gap_bytes), (1, 4));
        // The lost bytes turning up later are a retransmit now.
        assert_eq!(feed(&mut r, 5, 4, b"bbbb"), vec![]);
    }

    #[test]
    fn ack_past_the_end_flags_the_next_chunk() {
        let mut r = started();
        let mut out = Vec::new();
        r.peer_ack(2, ISN + 1 + 10, &mut out);
        assert!(out.is_empty());
        assert_eq!(feed(&mut r, 3, 10, b"x"), vec![chunk(3, b"x", true)]);
    }

    #[test]
    fn flush_delivers_after_holes_and_fin_finishes() {
        let mut r = started();
        let mut out = Vec::new();
        r.segment(2, ISN + 1 + 3, false, true, b"def", &mut out);
        assert!(out.is_empty() && !r.is_finished());
        r.flush(9, &mut out);
        assert_eq!(out, vec![chunk(9, b"def", true)]);
        assert!(r.is_finished());
    }

    #[test]
    fn fin_in_order_finishes() {
        let mut r = started();
        let mut out = Vec::new();
        r.segment(2, ISN + 1, false, false, b"ab", &mut out);
        r.segment(3, ISN + 3, false, true, &[], &mut out);
        assert!(r.is_finished());
        r.segment(4, ISN + 3, false, true, &[], &mut out);
        assert_eq!(out, vec![chunk(2, b"ab", false)]);
    }

    #[test]
    fn sequence_wraparound() {
        let mut r = StreamReassembler::new(1 << 20);
        let mut out = Vec::new();
        r.segment(1, u32::MAX - 2, false, false, b"abc", &mut out);
        r.segment(2, 1, false, false, b"ef", &mut out);
        r.segment(3, 0, false, false, b"d", &mut out);
        let all: Vec<u8> = out.iter().flat_map(|c| c.data.clone()).collect();
        assert_eq!(all, b"abcdef");
        assert_eq!(r.stats().gaps, 0);
    }

    #[test]
    fn full_buffer_forces_a_gap() {
        let mut r = StreamReassembler::new(8);
        let mut out = Vec::new();
        r.segment(1, 0, false, false, b"a", &mut out);
        r.segment(2, 5, false, false, b"12345", &mut out);
        assert_eq!(out.len(), 1);
        r.segment(3, 10, false, false, b"6789", &mut out);
        assert_eq!(out[1], chunk(3, b"123456789", true));
        assert_eq!(r.stats().gap_bytes, 4);
    }

    #[test]
    fn overlapping_buffered_segments_are_trimmed() {
        let mut r = started();
        feed(&mut r, 2, 4, b"efgh");
        feed(&mut r, 3, 2, b"cdef");
        let out = feed(&mut r, 4, 0, b"ab");
        assert_eq!(out, vec![chunk(4, b"abcdefgh", false)]);
    }

    /// xorshift64: a small deterministic generator for the property tests.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn any_segmentation_order_and_duplication_gives_the_stream_back() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..300 {
            let len = 1 + rng.below(5000) as usize;
            let stream: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let isn = rng.next() as u32;
            // Random segments (possibly overlapping), each sent at least once.
            let mut segs: Vec<(usize, usize)> = Vec::new();
            let mut pos = 0;
            while pos < len {
                let start = pos.saturating_sub(rng.below(3) as usize * 7);
                let end = (pos + 1 + rng.below(700) as usize).min(len);
                segs.push((start, end));
                pos = end;
            }
            let copies = segs.len();
            for _ in 0..rng.below(4) {
                let i = rng.below(copies as u64) as usize;
                segs.push(segs[i]);
            }
            // Bounded reordering: swap neighbours a few times.
            for _ in 0..segs.len() {
                let i = rng.below(segs.len() as u64) as usize;
                let j = (i + 1 + rng.below(3) as usize).min(segs.len() - 1);
                segs.swap(i, j);
            }
            let mut r = StreamReassembler::new(1 << 20);
            let mut out = Vec::new();
            r.segment(0, isn, true, false, &[], &mut out);
            for (ts, (a, b)) in segs.iter().enumerate() {
                let seq = isn.wrapping_add(1).wrapping_add(*a as u32);
                r.segment(ts as u64 + 1, seq, false, false, &stream[*a..*b], &mut out);
            }
            r.flush(u64::MAX, &mut out);
            let got: Vec<u8> = out.iter().flat_map(|c| c.data.iter().copied()).collect();
            assert_eq!(got.len(), len, "round {round}");
            assert!(got == stream, "round {round}: bytes differ");
            assert!(out.iter().all(|c| !c.gap_before), "round {round}: no gap");
            assert_eq!(r.stats().gaps, 0);
            assert_eq!(r.stats().bytes, len as u64);
            // Chunk times never go backwards.
            assert!(out.windows(2).all(|w| w[0].ts_ns <= w[1].ts_ns));
        }
    }

    #[test]
    fn dropped_segments_become_flagged_gaps_of_the_right_size() {
        let mut rng = Rng(42);
        for round in 0..300 {
            let n = 2 + rng.below(20) as usize;
            let sizes: Vec<usize> = (0..n).map(|_| 1 + rng.below(300) as usize).collect();
            let dropped: Vec<bool> = (0..n).map(|i| i > 0 && rng.below(4) == 0).collect();
            let mut r = StreamReassembler::new(1 << 20);
            let mut out = Vec::new();
            r.segment(0, 7, true, false, &[], &mut out);
            let mut off = 0usize;
            let mut expected = Vec::new();
            let mut expected_gaps = 0;
            let mut gap_open = false;
            for i in 0..n {
                let data: Vec<u8> = (0..sizes[i]).map(|k| (off + k) as u8).collect();
                if dropped[i] {
                    if !gap_open {
                        expected_gaps += 1;
                    }
                    gap_open = true;
                } else {
                    r.segment(i as u64 + 1, 8 + off as u32, false, false, &data, &mut out);
                    expected.push((data, gap_open));
                    gap_open = false;
                }
                off += sizes[i];
            }
            // The receiver acknowledges everything: the holes were lost by the capture.
            r.peer_ack(1000, 8 + off as u32, &mut out);
            let got: Vec<u8> = out.iter().flat_map(|c| c.data.iter().copied()).collect();
            let want: Vec<u8> = expected
                .iter()
                .flat_map(|(d, _)| d.iter().copied())
                .collect();
            assert!(got == want, "round {round}");
            let flagged = out.iter().filter(|c| c.gap_before).count() as u64;
            let trailing = u64::from(gap_open);
            assert_eq!(r.stats().gaps, expected_gaps, "round {round}");
            assert_eq!(flagged + trailing, expected_gaps, "round {round}");
            let missing: usize = (0..n).filter(|i| dropped[*i]).map(|i| sizes[i]).sum();
            assert_eq!(r.stats().gap_bytes, missing as u64, "round {round}");
        }
    }
}
