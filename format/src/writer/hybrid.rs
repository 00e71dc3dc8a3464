//! Parquet's RLE / bit-packing hybrid encoding (the format's `RLE` encoding, used for
//! definition levels and dictionary indices), written without the length prefix, as data
//! pages v2 store both.
//!
//! Runs of at least 8 equal values that start at a multiple of 8 values since the last run
//! become RLE runs; every other value is bit-packed, 8 at a time, LSB first. Only the last
//! bit-packed group of the output is padded (with zeros), so a decoder that reads as many
//! values as the page holds never reads padding.

/// Bit-packed groups of 8 values per run header: 63 keeps every header one byte, as
/// parquet-mr and parquet-rs write them.
const MAX_GROUPS: usize = 63;

/// Bits needed for values up to `max` (0 for 0).
pub(super) fn bit_width(max: u32) -> u8 {
    (u32::BITS - max.leading_zeros()) as u8
}

/// Appends `values` (each below `2^bit_width`, `bit_width` at most 32) to `out`.
pub(super) fn encode(values: &[u32], bit_width: u8, out: &mut Vec<u8>) {
    encode_by(values, |&v| v, bit_width, out);
}

/// [`encode`] of `value(item)` for each of `items`, without a slice of the values.
pub(super) fn encode_by<T>(
    items: &[T],
    value: impl Fn(&T) -> u32 + Copy,
    bit_width: u8,
    out: &mut Vec<u8>,
) {
    let mut packed_from = 0;
    // `i` moves a group of 8 at a time from the last run's end: a run can start at a group
    // boundary only, and it needs its first, second and eighth values equal
    let mut i = 0;
    while i + 8 <= items.len() {
        let v = value(&items[i]);
        if value(&items[i + 1]) == v && value(&items[i + 7]) == v {
            let run = 1 + items[i + 1..].iter().take_while(|x| value(x) == v).count();
            if run >= 8 {
                packed(&items[packed_from..i], value, bit_width, out);
                rle_run(v, run, bit_width, out);
                i += run;
                packed_from = i;
                continue;
            }
        }
        i += 8;
    }
    packed(&items[packed_from..], value, bit_width, out);
}

/// [`encode`] of `count` times `value`, without a slice of them: one RLE run (as `encode`
/// writes for 8 or more equal values; fewer are bit-packed the same way).
pub(super) fn encode_repeated(value: u32, count: usize, bit_width: u8, out: &mut Vec<u8>) {
    if count >= 8 {
        rle_run(value, count, bit_width, out);
    } else {
        packed(&vec![value; count], |&v| v, bit_width, out);
    }
}

/// One RLE run: `count` times `value`.
fn rle_run(value: u32, count: usize, bit_width: u8, out: &mut Vec<u8>) {
    uleb128((count as u64) << 1, out);
    let bytes = usize::from(bit_width).div_ceil(8);
    out.extend_from_slice(&value.to_le_bytes()[..bytes]);
}

/// Bit-packed runs of the values of `items` (a multiple of 8 unless they end the output).
fn packed<T>(items: &[T], value: impl Fn(&T) -> u32, bit_width: u8, out: &mut Vec<u8>) {
    let width = usize::from(bit_width);
    for run in items.chunks(MAX_GROUPS * 8) {
        let groups = run.len().div_ceil(8);
        uleb128(((groups as u64) << 1) | 1, out);
        out.reserve(groups * width);
        for group in run.chunks(8) {
            // 8 values of `width` bits are `width` bytes; a short last group is padded with 0
            if width <= 16 {
                let mut acc: u128 = 0;
                for (k, x) in group.iter().enumerate() {
                    acc |= u128::from(value(x)) << (k * width);
                }
                out.extend_from_slice(&acc.to_le_bytes()[..width]);
            } else {
                let mut acc: u64 = 0;
                let mut bits = 0;
                let padding = std::iter::repeat_n(0u32, 8 - group.len());
                for v in group.iter().map(&value).chain(padding) {
                    acc |= u64::from(v) << bits;
                    bits += width;
                    while bits >= 8 {
                        out.push(acc as u8);
                        acc >>= 8;
                        bits -= 8;
                    }
                }
            }
        }
    }
}

/// Unsigned LEB128 (Parquet's varint).
fn uleb128(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reference decoder of the hybrid encoding (the Parquet spec, read literally).
    fn decode(mut buf: &[u8], bit_width: u8, n: usize) -> Vec<u32> {
        let mut out = Vec::new();
        let width = usize::from(bit_width);
        while out.len() < n {
            let mut header = 0u64;
            let mut shift = 0;
            loop {
                let b = buf[0];
                buf = &buf[1..];
                header |= u64::from(b & 0x7f) << shift;
                shift += 7;
                if b & 0x80 == 0 {
                    break;
                }
            }
            if header & 1 == 0 {
                let count = (header >> 1) as usize;
                let bytes = width.div_ceil(8);
                let mut v = [0u8; 4];
                v[..bytes].copy_from_slice(&buf[..bytes]);
                buf = &buf[bytes..];
                out.extend(std::iter::repeat_n(u32::from_le_bytes(v), count));
            } else {
                let values = (header >> 1) as usize * 8;
                for k in 0..values {
                    let mut v = 0u32;
                    for bit in 0..width {
                        let pos = k * width + bit;
                        v |= u32::from((buf[pos / 8] >> (pos % 8)) & 1) << bit;
                    }
                    out.push(v);
                }
                buf = &buf[values * width / 8..];
            }
        }
        assert!(buf.is_empty(), "{} bytes after the values", buf.len());
        out.truncate(n);
        out
    }

    #[test]
    fn bit_widths() {
        assert_eq!(bit_width(0), 0);
        assert_eq!(bit_width(1), 1);
        assert_eq!(bit_width(2), 2);
        assert_eq!(bit_width(255), 8);
        assert_eq!(bit_width(256), 9);
        assert_eq!(bit_width(u32::MAX), 32);
    }

    #[test]
    fn a_repeated_value_is_encoded_as_encode_does() {
        for bit_width in [0u8, 1, 3, 8, 9, 17, 32] {
            let v = if bit_width == 0 {
                0
            } else {
                u32::MAX >> (32 - u32::from(bit_width))
            };
            for count in [0usize, 1, 7, 8, 9, 100, 8192] {
                let (mut a, mut b) = (Vec::new(), Vec::new());
                encode(&vec![v; count], bit_width, &mut a);
                encode_repeated(v, count, bit_width, &mut b);
                assert_eq!(a, b, "width {bit_width} count {count}");
            }
        }
    }

    #[test]
    fn known_bytes() {
        // the spec's example: 0..=7 at 3 bits, one group
        let mut out = Vec::new();
        encode(&[0, 1, 2, 3, 4, 5, 6, 7], 3, &mut out);
        assert_eq!(out, [0x03, 0x88, 0xc6, 0xfa]);
        // ten 1s at 1 bit: one RLE run
        let mut out = Vec::new();
        encode(&[1; 10], 1, &mut out);
        assert_eq!(out, [20, 1]);
        // a 300-long run at 9 bits: two-byte header, two-byte value
        let mut out = Vec::new();
        encode(&[257; 300], 9, &mut out);
        assert_eq!(out, [0xd8, 0x04, 0x01, 0x01]);
    }

    #[test]
    fn round_trips() {
        let mut seed = 7u64;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) as u32
        };
        for bit_width in [0u8, 1, 2, 3, 5, 8, 13, 17, 32] {
            let max = if bit_width == 32 {
                u32::MAX
            } else {
                (1u32 << bit_width) - 1
            };
            for len in [
                0usize,
                1,
                7,
                8,
                9,
                15,
                16,
                17,
                63 * 8,
                63 * 8 + 1,
                1000,
                5000,
            ] {
                // runs of random lengths (1..40) of random values: RLE and packed mixed
                let mut values = Vec::with_capacity(len);
                while values.len() < len {
                    let v = next() & max;
                    let run = (next() % 40 + 1) as usize;
                    values.extend(std::iter::repeat_n(v, run.min(len - values.len())));
                }
                let mut out = Vec::new();
                encode(&values, bit_width, &mut out);
                assert_eq!(
                    decode(&out, bit_width, len),
                    values,
                    "width {bit_width} len {len}"
                );
            }
        }
    }
}
