//! Stable id derivation: the trace and span ids podtrace invents are hashes of an
//! exchange observation's stable inputs (connection, addresses, request position and
//! time, side), never random, so the same capture always gets the same ids.

use std::net::SocketAddr;
use std::sync::Arc;

use podtrace_model::{SpanId, SpanKind, TraceId};

use super::addr;
#[cfg(test)]
use crate::exchange::Exchange;
use crate::reassemble::ConnKey;

/// FNV-1a over length-prefixed parts, finished with the splitmix64 mixer (streamed: the
/// parts are fed one by one, nothing is collected).
struct StableHasher(u64);

impl StableHasher {
    fn new(seed: u64) -> Self {
        StableHasher(0xcbf2_9ce4_8422_2325 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    }

    fn bytes(&mut self, bytes: &[u8]) {
        let mut h = self.0;
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
    }

    /// One part: its length (8 bytes, little endian), then its bytes.
    fn part(&mut self, part: &[u8]) {
        self.bytes(&(part.len() as u64).to_le_bytes());
        self.bytes(part);
    }

    fn finish(self) -> u64 {
        let mut h = self.0;
        h ^= h >> 30;
        h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h ^= h >> 27;
        h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^ (h >> 31)
    }
}

/// The `local>remote` part of the hashed inputs, in a small buffer (longer text, which
/// socket addresses never produce, spills to the heap). The same for every exchange of a
/// connection: the linker makes it once per connection ([`AddrText::of`]) and shares it.
#[derive(Debug)]
pub(super) struct AddrText {
    buf: [u8; 128],
    len: usize,
    spill: Option<String>,
}

impl AddrText {
    /// The text of a connection's local and remote addresses.
    pub(super) fn of(local: Option<SocketAddr>, remote: Option<SocketAddr>) -> Self {
        use std::fmt::Write;
        let mut t = AddrText {
            buf: [0; 128],
            len: 0,
            spill: None,
        };
        // `{local}>{remote}`, an absent address as nothing.
        let written = (|| {
            if let Some(l) = local {
                addr::write_socket_addr(&mut t, l)?;
            }
            t.write_char('>')?;
            if let Some(r) = remote {
                addr::write_socket_addr(&mut t, r)?;
            }
            Ok::<(), std::fmt::Error>(())
        })();
        if written.is_err() {
            let addr = |a: Option<SocketAddr>| a.map(|a| a.to_string()).unwrap_or_default();
            t.spill = Some(format!("{}>{}", addr(local), addr(remote)));
        }
        t
    }

    fn as_bytes(&self) -> &[u8] {
        match &self.spill {
            Some(s) => s.as_bytes(),
            None => &self.buf[..self.len],
        }
    }
}

impl std::fmt::Write for AddrText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(std::fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Stable inputs identifying an exchange observation: the connection, the request's
/// start time and its position among requests that started then, and the side.
#[derive(Debug, Clone)]
pub(super) struct IdParts {
    conn: ConnKey,
    ordinal: u32,
    start: u64,
    side: SpanKind,
    /// The text of the connection's addresses ([`AddrText::of`] of `conn`'s).
    addrs: Arc<AddrText>,
}

impl IdParts {
    /// The inputs of `ex`, its connection's address text made here.
    #[cfg(test)]
    pub(super) fn of(ex: &Exchange) -> Self {
        let addrs = AddrText::of(ex.id.conn.local, ex.id.conn.remote);
        Self::new(
            ex.id.conn,
            ex.ordinal,
            ex.start_ts(),
            ex.side,
            Arc::new(addrs),
        )
    }

    /// The inputs of the exchange `(conn, ordinal)` that started at `start` on `side`,
    /// whose connection's address text is `addrs` (made once per connection instead of
    /// once per id derived).
    pub(super) fn new(
        conn: ConnKey,
        ordinal: u32,
        start: u64,
        side: SpanKind,
        addrs: Arc<AddrText>,
    ) -> Self {
        IdParts {
            conn,
            ordinal,
            start,
            side,
            addrs,
        }
    }

    /// Feeds the parts (connection id, addresses, ordinal, start, side) to `h`.
    fn feed(&self, h: &mut StableHasher, addrs: &AddrText) {
        h.part(&self.conn.conn_id.to_le_bytes());
        h.part(addrs.as_bytes());
        h.part(&self.ordinal.to_le_bytes());
        h.part(&self.start.to_le_bytes());
        h.part(match self.side {
            SpanKind::Server => b"server",
            SpanKind::Client => b"client",
        });
    }

    /// The trace id podtrace invents for this observation.
    pub(super) fn trace_id(&self) -> TraceId {
        let halves = [1u64, 2].map(|seed| {
            let mut h = StableHasher::new(seed);
            self.feed(&mut h, &self.addrs);
            h.finish()
        });
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&halves[0].to_be_bytes());
        b[8..].copy_from_slice(&halves[1].to_be_bytes());
        if b == [0; 16] {
            b[15] = 1;
        }
        TraceId(b)
    }

    /// The span id of this observation in `trace_id` (`salt`: re-derivation on clash).
    pub(super) fn span_id(&self, trace_id: &TraceId, salt: u64) -> SpanId {
        let mut h = StableHasher::new(3);
        h.part(trace_id.as_bytes());
        self.feed(&mut h, &self.addrs);
        h.part(&salt.to_le_bytes());
        let v = h.finish();
        SpanId(if v == 0 { 1 } else { v }.to_be_bytes())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Fixed inputs of one observation (shared with the identity tests).
    pub(in crate::span) fn parts(side: SpanKind) -> IdParts {
        let conn = ConnKey {
            conn_id: 7,
            local: Some("10.0.0.1:43210".parse().expect("local")),
            remote: Some("10.0.0.2:8080".parse().expect("remote")),
        };
        IdParts {
            conn,
            ordinal: 3,
            start: 1_700_000_000_123_456_789,
            side,
            addrs: Arc::new(AddrText::of(conn.local, conn.remote)),
        }
    }

    /// The derivation is part of the output format: the same capture must keep its ids
    /// across versions (re-analysis, goldens). These values pin it.
    #[test]
    fn known_ids_are_stable() {
        let p = parts(SpanKind::Client);
        let trace = p.trace_id();
        assert_eq!(trace.to_string(), "feaaec9cf1cdb0509240d8a7138905e7");
        assert_eq!(p.span_id(&trace, 0).to_string(), "5c93832e84a761bd");
        assert_eq!(p.span_id(&trace, 1).to_string(), "587d09e8dcc50d6d");
        let server = parts(SpanKind::Server);
        assert_ne!(server.trace_id(), trace, "the side is an input");
    }

    #[test]
    fn every_input_changes_the_ids() {
        let base = parts(SpanKind::Client);
        let mut variants = vec![base.clone(); 4];
        variants[0].conn.conn_id += 1;
        variants[1].conn.remote = Some("10.0.0.2:8081".parse().expect("remote"));
        variants[1].addrs = Arc::new(AddrText::of(
            variants[1].conn.local,
            variants[1].conn.remote,
        ));
        variants[2].ordinal += 1;
        variants[3].start += 1;
        let trace = base.trace_id();
        for v in variants {
            assert_ne!(v.trace_id(), trace, "{v:?}");
            assert_ne!(v.span_id(&trace, 0), base.span_id(&trace, 0), "{v:?}");
        }
    }

    #[test]
    fn addr_text_is_local_then_remote() {
        let l: SocketAddr = "10.0.0.1:43210".parse().expect("local");
        let r: SocketAddr = "[fe80::1]:443".parse().expect("remote");
        let t = AddrText::of(Some(l), Some(r));
        assert_eq!(t.as_bytes(), format!("{l}>{r}").as_bytes());
        assert_eq!(
            AddrText::of(None, Some(r)).as_bytes(),
            format!(">{r}").as_bytes()
        );
        assert_eq!(
            AddrText::of(Some(l), None).as_bytes(),
            format!("{l}>").as_bytes()
        );
        assert_eq!(AddrText::of(None, None).as_bytes(), b">");
    }

    /// Text longer than the stack buffer spills to the heap, unchanged.
    #[test]
    fn long_addr_text_spills() {
        use std::fmt::Write;
        let mut t = AddrText::of(None, None);
        let long = "x".repeat(200);
        assert!(t.write_str(&long).is_err(), "over the buffer");
        assert_eq!(t.as_bytes(), b">");
    }
}
