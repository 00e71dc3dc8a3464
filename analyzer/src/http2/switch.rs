//! Protocol detection per connection: HTTP/2 (preface or plausible frames) or HTTP/1.

use podtrace_format::Role;

use super::frame::{frames_match, preface_match};
use super::{H2Connection, Limits};
use crate::http1::{self, ConnectionParser, Parsed};
use crate::reassemble::Segment;

/// Bytes buffered per direction while the protocol is undecided (a first frame may be
/// long); past it the connection goes to the HTTP/1 parser.
const MAX_UNDECIDED: usize = 32 * 1024;

#[derive(Debug)]
enum Mode {
    Undecided {
        egress: Vec<Segment>,
        ingress: Vec<Segment>,
    },
    Http1,
    Http2(Box<H2Connection>),
}

/// A connection's parser: HTTP/1 or HTTP/2, decided from its first bytes (see the module
/// doc of [`crate::http2`]). Same interface as [`ConnectionParser`].
#[derive(Debug)]
pub struct ProtocolParser {
    http1: ConnectionParser,
    mode: Mode,
    role: Role,
    limits: Limits,
}

/// What the first bytes of one direction say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Empty,
    Wait,
    Preface,
    Frames,
    /// An HTTP/1 request head with `Upgrade: h2c`.
    Upgrade,
    Other,
}

fn verdict(segs: &[Segment], closed: bool) -> Verdict {
    let mut b = Vec::new();
    for s in segs {
        match s {
            Segment::Data { bytes, .. } => {
                b.extend_from_slice(&bytes[..bytes.len().min(MAX_UNDECIDED - b.len())]);
                if b.len() >= MAX_UNDECIDED {
                    break;
                }
            }
            _ if b.is_empty() => continue,
            _ => break,
        }
    }
    if b.is_empty() {
        return Verdict::Empty;
    }
    let v = match (upgrade_verdict(&b), preface_match(&b)) {
        (Some(v), _) => v,
        (None, Some(true)) => return Verdict::Preface,
        (None, None) => Verdict::Wait,
        (None, Some(false)) => match frames_match(&b) {
            Some(true) => Verdict::Frames,
            Some(false) if !looks_like_http1(&b) && later_segment_has_frames(segs) => {
                Verdict::Frames
            }
            Some(false) => Verdict::Other,
            None => Verdict::Wait,
        },
    };
    if v == Verdict::Wait && (closed || b.len() >= MAX_UNDECIDED) {
        Verdict::Other
    } else {
        v
    }
}

/// An HTTP/1 request line or status line start.
fn looks_like_http1(b: &[u8]) -> bool {
    let token = b.iter().take_while(|c| c.is_ascii_uppercase()).count();
    b.starts_with(b"HTTP/1.") || (token > 0 && b.get(token) == Some(&b' '))
}

/// A capture that joined mid-frame: a later segment starts with plausible frames.
fn later_segment_has_frames(segs: &[Segment]) -> bool {
    segs.iter().skip(1).any(|s| match s {
        Segment::Data { bytes, .. } => frames_match(bytes) == Some(true),
        _ => false,
    })
}

/// `Upgrade` for a complete HTTP/1 request head asking for h2c, `Wait` while a request
/// head is incomplete, `None` for anything else.
fn upgrade_verdict(b: &[u8]) -> Option<Verdict> {
    let sp = b.iter().position(|c| *c == b' ')?;
    if sp == 0 || sp > 16 || !b[..sp].iter().all(|c| c.is_ascii_uppercase()) {
        return None;
    }
    let Some(end) = b.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Some(Verdict::Wait);
    };
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    if !matches!(req.parse(&b[..end + 4]), Ok(httparse::Status::Complete(_))) {
        return None;
    }
    let h2c = req.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("upgrade")
            && String::from_utf8_lossy(h.value)
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("h2c"))
    });
    h2c.then_some(Verdict::Upgrade)
}

impl ProtocolParser {
    /// A parser for a connection whose socket role is `role` (`Unknown` → inferred).
    pub fn new(role: Role, limits: http1::Limits) -> Self {
        Self::with_limits(role, limits, Limits::default())
    }

    /// A parser with explicit HTTP/2 bounds.
    pub fn with_limits(role: Role, limits: http1::Limits, h2: Limits) -> Self {
        ProtocolParser {
            http1: ConnectionParser::new(role, limits),
            mode: Mode::Undecided {
                egress: Vec::new(),
                ingress: Vec::new(),
            },
            role,
            limits: h2,
        }
    }

    /// Whether the connection was recognised as HTTP/2.
    pub fn is_http2(&self) -> bool {
        matches!(self.mode, Mode::Http2(_))
    }

    /// Learns the role later (a `socket_open` row that arrived after data).
    pub fn set_role(&mut self, role: Role) {
        if self.role == Role::Unknown {
            self.role = role;
        }
        self.http1.set_role(role);
        if let Mode::Http2(c) = &mut self.mode {
            c.set_role(role);
        }
    }

    /// Feeds new segments of both directions; `closed` ends both streams.
    pub fn feed(&mut self, egress: &[Segment], ingress: &[Segment], closed: bool) -> Parsed {
        match &mut self.mode {
            Mode::Http1 => self.http1.feed(egress, ingress, closed),
            Mode::Http2(c) => h2_parsed(c, egress, ingress, closed),
            Mode::Undecided {
                egress: be,
                ingress: bi,
            } => {
                be.extend_from_slice(egress);
                bi.extend_from_slice(ingress);
                let ve = verdict(be, closed);
                let vi = verdict(bi, closed);
                let upgrade = match (ve, vi) {
                    (Verdict::Upgrade, _) => Some(true),
                    (_, Verdict::Upgrade) => Some(false),
                    _ => None,
                };
                if let Some(client_egress) = upgrade {
                    let e = std::mem::take(be);
                    let i = std::mem::take(bi);
                    let mut c = Box::new(H2Connection::new_upgrade(
                        self.role,
                        client_egress,
                        self.limits,
                    ));
                    let out = h2_parsed(&mut c, &e, &i, closed);
                    self.mode = Mode::Http2(c);
                    return out;
                }
                let preface = match (ve, vi) {
                    (Verdict::Preface, _) => Some(Some(true)),
                    (_, Verdict::Preface) => Some(Some(false)),
                    (Verdict::Other, _) | (_, Verdict::Other) => None,
                    (Verdict::Frames, Verdict::Frames | Verdict::Empty)
                    | (Verdict::Empty, Verdict::Frames) => Some(None),
                    (Verdict::Frames, Verdict::Wait) | (Verdict::Wait, Verdict::Frames)
                        if closed =>
                    {
                        Some(None)
                    }
                    _ if closed => None,
                    _ => return Parsed::default(),
                };
                let e = std::mem::take(be);
                let i = std::mem::take(bi);
                match preface {
                    Some(preface_egress) => {
                        let mut c =
                            Box::new(H2Connection::new(self.role, preface_egress, self.limits));
                        let out = h2_parsed(&mut c, &e, &i, closed);
                        self.mode = Mode::Http2(c);
                        out
                    }
                    None => {
                        self.mode = Mode::Http1;
                        self.http1.feed(&e, &i, closed)
                    }
                }
            }
        }
    }

    /// Ends both streams (end of the analysis).
    pub fn finish(&mut self) -> Parsed {
        self.feed(&[], &[], true)
    }
}

fn h2_parsed(
    c: &mut H2Connection,
    egress: &[Segment],
    ingress: &[Segment],
    closed: bool,
) -> Parsed {
    let (h2, errors) = c.feed(egress, ingress, closed);
    Parsed {
        role: (c.role() != Role::Unknown).then_some(c.role()),
        errors,
        h2,
        ..Parsed::default()
    }
}
