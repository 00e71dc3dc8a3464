//! HTTP/1 header redaction: a small streaming header tokenizer per connection and
//! direction, so a header whose name or value is split across two (or more) syscalls is
//! still found: the tail of the previous payload's unfinished line is remembered.
//! Message bodies are skipped using `Content-Length`; a payload that starts with a request
//! or status line always restarts header parsing.

use super::marks::Marks;

/// Longest line prefix remembered across payloads (header names and Content-Length).
const MAX_LINE: usize = 256;

const STARTS: [&[u8]; 10] = [
    b"GET ",
    b"POST ",
    b"PUT ",
    b"DELETE ",
    b"HEAD ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
    b"TRACE ",
    b"HTTP/1.",
];

/// The header names whose values are redacted (lowercase), with what lets most other header
/// lines be passed over without looking at their names: the first four bytes of every
/// name the tokenizer acts on.
#[derive(Debug, Clone)]
pub(crate) struct HeaderNames {
    list: Vec<Vec<u8>>,
    /// [`prefix_key`] of each of `list` and of the names the tokenizer reads
    /// (Content-Length, Transfer-Encoding); `None` when a name is shorter than 4 bytes.
    prefixes: Option<Vec<u32>>,
}

/// The header names the tokenizer reads besides the redacted ones.
const READ_NAMES: [&[u8]; 2] = [b"content-length", b"transfer-encoding"];

/// The first four bytes of a line as a word with the ASCII case bit set: equal for two
/// lines whose first four bytes are equal but for the case of letters (a different line
/// may map to the same word too, which only costs a look at its name).
fn prefix_key(line: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(*line.first_chunk::<4>()?) | 0x2020_2020)
}

impl HeaderNames {
    /// The names `list` (lowercase, no surrounding whitespace).
    pub(crate) fn new(list: Vec<Vec<u8>>) -> Self {
        let prefixes = list
            .iter()
            .map(Vec::as_slice)
            .chain(READ_NAMES)
            .map(prefix_key)
            .collect::<Option<Vec<u32>>>();
        HeaderNames { list, prefixes }
    }

    /// Whether a header line starting with `line` (a whole line, not blank) has a name the
    /// tokenizer neither redacts nor reads: its first byte is not whitespace (which the
    /// name's trim would remove) and its first four bytes are no such name's, in any case.
    fn passes_over(&self, line: &[u8]) -> bool {
        let (Some(prefixes), Some(&first), Some(key)) =
            (&self.prefixes, line.first(), prefix_key(line))
        else {
            return false;
        };
        !first.is_ascii_whitespace() && !prefixes.contains(&key)
    }
}

impl HeaderNames {
    /// The redacted names (HTTP/2's redaction takes them as they are).
    pub(crate) fn list(&self) -> &[Vec<u8>] {
        &self.list
    }

    /// Whether the values of header `name` (trimmed) are redacted.
    fn redacts(&self, name: &[u8]) -> bool {
        self.list.iter().any(|n| n.eq_ignore_ascii_case(name))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// At a message boundary: the next bytes decide.
    Start,
    /// Inside a header block.
    Headers,
    /// Inside a body of known remaining length.
    Body(u64),
    /// Not HTTP/1 (or chunked body): ignore until the next payload.
    Opaque,
}

/// One direction's HTTP/1 tokenizer state.
#[derive(Debug, Clone)]
pub(crate) struct Stream {
    mode: Mode,
    line: Vec<u8>,
    colon_seen: bool,
    redacting: bool,
    value_started: bool,
    /// Bytes of the current line other than CR/LF (redacted ones included).
    line_bytes: usize,
    /// The previous header line was redacted: a folded continuation (obs-fold, a line
    /// starting with SP/HT) is redacted too.
    prev_redacted: bool,
    content_length: Option<u64>,
    chunked: bool,
}

impl Stream {
    pub(crate) fn new() -> Self {
        Stream {
            mode: Mode::Start,
            line: Vec::new(),
            colon_seen: false,
            redacting: false,
            value_started: false,
            line_bytes: 0,
            prev_redacted: false,
            content_length: None,
            chunked: false,
        }
    }

    /// Between messages (not inside a header block or a body).
    pub(crate) fn at_boundary(&self) -> bool {
        matches!(self.mode, Mode::Start | Mode::Opaque)
    }

    fn start_message(&mut self) {
        self.mode = Mode::Headers;
        self.line.clear();
        self.colon_seen = false;
        self.redacting = false;
        self.value_started = false;
        self.line_bytes = 0;
        self.prev_redacted = false;
        self.content_length = None;
        self.chunked = false;
    }
}

/// [`STARTS`] as little-endian words (each at most 8 bytes) with their lengths.
const START_WORDS: [(u64, usize); STARTS.len()] = {
    let mut words = [(0u64, 0usize); STARTS.len()];
    let mut i = 0;
    while i < STARTS.len() {
        let s = STARTS[i];
        assert!(s.len() <= 8);
        let mut w = 0u64;
        let mut k = 0;
        while k < s.len() {
            w |= (s[k] as u64) << (8 * k);
            k += 1;
        }
        words[i] = (w, s.len());
        i += 1;
    }
    words
};

/// Whether `buf` starts (or could start, if cut short) an HTTP/1 request or status line.
pub(crate) fn looks_like_start(buf: &[u8]) -> bool {
    // every start begins with one of these letters: most payloads are out at one compare
    if !matches!(
        buf.first(),
        Some(b'G' | b'P' | b'D' | b'H' | b'O' | b'C' | b'T')
    ) {
        return false;
    }
    // the first 8 bytes as a word, compared with each start's word on their common length
    // (a call to memcmp per start cost more than the whole test)
    let n = buf.len().min(8);
    let word = match buf.first_chunk::<8>() {
        Some(w) => u64::from_le_bytes(*w),
        None => buf
            .iter()
            .enumerate()
            .fold(0, |w, (k, &b)| w | u64::from(b) << (8 * k)),
    };
    START_WORDS.iter().any(|&(start, len)| {
        let m = n.min(len);
        let mask = if m == 8 { u64::MAX } else { (1 << (8 * m)) - 1 };
        (word ^ start) & mask == 0
    })
}

/// Redacts one payload of a stream in place (see [`super::Redactor::redact`]).
pub(crate) fn redact(
    st: &mut Stream,
    names: &HeaderNames,
    payload: &mut [u8],
    complete: bool,
) -> bool {
    redact_with(st, names, payload, complete, true)
}

/// [`redact`], with the header lines' fast path on or off (off: every header byte through
/// [`header_byte`], the reference the fast path is tested against).
fn redact_with(
    st: &mut Stream,
    names: &HeaderNames,
    payload: &mut [u8],
    complete: bool,
    fast: bool,
) -> bool {
    let mut changed = false;
    if looks_like_start(payload) && !matches!(st.mode, Mode::Headers) {
        st.start_message();
    }
    let mut marks = Marks::new();
    let mut i = 0;
    while i < payload.len() {
        match st.mode {
            Mode::Start => {
                if looks_like_start(&payload[i..]) {
                    st.start_message();
                } else {
                    st.mode = Mode::Opaque;
                }
            }
            Mode::Opaque => break,
            Mode::Body(left) => {
                let n = left.min((payload.len() - i) as u64);
                i += n as usize;
                st.mode = if left == n {
                    Mode::Start
                } else {
                    Mode::Body(left - n)
                };
            }
            Mode::Headers if fast => {
                i = header_fast(st, names, payload, i, &mut changed, &mut marks)
            }
            Mode::Headers => i = header_byte(st, names, payload, i, &mut changed),
        }
    }
    if st.mode == Mode::Opaque || !complete {
        let keep_body = matches!(st.mode, Mode::Body(_)) && complete;
        if !keep_body {
            *st = Stream::new();
        }
    }
    changed
}

/// The header path of [`redact`]: a whole line in place ([`whole_line`]) where it can, else
/// the line's bytes up to its first ':' (while the name is not complete) or its '\n' as a
/// run, else one byte through [`header_byte`]. Returns the next index.
fn header_fast(
    st: &mut Stream,
    names: &HeaderNames,
    payload: &mut [u8],
    i: usize,
    changed: &mut bool,
    marks: &mut Marks,
) -> usize {
    if st.redacting {
        return header_byte(st, names, payload, i, changed);
    }
    if st.line_bytes == 0 {
        // a line after a redacted one that starts with SP/HT continues the redacted value
        let folded = st.prev_redacted && matches!(payload[i], b' ' | b'\t');
        if !folded {
            if let Some(next) = whole_line(st, names, payload, i, changed, marks) {
                return next;
            }
        }
        if st.prev_redacted {
            return header_byte(st, names, payload, i, changed);
        }
    }
    let rest = &payload[i..];
    let run = if st.colon_seen {
        memchr::memchr(b'\n', rest)
    } else {
        memchr::memchr2(b'\n', b':', rest)
    }
    .unwrap_or(rest.len());
    if run == 0 {
        // the stop byte itself goes through the byte-wise path
        return header_byte(st, names, payload, i, changed);
    }
    for part in rest[..run].split(|&b| b == b'\r') {
        st.line_bytes += part.len();
        let room = MAX_LINE.saturating_sub(st.line.len());
        st.line.extend_from_slice(&part[..part.len().min(room)]);
    }
    i + run
}

/// One byte of a header block (at `payload[i]`): the tokenizer's reference path, which
/// also redacts. Returns the next index.
fn header_byte(
    st: &mut Stream,
    names: &HeaderNames,
    payload: &mut [u8],
    i: usize,
    changed: &mut bool,
) -> usize {
    let b = payload[i];
    if b != b'\r' && b != b'\n' {
        if st.line_bytes == 0 && st.prev_redacted && (b == b' ' || b == b'\t') {
            // obs-fold: continuation of the redacted value
            st.redacting = true;
            st.value_started = false;
        }
        st.line_bytes += 1;
    }
    if st.redacting && b != b'\r' && b != b'\n' {
        if st.value_started || (b != b' ' && b != b'\t') {
            st.value_started = true;
            // `changed` says the payload differs: a value already made of '*' stays as is
            *changed |= b != b'*';
            payload[i] = b'*';
        }
        return i + 1;
    }
    if b == b'\n' {
        end_of_line(st);
    } else if b != b'\r' {
        if st.line.len() < MAX_LINE {
            st.line.push(b);
        }
        if b == b':' && !st.colon_seen {
            st.colon_seen = true;
            let name = &st.line[..st.line.len() - 1];
            let name = trim(name);
            if names.redacts(name) {
                st.redacting = true;
                st.value_started = false;
            }
        }
    }
    i + 1
}

fn trim(s: &[u8]) -> &[u8] {
    // most names have no space around them: two compares instead of two scans
    match (s.first(), s.last()) {
        (Some(a), Some(z)) if !a.is_ascii_whitespace() && !z.is_ascii_whitespace() => return s,
        _ => {}
    }
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &s[start..end.max(start)]
}

/// A header line that starts at `payload[i]` and ends (`'\n'`) within the payload, taken
/// whole and in place: the same bytes and state as [`header_byte`] over each of its bytes,
/// without copying it into the stream's line buffer. `None` (nothing changed) when the line
/// needs the general path: not ended in this payload, a `'\r'` before its end, longer than
/// [`MAX_LINE`], or a folded continuation of a redacted value.
fn whole_line(
    st: &mut Stream,
    names: &HeaderNames,
    payload: &mut [u8],
    i: usize,
    changed: &mut bool,
    marks: &mut Marks,
) -> Option<usize> {
    // one scan for the line's end: its first CR or LF; a CR not followed by LF (a stray CR,
    // or a CRLF cut by the payload's end) leaves the line to the general path, as does a
    // line longer than MAX_LINE (so the scan stops after MAX_LINE + 1 bytes)
    if names.passes_over(&payload[i..]) {
        // a name neither redacted nor read (most lines): the line's end is all there is to
        // find, and the state is the end of a line without an interesting name
        let stop = marks.line_end(payload, i, i + MAX_LINE + 1)?;
        let nl = match payload[stop] {
            b'\n' => stop,
            _ if payload.get(stop + 1) == Some(&b'\n') => stop + 1,
            _ => return None,
        };
        st.line_bytes = stop - i;
        finish_line(st, &[], None);
        return Some(nl + 1);
    }
    let (stop, colon) = marks.line(payload, i, i + MAX_LINE + 1)?;
    let (end, nl) = match payload[stop] {
        b'\n' => (stop, stop),
        _ if payload.get(stop + 1) == Some(&b'\n') => (stop, stop + 1),
        _ => return None,
    };
    st.line_bytes = end - i;
    let Some(colon) = colon else {
        finish_line(st, &payload[i..end], None);
        return Some(nl + 1);
    };
    let name = trim(&payload[i..colon]);
    if names.redacts(name) {
        // the value, from its first byte that is not SP/HT to the line's end, becomes '*'
        let value = &mut payload[colon + 1..end];
        if let Some(start) = value.iter().position(|&b| b != b' ' && b != b'\t') {
            for b in &mut value[start..] {
                *changed |= *b != b'*';
                *b = b'*';
            }
        }
        st.redacting = true;
        // the general path keeps the name and the ':' of a redacted line, not its value
        finish_line(st, &payload[i..=colon], Some(colon - i));
    } else {
        finish_line(st, &payload[i..end], Some(colon - i));
    }
    Some(nl + 1)
}

fn end_of_line(st: &mut Stream) {
    let line = std::mem::take(&mut st.line);
    let colon = memchr::memchr(b':', &line);
    finish_line(st, &line, colon);
    st.line = line;
    st.line.clear();
}

/// The end of a header line whose kept bytes are `line`, with its first ':' at `colon`
/// (`st.line_bytes` counts all of its bytes, redacted ones included): Content-Length and
/// chunked noted, the line state reset.
fn finish_line(st: &mut Stream, line: &[u8], colon: Option<usize>) {
    let blank = st.line_bytes == 0;
    st.prev_redacted = st.redacting;
    st.line_bytes = 0;
    if blank {
        st.mode = if st.chunked {
            Mode::Opaque
        } else {
            match st.content_length {
                Some(n) if n > 0 => Mode::Body(n),
                _ => Mode::Start,
            }
        };
    } else if let Some(colon) = colon {
        let name = trim(&line[..colon]);
        let value = || trim(&line[colon + 1..]);
        if name.eq_ignore_ascii_case(b"content-length") {
            st.content_length = std::str::from_utf8(value())
                .ok()
                .and_then(|v| v.parse().ok());
        } else if name.eq_ignore_ascii_case(b"transfer-encoding")
            && value()
                .windows(7)
                .any(|w| w.eq_ignore_ascii_case(b"chunked"))
        {
            st.chunked = true;
        }
    }
    st.colon_seen = false;
    st.redacting = false;
    st.value_started = false;
}

#[cfg(test)]
mod tests {
    use super::super::Redactor;

    #[test]
    fn the_name_filter_passes_over_other_names_only() {
        let names = |list: &[&str]| {
            super::HeaderNames::new(list.iter().map(|n| n.as_bytes().to_vec()).collect())
        };
        let n = names(&["authorization", "cookie"]);
        for line in [
            &b"Server: x"[..],
            b"X-B3-TraceId: 1",
            b"Date: today",
            b"ab\r\n",
        ] {
            assert!(n.passes_over(line), "{:?}", String::from_utf8_lossy(line));
        }
        for line in [
            &b"Cookie: x"[..],
            b"cOOKIE: x",
            b"AuthorizationX: x",
            b" Cookie: x",
            b"\tServer: x",
            b"Content-Type: x",
            b"transfer-encoding: chunked",
            b"Set",
        ] {
            assert!(!n.passes_over(line), "{:?}", String::from_utf8_lossy(line));
        }
        // a name shorter than the prefix: every line looked at
        assert!(!names(&["x-a"]).passes_over(b"Server: x"));
    }

    /// The fast path gives the same bytes and the same state as the byte-wise reference,
    /// for header blocks cut anywhere (names and values split across payloads, CR-less
    /// lines, obs-folds, bodies, long lines, binary noise).
    #[test]
    fn fast_path_equals_the_bytewise_reference() {
        use super::{redact_with, Stream};
        let names = super::HeaderNames::new(
            ["authorization", "cookie", "x-api-key"]
                .iter()
                .map(|n| n.as_bytes().to_vec())
                .collect(),
        );
        let pieces: [&[u8]; 19] = [
            // lines the name filter passes over (HeaderNames::passes_over), and lines it
            // must not: a name after whitespace that trim removes, a short line, mixed case
            b"Server: nginx\r\n",
            b"\x0cCookie: ff\r\n",
            b"ab\n",
            b"AUTHORIZATION: up\r\n",
            b"x\r\n",
            b"GET /a HTTP/1.1\r\n",
            b"HTTP/1.1 200 OK\r\n",
            b"Host: x\r\n",
            b"Authorization: Bearer abc\r\n",
            b"authorization:Basic  xyz\n",
            b" folded-secret\r\n",
            b"Cookie: a=b; c=d\r\n",
            b"Content-Length: 5\r\n",
            b"\r\n",
            b"hello",
            b"X-Api-Key : k\r\r\n",
            b"Transfer-Encoding: chunked\r\n",
            b"\x00\xff:\r\n",
            b"X-Long: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:x\r\n",
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for _ in 0..6000 {
            let mut stream = Vec::new();
            for _ in 0..1 + next(12) {
                stream.extend_from_slice(pieces[next(pieces.len())]);
            }
            let (mut fast, mut slow) = (Stream::new(), Stream::new());
            let mut at = 0;
            while at < stream.len() {
                let n = 1 + next(stream.len() - at);
                let complete = next(10) != 0;
                let mut a = stream[at..at + n].to_vec();
                let mut b = a.clone();
                let ca = redact_with(&mut fast, &names, &mut a, complete, true);
                let cb = redact_with(&mut slow, &names, &mut b, complete, false);
                assert_eq!((a, ca), (b, cb), "{:?}", String::from_utf8_lossy(&stream));
                assert_eq!(format!("{fast:?}"), format!("{slow:?}"));
                at += n;
            }
        }
    }

    fn run(r: &mut Redactor, parts: &[&str]) -> (String, bool) {
        let mut out = String::new();
        let mut any = false;
        for p in parts {
            let mut b = p.as_bytes().to_vec();
            any |= r.redact(1, 0, &mut b, true);
            out.push_str(&String::from_utf8(b).expect("utf8"));
        }
        (out, any)
    }

    #[test]
    fn redacts_default_and_custom_headers_same_length() {
        let mut r = Redactor::new(&["X-Api-Key"]);
        let req = "GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer s3cr3t\r\nx-api-key: k1\r\nCookie: a=b\r\n\r\n";
        let (out, any) = run(&mut r, &[req]);
        assert!(any);
        assert_eq!(out.len(), req.len());
        assert!(
            out.contains(&format!("Authorization: {}\r\n", "*".repeat(13))),
            "{out}"
        );
        assert!(out.contains("x-api-key: **\r\n"));
        assert!(out.contains("Cookie: ***\r\n"));
        assert!(out.contains("Host: a\r\n"));
    }

    #[test]
    fn header_split_across_syscalls() {
        let mut r = Redactor::new::<&str>(&[]);
        let (out, any) = run(
            &mut r,
            &[
                "GET / HTTP/1.1\r\nAutho",
                "rization: Basic ab",
                "cd\r\nHost: x\r\n\r\n",
            ],
        );
        assert!(any);
        assert!(
            out.contains(&format!("Authorization: {}\r\nHost: x", "*".repeat(10))),
            "{out}"
        );
    }

    #[test]
    fn body_is_not_touched_and_next_message_is() {
        let mut r = Redactor::new::<&str>(&[]);
        let body = "Cookie: not-a-header";
        let msg = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}GET / HTTP/1.1\r\nCookie: yes\r\n\r\n",
            body.len()
        );
        let (out, _) = run(&mut r, &[&msg]);
        assert!(out.contains(body));
        assert!(out.ends_with("Cookie: ***\r\n\r\n"), "{out}");
    }

    #[test]
    fn folded_value_is_redacted_and_does_not_end_the_headers() {
        let mut r = Redactor::new::<&str>(&[]);
        let (out, any) = run(
            &mut r,
            &["GET / HTTP/1.1\r\nCookie: a=1;\r\n b=2\r\nHost: h\r\n\r\n"],
        );
        assert!(any);
        assert!(out.contains("Cookie: ****\r\n ***\r\nHost: h\r\n"), "{out}");
        // still inside the header block after the folded line: the next message is parsed
        let (out, _) = run(&mut r, &["GET / HTTP/1.1\r\nCookie: z\r\n\r\n"]);
        assert!(out.contains("Cookie: *\r\n"));
    }

    #[test]
    fn non_http_is_left_alone() {
        let mut r = Redactor::new::<&str>(&[]);
        let (out, any) = run(&mut r, &["\x00\x01Authorization: x\r\n"]);
        assert!(!any);
        assert_eq!(out, "\x00\x01Authorization: x\r\n");
    }

    #[test]
    fn response_set_cookie() {
        let mut r = Redactor::new::<&str>(&[]);
        let (out, any) = run(
            &mut r,
            &["HTTP/1.1 200 OK\r\nSet-Cookie: id=1\r\nContent-Length: 0\r\n\r\n"],
        );
        assert!(any);
        assert!(out.contains("Set-Cookie: ****\r\n"));
    }
}
