//! HTTP/2 frame layout (RFC 9113 §4, §6): the 9-byte header, frame types and flags, the
//! client connection preface, payload helpers (padding, priority) and a plausibility check
//! used to recognise frames in a stream joined mid-connection.

/// The client connection preface.
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Length of a frame header.
pub const HEADER_LEN: usize = 9;

/// Frame types.
pub mod kind {
    /// DATA
    pub const DATA: u8 = 0x0;
    /// HEADERS
    pub const HEADERS: u8 = 0x1;
    /// PRIORITY
    pub const PRIORITY: u8 = 0x2;
    /// RST_STREAM
    pub const RST_STREAM: u8 = 0x3;
    /// SETTINGS
    pub const SETTINGS: u8 = 0x4;
    /// PUSH_PROMISE
    pub const PUSH_PROMISE: u8 = 0x5;
    /// PING
    pub const PING: u8 = 0x6;
    /// GOAWAY
    pub const GOAWAY: u8 = 0x7;
    /// WINDOW_UPDATE
    pub const WINDOW_UPDATE: u8 = 0x8;
    /// CONTINUATION
    pub const CONTINUATION: u8 = 0x9;
}

/// Frame flags.
pub mod flag {
    /// END_STREAM (DATA, HEADERS); ACK on SETTINGS and PING.
    pub const END_STREAM: u8 = 0x1;
    /// ACK (SETTINGS, PING).
    pub const ACK: u8 = 0x1;
    /// END_HEADERS (HEADERS, PUSH_PROMISE, CONTINUATION).
    pub const END_HEADERS: u8 = 0x4;
    /// PADDED (DATA, HEADERS, PUSH_PROMISE).
    pub const PADDED: u8 = 0x8;
    /// PRIORITY (HEADERS).
    pub const PRIORITY: u8 = 0x20;
}

/// SETTINGS_HEADER_TABLE_SIZE identifier.
pub const SETTINGS_HEADER_TABLE_SIZE: u16 = 0x1;

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Payload length (24 bits).
    pub len: u32,
    /// Frame type.
    pub kind: u8,
    /// Flags.
    pub flags: u8,
    /// Stream identifier (reserved bit cleared).
    pub stream: u32,
    /// The reserved bit was set.
    pub reserved: bool,
}

impl FrameHeader {
    /// Parses the 9 header bytes.
    pub fn parse(b: &[u8; HEADER_LEN]) -> Self {
        let raw = u32::from_be_bytes([b[5], b[6], b[7], b[8]]);
        FrameHeader {
            len: u32::from_be_bytes([0, b[0], b[1], b[2]]),
            kind: b[3],
            flags: b[4],
            stream: raw & 0x7fff_ffff,
            reserved: raw & 0x8000_0000 != 0,
        }
    }

    /// Whether this looks like a real frame header (used to recognise HTTP/2 without a
    /// preface): a known type on the right kind of stream, with a length fitting it and
    /// the default maximum frame size.
    pub fn plausible(&self) -> bool {
        if self.reserved || self.len > 16_384 {
            return false;
        }
        let on_conn = self.stream == 0;
        match self.kind {
            kind::DATA | kind::HEADERS | kind::CONTINUATION | kind::PUSH_PROMISE => !on_conn,
            kind::PRIORITY => !on_conn && self.len == 5,
            kind::RST_STREAM => !on_conn && self.len == 4,
            kind::SETTINGS => on_conn && self.len.is_multiple_of(6),
            kind::PING => on_conn && self.len == 8,
            kind::GOAWAY => on_conn && self.len >= 8,
            kind::WINDOW_UPDATE => self.len == 4,
            _ => false,
        }
    }
}

/// Why a frame payload is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadError {
    /// The pad length or priority fields do not fit in the payload.
    BadPadding,
}

/// The header block fragment of a HEADERS payload (padding and priority removed).
pub fn headers_fragment(flags: u8, p: &[u8]) -> Result<&[u8], PayloadError> {
    let p = unpad(flags, p)?;
    if flags & flag::PRIORITY != 0 {
        p.get(5..).ok_or(PayloadError::BadPadding)
    } else {
        Ok(p)
    }
}

/// A payload without its padding (when PADDED is set).
pub fn unpad(flags: u8, p: &[u8]) -> Result<&[u8], PayloadError> {
    if flags & flag::PADDED == 0 {
        return Ok(p);
    }
    let (&pad, rest) = p.split_first().ok_or(PayloadError::BadPadding)?;
    let keep = rest
        .len()
        .checked_sub(usize::from(pad))
        .ok_or(PayloadError::BadPadding)?;
    Ok(&rest[..keep])
}

/// The (identifier, value) pairs of a SETTINGS payload.
pub fn settings(p: &[u8]) -> impl Iterator<Item = (u16, u32)> + '_ {
    p.chunks_exact(6).map(|c| {
        (
            u16::from_be_bytes([c[0], c[1]]),
            u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
        )
    })
}

/// The error code of a RST_STREAM payload (or GOAWAY's at offset 4).
pub fn error_code(p: &[u8], offset: usize) -> Option<u32> {
    let b = p.get(offset..offset + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Whether `b` starts with (a prefix of) the client preface: `Some(true)` for the full
/// preface, `None` while too short to tell, `Some(false)` otherwise.
pub fn preface_match(b: &[u8]) -> Option<bool> {
    let n = b.len().min(PREFACE.len());
    if b[..n] != PREFACE[..n] {
        Some(false)
    } else if n == PREFACE.len() {
        Some(true)
    } else {
        None
    }
}

/// Whether `b` starts with plausible frames: every complete frame header up to `max`
/// bytes is plausible, and at least one complete frame is there. `None` while too short.
pub fn frames_match(b: &[u8]) -> Option<bool> {
    let mut pos = 0usize;
    let mut frames = 0usize;
    while let Some(h) = b.get(pos..pos + HEADER_LEN) {
        let Ok(arr) = <&[u8; HEADER_LEN]>::try_from(h) else {
            break;
        };
        let fh = FrameHeader::parse(arr);
        if !fh.plausible() {
            return Some(false);
        }
        pos += HEADER_LEN + fh.len as usize;
        frames += 1;
        if frames >= 3 || pos >= 256 {
            break;
        }
    }
    if frames == 0 {
        return None;
    }
    if pos <= b.len() || frames >= 2 {
        Some(true)
    } else {
        None
    }
}
