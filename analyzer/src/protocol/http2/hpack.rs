//! A tolerant HPACK (RFC 7541) decoder for passive observers.
//!
//! One [`Decoder`] per connection direction. It keeps the dynamic table like any HPACK
//! decoder, but it also works when the capture joined the connection late (or lost bytes):
//! in that state the table may hold entries it never saw, so an index it cannot resolve
//! becomes an *unknown* field (counted in [`Block::unknown`]) instead of an error, and
//! decoding goes on with the next field — static-table entries, literals and Huffman
//! strings (via `fluke-hpack`'s Huffman decoder) still decode. Malformed input (integer
//! overflow, strings past the block, bad Huffman, oversized table size updates) is an
//! [`HpackError`]; the fields decoded before it are kept and the decoder falls back to
//! the tolerant state. Memory is bounded: the table by [`MAX_TABLE_SIZE`], a block's
//! decoded fields by the header list limit given to [`Decoder::decode`].

use std::collections::VecDeque;

use fluke_hpack::huffman::HuffmanDecoder;

/// Largest dynamic table accepted, whatever the peers negotiate (a table size update
/// above it is an error and the table is clamped to it).
pub const MAX_TABLE_SIZE: usize = 64 * 1024;

/// The default (and initial) dynamic table size.
pub const DEFAULT_TABLE_SIZE: usize = 4096;

/// Per-entry overhead of the table size accounting (RFC 7541 §4.1).
const ENTRY_OVERHEAD: usize = 32;

/// Why a header block could not be fully decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HpackError {
    /// An integer needed more than 32 bits (or more continuation bytes than that).
    #[error("hpack integer overflow")]
    IntegerOverflow,
    /// The block ended inside a field.
    #[error("hpack block truncated")]
    Truncated,
    /// A string failed Huffman decoding.
    #[error("hpack huffman error")]
    Huffman,
    /// Index 0, or (while in sync) an index past the table.
    #[error("hpack invalid index")]
    InvalidIndex,
    /// A dynamic table size update above [`MAX_TABLE_SIZE`].
    #[error("hpack table size update too large")]
    TableSizeTooLarge,
    /// A table size update after the first field of a block.
    #[error("hpack table size update misplaced")]
    MisplacedSizeUpdate,
}

impl HpackError {
    /// A stable, short reason for counters.
    pub fn reason(self) -> &'static str {
        match self {
            HpackError::IntegerOverflow => "h2_hpack_integer_overflow",
            HpackError::Truncated => "h2_hpack_truncated",
            HpackError::Huffman => "h2_hpack_huffman",
            HpackError::InvalidIndex => "h2_hpack_invalid_index",
            HpackError::TableSizeTooLarge => "h2_hpack_table_size_too_large",
            HpackError::MisplacedSizeUpdate => "h2_hpack_misplaced_size_update",
        }
    }
}

/// The result of decoding one header block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Block {
    /// Decoded fields in order (names lowercase as sent; values lossily UTF-8).
    pub fields: Vec<(String, String)>,
    /// Fields whose name (and value, for indexed fields) referred to dynamic-table entries
    /// this decoder never saw.
    pub unknown: usize,
    /// Fields dropped because the decoded list exceeded the header list limit.
    pub dropped: usize,
    /// Decoding stopped at this error (fields before it are in `fields`).
    pub error: Option<HpackError>,
    /// A table size update exceeded the peer's SETTINGS_HEADER_TABLE_SIZE (accepted up
    /// to [`MAX_TABLE_SIZE`]: a passive observer may have missed a SETTINGS frame).
    pub above_setting: bool,
}

impl Block {
    /// The first value of a field.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A decoded (name, value); `None` parts refer to entries this decoder never saw.
type Pair = (Option<Vec<u8>>, Option<Vec<u8>>);

/// A dynamic-table entry; `None` parts were not seen (late join).
#[derive(Debug, Clone)]
struct Entry {
    name: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    size: usize,
}

/// One direction's HPACK decoding state (see the module doc).
pub struct Decoder {
    table: VecDeque<Entry>,
    size: usize,
    max_size: usize,
    /// The largest size the receiving peer allows (its SETTINGS_HEADER_TABLE_SIZE).
    allowed: usize,
    /// False when entries may be missing (late join, lost bytes, an earlier error).
    synced: bool,
    huffman: HuffmanDecoder,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("entries", &self.table.len())
            .field("size", &self.size)
            .field("max_size", &self.max_size)
            .field("synced", &self.synced)
            .finish()
    }
}

impl Decoder {
    /// A decoder at the start of a connection (`synced`) or joined late (not synced).
    pub fn new(synced: bool) -> Self {
        Decoder {
            table: VecDeque::new(),
            size: 0,
            max_size: DEFAULT_TABLE_SIZE,
            allowed: DEFAULT_TABLE_SIZE,
            synced,
            huffman: HuffmanDecoder::new(),
        }
    }

    /// Whether every dynamic-table entry is known.
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// Marks the table as possibly incomplete (bytes of this direction were lost).
    pub fn desync(&mut self) {
        self.synced = false;
    }

    /// The receiving peer announced SETTINGS_HEADER_TABLE_SIZE = `size`: the largest
    /// table this encoder may switch to (a larger one is flagged in [`Block`]). Sizes
    /// seen are kept as a maximum (the setting applies once acknowledged).
    pub fn set_allowed(&mut self, size: usize) {
        self.allowed = self.allowed.max(size);
    }

    /// Entries currently in the dynamic table.
    pub fn table_len(&self) -> usize {
        self.table.len()
    }

    /// Size of the dynamic table (RFC 7541 accounting).
    pub fn table_size(&self) -> usize {
        self.size
    }

    /// Decodes one complete header block; `max_list` bounds the decoded field list
    /// (name + value + 32 per field, RFC 7540 `SETTINGS_MAX_HEADER_LIST_SIZE` style).
    pub fn decode(&mut self, block: &[u8], max_list: usize) -> Block {
        let mut out = Block::default();
        let mut list = 0usize;
        let mut pos = 0usize;
        let mut first = true;
        while pos < block.len() {
            match self.field(block, &mut pos, first) {
                Ok(None) => {
                    out.above_setting |= self.max_size > self.allowed;
                }
                Ok(Some((name, value))) => {
                    let (Some(n), Some(v)) = (name, value) else {
                        out.unknown += 1;
                        first = false;
                        continue;
                    };
                    list = list.saturating_add(n.len() + v.len() + ENTRY_OVERHEAD);
                    if list > max_list {
                        out.dropped += 1;
                    } else {
                        out.fields.push((
                            String::from_utf8_lossy(&n).into_owned(),
                            String::from_utf8_lossy(&v).into_owned(),
                        ));
                    }
                }
                Err(e) => {
                    out.error = Some(e);
                    self.synced = false;
                    break;
                }
            }
            first = false;
        }
        out
    }

    /// Decodes one field representation; `Ok(None)` for a table size update.
    fn field(
        &mut self,
        b: &[u8],
        pos: &mut usize,
        first: bool,
    ) -> Result<Option<Pair>, HpackError> {
        let c = b[*pos];
        if c & 0x80 != 0 {
            // Indexed field.
            let idx = integer(b, pos, 7)?;
            let (n, v) = self.lookup(idx)?;
            return Ok(Some((n, v)));
        }
        if c & 0xe0 == 0x20 {
            // Dynamic table size update (only at the start of a block).
            let size = integer(b, pos, 5)?;
            if !first {
                return Err(HpackError::MisplacedSizeUpdate);
            }
            let size = size as usize;
            if size > MAX_TABLE_SIZE {
                self.set_max(MAX_TABLE_SIZE);
                return Err(HpackError::TableSizeTooLarge);
            }
            self.set_max(size);
            return Ok(None);
        }
        let (prefix, indexing) = if c & 0xc0 == 0x40 {
            (6, true)
        } else {
            (4, false)
        };
        let idx = integer(b, pos, prefix)?;
        let name = if idx == 0 {
            Some(self.string(b, pos)?)
        } else {
            self.lookup(idx)?.0
        };
        let value = self.string(b, pos)?;
        if indexing {
            self.insert(name.clone(), value.clone());
        }
        Ok(Some((name, Some(value))))
    }

    fn lookup(&self, idx: u64) -> Result<Pair, HpackError> {
        let idx = idx as usize;
        if idx == 0 {
            return Err(HpackError::InvalidIndex);
        }
        if let Some((n, v)) = STATIC_TABLE.get(idx - 1) {
            return Ok((Some(n.as_bytes().to_vec()), Some(v.as_bytes().to_vec())));
        }
        match self.table.get(idx - 1 - STATIC_TABLE.len()) {
            Some(e) => Ok((e.name.clone(), e.value.clone())),
            None if self.synced => Err(HpackError::InvalidIndex),
            None => Ok((None, None)),
        }
    }

    fn string(&mut self, b: &[u8], pos: &mut usize) -> Result<Vec<u8>, HpackError> {
        let c = *b.get(*pos).ok_or(HpackError::Truncated)?;
        let len = integer(b, pos, 7)?;
        let len = usize::try_from(len).map_err(|_| HpackError::IntegerOverflow)?;
        let end = pos.checked_add(len).ok_or(HpackError::Truncated)?;
        let raw = b.get(*pos..end).ok_or(HpackError::Truncated)?;
        *pos = end;
        if c & 0x80 != 0 {
            self.huffman.decode(raw).map_err(|_| HpackError::Huffman)
        } else {
            Ok(raw.to_vec())
        }
    }

    fn set_max(&mut self, size: usize) {
        self.max_size = size;
        self.evict_to(size);
    }

    fn evict_to(&mut self, size: usize) {
        while self.size > size {
            match self.table.pop_back() {
                Some(e) => self.size -= e.size,
                None => {
                    self.size = 0;
                    break;
                }
            }
        }
    }

    fn insert(&mut self, name: Option<Vec<u8>>, value: Vec<u8>) {
        // An unknown name's length is unknown: account for the value only (the table
        // state is approximate anyway once names are missing).
        let size = name.as_ref().map_or(0, Vec::len) + value.len() + ENTRY_OVERHEAD;
        if size > self.max_size {
            self.table.clear();
            self.size = 0;
            return;
        }
        self.evict_to(self.max_size - size);
        self.size += size;
        self.table.push_front(Entry {
            name,
            value: Some(value),
            size,
        });
    }
}

/// Decodes an HPACK integer with an `n`-bit prefix (RFC 7541 §5.1), at most 32 bits.
pub fn integer(b: &[u8], pos: &mut usize, n: u8) -> Result<u64, HpackError> {
    let first = *b.get(*pos).ok_or(HpackError::Truncated)?;
    *pos += 1;
    let max = (1u64 << n) - 1;
    let mut v = u64::from(first) & max;
    if v < max {
        return Ok(v);
    }
    let mut shift = 0u32;
    loop {
        let c = *b.get(*pos).ok_or(HpackError::Truncated)?;
        *pos += 1;
        v += u64::from(c & 0x7f) << shift;
        if v > u64::from(u32::MAX) {
            return Err(HpackError::IntegerOverflow);
        }
        if c & 0x80 == 0 {
            return Ok(v);
        }
        shift += 7;
        if shift > 28 {
            return Err(HpackError::IntegerOverflow);
        }
    }
}

/// The HPACK static table (RFC 7541 Appendix A), index 1 first.
pub const STATIC_TABLE: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];
