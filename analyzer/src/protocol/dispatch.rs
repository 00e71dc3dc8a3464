//! The dispatcher: which protocol a connection speaks, decided once from its first bytes.
//!
//! A [`ConnectionParser`] buffers both directions while undecided and asks each protocol
//! of the list below, in order, whether the bytes are its own ([`Protocol::detect`]). The
//! first that claims them gets the buffered segments and every later one; while one still
//! needs more bytes the connection waits; when none claims them (or the connection ends
//! undecided) HTTP/1, the fallback, parses them. Adding a protocol is one line in
//! `protocols!`.

use std::net::SocketAddr;

use podtrace_format::Role;

use super::http1::Http1;
use super::http2::Http2;
use super::mysql::Mysql;
use super::postgres::Postgres;
use super::redis::Redis;
use super::{Detection, Limits, Output, Protocol, Start};
use crate::reassemble::Segment;

/// Bytes buffered per direction while undecided; past it, the connection goes to the
/// fallback (`protocol_undecided`). Detectors decide well before (HTTP/2: 32 KiB).
const MAX_UNDECIDED: usize = 64 * 1024;

/// Declares the protocols tried on a new connection, in order, and the parser enum over
/// them (one line per protocol: `Variant(Type)`; parsers are boxed, their sizes differ).
macro_rules! protocols {
    ($($variant:ident($ty:ty)),+ $(,)?) => {
        /// The parser of a decided connection: one variant per protocol.
        #[derive(Debug)]
        enum Parser {
            $(
                #[doc = concat!("`", stringify!($ty), "`.")]
                $variant(Box<$ty>),
            )+
            /// The fallback.
            Http1(Box<Http1>),
        }

        impl Parser {
            /// The first protocol that claims the connection; `Err(true)` while one
            /// needs more bytes, `Err(false)` when none claims it.
            fn detect(start: &Start<'_>) -> Result<Parser, bool> {
                let mut pending = false;
                $(
                    match <$ty as Protocol>::detect(start) {
                        Detection::Found(p) => return Ok(Parser::$variant(Box::new(p))),
                        Detection::NeedMore => pending = true,
                        Detection::NotMine => {}
                    }
                )+
                Err(pending)
            }

            fn feed(&mut self, egress: &[Segment], ingress: &[Segment], closed: bool) -> Output {
                match self {
                    $(Parser::$variant(p) => p.feed(egress, ingress, closed),)+
                    Parser::Http1(p) => p.feed(egress, ingress, closed),
                }
            }

            fn set_role(&mut self, role: Role) {
                match self {
                    $(Parser::$variant(p) => p.set_role(role),)+
                    Parser::Http1(p) => p.set_role(role),
                }
            }
        }
    };
}

protocols! {
    Http2(Http2),
    Redis(Redis),
    Mysql(Mysql),
    Postgres(Postgres),
}

#[derive(Debug)]
enum Mode {
    Undecided {
        egress: Vec<Segment>,
        ingress: Vec<Segment>,
    },
    Decided(Parser),
}

/// A connection's parser: the protocol decided from its first bytes (see the module doc),
/// then that protocol's parser.
#[derive(Debug)]
pub struct ConnectionParser {
    mode: Mode,
    role: Role,
    local: Option<SocketAddr>,
    remote: Option<SocketAddr>,
    limits: Limits,
}

impl ConnectionParser {
    /// A parser for a connection whose socket role is `role` (`Unknown` → inferred) and
    /// whose addresses (port hints) are `local` and `remote`.
    pub fn new(
        role: Role,
        local: Option<SocketAddr>,
        remote: Option<SocketAddr>,
        limits: Limits,
    ) -> Self {
        ConnectionParser {
            mode: Mode::Undecided {
                egress: Vec::new(),
                ingress: Vec::new(),
            },
            role,
            local,
            remote,
            limits,
        }
    }

    /// A parser without port hints (tests, fuzzing).
    pub fn with_limits(role: Role, limits: Limits) -> Self {
        Self::new(role, None, None, limits)
    }

    /// Whether the connection was recognised as HTTP/2.
    pub fn is_http2(&self) -> bool {
        matches!(self.mode, Mode::Decided(Parser::Http2(_)))
    }

    /// Whether a protocol was decided.
    pub fn is_decided(&self) -> bool {
        matches!(self.mode, Mode::Decided(_))
    }

    /// Learns the role later (a `socket_open` row that arrived after data).
    pub fn set_role(&mut self, role: Role) {
        if self.role == Role::Unknown {
            self.role = role;
        }
        if let Mode::Decided(p) = &mut self.mode {
            p.set_role(role);
        }
    }

    /// Feeds new segments of both directions; `closed` ends both streams.
    pub fn feed(&mut self, egress: &[Segment], ingress: &[Segment], closed: bool) -> Output {
        let (be, bi) = match &mut self.mode {
            Mode::Decided(p) => return p.feed(egress, ingress, closed),
            Mode::Undecided {
                egress: be,
                ingress: bi,
            } => (be, bi),
        };
        be.extend_from_slice(egress);
        bi.extend_from_slice(ingress);
        let start = Start {
            egress: be,
            ingress: bi,
            closed,
            role: self.role,
            local: self.local,
            remote: self.remote,
            limits: &self.limits,
        };
        let mut overflow = false;
        let parser = match Parser::detect(&start) {
            Ok(p) => p,
            Err(true) if !closed => {
                if data_len(be).max(data_len(bi)) < MAX_UNDECIDED {
                    return Output::default();
                }
                overflow = true;
                Parser::Http1(Box::new(Http1::new(self.role, self.limits.http1)))
            }
            Err(_) => Parser::Http1(Box::new(Http1::new(self.role, self.limits.http1))),
        };
        let e = std::mem::take(be);
        let i = std::mem::take(bi);
        let mut parser = parser;
        let mut out = parser.feed(&e, &i, closed);
        if overflow {
            out.errors.push("protocol_undecided");
        }
        self.mode = Mode::Decided(parser);
        out
    }

    /// Ends both streams (end of the analysis).
    pub fn finish(&mut self) -> Output {
        self.feed(&[], &[], true)
    }
}

/// Data bytes buffered in `segs`.
fn data_len(segs: &[Segment]) -> usize {
    segs.iter()
        .map(|s| match s {
            Segment::Data { bytes, .. } => bytes.len(),
            _ => 0,
        })
        .sum()
}
