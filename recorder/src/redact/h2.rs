//! HTTP/2 framing of one direction (RFC 9113 §4): finds the header block fragments of
//! HEADERS, PUSH_PROMISE and CONTINUATION frames (padding, priority and promised stream
//! fields skipped) in a byte stream cut into payloads at any point, and hands them to
//! the HPACK [`Block`].

use super::hpack::{Block, Table};
use super::Counters;

/// The client connection preface.
pub(crate) const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const PUSH_PROMISE: u8 = 0x5;
const CONTINUATION: u8 = 0x9;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

#[derive(Debug, Clone, Copy)]
enum State {
    /// Bytes of the client preface matched so far.
    Preface(usize),
    /// Bytes of a frame header collected so far.
    Header([u8; 9], usize),
    /// Payload bytes of a frame not inspected.
    Skip(usize),
    /// The pad length byte of a padded block frame; the rest of the frame after it.
    PadLen { rest: usize, pre: usize, end: bool },
    /// Priority / promised stream id bytes before the fragment.
    Pre {
        left: usize,
        frag: usize,
        pad: usize,
        end: bool,
    },
    /// Header block fragment bytes.
    Frag { left: usize, pad: usize, end: bool },
    /// Padding bytes.
    Pad(usize),
    /// Frame boundaries unknown (bytes lost): waits for a payload starting with a
    /// plausible frame header.
    Lost,
}

/// Whether `b` starts with a SETTINGS frame header as a server's first bytes are.
pub(crate) fn starts_with_settings(b: &[u8]) -> bool {
    b.len() >= 9 && b[3] == SETTINGS && b[4] & !1 == 0 && b[5..9] == [0, 0, 0, 0] && {
        let len = u32::from_be_bytes([0, b[0], b[1], b[2]]);
        len.is_multiple_of(6) && len <= 16 * 1024
    }
}

/// Whether `b` starts with something that looks like a frame header (resynchronisation
/// after a loss: writers send whole frames, so a payload often starts with one).
fn plausible_frame(b: &[u8]) -> bool {
    if b.len() < 9 || b[5] & 0x80 != 0 {
        return false;
    }
    let stream = u32::from_be_bytes([b[5], b[6], b[7], b[8]]);
    match b[3] {
        0x0 | 0x1 | 0x2 | 0x3 | 0x5 | 0x9 => stream != 0,
        0x4 | 0x6 | 0x7 => stream == 0,
        0x8 => true,
        _ => false,
    }
}

/// One direction of an HTTP/2 connection.
#[derive(Debug)]
pub(crate) struct H2Dir {
    state: State,
    table: Table,
    block: Option<Block>,
}

impl H2Dir {
    /// A client direction (starts with the preface) or a server one (starts with
    /// frames); `seen`: its first bytes, already gone by (fewer than 9 for a server).
    pub(crate) fn new(client: bool, seen: &[u8]) -> Self {
        H2Dir {
            state: if client {
                State::Preface(seen.len())
            } else {
                let mut h = [0u8; 9];
                let n = seen.len().min(9);
                h[..n].copy_from_slice(&seen[..n]);
                State::Header(h, n)
            },
            table: Table::new(true),
            block: None,
        }
    }

    /// Bytes were lost before the next payload.
    pub(crate) fn lose(&mut self, counters: &mut Counters) {
        if !matches!(self.state, State::Lost) {
            counters.h2_sync_lost += 1;
        }
        self.state = State::Lost;
        self.block = None;
        self.table.desync();
    }

    /// Redacts one payload of this direction in place; true if a byte changed.
    /// `missing`: bytes of the stream right after the payload that were not captured
    /// (`Some(0)`: complete; `None`: an unknown loss).
    pub(crate) fn redact(
        &mut self,
        payload: &mut [u8],
        missing: Option<u64>,
        names: &[Vec<u8>],
        counters: &mut Counters,
    ) -> bool {
        if let State::Lost = self.state {
            if plausible_frame(payload) {
                self.state = State::Header([0; 9], 0);
            } else {
                if !payload.is_empty() {
                    counters.h2_payloads_unchecked += 1;
                }
                return false;
            }
        }
        if let Some(b) = self.block.as_mut() {
            b.new_payload();
        }
        let mut changed = false;
        let mut i = 0;
        loop {
            changed |= self.settle(payload, names, counters);
            if i >= payload.len() {
                break;
            }
            let rem = payload.len() - i;
            match self.state {
                State::Lost => {
                    counters.h2_payloads_unchecked += 1;
                    break;
                }
                State::Preface(k) => {
                    let n = (PREFACE.len() - k).min(rem);
                    if payload[i..i + n] != PREFACE[k..k + n] {
                        self.lose(counters);
                        break;
                    }
                    i += n;
                    self.state = if k + n == PREFACE.len() {
                        State::Header([0; 9], 0)
                    } else {
                        State::Preface(k + n)
                    };
                }
                State::Header(mut h, have) => {
                    let n = (9 - have).min(rem);
                    h[have..have + n].copy_from_slice(&payload[i..i + n]);
                    i += n;
                    if have + n < 9 {
                        self.state = State::Header(h, have + n);
                    } else {
                        changed |= self.frame(&h, payload, names, counters);
                    }
                }
                State::Skip(left) => {
                    let n = left.min(rem);
                    i += n;
                    self.state = State::Skip(left - n);
                }
                State::PadLen { rest, pre, end } => {
                    let pad = usize::from(payload[i]);
                    i += 1;
                    match rest.checked_sub(pre + pad) {
                        Some(frag) => {
                            self.state = State::Pre {
                                left: pre,
                                frag,
                                pad,
                                end,
                            }
                        }
                        None => {
                            // padding longer than the frame: a protocol error
                            self.lose(counters);
                            break;
                        }
                    }
                }
                State::Pre {
                    left,
                    frag,
                    pad,
                    end,
                } => {
                    let n = left.min(rem);
                    i += n;
                    self.state = State::Pre {
                        left: left - n,
                        frag,
                        pad,
                        end,
                    };
                }
                State::Frag { left, pad, end } => {
                    let n = left.min(rem);
                    if let Some(b) = self.block.as_mut() {
                        changed |= b.append(payload, i, n, &mut self.table, counters);
                    }
                    i += n;
                    self.state = State::Frag {
                        left: left - n,
                        pad,
                        end,
                    };
                }
                State::Pad(left) => {
                    let n = left.min(rem);
                    i += n;
                    self.state = State::Pad(left - n);
                }
            }
        }
        if let Some(b) = self.block.as_mut() {
            changed |= b.process(payload, false, &mut self.table, names, counters);
        }
        match missing {
            Some(0) => {}
            Some(n) => self.skip(n, counters),
            None => self.lose(counters),
        }
        changed
    }

    /// `n` bytes of the stream were not captured (the payload was cut): inside DATA and
    /// other skipped frames the framing stays in sync; a hole in a header block blanks the
    /// rest of that block and leaves the dynamic table incomplete; a hole over a frame
    /// header loses the framing.
    fn skip(&mut self, mut n: u64, counters: &mut Counters) {
        while n > 0 {
            let take = |left: usize, n: &mut u64| -> usize {
                let k = (left as u64).min(*n);
                *n -= k;
                left - k as usize
            };
            self.state = match self.state {
                State::Skip(left) => match take(left, &mut n) {
                    0 => State::Header([0; 9], 0),
                    l => State::Skip(l),
                },
                State::Pad(left) => match take(left, &mut n) {
                    0 => State::Header([0; 9], 0),
                    l => State::Pad(l),
                },
                State::Pre {
                    left,
                    frag,
                    pad,
                    end,
                } => match take(left, &mut n) {
                    0 => State::Frag {
                        left: frag,
                        pad,
                        end,
                    },
                    l => State::Pre {
                        left: l,
                        frag,
                        pad,
                        end,
                    },
                },
                State::Frag { left, pad, end } => {
                    if left > 0 {
                        if let Some(b) = self.block.as_mut() {
                            b.hole(&mut self.table, counters);
                        }
                    }
                    match take(left, &mut n) {
                        0 => {
                            if end {
                                self.block = None;
                            }
                            State::Pad(pad)
                        }
                        l => State::Frag { left: l, pad, end },
                    }
                }
                State::Preface(_) | State::Header(..) | State::PadLen { .. } | State::Lost => {
                    self.lose(counters);
                    return;
                }
            };
        }
        if let State::Skip(0) | State::Pad(0) = self.state {
            self.state = State::Header([0; 9], 0);
        }
    }

    /// Moves past states with nothing left to read (empty fields, frame ends).
    fn settle(&mut self, payload: &mut [u8], names: &[Vec<u8>], counters: &mut Counters) -> bool {
        let mut changed = false;
        loop {
            self.state = match self.state {
                State::Skip(0) | State::Pad(0) => State::Header([0; 9], 0),
                State::Pre {
                    left: 0,
                    frag,
                    pad,
                    end,
                } => State::Frag {
                    left: frag,
                    pad,
                    end,
                },
                State::Frag { left: 0, pad, end } => {
                    if end {
                        if let Some(mut b) = self.block.take() {
                            changed |= b.process(payload, true, &mut self.table, names, counters);
                        }
                    }
                    State::Pad(pad)
                }
                _ => return changed,
            };
        }
    }

    /// A complete frame header `h`: decides how its payload is read.
    fn frame(
        &mut self,
        h: &[u8; 9],
        payload: &mut [u8],
        names: &[Vec<u8>],
        counters: &mut Counters,
    ) -> bool {
        let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
        let (typ, fl) = (h[3], h[4]);
        let mut changed = false;
        if typ != CONTINUATION {
            if let Some(mut b) = self.block.take() {
                // a block without its END_HEADERS: finish it as it is
                changed |= b.process(payload, true, &mut self.table, names, counters);
            }
        }
        let end = fl & END_HEADERS != 0;
        let (pre, padded) = match typ {
            HEADERS => (if fl & PRIORITY != 0 { 5 } else { 0 }, fl & PADDED != 0),
            PUSH_PROMISE => (4, fl & PADDED != 0),
            CONTINUATION => (0, false),
            _ => {
                self.state = State::Skip(len);
                return changed;
            }
        };
        if typ == CONTINUATION {
            if self.block.is_none() {
                // the start of this block was not seen: nothing in it can be checked
                let mut b = Block::new();
                b.blank_all(&mut self.table, counters);
                self.block = Some(b);
            }
        } else {
            self.block = Some(Block::new());
        }
        self.state = if padded {
            match len.checked_sub(1) {
                Some(rest) => State::PadLen { rest, pre, end },
                None => {
                    self.lose(counters);
                    return changed;
                }
            }
        } else {
            match len.checked_sub(pre) {
                Some(frag) => State::Pre {
                    left: pre,
                    frag,
                    pad: 0,
                    end,
                },
                None => {
                    self.lose(counters);
                    return changed;
                }
            }
        };
        changed
    }
}
