//! [`Marks`]: where a payload's line ends (CR, LF) and colons are, as bit masks of 64-byte
//! blocks computed when first asked for, so that the HTTP/1 tokenizer's whole-line path
//! finds a header line's end and its first ':' with a shift and a count of trailing zeros
//! instead of two `memchr` calls per line (a header line is 20–60 bytes, shorter than what
//! `memchr`'s set-up pays off for; on a saturated nginx's payloads the two calls were a
//! third of the redactor's instructions, and the masks, about as many instructions per
//! line, ran faster in each of three paired runs: bench/results.md, session 21).
//!
//! On x86_64 a block takes four SSE2 loads and compares (SSE2 is in every x86_64 CPU);
//! elsewhere a byte loop gives the same masks.

/// Bytes per block (one bit each in a `u64`).
const BLOCK: usize = 64;

/// The masks of one payload's blocks, one block cached. Positions are indexes of the
/// payload passed to every call, which must be the same payload each time; its bytes may
/// change behind the position of the next query (a redacted value), never after it.
#[derive(Debug)]
pub(crate) struct Marks {
    /// Start of the cached block (`usize::MAX`: none yet).
    at: usize,
    /// Bits of the cached block's CR and LF bytes.
    eol: u64,
    /// Bits of the cached block's ':' bytes.
    colon: u64,
}

impl Marks {
    /// No block computed yet.
    pub(crate) fn new() -> Self {
        Marks {
            at: usize::MAX,
            eol: 0,
            colon: 0,
        }
    }

    /// The line that starts at `hay[from]`, if it ends before `to` (`to` is capped at
    /// `hay.len()`): the index of its first CR or LF and of its first ':' if it has one. One
    /// forward walk over the blocks (the colon's block, then the line end's, where the next
    /// line starts), so each block is computed once per payload.
    #[inline]
    pub(crate) fn line(
        &mut self,
        hay: &[u8],
        from: usize,
        to: usize,
    ) -> Option<(usize, Option<usize>)> {
        let to = to.min(hay.len());
        let first = self.find::<true>(hay, from, to)?;
        if hay[first] != b':' {
            return Some((first, None));
        }
        let eol = self.find::<false>(hay, first + 1, to)?;
        Some((eol, Some(first)))
    }

    /// The index of the first CR or LF of `hay[from..to]` (`to` is capped at `hay.len()`).
    #[inline]
    pub(crate) fn line_end(&mut self, hay: &[u8], from: usize, to: usize) -> Option<usize> {
        self.find::<false>(hay, from, to.min(hay.len()))
    }

    /// The first byte of `hay[from..to]` that is a CR or LF, or with `COLON` also a ':'.
    #[inline]
    fn find<const COLON: bool>(&mut self, hay: &[u8], mut from: usize, to: usize) -> Option<usize> {
        while from < to {
            let block = from & !(BLOCK - 1);
            if self.at != block {
                self.fill(hay, block);
            }
            let mask = if COLON {
                self.eol | self.colon
            } else {
                self.eol
            };
            let bits = mask >> (from - block);
            if bits != 0 {
                let at = from + bits.trailing_zeros() as usize;
                return (at < to).then_some(at);
            }
            from = block + BLOCK;
        }
        None
    }

    /// Computes the masks of the block that starts at `block` (bytes past the payload's
    /// end count as none of the marked bytes).
    fn fill(&mut self, hay: &[u8], block: usize) {
        let (eol, colon) = if let Some(full) = hay.get(block..block + BLOCK) {
            masks(full)
        } else if let Some(last) = hay.len().checked_sub(BLOCK) {
            // the payload's last 64 bytes, shifted to start at `block` (no copy)
            let (e, c) = masks(&hay[last..]);
            (e >> (block - last), c >> (block - last))
        } else {
            let mut padded = [0u8; BLOCK];
            padded[..hay.len() - block].copy_from_slice(&hay[block..]);
            masks(&padded)
        };
        *self = Marks {
            at: block,
            eol,
            colon,
        };
    }
}

/// The CR/LF and ':' bit masks of the 64 bytes `b` (bit `i` for byte `i`).
#[cfg(target_arch = "x86_64")]
fn masks(b: &[u8]) -> (u64, u64) {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    let (mut eol, mut colon) = (0u64, 0u64);
    let b: &[u8; BLOCK] = b.try_into().expect("a block is 64 bytes");
    // SAFETY: SSE2 is part of the x86_64 baseline (every x86_64 CPU has it, and the target
    // enables it), and each load reads bytes 16k..16k+16 of the 64-byte array, unaligned.
    #[allow(unsafe_code)]
    unsafe {
        let cr = _mm_set1_epi8(b'\r' as i8);
        let lf = _mm_set1_epi8(b'\n' as i8);
        let co = _mm_set1_epi8(b':' as i8);
        for k in 0..BLOCK / 16 {
            let v = _mm_loadu_si128(b.as_ptr().add(16 * k).cast::<__m128i>());
            let e = _mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, lf)));
            let c = _mm_movemask_epi8(_mm_cmpeq_epi8(v, co));
            // movemask sets the low 16 bits only
            eol |= u64::from(e as u16) << (16 * k);
            colon |= u64::from(c as u16) << (16 * k);
        }
    }
    (eol, colon)
}

/// The CR/LF and ':' bit masks of the 64 bytes `b` (bit `i` for byte `i`).
#[cfg(not(target_arch = "x86_64"))]
fn masks(b: &[u8]) -> (u64, u64) {
    masks_scalar(b)
}

/// [`masks`] a byte at a time: the other architectures' path and the tests' reference.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn masks_scalar(b: &[u8]) -> (u64, u64) {
    let (mut eol, mut colon) = (0u64, 0u64);
    for (i, &x) in b.iter().enumerate() {
        eol |= u64::from(x == b'\r' || x == b'\n') << i;
        colon |= u64::from(x == b':') << i;
    }
    (eol, colon)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random bytes drawn mostly from the marked ones, so every block has some.
    fn noise(seed: &mut u64, n: usize) -> Vec<u8> {
        let alphabet = b"\r\n:ab \t\x00\xff";
        (0..n)
            .map(|_| {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                alphabet[(*seed % alphabet.len() as u64) as usize]
            })
            .collect()
    }

    #[test]
    fn masks_equal_the_byte_loop() {
        let mut seed = 0x2545_f491_4f6c_dd1d;
        for _ in 0..2000 {
            let b = noise(&mut seed, BLOCK);
            assert_eq!(masks(&b), masks_scalar(&b));
        }
    }

    /// Every query equals a linear search, wherever it starts and ends, in any order of
    /// queries (the cached block changes back and forth).
    #[test]
    fn queries_equal_a_linear_search() {
        let mut seed = 0x9e37_79b9_7f4a_7c15;
        for len in [0, 1, 15, 63, 64, 65, 127, 128, 200, 300] {
            let hay = noise(&mut seed, len);
            let mut marks = Marks::new();
            for _ in 0..300 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let from = (seed % (len as u64 + 2)) as usize;
                let to = from + (seed >> 20) as usize % (len + 2);
                let end = to.min(len);
                let eol = (from..end).find(|&i| matches!(hay[i], b'\r' | b'\n'));
                let want = eol.map(|e| (e, (from..e).find(|&i| hay[i] == b':')));
                assert_eq!(marks.line(&hay, from, to), want, "{len} {from} {to}");
            }
        }
    }
}
