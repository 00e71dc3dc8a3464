//! The message framing of the PostgreSQL frontend/backend protocol (version 3), one
//! direction at a time.
//!
//! A [`Reader`] turns segments into [`Message`]s: the untyped messages of the startup
//! phase (`StartupMessage`, `SSLRequest`, `GSSENCRequest`, `CancelRequest`: a length, then a
//! code), the one-byte answer to an `SSLRequest` / `GSSENCRequest`, and the typed messages
//! (a type byte, a length, a body). Bodies are never buffered whole: only a prefix whose
//! size the caller chooses per message type is kept ([`Reader::new`]'s `keep`), the rest is
//! skipped by its declared length (`DataRow`s, `CopyData`, passwords). A header that cannot
//! be a message (unknown type, impossible length) or bytes lost in the middle of a message
//! put the direction out of step, counted by reason; the next segment is read as the start
//! of a message (a [`Head::Lost`] marker tells the caller that messages may be missing).

use crate::reassemble::Segment;

/// `StartupMessage` protocol version 3.0.
pub const PROTOCOL_3: u32 = 196_608;
/// `SSLRequest` code.
pub const SSL_REQUEST: u32 = 80_877_103;
/// `GSSENCRequest` code.
pub const GSSENC_REQUEST: u32 = 80_877_104;
/// `CancelRequest` code.
pub const CANCEL_REQUEST: u32 = 80_877_102;
/// Longest startup-phase message (the server's own limit).
pub const MAX_STARTUP: u32 = 10_000;
/// Longest typed message accepted (the server's allocation limit is 1 GiB).
pub const MAX_LEN: u32 = 1 << 30;

/// Message types a frontend (client) sends.
const FRONTEND_TAGS: &[u8] = b"QPBEDCSHXdcfFp";
/// Message types a backend (server) sends.
const BACKEND_TAGS: &[u8] = b"RSKZTDCEN123nstIGHWdcAvV";

/// What starts a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// An untyped startup-phase message; the body starts with its 4-byte code.
    Startup,
    /// The one-byte answer to an `SSLRequest` / `GSSENCRequest` (`S`, `G` or `N`).
    Answer(u8),
    /// A typed message.
    Typed(u8),
    /// Not a message: the direction lost its step here (bytes missing or unreadable);
    /// messages may be missing before the next one.
    Lost,
}

/// One message of one direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Its kind.
    pub head: Head,
    /// Declared body length (after the length field).
    pub len: u64,
    /// The kept prefix of the body.
    pub body: Vec<u8>,
    /// The body is longer than what was kept.
    pub cut: bool,
    /// Bytes of it were not captured (snaplen).
    pub truncated: bool,
    /// Time of the segment holding the first byte.
    pub start_ts: u64,
    /// Time of the segment holding the last byte.
    pub end_ts: u64,
    /// Thread of the first byte's segment.
    pub tid: u32,
}

impl Message {
    /// Bytes on the wire.
    pub fn size(&self) -> u64 {
        match self.head {
            Head::Startup => self.len + 4,
            Head::Answer(_) => 1,
            Head::Typed(_) => self.len + 5,
            Head::Lost => 0,
        }
    }

    /// The startup-phase message's code (`PROTOCOL_3`, `SSL_REQUEST`...).
    pub fn code(&self) -> Option<u32> {
        match self.head {
            Head::Startup => be32(&self.body),
            _ => None,
        }
    }
}

/// A big-endian u32 at the start of `b`.
pub fn be32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

/// What the next message of the direction starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// An untyped startup-phase message.
    Startup,
    /// A one-byte answer.
    Answer,
    /// A typed message.
    Typed,
}

/// The message being read.
#[derive(Debug)]
struct Open {
    msg: Message,
    /// Body bytes still to come.
    left: u64,
    /// Body bytes to keep.
    keep: usize,
}

/// The reader of one direction.
#[derive(Debug)]
pub struct Reader {
    frontend: bool,
    next: Next,
    /// Header bytes read so far (type byte and length; only the length when untyped).
    hdr: Vec<u8>,
    /// Time and thread of the header's first byte.
    hdr_at: (u64, u32),
    open: Option<Open>,
    /// Body bytes kept per message type.
    keep: fn(Head) -> usize,
    out: Vec<Message>,
    errors: Vec<&'static str>,
    /// Out of step: the rest of the segment is skipped.
    lost: bool,
}

impl Reader {
    /// A reader of the frontend (client) or backend direction; `keep` says how many body
    /// bytes of each message type are kept.
    pub fn new(frontend: bool, keep: fn(Head) -> usize) -> Self {
        Reader {
            frontend,
            next: if frontend { Next::Startup } else { Next::Typed },
            hdr: Vec::with_capacity(5),
            hdr_at: (0, 0),
            open: None,
            keep,
            out: Vec::new(),
            errors: Vec::new(),
            lost: false,
        }
    }

    /// The startup phase is over (a connection joined late): messages are typed.
    pub fn typed(mut self) -> Self {
        self.next = Next::Typed;
        self
    }

    /// The next byte is the one-byte answer to an `SSLRequest` / `GSSENCRequest`.
    pub fn expect_answer(&mut self) {
        if self.open.is_none() && self.hdr.is_empty() {
            self.next = Next::Answer;
        }
    }

    /// Reads one segment.
    pub fn feed(&mut self, seg: &Segment) {
        match seg {
            Segment::Data { ts_ns, tid, bytes } => {
                if self.lost {
                    // Resynchronise: the segment is read as the start of a message.
                    self.lost = false;
                    if self.next == Next::Answer {
                        self.next = Next::Typed;
                    }
                }
                self.data(*ts_ns, *tid, bytes);
            }
            Segment::Missing { ts_ns, len } => match &mut self.open {
                Some(o) if *len <= o.left => {
                    o.left -= len;
                    o.msg.truncated = true;
                    o.msg.end_ts = *ts_ns;
                    // What follows is not contiguous with the kept prefix.
                    o.keep = o.msg.body.len();
                    if o.left == 0 {
                        self.finish_open();
                    }
                }
                _ => self.lose("postgres_missing_bytes", *ts_ns),
            },
            Segment::Gap { ts_ns } => {
                if self.open.is_some() || !self.hdr.is_empty() {
                    self.lose("postgres_gap", *ts_ns);
                } else {
                    self.lose_silently(*ts_ns);
                }
            }
        }
    }

    /// Ends the stream: a message still open is counted.
    pub fn finish(&mut self) {
        if (self.open.is_some() || !self.hdr.is_empty()) && !self.lost {
            self.errors.push("postgres_incomplete");
        }
        self.open = None;
        self.hdr.clear();
    }

    /// The messages read since the last call.
    pub fn take_messages(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.out)
    }

    /// The error reasons counted since the last call.
    pub fn take_errors(&mut self) -> Vec<&'static str> {
        std::mem::take(&mut self.errors)
    }

    /// Body bytes kept of the message being read (tests: rows are not buffered).
    #[cfg(test)]
    pub fn open_kept(&self) -> usize {
        self.open.as_ref().map_or(0, |o| o.msg.body.len())
    }

    fn lose(&mut self, reason: &'static str, ts: u64) {
        self.errors.push(reason);
        self.lose_silently(ts);
    }

    fn lose_silently(&mut self, ts: u64) {
        self.open = None;
        self.hdr.clear();
        self.lost = true;
        // Two losses in a row are one for the caller.
        if self.out.last().map(|m| m.head) != Some(Head::Lost) {
            self.out.push(Message {
                head: Head::Lost,
                len: 0,
                body: Vec::new(),
                cut: false,
                truncated: false,
                start_ts: ts,
                end_ts: ts,
                tid: 0,
            });
        }
    }

    fn finish_open(&mut self) {
        if let Some(o) = self.open.take() {
            if let Head::Startup = o.msg.head {
                // After an SSLRequest / GSSENCRequest the next message is untyped too.
                if !matches!(o.msg.code(), Some(SSL_REQUEST | GSSENC_REQUEST)) {
                    self.next = Next::Typed;
                }
            }
            self.out.push(o.msg);
        }
    }

    fn data(&mut self, ts: u64, tid: u32, mut b: &[u8]) {
        while !b.is_empty() && !self.lost {
            if let Some(o) = &mut self.open {
                let n = (b.len() as u64).min(o.left) as usize;
                let room = o.keep.saturating_sub(o.msg.body.len()).min(n);
                o.msg.body.extend_from_slice(&b[..room]);
                o.left -= n as u64;
                o.msg.end_ts = ts;
                b = &b[n..];
                if o.left == 0 {
                    self.finish_open();
                }
                continue;
            }
            if self.next == Next::Answer {
                self.next = Next::Typed;
                self.out.push(Message {
                    head: Head::Answer(b[0]),
                    len: 0,
                    body: Vec::new(),
                    cut: false,
                    truncated: false,
                    start_ts: ts,
                    end_ts: ts,
                    tid,
                });
                b = &b[1..];
                continue;
            }
            if self.hdr.is_empty() {
                self.hdr_at = (ts, tid);
            }
            let want = if self.next == Next::Startup { 4 } else { 5 };
            let n = (want - self.hdr.len()).min(b.len());
            self.hdr.extend_from_slice(&b[..n]);
            b = &b[n..];
            if self.hdr.len() < want {
                continue;
            }
            let hdr = std::mem::take(&mut self.hdr);
            let (head, len) = if self.next == Next::Startup {
                (Head::Startup, be32(&hdr).unwrap_or(0))
            } else {
                (Head::Typed(hdr[0]), be32(&hdr[1..]).unwrap_or(0))
            };
            let ok = match head {
                Head::Startup => (8..=MAX_STARTUP).contains(&len),
                Head::Typed(t) => {
                    let tags = if self.frontend {
                        FRONTEND_TAGS
                    } else {
                        BACKEND_TAGS
                    };
                    if !tags.contains(&t) {
                        self.lose("postgres_bad_type", ts);
                        return;
                    }
                    (4..=MAX_LEN).contains(&len)
                }
                _ => false,
            };
            if !ok {
                self.lose("postgres_bad_length", ts);
                return;
            }
            let body_len = u64::from(len - 4);
            let (start_ts, tid0) = self.hdr_at;
            self.open = Some(Open {
                msg: Message {
                    head,
                    len: body_len,
                    body: Vec::new(),
                    cut: body_len > (self.keep)(head) as u64,
                    truncated: false,
                    start_ts,
                    end_ts: ts,
                    tid: tid0,
                },
                left: body_len,
                keep: (self.keep)(head),
            });
            if body_len == 0 {
                self.finish_open();
            }
        }
    }
}

/// Whether `b` (at least 8 bytes) starts like a startup-phase message a client sends
/// first: a sane length and a known code.
pub fn startup_start(b: &[u8]) -> Option<bool> {
    if b.is_empty() {
        return Some(false);
    }
    // Lengths are below 2^24: the first byte is 0.
    if b[0] != 0 {
        return Some(false);
    }
    if b.len() < 8 {
        return None;
    }
    let len = be32(b)?;
    let code = be32(&b[4..])?;
    Some(match code {
        SSL_REQUEST | GSSENC_REQUEST => len == 8,
        CANCEL_REQUEST => len == 16,
        c if c >> 16 == 3 => (8..=MAX_STARTUP).contains(&len),
        _ => false,
    })
}

/// Whether `b` starts like a typed frontend message (a connection joined after its
/// startup): a frontend type and a sane length.
pub fn typed_frontend_start(b: &[u8]) -> Option<bool> {
    let t = *b.first()?;
    if !FRONTEND_TAGS.contains(&t) {
        return Some(false);
    }
    let len = be32(b.get(1..)?)?;
    Some((4..=MAX_LEN).contains(&len))
}
