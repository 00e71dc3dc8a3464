//! The incremental HTTP/1 message parser of one stream direction.

use std::collections::VecDeque;
use std::mem::MaybeUninit;

use super::{Head, Kind, Limits, Message};
use crate::protocol::Headers;
use crate::reassemble::Segment;

/// What the response parser must know about the request a response answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestHint {
    /// The request was HEAD: the response has no body whatever its headers say.
    pub head: bool,
    /// The request was CONNECT: a 2xx response turns the connection into a tunnel.
    pub connect: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    Length(u64),
    Chunked(Chunk),
    UntilClose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Body(Body),
    /// Looking for the next message start; `allow_at_start` accepts one at buffer offset 0.
    Resync {
        allow_at_start: bool,
    },
    /// No more parsing on this stream (upgrade, tunnel, or given up).
    Stopped,
}

/// Header slots parsed on the stack (more, up to [`Limits::max_headers`], on the heap).
const STACK_HEADERS: usize = 128;

/// Which header fields a [`MessageParser`] keeps on its [`Message`]s (framing is read
/// from all of them either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeepHeaders {
    /// Every field (the default).
    #[default]
    All,
    /// Only fields with these names (lowercase; compared case-insensitively).
    Only(&'static [&'static str]),
}

impl KeepHeaders {
    fn keeps(self, name: &str) -> bool {
        match self {
            KeepHeaders::All => true,
            KeepHeaders::Only(names) => crate::protocol::http::is_one_of(name, names),
        }
    }

    /// The most fields kept of `fields` (a bound: one per name unless a name repeats).
    fn most(self, fields: usize) -> usize {
        match self {
            KeepHeaders::All => fields,
            KeepHeaders::Only(names) => fields.min(names.len()),
        }
    }
}

/// Name lengths [`KeptNames`] indexes (0 to 32 bytes).
const INDEXED_LENGTHS: usize = 33;

/// [`KeepHeaders`] with its names indexed by length, built once per parser: a field name
/// is compared only with the kept names of its length (instead of every kept name
/// scanned twice per field, as [`crate::protocol::http::is_one_of`] does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct KeptNames {
    keep: KeepHeaders,
    /// Per name length, a bit per kept name of that length (index into the names);
    /// `None` when the names cannot be indexed (more than 32, or one longer than 32
    /// bytes): then [`KeepHeaders::keeps`] answers.
    by_len: Option<[u32; INDEXED_LENGTHS]>,
}

impl KeptNames {
    fn new(keep: KeepHeaders) -> Self {
        let by_len = match keep {
            KeepHeaders::Only(names) if names.len() <= u32::BITS as usize => {
                let mut by_len = [0u32; INDEXED_LENGTHS];
                let mut indexed = true;
                for (i, name) in names.iter().enumerate() {
                    match by_len.get_mut(name.len()) {
                        Some(bits) => *bits |= 1 << i,
                        None => indexed = false,
                    }
                }
                indexed.then_some(by_len)
            }
            _ => None,
        };
        KeptNames { keep, by_len }
    }

    /// Whether a field named `name` is kept: [`KeepHeaders::keeps`].
    fn keeps(&self, name: &str) -> bool {
        let (KeepHeaders::Only(names), Some(by_len)) = (self.keep, &self.by_len) else {
            return self.keep.keeps(name);
        };
        // No kept name is longer than the indexed lengths.
        let Some(&candidates) = by_len.get(name.len()) else {
            return false;
        };
        if candidates == 0 {
            return false;
        }
        let mut buf = [0u8; INDEXED_LENGTHS];
        let lower = &mut buf[..name.len()];
        for (l, b) in lower.iter_mut().zip(name.as_bytes()) {
            *l = b.to_ascii_lowercase();
        }
        let lower: &[u8] = lower;
        let mut left = candidates;
        while left != 0 {
            let i = left.trailing_zeros() as usize;
            if names[i].as_bytes() == lower {
                return true;
            }
            left &= left - 1;
        }
        false
    }

    /// [`KeepHeaders::most`].
    fn most(&self, fields: usize) -> usize {
        self.keep.most(fields)
    }
}

/// Longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 8 * 1024;
/// Request methods recognised when resynchronising a request stream.
const METHODS: [&[u8]; 9] = [
    b"GET ",
    b"POST ",
    b"PUT ",
    b"DELETE ",
    b"HEAD ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
    b"TRACE ",
];

/// Incremental parser of one stream direction. Feed [`Segment`]s in order; take finished
/// [`Message`]s and error reasons out.
#[derive(Debug)]
pub struct MessageParser {
    kind: Kind,
    limits: Limits,
    buf: Vec<u8>,
    /// Absolute stream offset of `buf[0]`.
    base: u64,
    /// (absolute offset where a segment starts, its time, its thread), ascending.
    marks: VecDeque<(u64, u64, u32)>,
    state: State,
    current: Option<Message>,
    out: Vec<Message>,
    errors: Vec<&'static str>,
    parsed_any: bool,
    garbage: u64,
    hints: VecDeque<RequestHint>,
    trailer_bytes: usize,
    last_ts: u64,
    /// Stop parsing once the current body ends (the request asked for an upgrade/tunnel).
    stop_after_body: bool,
    /// Header fields kept on messages.
    keep: KeptNames,
}

impl MessageParser {
    /// A parser for a stream of `kind` messages.
    pub fn new(kind: Kind, limits: Limits) -> Self {
        MessageParser {
            kind,
            limits,
            buf: Vec::new(),
            base: 0,
            marks: VecDeque::new(),
            state: State::Head,
            current: None,
            out: Vec::new(),
            errors: Vec::new(),
            parsed_any: false,
            garbage: 0,
            hints: VecDeque::new(),
            trailer_bytes: 0,
            last_ts: 0,
            stop_after_body: false,
            keep: KeptNames::new(KeepHeaders::All),
        }
    }

    /// Keeps only some header fields on the messages (fewer allocations when the caller
    /// needs only a few).
    pub fn keep_headers(&mut self, keep: KeepHeaders) {
        if let KeepHeaders::Only(names) = keep {
            debug_assert!(
                names.iter().all(|n| *n == n.to_ascii_lowercase()),
                "KeepHeaders::Only takes lowercase names"
            );
        }
        self.keep = KeptNames::new(keep);
    }

    /// Tells a response parser about the next request on the connection (FIFO).
    pub fn push_hint(&mut self, hint: RequestHint) {
        self.hints.push_back(hint);
    }

    /// True once the stream stopped being parsed (upgrade, tunnel, gave up).
    pub fn is_stopped(&self) -> bool {
        self.state == State::Stopped
    }

    /// Finished messages since the last call.
    pub fn take_messages(&mut self) -> Vec<Message> {
        // The next call's list starts at this one's size (a busy connection's list
        // otherwise grows from empty, copying its messages, on every feed).
        let next = Vec::with_capacity(self.out.len());
        std::mem::replace(&mut self.out, next)
    }

    /// Error reasons counted since the last call.
    pub fn take_errors(&mut self) -> Vec<&'static str> {
        std::mem::take(&mut self.errors)
    }

    /// Feeds the next segment of the stream.
    pub fn feed(&mut self, seg: &Segment) {
        self.last_ts = self.last_ts.max(seg.ts_ns());
        match seg {
            Segment::Data { ts_ns, tid, bytes } => {
                if self.state == State::Stopped || bytes.is_empty() {
                    return;
                }
                let end = self.base + self.buf.len() as u64;
                if self.marks.back().map(|m| (m.1, m.2)) != Some((*ts_ns, *tid)) {
                    self.marks.push_back((end, *ts_ns, *tid));
                }
                self.buf.extend_from_slice(bytes);
                self.run();
            }
            Segment::Missing { ts_ns, len } => self.missing(*ts_ns, *len),
            Segment::Gap { ts_ns } => self.gap(*ts_ns),
        }
    }

    /// The stream ended (connection closed, or the analysis is finishing): a
    /// close-delimited body completes; anything else half-done is counted.
    pub fn finish(&mut self) {
        match self.state {
            State::Body(Body::UntilClose) => self.complete(),
            State::Body(_) => {
                self.errors.push("incomplete_message");
                if let Some(m) = self.current.as_mut() {
                    m.truncated = true;
                }
                self.complete();
            }
            State::Head if !self.buf.is_empty() => self.errors.push("incomplete_head"),
            _ => {}
        }
        self.buf.clear();
        self.state = State::Stopped;
    }

    fn ts_at(&self, abs: u64) -> u64 {
        self.mark_at(abs).map(|m| m.1).unwrap_or(self.last_ts)
    }

    /// The time and thread of the segment holding the byte at `abs` (thread 0: not
    /// known).
    fn ts_tid_at(&self, abs: u64) -> (u64, u32) {
        self.mark_at(abs)
            .map(|m| (m.1, m.2))
            .unwrap_or((self.last_ts, 0))
    }

    /// The mark of the segment holding the byte at `abs` (the first one before any).
    fn mark_at(&self, abs: u64) -> Option<(u64, u64, u32)> {
        // Nearly every lookup is of the last segment (a message's last byte) or of the
        // first (a message's first byte, the segments before it consumed): answered
        // without the binary search, as it would answer them.
        let last = *self.marks.back()?;
        if last.0 <= abs {
            return Some(last);
        }
        if self.marks.get(1).is_none_or(|second| second.0 > abs) {
            return self.marks.front().copied();
        }
        let i = self.marks.partition_point(|(off, _, _)| *off <= abs);
        if i == 0 {
            self.marks.front().copied()
        } else {
            Some(self.marks[i - 1])
        }
    }

    /// Drops `n` bytes from the front of the buffer; returns the time of the last one.
    fn consume(&mut self, n: usize) -> u64 {
        debug_assert!(n > 0 && n <= self.buf.len());
        let last = self.ts_at(self.base + n as u64 - 1);
        self.buf.drain(..n);
        self.base += n as u64;
        while self.marks.len() > 1 && self.marks[1].0 <= self.base {
            self.marks.pop_front();
        }
        last
    }

    fn discard_all(&mut self) {
        if !self.buf.is_empty() {
            let n = self.buf.len();
            self.consume(n);
        }
    }

    fn resync(&mut self, allow_at_start: bool) {
        self.current = None;
        self.state = State::Resync { allow_at_start };
    }

    fn error_resync(&mut self, reason: &'static str) {
        self.errors.push(reason);
        if !self.buf.is_empty() {
            self.garbage += 1;
            self.consume(1);
        }
        self.resync(false);
    }

    fn run(&mut self) {
        loop {
            let progressed = match self.state {
                State::Head => self.step_head(),
                State::Body(body) => self.step_body(body),
                State::Resync { allow_at_start } => self.step_resync(allow_at_start),
                State::Stopped => {
                    self.discard_all();
                    false
                }
            };
            if !progressed {
                break;
            }
        }
    }

    fn step_resync(&mut self, allow_at_start: bool) -> bool {
        if let Some(p) = self.find_start(allow_at_start) {
            if p > 0 {
                self.garbage += p as u64;
                self.consume(p);
                self.errors.push("skipped_garbage");
            }
            self.garbage = 0;
            self.state = State::Head;
            return true;
        }
        // Keep a tail that may be the beginning of a start line split across segments.
        let keep = 16.min(self.buf.len());
        let drop = self.buf.len() - keep;
        if drop > 0 {
            self.garbage += drop as u64;
            self.consume(drop);
            self.state = State::Resync {
                allow_at_start: false,
            };
        }
        let budget = if self.parsed_any {
            self.limits.max_garbage_bytes
        } else {
            self.limits.max_garbage_bytes.min(64 * 1024)
        };
        if self.garbage > budget {
            self.errors.push(if self.parsed_any {
                "gave_up"
            } else {
                "not_http"
            });
            self.state = State::Stopped;
            self.discard_all();
        }
        false
    }

    fn looks_like_start(&self, at: &[u8]) -> bool {
        match self.kind {
            Kind::Request => METHODS.iter().any(|m| at.starts_with(m)),
            Kind::Response => at.starts_with(b"HTTP/1."),
        }
    }

    fn find_start(&self, allow_at_start: bool) -> Option<usize> {
        if allow_at_start && self.looks_like_start(&self.buf) {
            return Some(0);
        }
        (1..self.buf.len())
            .find(|&i| self.buf[i - 1] == b'\n' && self.looks_like_start(&self.buf[i..]))
    }

    fn step_head(&mut self) -> bool {
        // Stray CRLFs between messages are allowed (RFC 9112 §2.2).
        let skip = self
            .buf
            .iter()
            .take_while(|b| **b == b'\r' || **b == b'\n')
            .count();
        if skip > 0 {
            self.consume(skip);
        }
        if self.buf.is_empty() {
            return false;
        }
        // Up to STACK_HEADERS header slots live on the stack (no allocation per head),
        // uninitialized: httparse fills those it parses (writing empty headers into all of
        // them cost more than the parse of a short head).
        let mut on_stack = [MaybeUninit::<httparse::Header<'_>>::uninit(); STACK_HEADERS];
        let mut on_heap = Vec::new();
        let headers: &mut [MaybeUninit<httparse::Header<'_>>] =
            if self.limits.max_headers <= STACK_HEADERS {
                &mut on_stack[..self.limits.max_headers]
            } else {
                on_heap.resize(self.limits.max_headers, MaybeUninit::uninit());
                &mut on_heap
            };
        let keep = &self.keep;
        let parsed = match self.kind {
            Kind::Request => {
                let mut req = httparse::Request::new(&mut []);
                match req.parse_with_uninit_headers(&self.buf, headers) {
                    Ok(httparse::Status::Complete(n)) => Ok(Some((
                        n,
                        Head::Request {
                            method: req.method.unwrap_or_default().to_string(),
                            target: req.path.unwrap_or_default().to_string(),
                            version: req.version.unwrap_or(1),
                        },
                        collect_headers(req.headers, keep, &self.buf[..n]),
                        Framing::of(req.headers),
                    ))),
                    Ok(httparse::Status::Partial) => Ok(None),
                    Err(e) => Err(e),
                }
            }
            Kind::Response => {
                let mut resp = httparse::Response::new(&mut []);
                // The default configuration, as `Response::parse` uses.
                match httparse::ParserConfig::default()
                    .parse_response_with_uninit_headers(&mut resp, &self.buf, headers)
                {
                    Ok(httparse::Status::Complete(n)) => Ok(Some((
                        n,
                        Head::Response {
                            status: resp.code.unwrap_or(0),
                            version: resp.version.unwrap_or(1),
                        },
                        collect_headers(resp.headers, keep, &self.buf[..n]),
                        Framing::of(resp.headers),
                    ))),
                    Ok(httparse::Status::Partial) => Ok(None),
                    Err(e) => Err(e),
                }
            }
        };
        match parsed {
            Ok(Some((n, head, headers, framing))) => {
                let (start_ts, tid) = self.ts_tid_at(self.base);
                let end_ts = self.consume(n);
                self.parsed_any = true;
                self.current = Some(Message {
                    head,
                    headers,
                    body_size: 0,
                    start_ts,
                    end_ts,
                    tid,
                    truncated: false,
                });
                self.after_head(framing);
                true
            }
            Ok(None) => {
                if self.buf.len() > self.limits.max_head_bytes {
                    self.error_resync("head_too_large");
                    return true;
                }
                false
            }
            Err(e) => {
                self.error_resync(match e {
                    httparse::Error::TooManyHeaders => "too_many_headers",
                    httparse::Error::HeaderName => "invalid_header_name",
                    httparse::Error::HeaderValue => "invalid_header_value",
                    httparse::Error::NewLine => "invalid_newline",
                    httparse::Error::Status => "invalid_status",
                    httparse::Error::Token => "invalid_token",
                    httparse::Error::Version => "invalid_version",
                });
                true
            }
        }
    }

    /// Decides how the body of the message whose head was just parsed is framed.
    fn after_head(&mut self, framing: Framing) {
        let Some(msg) = self.current.as_ref() else {
            return;
        };
        let Framing {
            chunked,
            length,
            upgrade,
        } = framing;
        match &msg.head {
            Head::Response { status, .. } => {
                let status = *status;
                if (100..200).contains(&status) && status != 101 {
                    // 100 Continue, 103 Early Hints...: not the final response.
                    self.current = None;
                    self.state = State::Head;
                    return;
                }
                let hint = self.hints.pop_front().unwrap_or_default();
                if status == 101 || (hint.connect && (200..300).contains(&status)) {
                    self.complete();
                    self.state = State::Stopped;
                    self.discard_all();
                    return;
                }
                if hint.head || status == 204 || status == 304 {
                    self.complete();
                    return;
                }
                match (chunked, length) {
                    (Some(true), _) => self.state = State::Body(Body::Chunked(Chunk::Size)),
                    (Some(false), _) => self.state = State::Body(Body::UntilClose),
                    (None, Ok(Some(n))) => self.start_length(n),
                    (None, Ok(None)) => self.state = State::Body(Body::UntilClose),
                    (None, Err(())) => {
                        self.complete_truncated();
                        self.error_resync("bad_content_length");
                    }
                }
            }
            Head::Request { method, .. } => {
                let tunnel = method.eq_ignore_ascii_case("CONNECT") || upgrade;
                match (chunked, length) {
                    (Some(true), _) => self.state = State::Body(Body::Chunked(Chunk::Size)),
                    (Some(false), _) => {
                        self.complete_truncated();
                        self.error_resync("bad_transfer_encoding");
                        return;
                    }
                    (None, Ok(Some(n))) => self.start_length(n),
                    (None, Ok(None)) => self.complete(),
                    (None, Err(())) => {
                        self.complete_truncated();
                        self.error_resync("bad_content_length");
                        return;
                    }
                }
                if tunnel {
                    // After an upgrade or CONNECT request, the bytes that follow its body
                    // belong to another protocol.
                    if self.state == State::Head {
                        self.state = State::Stopped;
                        self.discard_all();
                    } else {
                        self.stop_after_body = true;
                    }
                }
            }
        }
    }

    fn start_length(&mut self, n: u64) {
        if n == 0 {
            self.complete();
        } else {
            self.state = State::Body(Body::Length(n));
        }
    }

    fn complete_truncated(&mut self) {
        if let Some(m) = self.current.as_mut() {
            m.truncated = true;
        }
        self.complete();
    }

    /// The current message is done: hand it out and look for the next head.
    fn complete(&mut self) {
        if let Some(m) = self.current.take() {
            self.out.push(m);
        }
        self.trailer_bytes = 0;
        if self.stop_after_body {
            self.state = State::Stopped;
            self.discard_all();
        } else {
            self.state = State::Head;
        }
    }

    fn add_body(&mut self, n: u64, end_ts: u64) {
        if let Some(m) = self.current.as_mut() {
            m.body_size += n;
            m.end_ts = m.end_ts.max(end_ts);
        }
    }

    fn step_body(&mut self, body: Body) -> bool {
        match body {
            Body::Length(rem) => {
                if self.buf.is_empty() {
                    return false;
                }
                let take = rem.min(self.buf.len() as u64);
                let ts = self.consume(take as usize);
                self.add_body(take, ts);
                if rem == take {
                    self.complete();
                } else {
                    self.state = State::Body(Body::Length(rem - take));
                }
                true
            }
            Body::UntilClose => {
                if self.buf.is_empty() {
                    return false;
                }
                let n = self.buf.len();
                let ts = self.consume(n);
                self.add_body(n as u64, ts);
                false
            }
            Body::Chunked(chunk) => self.step_chunk(chunk),
        }
    }

    fn find_line(&self) -> Option<usize> {
        self.buf.windows(2).position(|w| w == b"\r\n")
    }

    fn step_chunk(&mut self, chunk: Chunk) -> bool {
        match chunk {
            Chunk::Size => {
                let Some(eol) = self.find_line() else {
                    if self.buf.len() > MAX_LINE {
                        self.complete_truncated();
                        self.error_resync("bad_chunk");
                        return true;
                    }
                    return false;
                };
                let line = String::from_utf8_lossy(&self.buf[..eol]);
                let size = line.split(';').next().unwrap_or("").trim();
                let Ok(size) = u64::from_str_radix(size, 16) else {
                    self.complete_truncated();
                    self.error_resync("bad_chunk");
                    return true;
                };
                let ts = self.consume(eol + 2);
                self.add_body(0, ts);
                self.state = State::Body(Body::Chunked(if size == 0 {
                    Chunk::Trailer
                } else {
                    Chunk::Data(size)
                }));
                true
            }
            Chunk::Data(rem) => {
                if self.buf.is_empty() {
                    return false;
                }
                let take = rem.min(self.buf.len() as u64);
                let ts = self.consume(take as usize);
                self.add_body(take, ts);
                self.state = State::Body(Body::Chunked(if rem == take {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(rem - take)
                }));
                true
            }
            Chunk::DataEnd => {
                if self.buf.len() < 2 {
                    return false;
                }
                if &self.buf[..2] != b"\r\n" {
                    self.complete_truncated();
                    self.error_resync("bad_chunk");
                    return true;
                }
                let ts = self.consume(2);
                self.add_body(0, ts);
                self.state = State::Body(Body::Chunked(Chunk::Size));
                true
            }
            Chunk::Trailer => {
                let Some(eol) = self.find_line() else {
                    if self.buf.len() > MAX_LINE {
                        self.complete_truncated();
                        self.error_resync("bad_chunk");
                        return true;
                    }
                    return false;
                };
                let ts = self.consume(eol + 2);
                self.add_body(0, ts);
                if eol == 0 {
                    self.complete();
                } else {
                    self.trailer_bytes += eol + 2;
                    if self.trailer_bytes > self.limits.max_head_bytes {
                        self.complete_truncated();
                        self.error_resync("head_too_large");
                    }
                }
                true
            }
        }
    }

    /// `len` bytes at `ts` were not captured.
    fn missing(&mut self, ts: u64, len: u64) {
        if self.state == State::Stopped {
            return;
        }
        let (rem, next) = match self.state {
            State::Body(Body::Length(rem)) if self.buf.is_empty() => (rem, None),
            State::Body(Body::Chunked(Chunk::Data(rem))) if self.buf.is_empty() => {
                (rem, Some(Chunk::DataEnd))
            }
            State::Body(Body::UntilClose) => {
                if let Some(m) = self.current.as_mut() {
                    m.truncated = true;
                }
                self.add_body(len, ts);
                return;
            }
            State::Head if self.buf.is_empty() => {
                // A whole message start was cut off: find the next one.
                self.errors.push("truncated_head");
                self.resync(true);
                return;
            }
            State::Resync { .. } => {
                self.discard_all();
                self.resync(true);
                return;
            }
            _ => {
                self.errors.push("truncated_head");
                if matches!(self.state, State::Body(_)) {
                    self.complete_truncated();
                }
                self.discard_all();
                self.resync(true);
                return;
            }
        };
        if let Some(m) = self.current.as_mut() {
            m.truncated = true;
        }
        let take = rem.min(len);
        self.add_body(take, ts);
        if take < rem {
            self.state = State::Body(match next {
                None => Body::Length(rem - take),
                Some(_) => Body::Chunked(Chunk::Data(rem - take)),
            });
            return;
        }
        let mut past = len - take;
        match next {
            None => self.complete(),
            // One write of size line + data + CRLF cut by the snaplen: the chunk's CRLF is
            // in the missing tail too, and the next chunk-size line starts the next write.
            Some(Chunk::DataEnd) if past == 2 => {
                past = 0;
                self.state = State::Body(Body::Chunked(Chunk::Size));
            }
            Some(c) => self.state = State::Body(Body::Chunked(c)),
        }
        if past > 0 {
            // Bytes past the body were cut too: the next message start is lost.
            self.errors.push("truncated_head");
            if matches!(self.state, State::Body(_)) {
                self.complete_truncated();
            }
            self.resync(true);
        }
    }

    /// An unknown number of bytes is missing here.
    fn gap(&mut self, _ts: u64) {
        match self.state {
            State::Stopped => {}
            State::Head if self.buf.is_empty() => self.resync(true),
            State::Body(Body::UntilClose) => {
                if let Some(m) = self.current.as_mut() {
                    m.truncated = true;
                }
            }
            State::Resync { .. } => {
                self.discard_all();
                self.resync(true);
            }
            State::Head => {
                self.errors.push("gap");
                self.discard_all();
                self.resync(true);
            }
            State::Body(_) => {
                self.errors.push("gap");
                self.complete_truncated();
                self.discard_all();
                self.resync(true);
            }
        }
    }
}

/// A header value as [`Message::headers`] holds it: lossily decoded, trimmed (borrowed
/// unless the bytes are not UTF-8).
fn header_value(raw: &[u8]) -> std::borrow::Cow<'_, str> {
    // Valid UTF-8 (nearly always ASCII) is checked by `from_utf8`'s word-at-a-time path;
    // only invalid bytes take the lossy decoder.
    if let Ok(s) = std::str::from_utf8(raw) {
        return std::borrow::Cow::Borrowed(trim(s));
    }
    match String::from_utf8_lossy(raw) {
        std::borrow::Cow::Borrowed(s) => std::borrow::Cow::Borrowed(s.trim()),
        std::borrow::Cow::Owned(s) => std::borrow::Cow::Owned(s.trim().to_string()),
    }
}

/// `s.trim()`, answered without decoding characters when `s` starts and ends with an
/// ASCII byte that is not whitespace (nearly every value): then there is nothing to trim.
fn trim(s: &str) -> &str {
    let solid =
        |b: Option<&u8>| b.is_some_and(|b| b.is_ascii() && !matches!(b, b'\t'..=b'\r' | b' '));
    let b = s.as_bytes();
    if solid(b.first()) && solid(b.last()) {
        s
    } else {
        s.trim()
    }
}

/// The header fields the parser keeps, in one [`Headers`] buffer sized once (the head's
/// bytes from the first kept field to the end of the last bound their text). `head` is
/// the message head the fields were parsed from.
fn collect_headers(h: &[httparse::Header<'_>], keep: &KeptNames, head: &[u8]) -> Headers {
    if keep.most(h.len()) == 0 {
        // A response parser keeps nothing: no field to look at.
        return Headers::new();
    }
    let Some(kept) = kept_fields(h, keep) else {
        return h
            .iter()
            .filter(|h| keep.keeps(h.name))
            .map(|h| (h.name, header_value(h.value)))
            .collect();
    };
    if kept == 0 {
        return Headers::new();
    }
    let (first, last) = (kept.trailing_zeros(), u128::BITS - 1 - kept.leading_zeros());
    let values = ValuesText::new(head, h[first as usize].value, h[last as usize].value);
    let fields = (first..=last)
        .filter(|i| kept & (1 << i) != 0)
        .map(|i| &h[i as usize]);
    // The kept fields' text fits in the head's bytes from the first kept name on.
    let room = (offset_in(head, h[last as usize].value) + h[last as usize].value.len())
        .saturating_sub(offset_in(head, h[first as usize].name.as_bytes()));
    let mut out = Headers::with_capacity(kept.count_ones() as usize, room);
    for field in fields {
        out.push(field.name, &values.value(field.value));
    }
    out
}

/// Which of the fields `keep` keeps, one bit per field (`None` past 128 fields).
fn kept_fields(h: &[httparse::Header<'_>], keep: &KeptNames) -> Option<u128> {
    if h.len() > u128::BITS as usize {
        return None;
    }
    let mut kept = 0u128;
    for (i, field) in h.iter().enumerate() {
        if keep.keeps(field.name) {
            kept |= 1 << i;
        }
    }
    Some(kept)
}

/// The head's bytes from the first kept value to the end of the last, checked as UTF-8
/// once (instead of once per kept value; values are nearly always ASCII).
struct ValuesText<'h> {
    /// The checked bytes, when they are UTF-8.
    text: Option<&'h str>,
}

impl<'h> ValuesText<'h> {
    /// The bytes of `head` from `first` (a value in it) to the end of `last` (a value in
    /// it, not before `first`).
    fn new(head: &'h [u8], first: &[u8], last: &[u8]) -> Self {
        let start = offset_in(head, first);
        let end = offset_in(head, last).saturating_add(last.len());
        let text = head
            .get(start..end)
            .and_then(|b| std::str::from_utf8(b).ok());
        ValuesText { text }
    }

    /// [`header_value`] of `raw`, a value in the checked bytes: borrowed from the text
    /// when it is UTF-8 (a value is cut at ASCII delimiters, so it is UTF-8 too).
    fn value<'a>(&self, raw: &'a [u8]) -> std::borrow::Cow<'a, str>
    where
        'h: 'a,
    {
        match self.text.and_then(|text| slice_at(text, raw)) {
            Some(s) => std::borrow::Cow::Borrowed(trim(s)),
            None => header_value(raw),
        }
    }
}

/// The part of `text` at the same bytes as `raw` (`None` when `raw` is not in it or does
/// not start and end at character boundaries).
fn slice_at<'t>(text: &'t str, raw: &[u8]) -> Option<&'t str> {
    let at = (raw.as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
    text.get(at..at.checked_add(raw.len())?)
}

/// Where `part` (a slice of `whole`) starts in `whole`.
fn offset_in(whole: &[u8], part: &[u8]) -> usize {
    (part.as_ptr() as usize).wrapping_sub(whole.as_ptr() as usize)
}

/// How a message's body is framed, read from its header fields (all of them, whatever
/// the parser keeps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Framing {
    /// `Transfer-Encoding` present: whether its last coding is `chunked`.
    chunked: Option<bool>,
    /// `Content-Length`: `Ok(None)` when absent, `Err` when invalid.
    length: Result<Option<u64>, ()>,
    /// The message asks for a protocol upgrade (`Upgrade` + `Connection: upgrade`).
    upgrade: bool,
}

impl Framing {
    fn of(h: &[httparse::Header<'_>]) -> Self {
        let first = |name: &str| {
            h.iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| header_value(h.value))
        };
        let chunked = first("transfer-encoding").map(|v| {
            v.rsplit(',')
                .next()
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
        });
        let upgrade = first("upgrade").is_some_and(|u| {
            !u.trim().is_empty()
                && first("connection").is_some_and(|c| {
                    c.split(',')
                        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
                })
        });
        let length = content_length(
            h.iter()
                .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
                .map(|h| header_value(h.value)),
        );
        Framing {
            chunked,
            length,
            upgrade,
        }
    }
}

/// `Ok(None)` without Content-Length; `Err` when it is not one non-negative number
/// (repeated equal values are accepted, RFC 9110 §8.6).
fn content_length<'a>(
    values: impl Iterator<Item = std::borrow::Cow<'a, str>>,
) -> Result<Option<u64>, ()> {
    let mut found: Option<u64> = None;
    for value in values {
        // Nearly always one number: no list to split, nothing to trim.
        if let Some(n) = plain_number(&value) {
            match found {
                Some(prev) if prev != n => return Err(()),
                _ => found = Some(n),
            }
            continue;
        }
        for part in value.split(',') {
            let part = part.trim();
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(());
            }
            let n: u64 = part.parse().map_err(|_| ())?;
            match found {
                Some(prev) if prev != n => return Err(()),
                _ => found = Some(n),
            }
        }
    }
    Ok(found)
}

/// A value that is only ASCII digits (at least one) as the number they spell, as
/// [`content_length`] reads such a value; `None` for anything else (left to it).
fn plain_number(value: &str) -> Option<u64> {
    let digits = value.as_bytes();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value.parse().ok()
}

#[cfg(test)]
mod kept_names_tests {
    use super::*;

    /// The length index answers as [`KeepHeaders::keeps`], indexed or not.
    #[test]
    fn kept_names_answer_as_keep_headers() {
        const LONG: &str = "x-a-header-name-longer-than-thirty-two-bytes";
        const MANY: [&str; 33] = [
            "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q",
            "r", "s", "t", "u", "v", "w", "x", "y", "z", "aa", "ab", "ac", "ad", "ae", "af", "ag",
        ];
        let lists: [&'static [&'static str]; 5] = [
            &crate::protocol::http::KEPT_HEADERS,
            &[],
            &[LONG, "host"],
            &MANY,
            &["x-thirty-two-bytes-long-name-abc"],
        ];
        let names = [
            "traceparent",
            "TraceParent",
            "HOST",
            "Host",
            "x-b3-TraceId",
            "x-b3-traceid2",
            "X-B3-Sampled",
            "content-length",
            "",
            "b",
            "AG",
            "ah",
            LONG,
            "X-A-HEADER-NAME-LONGER-THAN-THIRTY-TWO-BYTES",
            "X-Thirty-Two-Bytes-Long-Name-ABC",
        ];
        for list in lists {
            let keep = KeepHeaders::Only(list);
            let kept = KeptNames::new(keep);
            for name in names {
                assert_eq!(kept.keeps(name), keep.keeps(name), "{name} in {list:?}");
            }
        }
        assert!(KeptNames::new(KeepHeaders::All).keeps("anything"));
    }
}
