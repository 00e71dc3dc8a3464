//! The HPACK Huffman code (RFC 7541 Appendix B): symbol counting and same-size
//! redaction encodings.
//!
//! A sensitive Huffman-coded value of `L` bytes that decodes to `n` characters in `B`
//! bits (`8L - 7 <= B <= 8L`, the rest is padding of ones) is replaced by `n` redaction
//! characters whose codes also take exactly `B` bits, followed by the same padding: the
//! string keeps its byte length and its decoded length, so the dynamic table entry it
//! creates keeps its size. Mostly `*` (8 bits); shorter (`x` 7, `-` 6, `0` 5) or longer
//! (`!` 10, `+` 11, `#` 12, `~` 13, `^` 14, `<` 15, `\` 19, then non-ASCII bytes) codes
//! make up the difference. [`achievable`] says exactly which (count, bits) pairs exist.

use std::sync::OnceLock;

/// (code, bit length) of every symbol 0..=255 and EOS (256).
const CODES: [(u32, u8); 257] = [
    (0x1ff8, 13),
    (0x7fffd8, 23),
    (0xfffffe2, 28),
    (0xfffffe3, 28),
    (0xfffffe4, 28),
    (0xfffffe5, 28),
    (0xfffffe6, 28),
    (0xfffffe7, 28),
    (0xfffffe8, 28),
    (0xffffea, 24),
    (0x3ffffffc, 30),
    (0xfffffe9, 28),
    (0xfffffea, 28),
    (0x3ffffffd, 30),
    (0xfffffeb, 28),
    (0xfffffec, 28),
    (0xfffffed, 28),
    (0xfffffee, 28),
    (0xfffffef, 28),
    (0xffffff0, 28),
    (0xffffff1, 28),
    (0xffffff2, 28),
    (0x3ffffffe, 30),
    (0xffffff3, 28),
    (0xffffff4, 28),
    (0xffffff5, 28),
    (0xffffff6, 28),
    (0xffffff7, 28),
    (0xffffff8, 28),
    (0xffffff9, 28),
    (0xffffffa, 28),
    (0xffffffb, 28),
    (0x14, 6),
    (0x3f8, 10),
    (0x3f9, 10),
    (0xffa, 12),
    (0x1ff9, 13),
    (0x15, 6),
    (0xf8, 8),
    (0x7fa, 11),
    (0x3fa, 10),
    (0x3fb, 10),
    (0xf9, 8),
    (0x7fb, 11),
    (0xfa, 8),
    (0x16, 6),
    (0x17, 6),
    (0x18, 6),
    (0x0, 5),
    (0x1, 5),
    (0x2, 5),
    (0x19, 6),
    (0x1a, 6),
    (0x1b, 6),
    (0x1c, 6),
    (0x1d, 6),
    (0x1e, 6),
    (0x1f, 6),
    (0x5c, 7),
    (0xfb, 8),
    (0x7ffc, 15),
    (0x20, 6),
    (0xffb, 12),
    (0x3fc, 10),
    (0x1ffa, 13),
    (0x21, 6),
    (0x5d, 7),
    (0x5e, 7),
    (0x5f, 7),
    (0x60, 7),
    (0x61, 7),
    (0x62, 7),
    (0x63, 7),
    (0x64, 7),
    (0x65, 7),
    (0x66, 7),
    (0x67, 7),
    (0x68, 7),
    (0x69, 7),
    (0x6a, 7),
    (0x6b, 7),
    (0x6c, 7),
    (0x6d, 7),
    (0x6e, 7),
    (0x6f, 7),
    (0x70, 7),
    (0x71, 7),
    (0x72, 7),
    (0xfc, 8),
    (0x73, 7),
    (0xfd, 8),
    (0x1ffb, 13),
    (0x7fff0, 19),
    (0x1ffc, 13),
    (0x3ffc, 14),
    (0x22, 6),
    (0x7ffd, 15),
    (0x3, 5),
    (0x23, 6),
    (0x4, 5),
    (0x24, 6),
    (0x5, 5),
    (0x25, 6),
    (0x26, 6),
    (0x27, 6),
    (0x6, 5),
    (0x74, 7),
    (0x75, 7),
    (0x28, 6),
    (0x29, 6),
    (0x2a, 6),
    (0x7, 5),
    (0x2b, 6),
    (0x76, 7),
    (0x2c, 6),
    (0x8, 5),
    (0x9, 5),
    (0x2d, 6),
    (0x77, 7),
    (0x78, 7),
    (0x79, 7),
    (0x7a, 7),
    (0x7b, 7),
    (0x7ffe, 15),
    (0x7fc, 11),
    (0x3ffd, 14),
    (0x1ffd, 13),
    (0xffffffc, 28),
    (0xfffe6, 20),
    (0x3fffd2, 22),
    (0xfffe7, 20),
    (0xfffe8, 20),
    (0x3fffd3, 22),
    (0x3fffd4, 22),
    (0x3fffd5, 22),
    (0x7fffd9, 23),
    (0x3fffd6, 22),
    (0x7fffda, 23),
    (0x7fffdb, 23),
    (0x7fffdc, 23),
    (0x7fffdd, 23),
    (0x7fffde, 23),
    (0xffffeb, 24),
    (0x7fffdf, 23),
    (0xffffec, 24),
    (0xffffed, 24),
    (0x3fffd7, 22),
    (0x7fffe0, 23),
    (0xffffee, 24),
    (0x7fffe1, 23),
    (0x7fffe2, 23),
    (0x7fffe3, 23),
    (0x7fffe4, 23),
    (0x1fffdc, 21),
    (0x3fffd8, 22),
    (0x7fffe5, 23),
    (0x3fffd9, 22),
    (0x7fffe6, 23),
    (0x7fffe7, 23),
    (0xffffef, 24),
    (0x3fffda, 22),
    (0x1fffdd, 21),
    (0xfffe9, 20),
    (0x3fffdb, 22),
    (0x3fffdc, 22),
    (0x7fffe8, 23),
    (0x7fffe9, 23),
    (0x1fffde, 21),
    (0x7fffea, 23),
    (0x3fffdd, 22),
    (0x3fffde, 22),
    (0xfffff0, 24),
    (0x1fffdf, 21),
    (0x3fffdf, 22),
    (0x7fffeb, 23),
    (0x7fffec, 23),
    (0x1fffe0, 21),
    (0x1fffe1, 21),
    (0x3fffe0, 22),
    (0x1fffe2, 21),
    (0x7fffed, 23),
    (0x3fffe1, 22),
    (0x7fffee, 23),
    (0x7fffef, 23),
    (0xfffea, 20),
    (0x3fffe2, 22),
    (0x3fffe3, 22),
    (0x3fffe4, 22),
    (0x7ffff0, 23),
    (0x3fffe5, 22),
    (0x3fffe6, 22),
    (0x7ffff1, 23),
    (0x3ffffe0, 26),
    (0x3ffffe1, 26),
    (0xfffeb, 20),
    (0x7fff1, 19),
    (0x3fffe7, 22),
    (0x7ffff2, 23),
    (0x3fffe8, 22),
    (0x1ffffec, 25),
    (0x3ffffe2, 26),
    (0x3ffffe3, 26),
    (0x3ffffe4, 26),
    (0x7ffffde, 27),
    (0x7ffffdf, 27),
    (0x3ffffe5, 26),
    (0xfffff1, 24),
    (0x1ffffed, 25),
    (0x7fff2, 19),
    (0x1fffe3, 21),
    (0x3ffffe6, 26),
    (0x7ffffe0, 27),
    (0x7ffffe1, 27),
    (0x3ffffe7, 26),
    (0x7ffffe2, 27),
    (0xfffff2, 24),
    (0x1fffe4, 21),
    (0x1fffe5, 21),
    (0x3ffffe8, 26),
    (0x3ffffe9, 26),
    (0xffffffd, 28),
    (0x7ffffe3, 27),
    (0x7ffffe4, 27),
    (0x7ffffe5, 27),
    (0xfffec, 20),
    (0xfffff3, 24),
    (0xfffed, 20),
    (0x1fffe6, 21),
    (0x3fffe9, 22),
    (0x1fffe7, 21),
    (0x1fffe8, 21),
    (0x7ffff3, 23),
    (0x3fffea, 22),
    (0x3fffeb, 22),
    (0x1ffffee, 25),
    (0x1ffffef, 25),
    (0xfffff4, 24),
    (0xfffff5, 24),
    (0x3ffffea, 26),
    (0x7ffff4, 23),
    (0x3ffffeb, 26),
    (0x7ffffe6, 27),
    (0x3ffffec, 26),
    (0x3ffffed, 26),
    (0x7ffffe7, 27),
    (0x7ffffe8, 27),
    (0x7ffffe9, 27),
    (0x7ffffea, 27),
    (0x7ffffeb, 27),
    (0xffffffe, 28),
    (0x7ffffec, 27),
    (0x7ffffed, 27),
    (0x7ffffee, 27),
    (0x7ffffef, 27),
    (0x7fffff0, 27),
    (0x3ffffee, 26),
    (0x3fffffff, 30),
];

/// The EOS symbol (never valid inside a string).
const EOS: usize = 256;

/// Longest code.
const MAX_LEN: usize = 30;

/// Code lengths in order of preference for redaction characters (8 = `*` first).
const PREFERENCE: [usize; 21] = [
    8, 7, 6, 5, 10, 11, 12, 13, 14, 15, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 30,
];

/// Preferred redaction byte per code length (the first symbol of that length otherwise).
const PREFERRED: [u8; 11] = [
    b'*', b'x', b'-', b'0', b'!', b'+', b'#', b'~', b'^', b'<', b'\\',
];

struct Tables {
    /// The redaction symbol of each length (None: no symbol has that length).
    redact: [Option<u8>; MAX_LEN + 1],
    /// `pending[p]`: the shortest (preferred) symbol longer than `p` bits, whose first
    /// `p` bits end a partly written value.
    pending: [u8; MAX_LEN],
    /// Decoding automaton: per internal tree node and 4-bit nibble, the step taken.
    fsm: Vec<[Step; 16]>,
    /// Depth (bits read since the last symbol) of each internal node.
    depth: Vec<u8>,
    /// Whether an internal node lies on the all-ones path (valid padding so far).
    ones: Vec<bool>,
}

/// One nibble of the decoding automaton.
#[derive(Debug, Clone, Copy, Default)]
struct Step {
    /// The internal node reached.
    next: u16,
    /// The symbol completed inside the nibble, if any (at most one: codes are ≥ 5 bits).
    emit: Option<u8>,
    /// EOS (or a missing branch) was reached: the string is malformed.
    fail: bool,
}

/// Builds the code tree and the nibble automaton: (fsm, depth, ones).
fn automaton() -> (Vec<[Step; 16]>, Vec<u8>, Vec<bool>) {
    // child: >= 0 internal node, < 0 leaf -(symbol + 1), MISSING none
    const MISSING: i32 = i32::MIN;
    let mut nodes: Vec<[i32; 2]> = vec![[MISSING; 2]];
    let mut depth = vec![0u8];
    let mut ones = vec![true];
    for (sym, &(code, len)) in CODES.iter().enumerate() {
        let mut cur = 0usize;
        for k in (0..usize::from(len)).rev() {
            let bit = ((code >> k) & 1) as usize;
            if k == 0 {
                nodes[cur][bit] = -(sym as i32 + 1);
            } else {
                if nodes[cur][bit] == MISSING {
                    nodes.push([MISSING; 2]);
                    depth.push(depth[cur] + 1);
                    ones.push(ones[cur] && bit == 1);
                    nodes[cur][bit] = (nodes.len() - 1) as i32;
                }
                cur = nodes[cur][bit] as usize;
            }
        }
    }
    let fsm = (0..nodes.len())
        .map(|start| {
            let mut row = [Step::default(); 16];
            for (nib, step) in row.iter_mut().enumerate() {
                let mut cur = start;
                for k in (0..4).rev() {
                    let child = nodes[cur][(nib >> k) & 1];
                    if child == MISSING || child == -(EOS as i32 + 1) {
                        step.fail = true;
                        break;
                    }
                    if child < 0 {
                        step.emit = Some((-child - 1) as u8);
                        cur = 0;
                    } else {
                        cur = child as usize;
                    }
                }
                step.next = cur as u16;
            }
            row
        })
        .collect();
    (fsm, depth, ones)
}

fn tables() -> &'static Tables {
    static T: OnceLock<Tables> = OnceLock::new();
    T.get_or_init(|| {
        let mut redact = [None; MAX_LEN + 1];
        for b in PREFERRED {
            let len = usize::from(CODES[usize::from(b)].1);
            redact[len].get_or_insert(b);
        }
        for (s, &(_, len)) in CODES.iter().enumerate().take(EOS) {
            redact[usize::from(len)].get_or_insert(s as u8);
        }
        let mut pending = [0u8; MAX_LEN];
        for (p, slot) in pending.iter_mut().enumerate() {
            let best = PREFERRED
                .iter()
                .copied()
                .chain(0..=255u8)
                .filter(|&b| usize::from(CODES[usize::from(b)].1) > p)
                .min_by_key(|&b| CODES[usize::from(b)].1);
            *slot = best.unwrap_or(b'*');
        }
        let (fsm, depth, ones) = automaton();
        Tables {
            fsm,
            depth,
            ones,
            pending,
            redact,
        }
    })
}

/// What a run of Huffman-coded bytes holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Scan {
    /// Complete symbols.
    pub chars: usize,
    /// Bits of the complete symbols.
    pub bits: usize,
    /// Trailing bits that do not (yet) form a symbol.
    pub pending: usize,
    /// Those trailing bits are all ones (valid padding if fewer than 8).
    pub pending_ones: bool,
    /// EOS or a bit sequence no code starts (the string is malformed).
    pub invalid: bool,
}

impl Scan {
    /// Whether this scan of a whole string is a valid encoding (padding of at most 7
    /// ones, no EOS).
    pub fn valid_string(&self) -> bool {
        !self.invalid && self.pending <= 7 && self.pending_ones
    }
}

/// Decodes `data`, calling `sym` for each symbol; see [`Scan`]. Two automaton steps per
/// byte (4 bits each).
fn walk(data: &[u8], mut sym: impl FnMut(u8)) -> Scan {
    let t = tables();
    let mut s = Scan::default();
    let mut node = 0usize;
    for &byte in data {
        for nib in [byte >> 4, byte & 0x0f] {
            let step = t.fsm[node][usize::from(nib)];
            if step.fail {
                s.invalid = true;
                return s;
            }
            if let Some(b) = step.emit {
                sym(b);
                s.chars += 1;
            }
            node = usize::from(step.next);
        }
    }
    s.pending = usize::from(t.depth[node]);
    s.bits = data.len() * 8 - s.pending;
    s.pending_ones = t.ones[node];
    s
}

/// Counts the symbols of Huffman-coded bytes.
pub(crate) fn scan(data: &[u8]) -> Scan {
    walk(data, |_| {})
}

/// Decodes a whole Huffman-coded string (None if malformed).
pub(crate) fn decode(data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len() * 8 / 5);
    let s = walk(data, |b| out.push(b));
    s.valid_string().then_some(out)
}

/// Huffman-encodes `data` (with padding), as an HPACK encoder does.
pub fn encode(data: &[u8]) -> Vec<u8> {
    let mut w = BitWriter::default();
    for &b in data {
        let (code, len) = CODES[usize::from(b)];
        w.push(code, len as usize);
    }
    let pad = (8 - w.bits % 8) % 8;
    w.ones(pad);
    w.out
}

/// Bits of the Huffman code of `data` (without padding).
pub fn bit_len(data: &[u8]) -> usize {
    data.iter()
        .map(|&b| usize::from(CODES[usize::from(b)].1))
        .sum()
}

/// Whether `chars` symbols can take exactly `bits` bits. The code lengths are 5–8, 10–15,
/// 19–28 and 30; a sum of two or more of them reaches every value between `5 * chars`
/// and `30 * chars` except `30 * chars - 1` (checked against a full enumeration in tests).
pub(crate) fn achievable(chars: usize, bits: usize) -> bool {
    match chars {
        0 => bits == 0,
        1 => bits <= MAX_LEN && tables().redact[bits].is_some(),
        _ => bits >= 5 * chars && bits <= 30 * chars && bits != 30 * chars - 1,
    }
}

/// Whether `chars` symbols of printable redaction characters (codes of 5–8 and 10–15
/// bits) can take exactly `bits` bits.
fn achievable_printable(chars: usize, bits: usize) -> bool {
    match chars {
        0 => bits == 0,
        1 => matches!(bits, 5..=8 | 10..=15),
        _ => bits >= 5 * chars && bits <= 15 * chars,
    }
}

/// Whether a symbol of `len` bits can be followed by `left` symbols of `total` bits,
/// keeping to printable characters when `printable`.
fn fits(len: usize, left: usize, total: usize, printable: bool) -> bool {
    len <= total
        && if printable {
            len <= 15 && achievable_printable(left, total - len)
        } else {
            achievable(left, total - len)
        }
}

/// Appends bits MSB first.
#[derive(Debug, Default)]
pub(crate) struct BitWriter {
    /// Complete bytes.
    pub out: Vec<u8>,
    acc: u64,
    n: usize,
    /// Bits written in total.
    pub bits: usize,
}

impl BitWriter {
    fn push(&mut self, code: u32, len: usize) {
        self.acc = (self.acc << len) | u64::from(code) & ((1u64 << len) - 1);
        self.n += len;
        self.bits += len;
        while self.n >= 8 {
            self.n -= 8;
            self.out.push((self.acc >> self.n) as u8);
        }
        self.acc &= (1u64 << self.n) - 1;
    }

    /// Appends `k` times the 8-bit code `byte`.
    fn bytes(&mut self, byte: u8, k: usize) {
        if self.n == 0 {
            self.out.resize(self.out.len() + k, byte);
            self.bits += 8 * k;
        } else {
            for _ in 0..k {
                self.push(u32::from(byte), 8);
            }
        }
    }

    /// Appends `k` one bits.
    pub fn ones(&mut self, mut k: usize) {
        while k > 0 {
            let m = k.min(24);
            self.push((1u32 << m) - 1, m);
            k -= m;
        }
    }
}

/// A sensitive string's redacted output written so far (a byte-aligned prefix).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct OutState {
    /// Complete redaction symbols written.
    pub chars: usize,
    /// Their bits.
    pub bits: usize,
    /// Bits written after them: the start of a symbol still to be completed.
    pub pending: usize,
    /// Those bits' value (`pending` low bits).
    pub pattern: u32,
}

/// The code of `b` shifted down to its first `p` bits.
fn head(b: u8, p: usize) -> u32 {
    let (code, len) = CODES[usize::from(b)];
    code >> (usize::from(len) - p)
}

/// Symbols whose code starts with the `p` bits `pattern` and is longer than `min`,
/// preferred ones first.
fn with_prefix(p: usize, pattern: u32, min: usize) -> impl Iterator<Item = u8> {
    PREFERRED
        .iter()
        .copied()
        .chain(0..=255u8)
        .filter(move |&b| {
            let len = usize::from(CODES[usize::from(b)].1);
            len > min && len > p && head(b, p) == pattern
        })
}

/// Appends to `w` (which starts at the byte boundary after `st`) redaction symbols so
/// that the output holds exactly `chars` complete symbols in `bits` bits: first a symbol
/// that completes the `st.pending` bits, then a composition of mostly `*`. False if no
/// such sequence exists (nothing useful was written then).
pub(crate) fn continue_to(st: &OutState, chars: usize, bits: usize, w: &mut BitWriter) -> bool {
    if chars == st.chars {
        return bits == st.bits;
    }
    if chars < st.chars || bits < st.bits + st.pending || st.pending >= MAX_LEN {
        return false;
    }
    let t = tables();
    let mut left = chars - st.chars;
    let mut total = bits - st.bits;
    if st.pending > 0 {
        let pick = |printable: bool| {
            PREFERENCE.iter().find_map(|&len| {
                let b = with_prefix(st.pending, st.pattern, 0)
                    .find(|&b| usize::from(CODES[usize::from(b)].1) == len)?;
                fits(len, left - 1, total, printable).then_some((b, len))
            })
        };
        let Some((b, len)) = pick(true).or_else(|| pick(false)) else {
            return false;
        };
        let (code, _) = CODES[usize::from(b)];
        w.push(code, len - st.pending);
        left -= 1;
        total -= len;
    }
    if !achievable(left, total) {
        return false;
    }
    let printable = achievable_printable(left, total);
    // Bulk: as many `*` (8 bits) as leave the rest achievable (see `achievable*`: with r
    // symbols left, T bits, k more `*` keep 5(r-k) <= T-8k <= max(r-k) with r-k >= 2).
    if left > 2 {
        let max = if printable { 15 } else { 30 };
        let lo = total.saturating_sub(5 * left) / 3;
        let hi = (max * left).saturating_sub(total) / (max - 8);
        let mut k = lo.min(hi).min(left - 2);
        if !printable && k > 0 && total - 8 * k == 30 * (left - k) - 1 {
            k -= 1;
        }
        if k > 0 && fits(8, left - 1, total, printable) {
            w.bytes(CODES[usize::from(b'*')].0 as u8, k);
            left -= k;
            total -= 8 * k;
        }
    }
    while left > 0 {
        let Some(len) = PREFERENCE
            .iter()
            .copied()
            .find(|&len| fits(len, left - 1, total, printable))
        else {
            return false;
        };
        let Some(b) = t.redact[len] else {
            return false;
        };
        let (code, _) = CODES[usize::from(b)];
        w.push(code, len);
        left -= 1;
        total -= len;
    }
    true
}

/// Continues the output of a string cut after `end_bits` bits, whose original holds
/// `chars` complete symbols in `bits` bits there (and `ones`: its trailing bits are all
/// ones, maybe padding). The output may take a few bits more or less than the original
/// (a later symbol or the padding makes up for it); it ends with the first bits of a
/// symbol, completed later: ones if the original's were (they may be the padding), else
/// the start of the shortest redaction character that fits. Returns the new state.
pub(crate) fn continue_partial(
    st: &OutState,
    chars: usize,
    bits: usize,
    ones: bool,
    end_bits: usize,
    w: &mut BitWriter,
) -> Option<OutState> {
    let start = st.bits + st.pending;
    if chars == st.chars {
        // no new complete symbol: extend the pending bits along a longer code
        let p = end_bits.checked_sub(st.bits)?;
        let b = if ones && st.pattern == (1u32 << st.pending) - 1 {
            with_prefix(st.pending, st.pattern, p).find(|&b| head(b, p) == (1u32 << p) - 1)
        } else {
            None
        }
        .or_else(|| with_prefix(st.pending, st.pattern, p).next())?;
        let pattern = head(b, p);
        w.push(pattern, p - st.pending);
        return Some(OutState {
            pending: p,
            pattern,
            ..*st
        });
    }
    for d in 0..=16usize {
        let b = if d % 2 == 0 {
            bits.checked_add(d / 2)
        } else {
            bits.checked_sub(d / 2 + 1)
        };
        let Some(b) = b else { continue };
        if b > end_bits || end_bits - b >= MAX_LEN {
            continue;
        }
        let mut t = BitWriter::default();
        if continue_to(st, chars, b, &mut t) {
            let p = end_bits - b;
            let pattern = if ones {
                (1u32 << p) - 1
            } else {
                let t = tables();
                let sym = t.pending[p];
                head(sym, p)
            };
            t.push(pattern, p);
            debug_assert_eq!(start + t.bits, end_bits);
            *w = t;
            return Some(OutState {
                chars,
                bits: b,
                pending: p,
                pattern,
            });
        }
    }
    None
}

/// Like [`continue_to`] for the end of a string of `len_bytes` bytes: the symbols may
/// take `bits` or any count that leaves valid padding (at most 7 one bits); the exact
/// `bits` is tried first. Writes the padding too.
pub(crate) fn finish(
    st: &OutState,
    chars: usize,
    bits: usize,
    len_bytes: usize,
    w: &mut BitWriter,
) -> bool {
    let end = len_bytes * 8;
    let start = st.bits + st.pending;
    if chars == st.chars {
        // the pending bits are the padding: they must be ones
        let pad = end.saturating_sub(st.bits);
        if pad > 7 || st.pattern != (1u32 << st.pending) - 1 {
            return false;
        }
        w.ones(end - start);
        return true;
    }
    let lo = end.saturating_sub(7);
    let candidates = std::iter::once(bits).chain((lo..=end).filter(|&b| b != bits));
    for b in candidates {
        let mut t = BitWriter {
            out: Vec::with_capacity(len_bytes),
            ..BitWriter::default()
        };
        if b <= end && continue_to(st, chars, b, &mut t) {
            t.ones(end - start - t.bits);
            *w = t;
            return true;
        }
    }
    false
}

/// Redacts a whole Huffman string: same byte length, same decoded length, every
/// character a redaction character. None if `data` is not a valid Huffman string.
pub fn redact_string(data: &[u8]) -> Option<Vec<u8>> {
    let s = scan(data);
    if !s.valid_string() {
        return None;
    }
    let mut w = BitWriter::default();
    if !finish(&OutState::default(), s.chars, s.bits, data.len(), &mut w) {
        return None;
    }
    Some(w.out)
}

/// Whether `b` is one of the redaction characters [`redact_string`] writes (a value
/// split across payloads may also hold a few other characters where it was cut).
pub fn is_redaction_char(b: u8) -> bool {
    tables().redact.contains(&Some(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Canonical-code tables: (first code, its index in `sorted`, count) per length, and
    /// the symbols sorted by (length, code).
    struct Canon {
        first_code: [u32; MAX_LEN + 1],
        first_idx: [usize; MAX_LEN + 1],
        count: [u32; MAX_LEN + 1],
        sorted: Vec<u16>,
    }

    fn canon() -> Canon {
        let mut sorted: Vec<u16> = (0..257u16).collect();
        sorted.sort_by_key(|&s| (CODES[usize::from(s)].1, CODES[usize::from(s)].0));
        let mut first_code = [0u32; MAX_LEN + 1];
        let mut first_idx = [0usize; MAX_LEN + 1];
        let mut count = [0u32; MAX_LEN + 1];
        for (i, &s) in sorted.iter().enumerate() {
            let (code, len) = CODES[usize::from(s)];
            let len = usize::from(len);
            if count[len] == 0 {
                first_code[len] = code;
                first_idx[len] = i;
            }
            count[len] += 1;
        }
        Canon {
            first_code,
            first_idx,
            count,
            sorted,
        }
    }

    /// The bit-by-bit reference decoder (canonical code tables).
    fn walk_bits(data: &[u8], mut sym: impl FnMut(u8)) -> Scan {
        let t = canon();
        let mut s = Scan {
            pending_ones: true,
            ..Scan::default()
        };
        let mut code = 0u32;
        let mut len = 0usize;
        for &byte in data {
            for k in (0..8).rev() {
                let bit = u32::from(byte >> k) & 1;
                code = (code << 1) | bit;
                len += 1;
                s.pending_ones &= bit == 1;
                if t.count[len] > 0
                    && code >= t.first_code[len]
                    && code - t.first_code[len] < t.count[len]
                {
                    let idx = t.first_idx[len] + (code - t.first_code[len]) as usize;
                    let symbol = usize::from(t.sorted[idx]);
                    if symbol == EOS {
                        s.invalid = true;
                        return s;
                    }
                    sym(symbol as u8);
                    s.chars += 1;
                    s.bits += len;
                    code = 0;
                    len = 0;
                    s.pending_ones = true;
                } else if len >= MAX_LEN {
                    s.invalid = true;
                    return s;
                }
            }
        }
        s.pending = len;
        s
    }

    #[test]
    fn automaton_matches_the_bitwise_decoder() {
        let mut seed = 7u64;
        for round in 0..20_000 {
            let n = (rng(&mut seed) % 40) as usize;
            let data: Vec<u8> = if round % 2 == 0 {
                let v: Vec<u8> = (0..n).map(|_| rng(&mut seed) as u8).collect();
                let mut e = encode(&v);
                e.truncate((rng(&mut seed) as usize) % (e.len() + 1));
                e
            } else {
                (0..n).map(|_| rng(&mut seed) as u8).collect()
            };
            let (mut a, mut b) = (Vec::new(), Vec::new());
            let x = walk(&data, |c| a.push(c));
            let y = walk_bits(&data, |c| b.push(c));
            assert_eq!(x.invalid, y.invalid, "{data:02x?}");
            if !x.invalid {
                assert_eq!(x, y, "{data:02x?}");
                assert_eq!(a, b);
            }
        }
    }

    #[test]
    fn code_is_canonical_and_decodes_rfc_examples() {
        let t = canon();
        for len in 1..=MAX_LEN {
            for i in 0..t.count[len] as usize {
                let s = usize::from(t.sorted[t.first_idx[len] + i]);
                assert_eq!(CODES[s].0, t.first_code[len] + i as u32);
            }
        }
        // RFC 7541 C.4.1: "www.example.com"
        let enc = [
            0xf1, 0xe3, 0xc2, 0xe5, 0xf2, 0x3a, 0x6b, 0xa0, 0xab, 0x90, 0xf4, 0xff,
        ];
        assert_eq!(decode(&enc).as_deref(), Some(&b"www.example.com"[..]));
        assert_eq!(encode(b"www.example.com"), enc);
        assert_eq!(encode(b"no-cache"), [0xa8, 0xeb, 0x10, 0x64, 0x9c, 0xbf]);
        assert!(scan(&[0xff, 0xff, 0xff, 0xff]).invalid);
    }

    #[test]
    fn achievable_matches_enumeration() {
        let lens: Vec<usize> = (1..=MAX_LEN)
            .filter(|&l| tables().redact[l].is_some())
            .collect();
        assert_eq!(lens, {
            let mut p = PREFERENCE.to_vec();
            p.sort();
            p
        });
        let mut reach = vec![false; 1];
        reach[0] = true;
        for r in 1..=12usize {
            let mut next = vec![false; 30 * r + 1];
            for (t, &ok) in reach.iter().enumerate() {
                if ok {
                    for &l in &lens {
                        next[t + l] = true;
                    }
                }
            }
            for (t, &ok) in next.iter().enumerate() {
                assert_eq!(achievable(r, t), ok, "r={r} t={t}");
            }
            assert!(!achievable(r, 30 * r + 1));
            reach = next;
        }
    }

    /// xorshift, no dependency
    fn rng(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }

    #[test]
    fn property_random_values_redact_to_same_sizes() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for round in 0..20_000 {
            let n = (rng(&mut seed) % 64) as usize;
            let class = round % 4;
            let v: Vec<u8> = (0..n)
                .map(|_| {
                    let x = rng(&mut seed);
                    match class {
                        0 => {
                            b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/="
                                [(x % 65) as usize]
                        }
                        1 => b"0123456789abcdef"[(x % 16) as usize],
                        2 => (x % 95) as u8 + 32,
                        _ => x as u8,
                    }
                })
                .collect();
            let enc = encode(&v);
            let red = redact_string(&enc).expect("valid string redacts");
            assert_eq!(red.len(), enc.len());
            let dec = decode(&red).expect("redacted decodes");
            assert_eq!(dec.len(), v.len(), "{v:?}");
            assert!(dec.iter().all(|&b| is_redaction_char(b)), "{dec:?}");
            if class != 3 {
                // printable inputs redact to printable characters
                assert!(dec.iter().all(|b| b.is_ascii_graphic()), "{dec:?}");
            }
        }
    }

    #[test]
    fn split_strings_continue_from_a_prefix() {
        let mut seed = 42u64;
        let mut ok = 0;
        for _ in 0..5_000 {
            let n = 1 + (rng(&mut seed) % 40) as usize;
            let v: Vec<u8> = (0..n)
                .map(|_| {
                    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789-_."
                        [(rng(&mut seed) % 49) as usize]
                })
                .collect();
            let enc = encode(&v);
            let cut = (rng(&mut seed) as usize) % enc.len();
            // first part
            let s1 = scan(&enc[..cut]);
            let mut w = BitWriter::default();
            let st = continue_partial(
                &OutState::default(),
                s1.chars,
                s1.bits,
                s1.pending_ones,
                cut * 8,
                &mut w,
            )
            .expect("a first part always fits");
            let mut out = w.out;
            // the rest
            let s = scan(&enc);
            let mut w = BitWriter::default();
            if finish(&st, s.chars, s.bits, enc.len(), &mut w) {
                out.extend(w.out);
                assert_eq!(out.len(), enc.len());
                let dec = decode(&out).expect("decodes");
                assert_eq!(dec.len(), v.len());
                if !v.iter().all(|&b| is_redaction_char(b)) {
                    assert_ne!(dec, v);
                }
                ok += 1;
            }
        }
        assert!(ok > 4_990, "only {ok} of 5000 split strings fit");
    }
}
