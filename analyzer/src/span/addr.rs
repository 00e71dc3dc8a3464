//! Address text without the formatting machinery: IPv4 addresses and socket addresses
//! written digit by digit (the same text as their `Display`), IPv6 through `Display`.
//! Span attributes, service names and id derivation format addresses per exchange.

use std::fmt::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The decimal digits of every octet value, left-aligned in 3 bytes, and their count.
const OCTET_DIGITS: [([u8; 3], u8); 256] = octet_digits();

const fn octet_digits() -> [([u8; 3], u8); 256] {
    let mut table = [([0u8; 3], 0u8); 256];
    let mut v = 0;
    while v < 256 {
        let (h, t, o) = ((v / 100) as u8, (v / 10 % 10) as u8, (v % 10) as u8);
        table[v] = if v >= 100 {
            ([b'0' + h, b'0' + t, b'0' + o], 3)
        } else if v >= 10 {
            ([b'0' + t, b'0' + o, 0], 2)
        } else {
            ([b'0' + o, 0, 0], 1)
        };
        v += 1;
    }
    table
}

/// The text of an IPv4 address, with its port when given, built byte by byte on the stack
/// (`255.255.255.255:65535` is the longest): one UTF-8 check and one copy per address
/// instead of one formatter call per octet.
struct V4Text {
    buf: [u8; 21],
    len: usize,
}

impl V4Text {
    fn of(ip: Ipv4Addr, port: Option<u16>) -> Self {
        let mut t = V4Text {
            buf: [0; 21],
            len: 0,
        };
        for (i, octet) in ip.octets().into_iter().enumerate() {
            if i > 0 {
                t.push(b'.');
            }
            t.push_octet(octet);
        }
        if let Some(port) = port {
            t.push(b':');
            t.push_decimal(port);
        }
        t
    }

    fn push(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }

    /// Appends the decimal digits of `octet` (from [`OCTET_DIGITS`]).
    fn push_octet(&mut self, octet: u8) {
        let (digits, n) = OCTET_DIGITS[usize::from(octet)];
        self.buf[self.len..self.len + 3].copy_from_slice(&digits);
        self.len += usize::from(n);
    }

    /// Appends the decimal digits of `n`.
    fn push_decimal(&mut self, n: u16) {
        let mut digits = [0u8; 5];
        let mut i = digits.len();
        let mut n = n;
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        let end = self.len + digits.len() - i;
        self.buf[self.len..end].copy_from_slice(&digits[i..]);
        self.len = end;
    }

    fn as_str(&self) -> &str {
        // Only ASCII digits, dots and a colon were written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

/// Writes `addr` as its `Display` does (`a.b.c.d:port`, `[v6]:port`).
pub(super) fn write_socket_addr<W: Write>(out: &mut W, addr: SocketAddr) -> fmt::Result {
    match addr {
        SocketAddr::V4(a) => out.write_str(V4Text::of(*a.ip(), Some(a.port())).as_str()),
        SocketAddr::V6(a) => write!(out, "{a}"),
    }
}

/// `ip.to_string()`, faster for IPv4 (one allocation of the exact length).
pub(super) fn ip_string(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => V4Text::of(v4, None).as_str().to_string(),
        IpAddr::V6(v6) => v6.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_text_as_display() {
        let ips: Vec<IpAddr> = [
            "0.0.0.0",
            "127.0.0.1",
            "10.0.9.255",
            "255.255.255.255",
            "1.20.100.9",
            "::1",
            "fe80::1:2",
            "::ffff:10.0.0.1",
        ]
        .iter()
        .map(|s| s.parse().expect("ip"))
        .collect();
        for ip in ips {
            assert_eq!(ip_string(ip), ip.to_string());
            for port in [0u16, 7, 80, 443, 8080, 65535] {
                let addr = SocketAddr::new(ip, port);
                let mut s = String::new();
                write_socket_addr(&mut s, addr).expect("write");
                assert_eq!(s, addr.to_string());
            }
        }
        let scoped: SocketAddr = "[fe80::1%3]:9".parse().expect("scoped");
        let mut s = String::new();
        write_socket_addr(&mut s, scoped).expect("write");
        assert_eq!(s, scoped.to_string());
    }
}
