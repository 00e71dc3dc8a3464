//! Link-layer frame → TCP segment, with `etherparse`.
//!
//! Supported link types: Ethernet (`DLT_EN10MB`, what `tcpdump -i lo` writes), Linux cooked
//! capture v1 and v2 (`-i any`), raw IP (`DLT_RAW`, `LINKTYPE_IPV4/IPV6`) and BSD loopback
//! (`DLT_NULL`/`DLT_LOOP`). The Linux cooked headers are fixed-size (SLL 16 bytes with the
//! EtherType at offset 14, SLL2 20 bytes with it at offset 0): etherparse has no SLL2
//! decoder, and its SLL decoder rejects the hardware types of loopback and tunnel devices
//! (`ARPHRD_LOOPBACK`, `ARPHRD_NONE`), which is what `tcpdump -i any -y LINUX_SLL` writes for
//! `lo`. So the frame is handed to etherparse from the EtherType on. VLAN tags, IPv6
//! extension headers and IPv4 options are etherparse's job.

use std::net::{IpAddr, SocketAddr};

use etherparse::{EtherType, NetSlice, SlicedPacket, TransportSlice};
use pcap_file::DataLink;

/// The TCP fields the reassembler needs, from one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSegment<'a> {
    /// Sender address and port.
    pub src: SocketAddr,
    /// Receiver address and port.
    pub dst: SocketAddr,
    /// Sequence number.
    pub seq: u32,
    /// Acknowledgment number when the ACK flag is set.
    pub ack: Option<u32>,
    /// SYN flag.
    pub syn: bool,
    /// FIN flag.
    pub fin: bool,
    /// RST flag.
    pub rst: bool,
    /// TCP payload.
    pub payload: &'a [u8],
}

/// What a frame turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A TCP segment over IPv4 or IPv6.
    Tcp(TcpSegment<'a>),
    /// Something else (ARP, UDP, ICMP, an IP fragment, ...): ignored.
    Other,
    /// The frame was cut at the snaplen before the end of its TCP payload.
    Truncated,
    /// The frame could not be decoded.
    Malformed,
}

/// Whether frames of this link type can be decoded.
pub fn supported(linktype: DataLink) -> bool {
    matches!(
        linktype,
        DataLink::ETHERNET
            | DataLink::LINUX_SLL
            | DataLink::LINUX_SLL2
            | DataLink::RAW
            | DataLink::IPV4
            | DataLink::IPV6
            | DataLink::NULL
            | DataLink::LOOP
    )
}

/// Length of the Linux cooked capture (v1) header; the EtherType is its last two bytes.
const SLL_HEADER_LEN: usize = 16;
/// Length of the Linux cooked capture v2 header; the EtherType is its first two bytes.
const SLL2_HEADER_LEN: usize = 20;
/// Length of the BSD loopback header (the address family as a 32-bit word).
const NULL_HEADER_LEN: usize = 4;

/// Decodes one frame. `orig_len` is the frame's length on the wire, used to tell a frame
/// cut by the snaplen from a malformed one.
pub fn decode(linktype: DataLink, data: &[u8], orig_len: u32) -> Decoded<'_> {
    let sliced = match linktype {
        DataLink::ETHERNET => SlicedPacket::from_ethernet(data),
        DataLink::LINUX_SLL => match data.get(..SLL_HEADER_LEN) {
            Some(header) => {
                let ether_type = u16::from_be_bytes([header[14], header[15]]);
                SlicedPacket::from_ether_type(EtherType(ether_type), &data[SLL_HEADER_LEN..])
            }
            None => return cut_or_malformed(data, orig_len),
        },
        DataLink::LINUX_SLL2 => match data.get(..SLL2_HEADER_LEN) {
            Some(header) => {
                let ether_type = u16::from_be_bytes([header[0], header[1]]);
                SlicedPacket::from_ether_type(EtherType(ether_type), &data[SLL2_HEADER_LEN..])
            }
            None => return cut_or_malformed(data, orig_len),
        },
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => SlicedPacket::from_ip(data),
        DataLink::NULL | DataLink::LOOP => match data.get(NULL_HEADER_LEN..) {
            Some(ip) => SlicedPacket::from_ip(ip),
            None => return cut_or_malformed(data, orig_len),
        },
        _ => return Decoded::Other,
    };
    let packet = match sliced {
        Ok(p) => p,
        Err(_) => return cut_or_malformed(data, orig_len),
    };
    let (src_ip, dst_ip): (IpAddr, IpAddr) = match &packet.net {
        Some(NetSlice::Ipv4(v4)) => (
            v4.header().source_addr().into(),
            v4.header().destination_addr().into(),
        ),
        Some(NetSlice::Ipv6(v6)) => (
            v6.header().source_addr().into(),
            v6.header().destination_addr().into(),
        ),
        _ => return Decoded::Other,
    };
    match &packet.transport {
        Some(TransportSlice::Tcp(tcp)) => Decoded::Tcp(TcpSegment {
            src: SocketAddr::new(src_ip, tcp.source_port()),
            dst: SocketAddr::new(dst_ip, tcp.destination_port()),
            seq: tcp.sequence_number(),
            ack: tcp.ack().then(|| tcp.acknowledgment_number()),
            syn: tcp.syn(),
            fin: tcp.fin(),
            rst: tcp.rst(),
            payload: tcp.payload(),
        }),
        _ => Decoded::Other,
    }
}

fn cut_or_malformed(data: &[u8], orig_len: u32) -> Decoded<'_> {
    if (data.len() as u64) < u64::from(orig_len) {
        Decoded::Truncated
    } else {
        Decoded::Malformed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn tcp_v4(payload: &[u8]) -> Vec<u8> {
        let builder = PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 80, 1000, 65535)
            .psh()
            .ack(77);
        let mut out = Vec::new();
        builder
            .write(&mut out, payload)
            .expect("writing to a Vec cannot fail");
        out
    }

    #[test]
    fn ethernet_ipv4_tcp() {
        let frame = tcp_v4(b"hello");
        let Decoded::Tcp(seg) = decode(DataLink::ETHERNET, &frame, frame.len() as u32) else {
            panic!("not decoded as TCP");
        };
        assert_eq!(seg.src, "10.0.0.1:40000".parse().unwrap());
        assert_eq!(seg.dst, "10.0.0.2:80".parse().unwrap());
        assert_eq!(seg.seq, 1000);
        assert_eq!(seg.ack, Some(77));
        assert_eq!(seg.payload, b"hello");
        assert!(!seg.syn && !seg.fin && !seg.rst);
    }

    #[test]
    fn sll2_frame() {
        let eth = tcp_v4(b"abc");
        let mut frame = vec![0x08, 0x00, 0, 0, 0, 0, 0, 1, 0x03, 0x04, 0, 6];
        frame.extend_from_slice(&[0; 8]);
        frame.extend_from_slice(&eth[14..]);
        let Decoded::Tcp(seg) = decode(DataLink::LINUX_SLL2, &frame, frame.len() as u32) else {
            panic!("not decoded as TCP");
        };
        assert_eq!(seg.payload, b"abc");
    }

    #[test]
    fn vlan_tagged_ipv6() {
        let vlan = etherparse::VlanId::try_new(42).expect("valid VLAN id");
        let builder = PacketBuilder::ethernet2([1; 6], [2; 6])
            .single_vlan(vlan)
            .ipv6([0xfd; 16], [0xfe; 16], 64)
            .tcp(1234, 443, 5, 1000)
            .syn();
        let mut frame = Vec::new();
        builder
            .write(&mut frame, b"")
            .expect("writing to a Vec cannot fail");
        let Decoded::Tcp(seg) = decode(DataLink::ETHERNET, &frame, frame.len() as u32) else {
            panic!("not decoded as TCP");
        };
        assert!(seg.syn && seg.ack.is_none());
        assert_eq!(seg.dst.port(), 443);
        assert!(seg.src.is_ipv6());
    }

    #[test]
    fn sll_frame_of_a_loopback_device() {
        let eth = tcp_v4(b"lo!");
        // Packet type 0 (host), ARPHRD_LOOPBACK (772), address length 6, address, IPv4.
        let mut frame = vec![0, 0, 0x03, 0x04, 0, 6];
        frame.extend_from_slice(&[0; 8]);
        frame.extend_from_slice(&[0x08, 0x00]);
        frame.extend_from_slice(&eth[14..]);
        let Decoded::Tcp(seg) = decode(DataLink::LINUX_SLL, &frame, frame.len() as u32) else {
            panic!("not decoded as TCP");
        };
        assert_eq!(seg.payload, b"lo!");
    }

    #[test]
    fn cut_frame_is_truncated_not_malformed() {
        let frame = tcp_v4(&[7u8; 100]);
        let cut = &frame[..60];
        assert_eq!(
            decode(DataLink::ETHERNET, cut, frame.len() as u32),
            Decoded::Truncated
        );
        assert_eq!(
            decode(DataLink::ETHERNET, cut, cut.len() as u32),
            Decoded::Malformed
        );
        assert_eq!(
            decode(DataLink::LINUX_SLL2, &frame[..5], 100),
            Decoded::Truncated
        );
    }
}
