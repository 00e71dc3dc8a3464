//! An incremental reader of MySQL packets for one direction of a connection.
//!
//! A packet is a 4-byte header (payload length, 3 bytes little-endian; sequence id, 1 byte)
//! and its payload. A payload of exactly 0xFFFFFF bytes continues in the next packet (the
//! sequence id goes on): the reader joins such runs into one logical [`Packet`]. Payloads
//! are never buffered: the reader keeps a short prefix of each (the command byte and SQL
//! text, an OK/ERR/EOF header) and skips the rest by length, so a result set of any size
//! costs a few bytes per row. A gap in the capture puts the direction out of step until the
//! next segment, which is read as the start of a packet; every such case is counted by
//! reason.

use crate::reassemble::Segment;

/// The payload length that means "the payload continues in the next packet" (16 MiB - 1).
pub const MAX_PAYLOAD: u32 = 0xFF_FFFF;

/// One logical packet (continuation packets joined).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Packet {
    /// Sequence id of its first physical packet.
    pub seq: u8,
    /// Sequence id of its last physical packet.
    pub last_seq: u8,
    /// Payload bytes (all physical packets).
    pub len: u64,
    /// The kept prefix of the payload.
    pub head: Vec<u8>,
    /// Wire bytes (headers included).
    pub size: u64,
    /// Time of the segment holding the first header byte.
    pub start_ts: u64,
    /// Time of the segment holding the last byte.
    pub end_ts: u64,
    /// Thread of the first byte's segment.
    pub tid: u32,
    /// Some of its bytes were not captured (snaplen).
    pub truncated: bool,
}

impl Packet {
    /// The first payload byte (the command, or an OK/ERR/EOF marker).
    pub fn first(&self) -> Option<u8> {
        self.head.first().copied()
    }
}

/// The reader of one direction.
#[derive(Debug)]
pub struct Reader {
    /// Payload bytes kept per packet.
    keep: usize,
    header: [u8; 4],
    header_len: usize,
    /// Time and thread of the first header byte of the packet being read.
    header_ts: u64,
    header_tid: u32,
    /// The logical packet being read.
    cur: Option<Packet>,
    /// Payload bytes left of the physical packet being read (`Some` inside a payload).
    left: Option<u64>,
    /// Payload length of the physical packet being read.
    phys_len: u32,
    out: Vec<Packet>,
    errors: Vec<&'static str>,
    /// Out of step: the rest of the current segment is skipped.
    lost: bool,
}

impl Reader {
    /// A reader keeping `keep` payload bytes of each packet.
    pub fn new(keep: usize) -> Self {
        Reader {
            keep,
            header: [0; 4],
            header_len: 0,
            header_ts: 0,
            header_tid: 0,
            cur: None,
            left: None,
            phys_len: 0,
            out: Vec::new(),
            errors: Vec::new(),
            lost: false,
        }
    }

    /// Reads one segment.
    pub fn feed(&mut self, seg: &Segment) {
        match seg {
            Segment::Data { ts_ns, tid, bytes } => {
                if self.lost {
                    // Resynchronise: the segment is read as the start of a packet.
                    self.reset();
                }
                self.data(*ts_ns, *tid, bytes);
            }
            Segment::Missing { ts_ns, len } => match (self.left, &mut self.cur) {
                (Some(left), Some(cur)) if *len <= left => {
                    cur.len += len;
                    cur.size += len;
                    cur.truncated = true;
                    cur.end_ts = *ts_ns;
                    self.left = Some(left - len);
                    if left == *len {
                        self.physical_done();
                    }
                }
                _ => self.lose("mysql_missing_bytes"),
            },
            Segment::Gap { .. } => {
                if self.cur.is_some() || self.header_len > 0 {
                    self.lose("mysql_gap");
                } else {
                    self.lost = true;
                }
            }
        }
    }

    /// Ends the stream: a packet still open is counted.
    pub fn finish(&mut self) {
        if (self.cur.is_some() || self.header_len > 0) && !self.lost {
            self.errors.push("mysql_incomplete");
        }
        self.reset();
    }

    /// The packets read since the last call.
    pub fn take_packets(&mut self) -> Vec<Packet> {
        std::mem::take(&mut self.out)
    }

    /// The error reasons counted since the last call.
    pub fn take_errors(&mut self) -> Vec<&'static str> {
        std::mem::take(&mut self.errors)
    }

    fn reset(&mut self) {
        self.header_len = 0;
        self.cur = None;
        self.left = None;
        self.lost = false;
    }

    fn lose(&mut self, reason: &'static str) {
        self.errors.push(reason);
        self.reset();
        self.lost = true;
    }

    fn data(&mut self, ts: u64, tid: u32, mut b: &[u8]) {
        while !b.is_empty() {
            match self.left {
                None => {
                    if self.header_len == 0 && self.cur.is_none() {
                        self.header_ts = ts;
                        self.header_tid = tid;
                    }
                    let n = (4 - self.header_len).min(b.len());
                    self.header[self.header_len..self.header_len + n].copy_from_slice(&b[..n]);
                    self.header_len += n;
                    b = &b[n..];
                    if self.header_len == 4 {
                        self.header_done(ts);
                    }
                }
                Some(left) => {
                    let n = (b.len() as u64).min(left) as usize;
                    if let Some(cur) = &mut self.cur {
                        let room = self.keep.saturating_sub(cur.head.len());
                        cur.head.extend_from_slice(&b[..n.min(room)]);
                        cur.len += n as u64;
                        cur.size += n as u64;
                        cur.end_ts = ts;
                    }
                    b = &b[n..];
                    self.left = Some(left - n as u64);
                    if left == n as u64 {
                        self.physical_done();
                    }
                }
            }
        }
    }

    fn header_done(&mut self, ts: u64) {
        let h = self.header;
        let len = u32::from_le_bytes([h[0], h[1], h[2], 0]);
        let seq = h[3];
        self.header_len = 0;
        match &mut self.cur {
            Some(cur) => {
                // A continuation packet: the sequence goes on.
                if seq != cur.last_seq.wrapping_add(1) {
                    self.errors.push("mysql_sequence");
                }
                cur.last_seq = seq;
                cur.size += 4;
                cur.end_ts = ts;
            }
            None => {
                self.cur = Some(Packet {
                    seq,
                    last_seq: seq,
                    size: 4,
                    start_ts: self.header_ts,
                    end_ts: ts,
                    tid: self.header_tid,
                    ..Packet::default()
                });
            }
        }
        self.phys_len = len;
        self.left = Some(u64::from(len));
        if len == 0 {
            self.physical_done();
        }
    }

    fn physical_done(&mut self) {
        self.left = None;
        if self.phys_len == MAX_PAYLOAD {
            // The payload continues in the next packet.
            return;
        }
        if let Some(p) = self.cur.take() {
            self.out.push(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(ts: u64, b: &[u8]) -> Segment {
        Segment::Data {
            ts_ns: ts,
            tid: 7,
            bytes: b.to_vec(),
        }
    }

    fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
        let n = payload.len() as u32;
        let mut v = n.to_le_bytes()[..3].to_vec();
        v.push(seq);
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn packets_split_anywhere_are_read_whole() {
        let mut wire = packet(0, b"\x03SELECT 1");
        wire.extend(packet(1, b"\x01"));
        for cut in 0..wire.len() {
            let mut r = Reader::new(64);
            r.feed(&data(1, &wire[..cut]));
            r.feed(&data(2, &wire[cut..]));
            let p = r.take_packets();
            assert_eq!(p.len(), 2, "cut {cut}");
            assert_eq!(p[0].head, b"\x03SELECT 1");
            assert_eq!((p[0].seq, p[1].seq), (0, 1));
            assert_eq!(p[0].size, 13);
            assert!(r.take_errors().is_empty());
        }
    }

    #[test]
    fn continuation_packets_join_and_payloads_are_not_buffered() {
        let mut r = Reader::new(8);
        let big = vec![b'x'; MAX_PAYLOAD as usize];
        r.feed(&data(1, &packet(0, &big)));
        assert!(r.take_packets().is_empty(), "continues");
        r.feed(&data(2, &packet(1, b"tail")));
        let p = r.take_packets();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].len, u64::from(MAX_PAYLOAD) + 4);
        assert_eq!(p[0].head.len(), 8);
        assert_eq!((p[0].seq, p[0].last_seq), (0, 1));
        assert_eq!((p[0].start_ts, p[0].end_ts), (1, 2));
        // A continuation out of sequence is counted.
        r.feed(&data(3, &packet(0, &big)));
        r.feed(&data(4, &packet(5, b"")));
        assert_eq!(r.take_packets().len(), 1);
        assert_eq!(r.take_errors(), vec!["mysql_sequence"]);
    }

    #[test]
    fn missing_bytes_inside_a_payload_are_skipped_else_counted() {
        let mut r = Reader::new(64);
        let wire = packet(1, &[b'r'; 100]);
        r.feed(&data(1, &wire[..20]));
        r.feed(&Segment::Missing { ts_ns: 2, len: 84 });
        let p = r.take_packets();
        assert_eq!(p.len(), 1);
        assert!(p[0].truncated);
        assert_eq!(p[0].len, 100);
        r.feed(&Segment::Missing { ts_ns: 3, len: 10 });
        assert_eq!(r.take_errors(), vec!["mysql_missing_bytes"]);
        // The next segment starts a packet again.
        r.feed(&data(4, &packet(0, b"\x0e")));
        assert_eq!(r.take_packets().len(), 1);
        r.feed(&data(5, &[1, 0]));
        r.finish();
        assert_eq!(r.take_errors(), vec!["mysql_incomplete"]);
    }
}
