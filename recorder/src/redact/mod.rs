//! Record-time redaction of secrets in HTTP/1 headers and in HTTP/2 (HPACK) header
//! blocks, gRPC metadata included.
//!
//! Values of `Authorization`, `Proxy-Authorization`, `Cookie`, `Set-Cookie` and any
//! configured header (`--redact-header`) are overwritten in place before a payload leaves
//! the recorder; payload lengths never change, so byte counts and offsets stay true, and
//! the row gets the REDACTED flag. State is kept per connection and direction.
//!
//! **HTTP/1** ([`http1`]): a streaming header tokenizer; values become `*`.
//!
//! **HTTP/2** ([`h2`], [`hpack`], [`huffman`]): a direction becomes HTTP/2 when its
//! first bytes are the client preface `PRI * HTTP/2.0` (h2c prior knowledge, or TLS
//! plaintext after ALPN h2), when the first bytes of a direction (or of the other
//! direction of a connection known to be HTTP/2) are a SETTINGS frame (the server side),
//! or after an HTTP/1 `101 Switching Protocols` (h2c upgrade) when the bytes that follow
//! are a SETTINGS frame. The framing is followed across payloads (frames split across
//! syscalls, several frames per syscall); header block fragments of HEADERS,
//! PUSH_PROMISE and CONTINUATION frames (padding, priority and promised-stream fields
//! skipped) are decoded with HPACK far enough to know every field's name: static table,
//! literal names (raw or Huffman), and a dynamic table that records, per entry, its size
//! and whether its name is sensitive, with size updates and evictions.
//!
//! A sensitive value is rewritten so that every later block of the connection still
//! decodes the same for the analyzer: the dynamic table entry it may create must keep its
//! size (name length + decoded value length + 32), so the *decoded* length stays equal as
//! well as the byte length. A raw literal becomes `*` bytes. A Huffman literal of `L`
//! bytes decoding to `n` characters in `B` bits becomes `n` redaction characters whose
//! codes take exactly `B` bits, with the same padding (mostly `*`, 8 bits, plus `x`, `-`,
//! `0` for 7/6/5 bits or longer codes when the original used long ones; see
//! [`huffman`]). Such a composition always exists (the original's own code lengths are
//! one), and is computed from the original's length profile only. A sensitive entry
//! later referenced by index is therefore already redacted. A value split across
//! payloads is rewritten as its bytes arrive (the part already seen never waits): the
//! emitted prefix ends with one bits that a later symbol completes.
//!
//! Where this cannot be proven safe the block is *blanked*: its remaining bytes become
//! 0xff (an HPACK decoder rejects them, so the analyzer knows it lost sync rather than
//! decoding wrong values) and [`Counters::h2_blocks_blanked`] counts it: a block that
//! does not parse (bad index, bad Huffman, misplaced or oversized table size update,
//! ended inside a field), larger than [`hpack::MAX_BLOCK`], a CONTINUATION whose block
//! start was not seen, or a split Huffman value with no bit-exact continuation.
//!
//! Limits (documented, by design):
//! - Only what was captured can be redacted; bytes beyond the snaplen are not stored.
//!   HTTP/1: after a truncated payload or a dropped event the tokenizer resynchronises at
//!   the next payload that starts a message, so a header straddling such a gap may be
//!   missed. Chunked bodies are not decoded: the tokenizer waits for the next payload
//!   that starts with a request/status line.
//! - HTTP/2 payloads cut at the snaplen ([`Redactor::redact_cut`] knows how many bytes are
//!   missing): inside a DATA frame the framing stays in sync; a cut inside a header block
//!   blanks the rest of that block (counted) and leaves the dynamic table incomplete.
//! - HTTP/2 after dropped events or an unknown loss (counted in
//!   [`Counters::h2_sync_lost`]): the frame boundaries are lost until a payload starts
//!   with a plausible frame header (writers send whole frames); payloads skipped until
//!   then are counted in [`Counters::h2_payloads_unchecked`] — they may hold header
//!   blocks that were not checked. After such a loss (or a hole in a header block) the
//!   entries known before are no longer trusted (entries inserted in the gap shift the
//!   indexes): a literal whose name is an entry not seen since is redacted as if
//!   sensitive (counted in [`Counters::h2_unknown_names_redacted`]).
//! - The length of a redacted value (bytes and characters) is kept, as in HTTP/1. A
//!   Huffman value split across payloads may hold a few characters other than the
//!   redaction characters where it was cut (chosen by code lengths, never copied).
//! - An h2c upgrade is recognised when the server's SETTINGS frame follows the 101
//!   response in the same payload or starts the next one.
//! - TLS ciphertext is not redacted (it is not readable); TLS plaintext rows go through
//!   the same redaction. A stream must get either its plaintext or its ciphertext
//!   payloads, not both interleaved (use a different `conn` key for each).

mod h2;
mod hpack;
mod http1;
pub mod huffman;
mod marks;

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

/// The directions a stream key takes: the events' `direction` (egress 0, ingress 1). This
/// module stands alone (the fuzz targets include it by path), so the values are its own.
pub const DIRECTIONS: [u8; 2] = [0, 1];

/// Headers redacted by default (lowercase).
pub const DEFAULT_HEADERS: [&str; 4] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
];

/// Counters of the HTTP/2 redaction (all zero on HTTP/1-only traffic).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Sensitive HTTP/2 header values rewritten in place (decodable, same sizes).
    pub h2_values_redacted: u64,
    /// Header blocks (or their rest) blanked because they could not be proven safe.
    pub h2_blocks_blanked: u64,
    /// Literals whose name was an unseen dynamic-table entry, redacted to be safe.
    pub h2_unknown_names_redacted: u64,
    /// Times an HTTP/2 direction lost its frame boundaries (truncated payload, gap).
    pub h2_sync_lost: u64,
    /// Payloads of an HTTP/2 direction not checked while its frame boundaries were lost.
    pub h2_payloads_unchecked: u64,
}

/// A stream's protocol state.
#[derive(Debug)]
enum Stream {
    Http1 {
        st: http1::Stream,
        /// A `101 Switching Protocols` was seen: HTTP/2 frames may follow.
        upgraded: bool,
        /// The stream's first bytes while fewer than 24 went by (a preface or SETTINGS
        /// frame cut into tiny payloads is still recognised).
        head: Option<Vec<u8>>,
    },
    H2(Box<h2::H2Dir>),
}

/// Streaming redactor for many connections; key = (connection id, direction index).
#[derive(Debug)]
pub struct Redactor {
    names: http1::HeaderNames,
    streams: HashMap<(u64, u8), Stream>,
    /// Connections with a direction known to speak HTTP/2.
    h2_conns: HashSet<u64>,
    counters: Counters,
}

impl Redactor {
    /// A redactor for the default headers plus `extra` (case-insensitive names).
    pub fn new<S: AsRef<str>>(extra: &[S]) -> Self {
        let mut names: Vec<Vec<u8>> = DEFAULT_HEADERS
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        for e in extra {
            let n = e.as_ref().trim().to_ascii_lowercase().into_bytes();
            if !n.is_empty() && !names.contains(&n) {
                names.push(n);
            }
        }
        Redactor {
            names: http1::HeaderNames::new(names),
            streams: HashMap::new(),
            h2_conns: HashSet::new(),
            counters: Counters::default(),
        }
    }

    /// The HTTP/2 redaction counters so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Redacts `payload` (bytes of one syscall on stream `(conn, dir)`; `dir` is the
    /// event's direction, 0 egress or 1 ingress) in place; returns
    /// whether any byte was overwritten. `complete` is false when the payload was cut
    /// (truncated or partly unreadable): the stream then resynchronises.
    pub fn redact(&mut self, conn: u64, dir: u8, payload: &mut [u8], complete: bool) -> bool {
        self.redact_cut(conn, dir, payload, complete.then_some(0))
    }

    /// [`Redactor::redact`] knowing how the payload was cut: `missing` = bytes of the
    /// stream right after `payload` that were not captured (the recorder's payloads are
    /// prefixes of what the call moved: `ret - captured`), `None` for an unknown loss.
    /// HTTP/2 framing stays in sync across a cut inside a DATA frame.
    pub fn redact_cut(
        &mut self,
        conn: u64,
        dir: u8,
        payload: &mut [u8],
        missing: Option<u64>,
    ) -> bool {
        let complete = missing == Some(0);
        let key = (conn, dir);
        // one map lookup per payload: a new stream starts as HTTP/1 with no bytes seen,
        // which is what the HTTP/2 detection below asks of a stream it has not seen
        let stream = self.streams.entry(key).or_insert_with(|| Stream::Http1 {
            st: http1::Stream::new(),
            upgraded: false,
            head: Some(Vec::new()),
        });
        // Does this payload switch the stream to HTTP/2? (client?, bytes already seen)
        let switch = match stream {
            Stream::H2(_) => None,
            Stream::Http1 { st, upgraded, head } => {
                if let Some(sw) = head.as_deref().and_then(|h| detect_start(h, payload)) {
                    Some(sw)
                } else if !st.at_boundary() {
                    None
                } else if starts_with_preface(payload) {
                    Some((true, Vec::new()))
                } else if h2::starts_with_settings(payload)
                    && (*upgraded || self.h2_conns.contains(&conn))
                {
                    Some((false, Vec::new()))
                } else {
                    None
                }
            }
        };
        if let Some((client, seen)) = switch {
            self.h2_conns.insert(conn);
            *stream = Stream::H2(Box::new(h2::H2Dir::new(client, &seen)));
        }
        match stream {
            Stream::H2(d) => d.redact(payload, missing, self.names.list(), &mut self.counters),
            Stream::Http1 { st, upgraded, head } => {
                if let Some(h) = head.as_mut() {
                    if h.len() + payload.len() < h2::PREFACE.len() {
                        h.extend_from_slice(payload);
                    } else {
                        *head = None;
                    }
                }
                // (the status code's last digit first: one compare for most payloads)
                let switching =
                    payload.get(11) == Some(&b'1') && payload.starts_with(b"HTTP/1.1 101");
                let changed = http1::redact(st, &self.names, payload, complete);
                if switching {
                    // h2c upgrade: the server's HTTP/2 frames may follow in this payload
                    if let Some(end) = find(payload, b"\r\n\r\n") {
                        let rest = end + 4;
                        if rest < payload.len() {
                            if h2::starts_with_settings(&payload[rest..]) {
                                self.h2_conns.insert(conn);
                                let mut d = Box::new(h2::H2Dir::new(false, &[]));
                                let c = d.redact(
                                    &mut payload[rest..],
                                    missing,
                                    self.names.list(),
                                    &mut self.counters,
                                );
                                *stream = Stream::H2(d);
                                return changed | c;
                            }
                        } else {
                            *upgraded = true;
                        }
                    }
                } else if !payload.is_empty() {
                    *upgraded = false;
                }
                changed
            }
        }
    }

    /// Bytes before the next payload of stream `(conn, dir)` are missing.
    pub fn reset(&mut self, conn: u64, dir: u8) {
        match self.streams.get_mut(&(conn, dir)) {
            Some(Stream::H2(d)) => d.lose(&mut self.counters),
            _ => {
                self.streams.remove(&(conn, dir));
            }
        }
    }

    /// Forgets a connection's state (on close): its two directions' streams, looked up by
    /// key (a scan of every stream per close cost O(streams) each, quadratic on a node
    /// with many connections).
    pub fn forget(&mut self, conn: u64) {
        for dir in DIRECTIONS {
            self.streams.remove(&(conn, dir));
        }
        self.h2_conns.remove(&conn);
    }

    /// Streams with state (both directions counted).
    pub fn streams(&self) -> usize {
        self.streams.len()
    }
}

/// Whether `b` starts with (at least 4 bytes of) the HTTP/2 client preface.
fn starts_with_preface(b: &[u8]) -> bool {
    let n = b.len().min(h2::PREFACE.len());
    n >= 4 && b[..n] == h2::PREFACE[..n]
}

/// Whether a stream whose first bytes were `head` (fewer than 24) and that continues
/// with `payload` is the client side of HTTP/2 (preface) or the server side (SETTINGS
/// first); with the bytes of it already seen.
fn detect_start(head: &[u8], payload: &[u8]) -> Option<(bool, Vec<u8>)> {
    let need = h2::PREFACE
        .len()
        .saturating_sub(head.len())
        .min(payload.len());
    let mut cat = head.to_vec();
    cat.extend_from_slice(&payload[..need]);
    if starts_with_preface(&cat) {
        Some((true, head.to_vec()))
    } else if head.len() < 9 && h2::starts_with_settings(&cat) {
        Some((false, head.to_vec()))
    } else {
        None
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests;
