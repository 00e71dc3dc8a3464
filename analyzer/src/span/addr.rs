//! Address text without the formatting machinery: IPv4 addresses and socket addresses
//! written digit by digit (the same text as their `Display`), IPv6 through `Display`.
//! Span attributes, service names and id derivation format addresses per exchange.

use std::fmt::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Appends the decimal digits of `n`.
fn push_decimal<W: Write>(out: &mut W, n: u16) -> fmt::Result {
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
    // Only ASCII digits were written.
    out.write_str(std::str::from_utf8(&digits[i..]).map_err(|_| fmt::Error)?)
}

fn push_v4<W: Write>(out: &mut W, ip: Ipv4Addr) -> fmt::Result {
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            out.write_char('.')?;
        }
        push_decimal(out, u16::from(octet))?;
    }
    Ok(())
}

/// Writes `ip` as its `Display` does.
pub(super) fn write_ip<W: Write>(out: &mut W, ip: IpAddr) -> fmt::Result {
    match ip {
        IpAddr::V4(v4) => push_v4(out, v4),
        IpAddr::V6(v6) => write!(out, "{v6}"),
    }
}

/// Writes `addr` as its `Display` does (`a.b.c.d:port`, `[v6]:port`).
pub(super) fn write_socket_addr<W: Write>(out: &mut W, addr: SocketAddr) -> fmt::Result {
    match addr {
        SocketAddr::V4(a) => {
            push_v4(out, *a.ip())?;
            out.write_char(':')?;
            push_decimal(out, a.port())
        }
        SocketAddr::V6(a) => write!(out, "{a}"),
    }
}

/// `ip.to_string()`, faster for IPv4.
pub(super) fn ip_string(ip: IpAddr) -> String {
    let mut s = String::with_capacity(15);
    // Writing into a String cannot fail.
    let _ = write_ip(&mut s, ip);
    s
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
