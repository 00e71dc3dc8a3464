//! HPACK (RFC 7541) header blocks of one HTTP/2 direction: the dynamic table's entry
//! sizes and whether each entry's name is sensitive, and the in-place rewrite of
//! sensitive values (see the parent module doc for the invariants).

use std::collections::VecDeque;

use super::huffman::{self, BitWriter, OutState};
use super::Counters;

/// Largest dynamic table followed (a larger size update is treated as a broken block).
pub(crate) const MAX_TABLE_SIZE: usize = 64 * 1024;

/// Initial dynamic table size.
const DEFAULT_TABLE_SIZE: usize = 4096;

/// Per-entry overhead (RFC 7541 §4.1).
const ENTRY_OVERHEAD: usize = 32;

/// Largest header block buffered (beyond it the rest of the block is blanked).
pub(crate) const MAX_BLOCK: usize = 256 * 1024;

/// Byte written over a block that cannot be proven safe: a run of 0xff is an HPACK
/// integer overflow (or an EOS inside a Huffman string), so a decoder rejects the block
/// and knows it lost sync, instead of decoding wrong values.
const BLANK: u8 = 0xff;

/// The HPACK static table's names (RFC 7541 Appendix A), index 1 first.
const STATIC_NAMES: [&str; 61] = [
    ":authority",
    ":method",
    ":method",
    ":path",
    ":path",
    ":scheme",
    ":scheme",
    ":status",
    ":status",
    ":status",
    ":status",
    ":status",
    ":status",
    ":status",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "accept",
    "access-control-allow-origin",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-range",
    "content-type",
    "cookie",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "link",
    "location",
    "max-forwards",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "refresh",
    "retry-after",
    "server",
    "set-cookie",
    "strict-transport-security",
    "transfer-encoding",
    "user-agent",
    "vary",
    "via",
    "www-authenticate",
];

/// Whether a field's name is one of the redacted names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sens {
    No,
    Yes,
    /// The name refers to a dynamic-table entry not seen (after a loss of sync): the
    /// value is redacted as if the name were sensitive.
    Unknown,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    sensitive: bool,
    /// The entry's name is itself an entry never seen (its size is then a lower bound).
    unknown: bool,
    name_len: usize,
    size: usize,
}

/// One direction's dynamic table (sizes and name sensitivity only).
#[derive(Debug, Clone)]
pub(crate) struct Table {
    entries: VecDeque<Entry>,
    size: usize,
    max_size: usize,
    /// False once entries may be missing (a lost or unparsable block).
    synced: bool,
}

impl Table {
    pub(crate) fn new(synced: bool) -> Self {
        Table {
            entries: VecDeque::new(),
            size: 0,
            max_size: DEFAULT_TABLE_SIZE,
            synced,
        }
    }

    /// Entries may be missing from now on. The entries known so far are forgotten too:
    /// entries inserted in the part not seen shift their indexes. Entries inserted from
    /// now on are the newest, so their indexes stay right; older indexes are unknown
    /// (and a literal naming one is redacted).
    pub(crate) fn desync(&mut self) {
        self.synced = false;
        self.entries.clear();
        self.size = 0;
    }

    /// (sensitivity, name length) of index `idx` (1-based); Err for an invalid index.
    fn name(&self, idx: usize, names: &[Vec<u8>]) -> Result<(Sens, Option<usize>), ()> {
        if idx == 0 {
            return Err(());
        }
        if let Some(n) = STATIC_NAMES.get(idx - 1) {
            let s = if names.iter().any(|x| x.as_slice() == n.as_bytes()) {
                Sens::Yes
            } else {
                Sens::No
            };
            return Ok((s, Some(n.len())));
        }
        match self.entries.get(idx - 1 - STATIC_NAMES.len()) {
            Some(e) if e.unknown => Ok((Sens::Unknown, None)),
            Some(e) => Ok((
                if e.sensitive { Sens::Yes } else { Sens::No },
                Some(e.name_len),
            )),
            None if self.synced => Err(()),
            None => Ok((Sens::Unknown, None)),
        }
    }

    fn set_max(&mut self, size: usize) {
        self.max_size = size;
        self.evict_to(size);
    }

    fn evict_to(&mut self, size: usize) {
        while self.size > size {
            match self.entries.pop_back() {
                Some(e) => self.size -= e.size,
                None => {
                    self.size = 0;
                    break;
                }
            }
        }
    }

    /// Inserts an entry; `name_len` None: its name is an entry never seen (only after a
    /// loss of sync; the entry keeps the newer indexes right).
    fn insert(&mut self, sensitive: bool, name_len: Option<usize>, value_len: usize) {
        let unknown = name_len.is_none();
        let name_len = name_len.unwrap_or(0);
        let size = name_len + value_len + ENTRY_OVERHEAD;
        if size > self.max_size {
            self.entries.clear();
            self.size = 0;
            return;
        }
        self.evict_to(self.max_size - size);
        self.size += size;
        self.entries.push_front(Entry {
            sensitive,
            unknown,
            name_len,
            size,
        });
    }
}

/// A string in the block: offset of its data, its length, Huffman or raw.
#[derive(Debug, Clone, Copy)]
struct Str {
    start: usize,
    len: usize,
    huffman: bool,
}

impl Str {
    fn end(&self) -> usize {
        self.start + self.len
    }
}

enum Parsed {
    SizeUpdate(usize),
    Indexed,
    Literal {
        insert: bool,
        sens: Sens,
        name_len: Option<usize>,
        value: Str,
    },
}

enum Stop {
    /// The field continues past the bytes seen; `value` is set when its value string
    /// has started (its name is known then).
    NeedMore(Option<(Sens, Str)>),
    Malformed,
}

/// Reads an HPACK integer with an `n`-bit prefix at `*pos` (at most 32 bits).
fn integer(b: &[u8], pos: &mut usize, n: u8) -> Result<usize, Stop> {
    let first = *b.get(*pos).ok_or(Stop::NeedMore(None))?;
    *pos += 1;
    let max = (1usize << n) - 1;
    let mut v = usize::from(first) & max;
    if v < max {
        return Ok(v);
    }
    let mut shift = 0u32;
    loop {
        let c = *b.get(*pos).ok_or(Stop::NeedMore(None))?;
        *pos += 1;
        v += usize::from(c & 0x7f) << shift;
        if v > u32::MAX as usize {
            return Err(Stop::Malformed);
        }
        if c & 0x80 == 0 {
            return Ok(v);
        }
        shift += 7;
        if shift > 28 {
            return Err(Stop::Malformed);
        }
    }
}

fn string_header(b: &[u8], pos: &mut usize) -> Result<Str, Stop> {
    let c = *b.get(*pos).ok_or(Stop::NeedMore(None))?;
    let len = integer(b, pos, 7)?;
    Ok(Str {
        start: *pos,
        len,
        huffman: c & 0x80 != 0,
    })
}

/// Decoded length of a complete string (None: bad Huffman).
fn decoded_len(b: &[u8], s: &Str) -> Option<usize> {
    let data = &b[s.start..s.end()];
    if s.huffman {
        let sc = huffman::scan(data);
        sc.valid_string().then_some(sc.chars)
    } else {
        Some(data.len())
    }
}

/// Parses the field representation at `pos`; on success `pos` is past it.
fn parse(
    b: &[u8],
    pos: &mut usize,
    first: bool,
    table: &Table,
    names: &[Vec<u8>],
) -> Result<Parsed, Stop> {
    let c = *b.get(*pos).ok_or(Stop::NeedMore(None))?;
    if c & 0x80 != 0 {
        let idx = integer(b, pos, 7)?;
        table.name(idx, names).map_err(|()| Stop::Malformed)?;
        return Ok(Parsed::Indexed);
    }
    if c & 0xe0 == 0x20 {
        let size = integer(b, pos, 5)?;
        if !first || size > MAX_TABLE_SIZE {
            return Err(Stop::Malformed);
        }
        return Ok(Parsed::SizeUpdate(size));
    }
    let (prefix, insert) = if c & 0xc0 == 0x40 {
        (6, true)
    } else {
        (4, false)
    };
    let idx = integer(b, pos, prefix)?;
    let (sens, name_len) = if idx == 0 {
        let name = string_header(b, pos)?;
        if name.end() > b.len() {
            return Err(Stop::NeedMore(None));
        }
        let raw = &b[name.start..name.end()];
        let decoded = if name.huffman {
            huffman::decode(raw).ok_or(Stop::Malformed)?
        } else {
            raw.to_vec()
        };
        *pos = name.end();
        let s = if names.iter().any(|n| n.eq_ignore_ascii_case(&decoded)) {
            Sens::Yes
        } else {
            Sens::No
        };
        (s, Some(decoded.len()))
    } else {
        table.name(idx, names).map_err(|()| Stop::Malformed)?
    };
    let value = match string_header(b, pos) {
        Ok(v) => v,
        Err(Stop::NeedMore(_)) => return Err(Stop::NeedMore(None)),
        Err(e) => return Err(e),
    };
    if value.end() > b.len() {
        return Err(Stop::NeedMore(Some((sens, value))));
    }
    *pos = value.end();
    Ok(Parsed::Literal {
        insert,
        sens,
        name_len,
        value,
    })
}

/// The header block in progress on one direction (fragments of HEADERS/PUSH_PROMISE +
/// CONTINUATION frames, possibly over several payloads).
#[derive(Debug, Default)]
pub(crate) struct Block {
    /// The block's original bytes so far.
    data: Vec<u8>,
    /// Offset of the first field not yet processed.
    done: usize,
    /// Offset where the current payload's bytes begin.
    cur_start: usize,
    /// (block offset, payload offset, length) of the current payload's bytes.
    segs: Vec<(usize, usize, usize)>,
    /// Only table size updates so far (they must come first).
    only_updates: bool,
    /// A sensitive Huffman value whose start was already rewritten: (data offset, output).
    partial: Option<(usize, OutState)>,
    /// The block is given up: its remaining bytes are blanked.
    blanking: bool,
}

/// Writes `bytes` (the block's bytes from offset `from`) over the payload where they lie
/// in the current payload.
fn write(segs: &[(usize, usize, usize)], from: usize, bytes: &[u8], payload: &mut [u8]) -> bool {
    let mut changed = false;
    let to = from + bytes.len();
    for &(b0, p0, len) in segs {
        let lo = b0.max(from);
        let hi = (b0 + len).min(to);
        for off in lo..hi {
            let dst = &mut payload[p0 + off - b0];
            let v = bytes[off - from];
            if *dst != v {
                *dst = v;
                changed = true;
            }
        }
    }
    changed
}

impl Block {
    pub(crate) fn new() -> Self {
        Block {
            only_updates: true,
            ..Block::default()
        }
    }

    /// Starts a new payload: later appended bytes are the writable ones.
    pub(crate) fn new_payload(&mut self) {
        self.cur_start = self.data.len();
        self.segs.clear();
    }

    /// Appends fragment bytes that lie at `payload_off` in the current payload. If the
    /// block is being blanked (or just became too large), overwrites them and says so.
    pub(crate) fn append(
        &mut self,
        payload: &mut [u8],
        payload_off: usize,
        len: usize,
        table: &mut Table,
        counters: &mut Counters,
    ) -> bool {
        if !self.blanking && self.data.len() + len > MAX_BLOCK {
            counters.h2_blocks_blanked += 1;
            self.give_up(table);
        }
        if self.blanking {
            let mut changed = false;
            for b in &mut payload[payload_off..payload_off + len] {
                changed |= *b != BLANK;
                *b = BLANK;
            }
            return changed;
        }
        self.segs.push((self.data.len(), payload_off, len));
        self.data
            .extend_from_slice(&payload[payload_off..payload_off + len]);
        false
    }

    fn give_up(&mut self, table: &mut Table) {
        self.blanking = true;
        self.partial = None;
        table.desync();
    }

    /// Processes the fields now complete and rewrites sensitive values in the current
    /// payload. `end` is true at the end of the block (END_HEADERS). Returns whether
    /// the payload changed.
    pub(crate) fn process(
        &mut self,
        payload: &mut [u8],
        end: bool,
        table: &mut Table,
        names: &[Vec<u8>],
        counters: &mut Counters,
    ) -> bool {
        if self.blanking {
            return false;
        }
        let mut changed = false;
        loop {
            if self.done >= self.data.len() {
                break;
            }
            let mut pos = self.done;
            match parse(&self.data, &mut pos, self.only_updates, table, names) {
                Ok(Parsed::SizeUpdate(size)) => table.set_max(size),
                Ok(Parsed::Indexed) => self.only_updates = false,
                Ok(Parsed::Literal {
                    insert,
                    sens,
                    name_len,
                    value,
                }) => {
                    self.only_updates = false;
                    let Some(vlen) = decoded_len(&self.data, &value) else {
                        // bad Huffman in the original: the analyzer cannot decode it
                        // either; blank the rest so nothing is left unchecked
                        changed |= self.blank_from(value.start, payload, counters, table);
                        return changed;
                    };
                    if sens != Sens::No {
                        match self.rewrite(&value, true, payload) {
                            Some(c) => {
                                changed |= c;
                                counters.h2_values_redacted += 1;
                                if sens == Sens::Unknown {
                                    counters.h2_unknown_names_redacted += 1;
                                }
                            }
                            None => {
                                changed |= self.blank_from(value.start, payload, counters, table);
                                return changed;
                            }
                        }
                    }
                    if insert {
                        table.insert(sens != Sens::No, name_len, vlen);
                    }
                }
                Err(Stop::Malformed) => {
                    changed |=
                        self.blank_from(self.done.max(self.cur_start), payload, counters, table);
                    return changed;
                }
                Err(Stop::NeedMore(v)) => {
                    if end {
                        // the block ended inside a field
                        changed |= self.blank_from(
                            self.done.max(self.cur_start),
                            payload,
                            counters,
                            table,
                        );
                        return changed;
                    }
                    if let Some((sens, value)) = v {
                        if sens != Sens::No {
                            match self.rewrite(&value, false, payload) {
                                Some(c) => changed |= c,
                                None => {
                                    changed |=
                                        self.blank_from(value.start, payload, counters, table);
                                    return changed;
                                }
                            }
                        }
                    }
                    break;
                }
            }
            self.done = pos;
        }
        changed
    }

    /// Blanks the block from `from` on (in the current payload) and gives it up.
    fn blank_from(
        &mut self,
        from: usize,
        payload: &mut [u8],
        counters: &mut Counters,
        table: &mut Table,
    ) -> bool {
        let from = from.max(self.cur_start);
        let n = self.data.len().saturating_sub(from);
        let changed = write(&self.segs, from, &vec![BLANK; n], payload);
        counters.h2_blocks_blanked += 1;
        self.give_up(table);
        changed
    }

    /// Rewrites a sensitive value (all of it if `whole`, else the bytes seen so far);
    /// None if no same-size encoding exists.
    fn rewrite(&mut self, value: &Str, whole: bool, payload: &mut [u8]) -> Option<bool> {
        let seen_end = value.end().min(self.data.len());
        let from = value.start.max(self.cur_start);
        if from >= seen_end {
            return Some(false);
        }
        if !value.huffman {
            return Some(write(
                &self.segs,
                from,
                &vec![b'*'; seen_end - from],
                payload,
            ));
        }
        let st = match self.partial {
            Some((start, st)) if start == value.start => st,
            _ if value.start < self.cur_start => {
                // began in an earlier payload without being rewritten: cannot happen
                // (the name always precedes the value), but never assume it
                return None;
            }
            _ => OutState::default(),
        };
        let written = (st.bits + st.pending) / 8;
        if value.start + written != from {
            return None;
        }
        let data = &self.data[value.start..seen_end];
        let sc = huffman::scan(data);
        if sc.invalid {
            return None;
        }
        let mut w = BitWriter::default();
        let end_bits = data.len() * 8;
        if whole {
            if !sc.valid_string() || !huffman::finish(&st, sc.chars, sc.bits, data.len(), &mut w) {
                return None;
            }
        } else {
            let next = huffman::continue_partial(
                &st,
                sc.chars,
                sc.bits,
                sc.pending_ones,
                end_bits,
                &mut w,
            )?;
            self.partial = Some((value.start, next));
        }
        if whole {
            self.partial = None;
        }
        Some(write(&self.segs, from, &w.out, payload))
    }
}

impl Block {
    /// Bytes of the block were not captured: the rest cannot be parsed; it is blanked as
    /// it arrives (counted once) and the dynamic table is incomplete from now on.
    pub(crate) fn hole(&mut self, table: &mut Table, counters: &mut Counters) {
        if !self.blanking {
            counters.h2_blocks_blanked += 1;
            self.give_up(table);
        }
    }

    /// Gives the whole block up from its start (its context is unknown): every byte of
    /// it is blanked as it arrives.
    pub(crate) fn blank_all(&mut self, table: &mut Table, counters: &mut Counters) {
        counters.h2_blocks_blanked += 1;
        self.give_up(table);
    }
}
