//! One HTTP/2 connection: frames of both directions → per-stream exchanges.
//!
//! Each direction is read frame by frame from its reassembled segments (DATA payloads are
//! counted, never buffered; other payloads are kept up to a bound). HEADERS +
//! CONTINUATION blocks are decoded by that direction's [`Decoder`]; the stream table
//! collects request headers, response headers and trailers, body sizes, RST_STREAM and
//! times, and hands out [`StreamEvent`]s: a request once its headers are complete and it
//! ended (or the response started), a response once the stream ended. Lost bytes (gaps,
//! snaplen cuts inside non-DATA frames) put the direction out of step; it resumes at the
//! next segment that starts with plausible frames, with HPACK in its tolerant state.

use std::collections::BTreeMap;

use podtrace_format::Role;

use super::frame::{self, flag, kind, FrameHeader, HEADER_LEN, PREFACE};
use super::hpack::Decoder;
use super::{Limits, StreamEvent};
use crate::protocol::http::{
    split_target, GrpcCall, H2Request, H2Response, HttpRequest, HttpResponse, KEPT_HEADERS,
};
use crate::protocol::{Headers, Request, RequestDetail, Response, ResponseDetail};
use crate::reassemble::Segment;

/// What a direction of the connection carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Carries {
    Requests,
    Responses,
}

#[derive(Debug)]
enum ReadState {
    /// Expecting the rest of the client preface (`have` bytes matched so far).
    Preface { have: usize },
    /// Reading a frame header.
    Header { buf: [u8; HEADER_LEN], have: usize },
    /// Reading a payload; `keep` = buffer it (non-DATA frames within the bound).
    Payload {
        hdr: FrameHeader,
        buf: Vec<u8>,
        remaining: usize,
        keep: bool,
    },
    /// Out of step: waiting for a segment that starts with plausible frames.
    Lost,
    /// h2c upgrade: reading the HTTP/1 request (`request`) or `101` response head.
    Http1Head { buf: Vec<u8>, request: bool },
    /// h2c upgrade: skipping the upgrade request's body, then the preface.
    SkipBody { remaining: usize },
}

/// Largest HTTP/1 head accepted before an h2c upgrade.
const MAX_UPGRADE_HEAD: usize = 64 * 1024;

/// A header block being assembled from HEADERS + CONTINUATION.
#[derive(Debug)]
struct PendingBlock {
    stream: u32,
    bytes: Vec<u8>,
    end_stream: bool,
    start_ts: u64,
    push: bool,
    too_large: bool,
}

#[derive(Debug)]
struct Dir {
    decoder: Decoder,
    state: ReadState,
    frame_start_ts: u64,
    block: Option<PendingBlock>,
    carries: Option<Carries>,
    /// Some bytes of this direction were seen.
    seen_data: bool,
}

impl Dir {
    fn new(preface: bool, synced: bool) -> Self {
        Dir {
            decoder: Decoder::new(synced),
            state: if preface {
                ReadState::Preface { have: 0 }
            } else if synced {
                ReadState::Header {
                    buf: [0; HEADER_LEN],
                    have: 0,
                }
            } else {
                // Joined late: the first bytes may be inside a frame; start at the first
                // segment that begins with plausible frames.
                ReadState::Lost
            },
            seen_data: false,
            frame_start_ts: 0,
            block: None,
            carries: None,
        }
    }
}

/// A complete frame handed to the stream logic.
struct Frame {
    hdr: FrameHeader,
    payload: Vec<u8>,
    start_ts: u64,
    end_ts: u64,
}

/// Per-stream state.
#[derive(Debug, Default)]
struct Stream {
    req_fields: Option<Vec<(String, String)>>,
    req_start: Option<u64>,
    req_end: u64,
    req_body: u64,
    req_ended: bool,
    status: Option<u16>,
    resp_fields: Vec<(String, String)>,
    resp_start: Option<u64>,
    resp_end: u64,
    resp_body: u64,
    resp_ended: bool,
    reset: Option<u32>,
    partial: bool,
    announced: bool,
}

/// Header names kept from response headers and trailers.
const KEPT_RESPONSE: [&str; 3] = ["grpc-status", "grpc-message", "content-type"];

/// The HTTP/2 state of one connection (see the module doc).
#[derive(Debug)]
pub struct H2Connection {
    limits: Limits,
    role: Role,
    /// The role is known from the preface or from decoded headers (not only the socket).
    role_certain: bool,
    egress: Dir,
    ingress: Dir,
    streams: BTreeMap<u32, Stream>,
    errors: Vec<&'static str>,
    events: Vec<StreamEvent>,
    /// Decoded HEADERS blocks, when recording them ([`H2Connection::record_blocks`]).
    blocks: Option<Vec<HeaderBlock>>,
}

/// One decoded HEADERS (+ CONTINUATION) block, for inspection and cross-checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderBlock {
    /// Sent by this socket (egress) or received (ingress).
    pub egress: bool,
    /// The stream id.
    pub stream: u32,
    /// Every decoded field in order (not only the kept ones).
    pub fields: Vec<(String, String)>,
    /// Fields that referred to dynamic-table entries never seen.
    pub unknown: usize,
}

impl H2Connection {
    /// A connection whose first bytes were seen (`preface_dir`: which direction sends the
    /// client preface, egress = `true`), or one joined late (`None`: HPACK tolerant).
    pub fn new(role: Role, preface_egress: Option<bool>, limits: Limits) -> Self {
        let synced = preface_egress.is_some();
        let mut c = H2Connection {
            limits,
            role: Role::Unknown,
            role_certain: synced,
            egress: Dir::new(preface_egress == Some(true), synced),
            ingress: Dir::new(preface_egress == Some(false), synced),
            streams: BTreeMap::new(),
            errors: Vec::new(),
            events: Vec::new(),
            blocks: None,
        };
        // The preface sender is the client, whatever the socket said.
        match preface_egress {
            Some(true) => c.set_role(Role::Client),
            Some(false) => c.set_role(Role::Server),
            None => c.set_role(role),
        }
        c
    }

    /// The role, once known (this socket sends requests = client).
    pub fn role(&self) -> Role {
        self.role
    }

    /// Learns the socket's role.
    pub fn set_role(&mut self, role: Role) {
        if self.role != Role::Unknown || role == Role::Unknown {
            return;
        }
        self.role = role;
        let (e, i) = match role {
            Role::Client => (Carries::Requests, Carries::Responses),
            _ => (Carries::Responses, Carries::Requests),
        };
        self.egress.carries = Some(e);
        self.ingress.carries = Some(i);
    }

    /// A connection that starts with an HTTP/1 request carrying `Upgrade: h2c` (sent by
    /// the egress side when `client_egress`): the request is stream 1, the `101`
    /// response is followed by HTTP/2 frames, the client's by the preface.
    pub fn new_upgrade(role: Role, client_egress: bool, limits: Limits) -> Self {
        let mut c = Self::new(role, Some(client_egress), limits);
        for (dir, request) in [
            (&mut c.egress, client_egress),
            (&mut c.ingress, !client_egress),
        ] {
            dir.state = ReadState::Http1Head {
                buf: Vec::new(),
                request,
            };
        }
        c
    }

    /// Starts (or stops) keeping every decoded HEADERS block (memory grows with the
    /// traffic: for tests and inspection only).
    pub fn record_blocks(&mut self, on: bool) {
        self.blocks = on.then(Vec::new);
    }

    /// The HEADERS blocks decoded since the last call (when recording).
    pub fn take_blocks(&mut self) -> Vec<HeaderBlock> {
        self.blocks.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Streams currently tracked.
    pub fn open_streams(&self) -> usize {
        self.streams.len()
    }

    /// Feeds new segments of both directions; `closed` ends the connection. Returns the
    /// stream events and the error reasons counted.
    pub fn feed(
        &mut self,
        egress: &[Segment],
        ingress: &[Segment],
        closed: bool,
    ) -> (Vec<StreamEvent>, Vec<&'static str>) {
        for s in egress {
            self.segment(true, s);
        }
        for s in ingress {
            self.segment(false, s);
        }
        self.emit(closed);
        (
            std::mem::take(&mut self.events),
            std::mem::take(&mut self.errors),
        )
    }

    fn dir(&mut self, egress: bool) -> &mut Dir {
        if egress {
            &mut self.egress
        } else {
            &mut self.ingress
        }
    }

    fn lose(&mut self, egress: bool, reason: &'static str) {
        self.errors.push(reason);
        let d = self.dir(egress);
        d.state = ReadState::Lost;
        d.block = None;
        d.decoder.desync();
    }

    fn segment(&mut self, egress: bool, seg: &Segment) {
        match seg {
            Segment::Gap { .. } => {
                if !matches!(self.dir(egress).state, ReadState::Lost) {
                    self.lose(egress, "h2_gap");
                }
            }
            Segment::Missing { len, .. } => {
                let d = self.dir(egress);
                if let ReadState::Payload {
                    remaining,
                    keep: false,
                    hdr,
                    ..
                } = &mut d.state
                {
                    if (*remaining as u64) >= *len {
                        *remaining -= *len as usize;
                        let hdr = *hdr;
                        if *remaining == 0 {
                            let start = d.frame_start_ts;
                            d.state = ReadState::Header {
                                buf: [0; HEADER_LEN],
                                have: 0,
                            };
                            self.frame(
                                egress,
                                Frame {
                                    hdr,
                                    payload: Vec::new(),
                                    start_ts: start,
                                    end_ts: seg.ts_ns(),
                                },
                            );
                        }
                        return;
                    }
                }
                if !matches!(self.dir(egress).state, ReadState::Lost) {
                    self.lose(egress, "h2_missing_bytes");
                }
            }
            Segment::Data { ts_ns, bytes, .. } => self.data(egress, *ts_ns, bytes),
        }
    }

    fn data(&mut self, egress: bool, ts: u64, mut b: &[u8]) {
        let first = !std::mem::replace(&mut self.dir(egress).seen_data, true);
        if matches!(self.dir(egress).state, ReadState::Lost) {
            // A late join's very first segment may end inside its first frame.
            let m = frame::frames_match(b);
            if m == Some(true) || (first && m.is_none() && b.len() >= HEADER_LEN) {
                self.dir(egress).state = ReadState::Header {
                    buf: [0; HEADER_LEN],
                    have: 0,
                };
            } else {
                return;
            }
        }
        while !b.is_empty() {
            let max_keep = self.limits.max_frame_keep;
            let d = self.dir(egress);
            let mut done: Option<Frame> = None;
            match &mut d.state {
                ReadState::Lost => return,
                ReadState::Http1Head { buf, request } => {
                    if buf.is_empty() {
                        d.frame_start_ts = ts;
                    }
                    let request = *request;
                    let mut head = std::mem::take(buf);
                    head.extend_from_slice(b);
                    let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
                        if head.len() > MAX_UPGRADE_HEAD {
                            self.lose(egress, "h2c_upgrade_head_too_large");
                        } else if let ReadState::Http1Head { buf, .. } = &mut self.dir(egress).state
                        {
                            *buf = head;
                        }
                        return;
                    };
                    let rest = head.split_off(end + 4);
                    self.upgrade_head(egress, request, &head, ts);
                    if !rest.is_empty() {
                        self.data(egress, ts, &rest);
                    }
                    return;
                }
                ReadState::SkipBody { remaining } => {
                    let n = (*remaining).min(b.len());
                    *remaining -= n;
                    b = &b[n..];
                    if *remaining == 0 {
                        d.state = ReadState::Preface { have: 0 };
                    }
                }
                ReadState::Preface { have } => {
                    let n = (PREFACE.len() - *have).min(b.len());
                    if b[..n] != PREFACE[*have..*have + n] {
                        self.lose(egress, "h2_bad_preface");
                        return;
                    }
                    *have += n;
                    b = &b[n..];
                    if *have == PREFACE.len() {
                        d.state = ReadState::Header {
                            buf: [0; HEADER_LEN],
                            have: 0,
                        };
                    }
                }
                ReadState::Header { buf, have } => {
                    if *have == 0 {
                        d.frame_start_ts = ts;
                    }
                    let n = (HEADER_LEN - *have).min(b.len());
                    buf[*have..*have + n].copy_from_slice(&b[..n]);
                    *have += n;
                    b = &b[n..];
                    if *have == HEADER_LEN {
                        let hdr = FrameHeader::parse(buf);
                        let len = hdr.len as usize;
                        let keep = hdr.kind != kind::DATA && len <= max_keep;
                        if hdr.kind != kind::DATA && !keep {
                            // A huge control or header frame: skip it; a lost header
                            // block desynchronises HPACK.
                            d.decoder.desync();
                            d.block = None;
                            self.errors.push("h2_frame_too_large");
                        }
                        let d = self.dir(egress);
                        if len == 0 {
                            d.state = ReadState::Header {
                                buf: [0; HEADER_LEN],
                                have: 0,
                            };
                            done = Some(Frame {
                                hdr,
                                payload: Vec::new(),
                                start_ts: d.frame_start_ts,
                                end_ts: ts,
                            });
                        } else {
                            d.state = ReadState::Payload {
                                hdr,
                                buf: Vec::with_capacity(if keep { len } else { 0 }),
                                remaining: len,
                                keep,
                            };
                        }
                    }
                }
                ReadState::Payload {
                    hdr,
                    buf,
                    remaining,
                    keep,
                } => {
                    let n = (*remaining).min(b.len());
                    if *keep {
                        buf.extend_from_slice(&b[..n]);
                    }
                    *remaining -= n;
                    b = &b[n..];
                    if *remaining == 0 {
                        let hdr = *hdr;
                        let keep = *keep;
                        let payload = std::mem::take(buf);
                        d.state = ReadState::Header {
                            buf: [0; HEADER_LEN],
                            have: 0,
                        };
                        if keep || hdr.kind == kind::DATA {
                            done = Some(Frame {
                                hdr,
                                payload,
                                start_ts: d.frame_start_ts,
                                end_ts: ts,
                            });
                        }
                    }
                }
            }
            if let Some(f) = done {
                self.frame(egress, f);
            }
        }
    }

    /// An h2c upgrade's HTTP/1 head: the request becomes stream 1; a `101` response hands
    /// the server side over to frames.
    fn upgrade_head(&mut self, egress: bool, request: bool, head: &[u8], ts: u64) {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        if request {
            let mut req = httparse::Request::new(&mut headers);
            if !matches!(req.parse(head), Ok(httparse::Status::Complete(_))) {
                self.lose(egress, "h2c_bad_upgrade_request");
                return;
            }
            let mut fields = vec![
                (
                    ":method".to_string(),
                    req.method.unwrap_or("GET").to_string(),
                ),
                (":path".to_string(), req.path.unwrap_or("/").to_string()),
            ];
            let mut body = 0usize;
            for h in req.headers.iter() {
                let name = h.name.to_ascii_lowercase();
                let value = String::from_utf8_lossy(h.value).into_owned();
                if name == "host" {
                    fields.push((":authority".to_string(), value));
                } else if name == "content-length" {
                    body = value.trim().parse().unwrap_or(0);
                } else if KEPT_HEADERS.contains(&name.as_str()) || name == "content-type" {
                    fields.push((name, value));
                }
            }
            let start = self.dir(egress).frame_start_ts;
            let s = self.streams.entry(1).or_default();
            s.req_fields = Some(fields);
            s.req_start = Some(start);
            s.req_end = ts;
            s.req_body = body as u64;
            s.req_ended = true;
            self.dir(egress).state = if body > 0 {
                ReadState::SkipBody { remaining: body }
            } else {
                ReadState::Preface { have: 0 }
            };
        } else {
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(head) {
                Ok(httparse::Status::Complete(_)) if resp.code == Some(101) => {
                    self.dir(egress).state = ReadState::Header {
                        buf: [0; HEADER_LEN],
                        have: 0,
                    };
                }
                _ => self.lose(egress, "h2c_upgrade_declined"),
            }
        }
    }

    fn frame(&mut self, egress: bool, f: Frame) {
        let hdr = f.hdr;
        let pending = self.dir(egress).block.is_some();
        if pending && hdr.kind != kind::CONTINUATION {
            self.errors.push("h2_continuation_expected");
            let d = self.dir(egress);
            d.block = None;
            d.decoder.desync();
        }
        match hdr.kind {
            kind::DATA => self.on_data(egress, &f),
            kind::HEADERS => {
                let frag = match frame::headers_fragment(hdr.flags, &f.payload) {
                    Ok(frag) => frag.to_vec(),
                    Err(_) => {
                        self.errors.push("h2_bad_padding");
                        self.dir(egress).decoder.desync();
                        return;
                    }
                };
                self.start_block(egress, hdr.stream, frag, &f, false);
            }
            kind::PUSH_PROMISE => match frame::unpad(hdr.flags, &f.payload) {
                Ok(p) if p.len() >= 4 => {
                    let frag = p[4..].to_vec();
                    self.start_block(egress, hdr.stream, frag, &f, true);
                }
                _ => {
                    self.errors.push("h2_bad_padding");
                    self.dir(egress).decoder.desync();
                }
            },
            kind::CONTINUATION => {
                let max = self.limits.max_header_block;
                let d = self.dir(egress);
                let Some(mut block) = d.block.take() else {
                    self.errors.push("h2_unexpected_continuation");
                    return;
                };
                if block.stream != hdr.stream {
                    self.errors.push("h2_continuation_stream_mismatch");
                    self.dir(egress).decoder.desync();
                    return;
                }
                if block.bytes.len() + f.payload.len() > max {
                    block.too_large = true;
                    block.bytes.clear();
                } else if !block.too_large {
                    block.bytes.extend_from_slice(&f.payload);
                }
                if hdr.flags & flag::END_HEADERS != 0 {
                    self.finish_block(egress, block, f.end_ts);
                } else {
                    self.dir(egress).block = Some(block);
                }
            }
            kind::RST_STREAM => {
                let code = frame::error_code(&f.payload, 0).unwrap_or(0);
                if let Some(s) = self.streams.get_mut(&hdr.stream) {
                    s.reset = Some(code);
                    s.resp_end = s.resp_end.max(f.end_ts);
                }
            }
            kind::GOAWAY => {
                let code = frame::error_code(&f.payload, 4).unwrap_or(0);
                if code != 0 {
                    self.errors.push("h2_goaway_error");
                }
            }
            kind::SETTINGS if hdr.flags & flag::ACK == 0 => {
                // SETTINGS_HEADER_TABLE_SIZE bounds the table the *other* direction's
                // encoder may use (the decoder follows its size updates).
                for (id, v) in frame::settings(&f.payload) {
                    if id == frame::SETTINGS_HEADER_TABLE_SIZE {
                        self.dir(!egress).decoder.set_allowed(v as usize);
                    }
                }
            }
            // PING, PRIORITY, WINDOW_UPDATE, SETTINGS ACKs and unknown types carry nothing
            // a span needs.
            _ => {}
        }
    }

    fn start_block(&mut self, egress: bool, stream: u32, frag: Vec<u8>, f: &Frame, push: bool) {
        let too_large = frag.len() > self.limits.max_header_block;
        let block = PendingBlock {
            stream,
            bytes: if too_large { Vec::new() } else { frag },
            end_stream: f.hdr.flags & flag::END_STREAM != 0 && !push,
            start_ts: f.start_ts,
            push,
            too_large,
        };
        if f.hdr.flags & flag::END_HEADERS != 0 {
            self.finish_block(egress, block, f.end_ts);
        } else {
            self.dir(egress).block = Some(block);
        }
    }

    fn finish_block(&mut self, egress: bool, block: PendingBlock, end_ts: u64) {
        if block.too_large {
            self.errors.push("h2_header_block_too_large");
            self.dir(egress).decoder.desync();
            return;
        }
        let max_list = self.limits.max_header_list;
        let decoded = self.dir(egress).decoder.decode(&block.bytes, max_list);
        if let Some(e) = decoded.error {
            self.errors.push(e.reason());
        }
        if decoded.dropped > 0 {
            self.errors.push("h2_header_list_too_large");
        }
        if decoded.above_setting {
            self.errors.push("h2_table_size_above_setting");
        }
        if block.push {
            return;
        }
        if let Some(log) = &mut self.blocks {
            log.push(HeaderBlock {
                egress,
                stream: block.stream,
                fields: decoded.fields.clone(),
                unknown: decoded.unknown,
            });
        }
        let has = |n: &str| decoded.fields.iter().any(|(k, _)| k == n);
        let is_request = has(":method") || has(":path");
        let is_response = has(":status");
        let carries = match (is_request, is_response) {
            (true, false) => Some(Carries::Requests),
            (false, true) => Some(Carries::Responses),
            _ => self.dir(egress).carries,
        };
        let Some(carries) = carries else {
            self.errors.push("h2_unattributed_headers");
            return;
        };
        if is_request ^ is_response {
            let role = match (carries, egress) {
                (Carries::Requests, true) | (Carries::Responses, false) => Role::Client,
                _ => Role::Server,
            };
            if self.role != role && self.role != Role::Unknown && !self.role_certain {
                // The socket role was a guess (e.g. an import that missed the SYN): the
                // side sending `:method` is the client.
                self.errors.push("h2_role_corrected");
                self.role = Role::Unknown;
            }
            self.set_role(role);
            self.role_certain = true;
        }
        let partial = decoded.unknown > 0 || decoded.error.is_some() || decoded.dropped > 0;
        let new_stream = !self.streams.contains_key(&block.stream);
        if new_stream {
            if self.streams.len() >= self.limits.max_streams {
                self.errors.push("h2_too_many_streams");
                return;
            }
            if carries == Carries::Responses && block.stream == 0 {
                return;
            }
        }
        let s = self.streams.entry(block.stream).or_default();
        s.partial |= partial;
        match carries {
            Carries::Requests => {
                if s.req_fields.is_none() {
                    s.req_start = Some(block.start_ts);
                    s.req_fields = Some(keep(decoded.fields, |n| {
                        n.starts_with(':') || n == "content-type" || KEPT_HEADERS.contains(&n)
                    }));
                }
                s.req_end = s.req_end.max(end_ts);
                s.req_ended |= block.end_stream;
            }
            Carries::Responses => {
                let status = decoded
                    .fields
                    .iter()
                    .find(|(n, _)| n == ":status")
                    .and_then(|(_, v)| v.parse::<u16>().ok());
                if let Some(st) = status {
                    if (100..200).contains(&st) {
                        // Informational: the final response follows.
                        return;
                    }
                    s.status = Some(st);
                }
                s.resp_start.get_or_insert(block.start_ts);
                s.resp_end = s.resp_end.max(end_ts);
                s.resp_fields.extend(keep(decoded.fields, |n| {
                    n == ":status" || KEPT_RESPONSE.contains(&n)
                }));
                s.resp_ended |= block.end_stream;
            }
        }
    }

    fn on_data(&mut self, egress: bool, f: &Frame) {
        let Some(carries) = self.dir(egress).carries else {
            return;
        };
        let Some(s) = self.streams.get_mut(&f.hdr.stream) else {
            return;
        };
        let len = u64::from(f.hdr.len);
        let end = f.hdr.flags & flag::END_STREAM != 0;
        match carries {
            Carries::Requests => {
                s.req_body += len;
                s.req_end = s.req_end.max(f.end_ts);
                s.req_ended |= end;
            }
            Carries::Responses => {
                s.resp_body += len;
                s.resp_start.get_or_insert(f.start_ts);
                s.resp_end = s.resp_end.max(f.end_ts);
                s.resp_ended |= end;
            }
        }
    }

    /// Hands out what is ready, in stream order.
    fn emit(&mut self, closed: bool) {
        let mut finished = Vec::new();
        for (&id, s) in self.streams.iter_mut() {
            let ended = s.resp_ended || s.reset.is_some();
            let ready = s.req_ended || s.resp_start.is_some() || ended || closed;
            if !s.announced && s.req_fields.is_some() && ready {
                s.announced = true;
                self.events
                    .push(StreamEvent::Request(id, to_request(id, s)));
            }
            if !s.announced {
                if ended || closed {
                    self.events.push(StreamEvent::UnmatchedResponse);
                    finished.push(id);
                }
                continue;
            }
            if ended || (closed && s.resp_start.is_some()) {
                self.events
                    .push(StreamEvent::Response(id, to_response(s, !ended)));
                finished.push(id);
            } else if closed {
                self.events.push(StreamEvent::Unanswered(id));
                finished.push(id);
            }
        }
        for id in finished {
            // Streams whose request or response headers were only partly decodable.
            if self.streams.remove(&id).is_some_and(|s| s.partial) {
                self.errors.push("h2_partial_headers");
            }
        }
    }
}

fn keep(fields: Vec<(String, String)>, f: impl Fn(&str) -> bool) -> Vec<(String, String)> {
    fields.into_iter().filter(|(n, _)| f(n)).collect()
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn to_request(id: u32, s: &Stream) -> Request {
    let fields = s.req_fields.as_deref().unwrap_or_default();
    let method = field(fields, ":method").unwrap_or("_OTHER").to_string();
    let target = field(fields, ":path").unwrap_or_default().to_string();
    let (path, query) = split_target(&target);
    let mut headers: Headers = fields
        .iter()
        .filter(|(n, _)| KEPT_HEADERS.contains(&n.as_str()))
        .map(|(n, v)| (n, v))
        .collect();
    if let Some(a) = field(fields, ":authority") {
        if !headers.iter().any(|(n, _)| n == "host") {
            headers.push("host", a);
        }
    }
    let grpc = field(fields, "content-type")
        .filter(|ct| ct.starts_with("application/grpc"))
        .map(|_| GrpcCall::from_path(&path));
    let start = s.req_start.unwrap_or(s.req_end);
    Request {
        headers,
        body_size: s.req_body,
        start_ts: start,
        end_ts: s.req_end.max(start),
        truncated: s.partial,
        // The frames of all streams are written by the connection's I/O threads (gRPC
        // C-core's event engine, Go's netpoller), not by the thread serving the call.
        tid: 0,
        detail: RequestDetail::Http(HttpRequest {
            method,
            target,
            path,
            query,
            version: 0,
            h2: Some(Box::new(H2Request {
                stream_id: id,
                grpc,
                partial_headers: s.partial,
            })),
        }),
    }
}

fn to_response(s: &Stream, cut: bool) -> Response {
    let f = &s.resp_fields;
    let grpc_status = field(f, "grpc-status").and_then(|v| v.trim().parse::<i64>().ok());
    let grpc_message = field(f, "grpc-message").map(percent_decode);
    let start = s.resp_start.unwrap_or(s.resp_end);
    Response {
        body_size: s.resp_body,
        start_ts: start,
        end_ts: s.resp_end.max(start),
        truncated: cut || s.partial,
        detail: ResponseDetail::Http(HttpResponse {
            status: s.status.unwrap_or(0),
            version: 0,
            h2: Some(H2Response {
                grpc_status,
                grpc_message,
                reset: s.reset,
            }),
        }),
    }
}

/// Decodes gRPC's percent-encoded `grpc-message` (invalid escapes are kept as sent).
fn percent_decode(v: &str) -> String {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(x) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(x);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
