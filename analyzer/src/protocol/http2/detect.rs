//! HTTP/2 detection from a connection's first bytes: the client preface, an HTTP/1
//! request head asking for `Upgrade: h2c`, or (a capture that joined late) plausible frame
//! headers. Anything that reads as something else is not HTTP/2.

use super::frame::{frames_match, preface_match};
use crate::protocol::{first_bytes, Detection};
use crate::reassemble::Segment;

/// Bytes looked at per direction while undecided (a first frame may be long); past it
/// without HTTP/2 evidence the connection is not HTTP/2.
pub const MAX_UNDECIDED: usize = 32 * 1024;

/// How an HTTP/2 connection starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// An HTTP/1 request with `Upgrade: h2c`; `client_egress`: this socket sent it.
    Upgrade {
        /// This socket is the client.
        client_egress: bool,
    },
    /// Frames: after the client preface sent by this socket (`Some(true)`) or its peer
    /// (`Some(false)`), or without a preface seen (`None`, prior knowledge / late join).
    Frames {
        /// Which side sent the preface, if seen.
        preface_egress: Option<bool>,
    },
}

/// Whether the first bytes of both directions are HTTP/2 (see the module doc).
pub fn detect(egress: &[Segment], ingress: &[Segment], closed: bool) -> Detection<Start> {
    let ve = verdict(egress, closed);
    let vi = verdict(ingress, closed);
    match (ve, vi) {
        (Verdict::Upgrade, _) => {
            return Detection::Found(Start::Upgrade {
                client_egress: true,
            })
        }
        (_, Verdict::Upgrade) => {
            return Detection::Found(Start::Upgrade {
                client_egress: false,
            })
        }
        _ => {}
    }
    let preface_egress = match (ve, vi) {
        (Verdict::Preface, _) => Some(true),
        (_, Verdict::Preface) => Some(false),
        (Verdict::Other, _) | (_, Verdict::Other) => return Detection::NotMine,
        (Verdict::Frames, Verdict::Frames | Verdict::Empty) | (Verdict::Empty, Verdict::Frames) => {
            None
        }
        (Verdict::Frames, Verdict::Wait) | (Verdict::Wait, Verdict::Frames) if closed => None,
        _ if closed => return Detection::NotMine,
        _ => return Detection::NeedMore,
    };
    Detection::Found(Start::Frames { preface_egress })
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
    let b = first_bytes(segs, MAX_UNDECIDED);
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
