//! An incremental RESP2/RESP3 reader for one direction of a connection.
//!
//! It turns segments into top-level [`Frame`]s (a command, a reply, a push) without
//! buffering payloads: bulk strings are skipped by their declared length and only a short
//! prefix of each top-level element is kept (command names, keys, error texts). Aggregates
//! (arrays, maps, sets, pushes, attributes) are tracked by a stack of element counts whose
//! depth is bounded. What does not parse puts the direction out of step until the next
//! segment, which is read as the start of a new message; every such case is counted by
//! reason.

use super::Limits;
use crate::reassemble::Segment;

/// Largest declared bulk length accepted (Redis' `proto-max-bulk-len` default, 512 MiB).
const MAX_BULK: u64 = 512 * 1024 * 1024;
/// Largest declared aggregate length accepted.
const MAX_AGGREGATE: u64 = 1 << 32;

/// One top-level RESP value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frame {
    /// Type byte of the value (`*`, `+`, `-`, `$`, `>`...); `b' '` for an inline command.
    pub kind: u8,
    /// The top-level elements of a command (an array, or an inline command): a kept prefix
    /// of each string element, at most [`Limits::max_args`] of them (none for replies).
    pub items: Vec<Vec<u8>>,
    /// Number of top-level elements (kept or not).
    pub item_count: u64,
    /// The error text when the value is an error (`-` or `!`), a kept prefix.
    pub error: Option<String>,
    /// Errors nested inside an aggregate (e.g. in an `EXEC` reply).
    pub nested_errors: u32,
    /// The first nested error's text.
    pub first_nested_error: Option<String>,
    /// Bytes of the value.
    pub size: u64,
    /// Time of the segment holding the first byte.
    pub start_ts: u64,
    /// Time of the segment holding the last byte.
    pub end_ts: u64,
    /// Thread of the first byte's segment.
    pub tid: u32,
    /// Some of its bytes were not captured (snaplen).
    pub truncated: bool,
}

/// The bulk payload being skipped or kept.
#[derive(Debug, Default)]
struct Bulk {
    /// Payload bytes left, including the closing CRLF.
    left: u64,
    /// Payload length without the CRLF.
    len: u64,
    /// Depth of the element (1: a top-level array's element).
    depth: usize,
    /// Bulk error (`!`).
    error: bool,
    /// Kept prefix.
    keep: Vec<u8>,
}

/// The reader of one direction.
#[derive(Debug)]
pub struct Reader {
    limits: Limits,
    /// The direction carries commands: inline commands allowed, top-level elements kept
    /// (replies keep only their error texts).
    commands: bool,
    line: Vec<u8>,
    bulk: Option<Bulk>,
    /// Elements left per open aggregate.
    stack: Vec<u64>,
    cur: Option<Frame>,
    out: Vec<Frame>,
    errors: Vec<&'static str>,
    /// Out of step: the rest of the current segment is skipped.
    lost: bool,
}

impl Reader {
    /// A reader; `commands` for the direction that carries commands.
    pub fn new(limits: Limits, commands: bool) -> Self {
        Reader {
            limits,
            commands,
            line: Vec::new(),
            bulk: None,
            stack: Vec::new(),
            cur: None,
            out: Vec::new(),
            errors: Vec::new(),
            lost: false,
        }
    }

    /// Whether a message is partly read.
    pub fn in_message(&self) -> bool {
        self.cur.is_some()
    }

    /// Reads one segment.
    pub fn feed(&mut self, seg: &Segment) {
        match seg {
            Segment::Data { ts_ns, tid, bytes } => {
                if self.lost {
                    // Resynchronise: the segment is read as the start of a message.
                    self.reset();
                }
                self.data(*ts_ns, *tid, bytes);
            }
            Segment::Missing { ts_ns, len } => {
                let inside_bulk = self.bulk.as_ref().is_some_and(|b| *len + 2 <= b.left);
                match (&mut self.bulk, &mut self.cur) {
                    (Some(b), Some(cur)) if inside_bulk => {
                        b.left -= len;
                        cur.size += len;
                        cur.truncated = true;
                        cur.end_ts = *ts_ns;
                    }
                    _ => self.lose("redis_missing_bytes"),
                }
            }
            Segment::Gap { .. } => {
                if self.cur.is_some() || !self.line.is_empty() {
                    self.lose("redis_gap");
                } else {
                    self.lost = true;
                }
            }
        }
    }

    /// Ends the stream: a message still open is counted.
    pub fn finish(&mut self) {
        if self.cur.is_some() && !self.lost {
            self.errors.push("redis_incomplete");
        }
        self.reset();
    }

    /// The frames read since the last call.
    pub fn take_frames(&mut self) -> Vec<Frame> {
        std::mem::take(&mut self.out)
    }

    /// The error reasons counted since the last call.
    pub fn take_errors(&mut self) -> Vec<&'static str> {
        std::mem::take(&mut self.errors)
    }

    fn reset(&mut self) {
        self.line.clear();
        self.bulk = None;
        self.stack.clear();
        self.cur = None;
        self.lost = false;
    }

    fn lose(&mut self, reason: &'static str) {
        self.errors.push(reason);
        self.line.clear();
        self.bulk = None;
        self.stack.clear();
        self.cur = None;
        self.lost = true;
    }

    fn data(&mut self, ts: u64, tid: u32, mut b: &[u8]) {
        while !b.is_empty() && !self.lost {
            if self.cur.is_none() {
                self.cur = Some(Frame {
                    start_ts: ts,
                    end_ts: ts,
                    tid,
                    ..Frame::default()
                });
            }
            if let Some(cur) = &mut self.cur {
                cur.end_ts = ts;
            }
            if let Some(bulk) = &mut self.bulk {
                let n = (b.len() as u64).min(bulk.left) as usize;
                let payload_done = bulk.len + 2 - bulk.left;
                let want = (bulk.len.saturating_sub(payload_done) as usize).min(n);
                let room = self.limits.max_keep.saturating_sub(bulk.keep.len());
                bulk.keep.extend_from_slice(&b[..want.min(room)]);
                bulk.left -= n as u64;
                if let Some(cur) = &mut self.cur {
                    cur.size += n as u64;
                }
                b = &b[n..];
                if bulk.left == 0 {
                    if let Some(done) = self.bulk.take() {
                        self.bulk_done(done);
                    }
                }
                continue;
            }
            let (chunk, complete) = match b.iter().position(|c| *c == b'\n') {
                Some(i) => (&b[..=i], true),
                None => (b, false),
            };
            if self.line.len() + chunk.len() > self.limits.max_line {
                self.lose("redis_line_too_long");
                return;
            }
            self.line.extend_from_slice(chunk);
            if let Some(cur) = &mut self.cur {
                cur.size += chunk.len() as u64;
            }
            b = &b[chunk.len()..];
            if complete {
                let line = std::mem::take(&mut self.line);
                self.header(&line);
            }
        }
    }

    /// A complete header line (`\n` included).
    fn header(&mut self, raw: &[u8]) {
        let line = raw.strip_suffix(b"\n").unwrap_or(raw);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some((&t, rest)) = line.split_first() else {
            // An empty line between inline commands is allowed.
            if self.stack.is_empty() && self.commands {
                self.cur = None;
                return;
            }
            return self.lose("redis_malformed");
        };
        let depth = self.stack.len();
        match t {
            b'*' | b'%' | b'~' | b'>' | b'|' => {
                let Some(n) = number(rest) else {
                    return self.lose("redis_malformed");
                };
                if depth == 0 {
                    self.set_kind(t);
                    if let Some(cur) = &mut self.cur {
                        cur.item_count = n.max(0) as u64;
                    }
                }
                let n = if matches!(t, b'%' | b'|') {
                    n.saturating_mul(2)
                } else {
                    n
                };
                if n <= 0 {
                    return self.element_done();
                }
                if n as u64 > MAX_AGGREGATE {
                    return self.lose("redis_malformed");
                }
                if depth >= self.limits.max_depth {
                    return self.lose("redis_too_deep");
                }
                self.stack.push(n as u64);
            }
            b'$' | b'!' | b'=' => {
                let Some(n) = number(rest) else {
                    return self.lose("redis_malformed");
                };
                if depth == 0 {
                    self.set_kind(t);
                }
                if n < 0 {
                    return self.element_done();
                }
                if n as u64 > MAX_BULK {
                    return self.lose("redis_bulk_too_long");
                }
                self.bulk = Some(Bulk {
                    left: n as u64 + 2,
                    len: n as u64,
                    depth,
                    error: t == b'!',
                    keep: Vec::new(),
                });
            }
            b'+' | b'-' | b':' | b'_' | b'#' | b',' | b'(' => {
                if depth == 0 {
                    self.set_kind(t);
                }
                let keep = &rest[..rest.len().min(self.limits.max_keep)];
                if t == b'-' {
                    self.note_error(depth, keep);
                } else if depth == 1 {
                    self.keep_item(keep.to_vec());
                }
                self.element_done();
            }
            _ if depth == 0 && self.commands => {
                // An inline command: words separated by spaces.
                self.set_kind(b' ');
                let words: Vec<&[u8]> = line
                    .split(|c| *c == b' ')
                    .filter(|w| !w.is_empty())
                    .collect();
                if let Some(cur) = &mut self.cur {
                    cur.item_count = words.len() as u64;
                }
                for w in words {
                    let keep = w[..w.len().min(self.limits.max_keep)].to_vec();
                    self.keep_item(keep);
                }
                self.element_done();
            }
            _ => self.lose("redis_malformed"),
        }
    }

    fn set_kind(&mut self, t: u8) {
        if let Some(cur) = &mut self.cur {
            cur.kind = t;
        }
    }

    fn keep_item(&mut self, item: Vec<u8>) {
        if !self.commands {
            return;
        }
        let max = self.limits.max_args;
        if let Some(cur) = &mut self.cur {
            if cur.items.len() < max {
                cur.items.push(item);
            }
        }
    }

    fn note_error(&mut self, depth: usize, text: &[u8]) {
        let text = String::from_utf8_lossy(text).into_owned();
        if let Some(cur) = &mut self.cur {
            if depth == 0 {
                cur.error = Some(text);
            } else {
                cur.nested_errors += 1;
                cur.first_nested_error.get_or_insert(text);
            }
        }
    }

    fn bulk_done(&mut self, b: Bulk) {
        if b.error {
            self.note_error(b.depth, &b.keep);
        } else if b.depth == 1 {
            self.keep_item(b.keep);
        }
        self.element_done();
    }

    /// An element ended: closes the aggregates it completes, and the frame at the top.
    fn element_done(&mut self) {
        loop {
            match self.stack.last_mut() {
                None => {
                    if let Some(f) = self.cur.take() {
                        // An attribute is metadata about the reply that follows.
                        if f.kind != b'|' {
                            self.out.push(f);
                        }
                    }
                    return;
                }
                Some(n) => {
                    *n -= 1;
                    if *n > 0 {
                        return;
                    }
                    self.stack.pop();
                }
            }
        }
    }
}

/// A RESP length or count (`-1` for null).
fn number(b: &[u8]) -> Option<i64> {
    if b.is_empty() || b.len() > 20 {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}
