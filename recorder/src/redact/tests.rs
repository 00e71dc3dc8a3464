//! HTTP/2 redaction tests: RFC 7541 Appendix C examples, splits at every byte, random
//! header lists (property test), losses and malformed blocks. Redacted streams are
//! decoded with the analyzer's HPACK decoder: every block decodes, non-sensitive fields
//! are unchanged, sensitive values are redaction characters of the same length, and the
//! dynamic table has the same size after every block.

use super::huffman::{self, is_redaction_char};
use super::*;
use podtrace_analyzer::http2::hpack::Decoder;

const CONN: u64 = 7;

fn frame(typ: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, typ, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn settings() -> Vec<u8> {
    frame(4, 0, 0, &[0, 1, 0, 0, 0x10, 0])
}

/// A server direction: SETTINGS then one HEADERS frame per block.
fn server_stream(blocks: &[Vec<u8>]) -> Vec<u8> {
    let mut s = settings();
    for (i, b) in blocks.iter().enumerate() {
        s.extend(frame(1, 4, 1 + 2 * i as u32, b));
        s.extend(frame(0, 1, 1 + 2 * i as u32, b"body"));
    }
    s
}

/// A client direction: preface, SETTINGS, then the blocks in varied frame shapes
/// (padded, priority, CONTINUATION).
fn client_stream(blocks: &[Vec<u8>]) -> Vec<u8> {
    let mut s = h2::PREFACE.to_vec();
    s.extend(settings());
    for (i, b) in blocks.iter().enumerate() {
        let id = 1 + 2 * i as u32;
        match i % 4 {
            0 => s.extend(frame(1, 4, id, b)),
            1 => {
                // padded + priority
                let mut p = vec![3u8, 0, 0, 0, 0, 16];
                p.extend_from_slice(b);
                p.extend_from_slice(&[0, 0, 0]);
                s.extend(frame(1, 4 | 8 | 0x20, id, &p));
            }
            2 => {
                // split into HEADERS + CONTINUATION + CONTINUATION
                let a = b.len() / 3;
                let c = 2 * b.len() / 3;
                s.extend(frame(1, 0, id, &b[..a]));
                s.extend(frame(9, 0, id, &b[a..c]));
                s.extend(frame(9, 4, id, &b[c..]));
            }
            _ => {
                s.extend(frame(8, 0, 0, &[0, 0, 0, 1]));
                s.extend(frame(1, 4, id, b));
            }
        }
        s.extend(frame(0, 1, id, b"{\"x\":1}"));
    }
    s
}

/// The header blocks of a direction's bytes (test-side framing).
fn blocks_of(mut s: &[u8], client: bool) -> Vec<Vec<u8>> {
    if client {
        s = &s[24..];
    }
    let mut out = Vec::new();
    let mut cur: Option<Vec<u8>> = None;
    while s.len() >= 9 {
        let len = u32::from_be_bytes([0, s[0], s[1], s[2]]) as usize;
        let (typ, fl) = (s[3], s[4]);
        let p = &s[9..9 + len];
        s = &s[9 + len..];
        let mut frag = p;
        if typ == 1 || typ == 9 {
            if typ == 1 && fl & 8 != 0 {
                let pad = usize::from(frag[0]);
                frag = &frag[1..frag.len() - pad];
            }
            if typ == 1 && fl & 0x20 != 0 {
                frag = &frag[5..];
            }
            cur.get_or_insert_with(Vec::new).extend_from_slice(frag);
            if fl & 4 != 0 {
                out.extend(cur.take());
            }
        }
    }
    out
}

/// Redacts `stream` cut at `cuts`; returns the redacted bytes.
fn redact_cut(r: &mut Redactor, dir: u8, stream: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut last = 0;
    for &c in cuts.iter().chain(std::iter::once(&stream.len())) {
        if c < last {
            continue;
        }
        let mut p = stream[last..c].to_vec();
        r.redact(CONN, dir, &mut p, true);
        out.extend(p);
        last = c;
    }
    out
}

/// Decodes original and redacted blocks side by side and checks the invariants;
/// returns the number of redacted values.
fn check(orig: &[Vec<u8>], red: &[Vec<u8>], sensitive: &[&str]) -> usize {
    check_cut(orig, red, sensitive, false)
}

/// [`check`]; with `cut`, a value split across payloads may hold a few characters other
/// than redaction characters where it was cut, but no 3 characters of the original in a
/// row that are not redaction characters.
fn check_cut(orig: &[Vec<u8>], red: &[Vec<u8>], sensitive: &[&str], cut: bool) -> usize {
    assert_eq!(orig.len(), red.len());
    let (mut d1, mut d2) = (Decoder::new(true), Decoder::new(true));
    let mut n = 0;
    for (a, b) in orig.iter().zip(red) {
        assert_eq!(a.len(), b.len());
        let x = d1.decode(a, 1 << 20);
        let y = d2.decode(b, 1 << 20);
        assert_eq!(x.error, None);
        assert_eq!(y.error, None, "redacted block does not decode");
        assert_eq!(x.fields.len(), y.fields.len());
        for ((n1, v1), (n2, v2)) in x.fields.iter().zip(&y.fields) {
            assert_eq!(n1, n2);
            if sensitive.contains(&n1.as_str()) {
                assert_eq!(v1.len(), v2.len(), "{n1}: {v1:?} -> {v2:?}");
                if cut {
                    let leak = v1.as_bytes().windows(3).any(|w| {
                        !w.iter().all(|&c| is_redaction_char(c))
                            && v2.as_bytes().windows(3).any(|x| x == w)
                    });
                    assert!(!leak, "{n1}: {v1:?} -> {v2:?}");
                } else {
                    assert!(v2.bytes().all(is_redaction_char), "{n1}: {v2:?}");
                }
                if !v1.is_empty() {
                    assert_ne!(v1, v2);
                    n += 1;
                }
            } else {
                assert_eq!(v1, v2);
            }
        }
        assert_eq!(d1.table_size(), d2.table_size());
        assert_eq!(d1.table_len(), d2.table_len());
    }
    n
}

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// RFC 7541 C.5 (raw) and C.6 (Huffman) responses, dynamic table of 256 octets (set by
/// a size update in the first block here), with evictions; `set-cookie` is sensitive.
fn rfc_responses(huff: bool) -> Vec<Vec<u8>> {
    let raw = [
        "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
        "4803 3330 37c1 c0bf",
        "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d 54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e 3d31",
    ];
    let huffd = [
        "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
        "4883 640e ffc1 c0bf",
        "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07",
    ];
    let mut v: Vec<Vec<u8>> = if huff { &huffd } else { &raw }
        .iter()
        .map(|s| hex(s))
        .collect();
    // table size update to 256 (001 11111, 256 - 31 = 225)
    let mut first = vec![0x3f, 0xe1, 0x01];
    first.extend_from_slice(&v[0]);
    v[0] = first;
    v
}

#[test]
fn rfc7541_c5_c6_responses_set_cookie_redacted_table_consistent() {
    for huff in [false, true] {
        let blocks = rfc_responses(huff);
        let s = server_stream(&blocks);
        let mut r = Redactor::new::<&str>(&[]);
        let red = redact_cut(&mut r, 1, &s, &[]);
        assert_eq!(red.len(), s.len());
        let n = check(&blocks, &blocks_of(&red, false), &["set-cookie"]);
        assert_eq!(n, 1, "huffman={huff}");
        assert_eq!(r.counters().h2_values_redacted, 1);
        assert_eq!(r.counters().h2_blocks_blanked, 0);
        let text = String::from_utf8_lossy(&red);
        assert!(!text.contains("ASDJKHQKBZXOQWEOPIUAXQWEOIU"));
    }
}

/// RFC 7541 C.3 (raw) and C.4 (Huffman) requests with `custom-key` configured as
/// sensitive (`--redact-header`): a new-name literal with incremental indexing.
#[test]
fn rfc7541_c3_c4_requests_custom_header() {
    let raw = [
        "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
        "8286 84be 5808 6e6f 2d63 6163 6865",
        "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
    ];
    let huffd = [
        "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
        "8286 84be 5886 a8eb 1064 9cbf",
        "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
    ];
    for (huff, list) in [(false, &raw), (true, &huffd)] {
        let mut blocks: Vec<Vec<u8>> = list.iter().map(|s| hex(s)).collect();
        // a fourth block refers to the custom-key entry by index (62): still redacted
        blocks.push(vec![0x82, 0x86, 0x84, 0xbe]);
        let s = client_stream(&blocks);
        let mut r = Redactor::new(&["Custom-Key"]);
        let red = redact_cut(&mut r, 0, &s, &[]);
        let n = check(&blocks, &blocks_of(&red, true), &["custom-key"]);
        assert_eq!(n, 2, "huffman={huff}");
        assert!(!String::from_utf8_lossy(&red).contains("custom-value"));
    }
}

/// A test HPACK encoder: literals with or without indexing, raw or Huffman, and
/// indexed references to its own dynamic table entries.
struct Enc {
    table: std::collections::VecDeque<(Vec<u8>, Vec<u8>)>,
    size: usize,
    max: usize,
}

fn int(out: &mut Vec<u8>, first: u8, n: u8, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

fn string(out: &mut Vec<u8>, s: &[u8], huff: bool) {
    if huff {
        let e = huffman::encode(s);
        int(out, 0x80, 7, e.len());
        out.extend(e);
    } else {
        int(out, 0, 7, s.len());
        out.extend_from_slice(s);
    }
}

impl Enc {
    fn insert(&mut self, n: &[u8], v: &[u8]) {
        let sz = n.len() + v.len() + 32;
        while self.size + sz > self.max {
            match self.table.pop_back() {
                Some((a, b)) => self.size -= a.len() + b.len() + 32,
                None => break,
            }
        }
        if sz <= self.max {
            self.table.push_front((n.to_vec(), v.to_vec()));
            self.size += sz;
        }
    }

    fn field(&mut self, out: &mut Vec<u8>, n: &[u8], v: &[u8], x: u64) {
        // an exact match in the dynamic table: indexed (sometimes)
        if x.is_multiple_of(3) {
            if let Some(i) = self.table.iter().position(|(a, b)| a == n && b == v) {
                int(out, 0x80, 7, 62 + i);
                return;
            }
        }
        let huff = x & 8 != 0;
        let insert = x & 16 != 0;
        let name_idx = self.table.iter().position(|(a, _)| a == n).map(|i| 62 + i);
        let (first, prefix) = if insert {
            (0x40, 6)
        } else if x & 32 != 0 {
            (0x10, 4)
        } else {
            (0, 4)
        };
        match name_idx.filter(|_| x & 64 != 0) {
            Some(i) => int(out, first, prefix, i),
            None => {
                out.push(first);
                string(out, n, huff ^ (x & 128 != 0));
            }
        }
        string(out, v, huff);
        if insert {
            self.insert(n, v);
        }
    }
}

fn rng(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

fn random_blocks(seed: &mut u64, count: usize) -> Vec<Vec<u8>> {
    let names: [&[u8]; 8] = [
        b"authorization",
        b"cookie",
        b"x-api-key",
        b"grpc-timeout",
        b"traceparent",
        b"content-type",
        b"te",
        b"user-agent",
    ];
    let mut enc = Enc {
        table: Default::default(),
        size: 0,
        max: 4096,
    };
    let mut blocks = Vec::new();
    for _ in 0..count {
        let mut b = Vec::new();
        if rng(seed).is_multiple_of(8) {
            let m = [0usize, 64, 256, 1024, 4096][(rng(seed) % 5) as usize];
            int(&mut b, 0x20, 5, m);
            enc.max = m;
            while enc.size > m {
                let (a, c) = enc.table.pop_back().expect("entry");
                enc.size -= a.len() + c.len() + 32;
            }
        }
        int(&mut b, 0x80, 7, 3); // :method POST
        for _ in 0..1 + rng(seed) % 6 {
            let n = names[(rng(seed) % 8) as usize];
            let vlen = (rng(seed) % 70) as usize;
            let pool: &[u8] = if rng(seed).is_multiple_of(2) {
                b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/=._-"
            } else {
                b"0123456789abcdef"
            };
            // a few repeated values so indexed references happen
            let sensitive = matches!(n, b"authorization" | b"cookie" | b"x-api-key");
            let v: Vec<u8> = if sensitive && rng(seed).is_multiple_of(3) {
                b"Bearer s3cr3t".to_vec()
            } else {
                (0..vlen)
                    .map(|_| pool[(rng(&mut *seed) as usize) % pool.len()])
                    .collect()
            };
            let x = rng(seed);
            enc.field(&mut b, n, &v, x);
        }
        blocks.push(b);
    }
    blocks
}

#[test]
fn property_random_header_lists_random_cuts() {
    let mut seed = 0x1234_5678_9abc_def1u64;
    let mut redacted = 0;
    for round in 0..400 {
        let count = 1 + (rng(&mut seed) % 8) as usize;
        let blocks = random_blocks(&mut seed, count);
        let client = round % 2 == 0;
        let s = if client {
            client_stream(&blocks)
        } else {
            server_stream(&blocks)
        };
        let mut cuts: Vec<usize> = (0..(rng(&mut seed) % 12))
            .map(|_| (rng(&mut seed) as usize) % s.len())
            .collect();
        cuts.sort_unstable();
        let mut r = Redactor::new(&["x-api-key"]);
        let red = redact_cut(&mut r, u8::from(!client), &s, &cuts);
        assert_eq!(red.len(), s.len());
        assert_eq!(r.counters().h2_blocks_blanked, 0, "cuts {cuts:?}");
        redacted += check_cut(
            &blocks,
            &blocks_of(&red, client),
            &["authorization", "cookie", "x-api-key"],
            true,
        );
        assert!(
            !red.windows(6).any(|w| w == b"s3cr3t"),
            "raw secret left, cuts {cuts:?}"
        );
    }
    assert!(redacted > 500, "only {redacted} values redacted");
}

#[test]
fn every_single_cut_position() {
    let mut seed = 99u64;
    let blocks = random_blocks(&mut seed, 6);
    let s = client_stream(&blocks);
    let mut one = Redactor::new::<&str>(&[]);
    let whole = redact_cut(&mut one, 0, &s, &[]);
    for c in 1..s.len() {
        for c2 in [c + 1, c + 7, c + 40] {
            let mut r = Redactor::new::<&str>(&[]);
            let red = redact_cut(&mut r, 0, &s, &[c, c2.min(s.len())]);
            assert_eq!(r.counters().h2_blocks_blanked, 0, "cut {c}/{c2}");
            check_cut(
                &blocks,
                &blocks_of(&red, true),
                &["authorization", "cookie"],
                true,
            );
            // outside split Huffman values the output is the one-shot output
            assert_eq!(red.len(), whole.len());
        }
    }
}

#[test]
fn truncated_payload_loses_sync_then_resyncs_and_redacts_unknown_names() {
    let mut enc = Enc {
        table: Default::default(),
        size: 0,
        max: 4096,
    };
    let mut b1 = Vec::new();
    enc.field(&mut b1, b"x-token", b"abc", 16); // new name, inserted (raw)
    let mut b2 = Vec::new();
    enc.field(&mut b2, b"x-token", b"Bearer s3cr3t", 16 | 64); // name by index 62
    let s1 = client_stream(&[b1]);
    let mut r = Redactor::new(&["x-token"]);
    let mut p = s1.clone();
    r.redact(CONN, 0, &mut p, true);
    // a payload cut short: the rest of the direction is out of sync
    let mut junk = vec![0u8; 5];
    r.redact(CONN, 0, &mut junk, false);
    assert_eq!(r.counters().h2_sync_lost, 1);
    // a payload that does not start with a frame header is not checked (counted)
    let mut mid = b"xyz".to_vec();
    r.redact(CONN, 0, &mut mid, true);
    assert_eq!(r.counters().h2_payloads_unchecked, 1);
    // the next frame-aligned payload is parsed again; after the loss the dynamic
    // indexes seen before are not trusted (entries may have been inserted in the gap):
    // name index 62 is redacted as unknown
    let mut p2 = frame(1, 4, 3, &b2);
    r.redact(CONN, 0, &mut p2, true);
    assert!(!String::from_utf8_lossy(&p2).contains("s3cr3t"));
    assert_eq!(r.counters().h2_unknown_names_redacted, 1);
    // (b2 inserted an entry whose name is unknown: index 62.) A new entry with a literal
    // name is known again (62, the other one moves to 63); an older index is not (64)
    let mut b3 = vec![0x40];
    string(&mut b3, b"x-token", false);
    string(&mut b3, b"Bearer s3cr3t", false);
    b3.push(0x7f); // literal, incremental indexing, name index 64 (unknown)
    b3.push(0x01);
    string(&mut b3, b"Bearer s3cr3t", false);
    let mut p3 = frame(1, 4, 5, &b3);
    r.redact(CONN, 0, &mut p3, true);
    assert!(!String::from_utf8_lossy(&p3).contains("s3cr3t"));
    assert_eq!(r.counters().h2_unknown_names_redacted, 2);
    assert_eq!(r.counters().h2_values_redacted, 4);
}

#[test]
fn malformed_or_orphan_blocks_are_blanked_and_counted() {
    // a Huffman string with an EOS in it after a sensitive literal start
    let mut b = vec![0x0f, 0x08]; // literal without indexing, name index 23 (authorization)
    b.extend_from_slice(&[0x84, 0xff, 0xff, 0xff, 0xff]);
    let s = server_stream(&[b.clone()]);
    let mut r = Redactor::new::<&str>(&[]);
    let red = redact_cut(&mut r, 1, &s, &[]);
    assert_eq!(r.counters().h2_blocks_blanked, 1);
    let blocks = blocks_of(&red, false);
    assert!(Decoder::new(true)
        .decode(&blocks[0], 1 << 20)
        .error
        .is_some());
    // a CONTINUATION whose HEADERS was not seen
    let mut r = Redactor::new::<&str>(&[]);
    let mut a = settings();
    r.redact(CONN, 1, &mut a, true);
    r.reset(CONN, 1);
    let mut lit = vec![0x0f, 0x08];
    string(&mut lit, b"Bearer s3cr3t", false);
    let mut c = frame(9, 4, 1, &lit);
    r.redact(CONN, 1, &mut c, true);
    assert!(!String::from_utf8_lossy(&c).contains("s3cr3t"));
    assert_eq!(r.counters().h2_blocks_blanked, 1);
    // an oversized table size update
    let mut b = vec![0x3f, 0xe1, 0xff, 0x0f]; // size update to a huge value
    b.extend_from_slice(&[0x0f, 0x08, 0x02, b'h', b'i']);
    let s = server_stream(&[b]);
    let mut r = Redactor::new::<&str>(&[]);
    let red = redact_cut(&mut r, 1, &s, &[]);
    assert_eq!(r.counters().h2_blocks_blanked, 1);
    assert!(!String::from_utf8_lossy(&red).contains("hi"));
}

#[test]
fn detection_preface_settings_upgrade_and_http1_untouched() {
    // HTTP/1 stays with the HTTP/1 redactor
    let mut r = Redactor::new::<&str>(&[]);
    let mut p = b"GET / HTTP/1.1\r\nCookie: abc\r\n\r\n".to_vec();
    assert!(r.redact(1, 0, &mut p, true));
    assert!(p.ends_with(b"Cookie: ***\r\n\r\n"));
    // the server's SETTINGS before the client preface; the client direction known later
    let mut lit = vec![0x0f, 0x28]; // literal w/o indexing, name index 55 (set-cookie)
    string(&mut lit, b"sid=s3cr3t", true);
    let mut srv = settings();
    srv.extend(frame(1, 4, 1, &lit));
    let mut r = Redactor::new::<&str>(&[]);
    assert!(r.redact(2, 1, &mut srv, true));
    assert!(huffman::decode(&srv[srv.len() - lit.len() + 3..])
        .expect("decodes")
        .iter()
        .all(|&c| is_redaction_char(c)));
    // h2c upgrade: 101 then SETTINGS and a HEADERS frame in the same payload
    let mut up =
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n".to_vec();
    up.extend(settings());
    up.extend(frame(1, 4, 1, &lit));
    let mut r = Redactor::new::<&str>(&[]);
    assert!(r.redact(3, 1, &mut up, true));
    let n = up.len();
    assert_ne!(&up[n - lit.len()..], &lit[..]);
    // a binary stream that is neither is left alone
    let mut r = Redactor::new::<&str>(&[]);
    let mut b = vec![0x16, 0x03, 0x01, 0x00, 0x10, 1, 2, 3, 4, 5];
    assert!(!r.redact(4, 0, &mut b, true));
}

#[test]
fn payload_cut_at_the_snaplen_keeps_the_framing() {
    let mut lit = vec![0x0f, 0x08]; // literal w/o indexing, name index 23 (authorization)
    string(&mut lit, b"Bearer s3cr3t", true);
    let mut s = settings();
    s.extend(frame(0, 0, 1, &vec![b'x'; 5000]));
    let cut_at = s.len() - 3000;
    s.extend(frame(1, 4, 3, &lit));
    let mut r = Redactor::new::<&str>(&[]);
    // the first payload ends 3000 bytes into the DATA frame's end, which was not captured
    let mut a = s[..cut_at].to_vec();
    r.redact_cut(CONN, 1, &mut a, Some(3000));
    let mut b = s[cut_at + 3000..].to_vec();
    assert!(r.redact_cut(CONN, 1, &mut b, Some(0)));
    assert_eq!(r.counters().h2_sync_lost, 0);
    assert_eq!(r.counters().h2_values_redacted, 1);
    let blocks = blocks_of(&[&s[..cut_at + 3000], &b[..]].concat(), false);
    let d = Decoder::new(true).decode(&blocks[0], 1 << 20);
    assert_eq!(d.error, None);
    assert!(d.fields[0].1.bytes().all(is_redaction_char));

    // a cut inside a header block: the rest of it is blanked, the framing goes on and
    // the next block is parsed (its names by index are redacted when unknown)
    let mut enc = Enc {
        table: Default::default(),
        size: 0,
        max: 4096,
    };
    let mut b1 = Vec::new();
    enc.field(&mut b1, b"x-token", b"Bearer s3cr3t", 16);
    let mut b2 = Vec::new();
    enc.field(&mut b2, b"x-token", b"Bearer s3cr3t", 16 | 64);
    let mut s = settings();
    s.extend(frame(1, 0, 1, &b1));
    let cut_at = s.len() - 4;
    s.extend(frame(9, 4, 1, b""));
    s.extend(frame(1, 4, 3, &b2));
    let mut r = Redactor::new(&["x-token"]);
    let mut a = s[..cut_at].to_vec();
    r.redact_cut(CONN, 1, &mut a, Some(4));
    let mut b = s[cut_at + 4..].to_vec();
    r.redact_cut(CONN, 1, &mut b, Some(0));
    assert_eq!(r.counters().h2_blocks_blanked, 1);
    assert_eq!(r.counters().h2_sync_lost, 0);
    let all = [a, b].concat();
    assert!(!all.windows(6).any(|w| w == b"s3cr3t"));
}
