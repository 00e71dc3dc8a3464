//! What an import did: [`ImportSummary`], printed by the CLI (Display) or as JSON (serde).

use std::fmt;

use crate::reassembly::StreamStats;

/// Counters of one import.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportSummary {
    /// Frames read from the file.
    pub packets: u64,
    /// The file ended inside a packet and was imported up to the cut
    /// ([`crate::ImportOptions::allow_truncated`]).
    pub input_truncated: bool,
    /// Of which TCP segments.
    pub tcp_packets: u64,
    /// Of which something else (ARP, UDP, ICMP, IP fragments): skipped.
    pub other_packets: u64,
    /// Of which cut by the snaplen inside their TCP payload: skipped (their bytes become a
    /// gap).
    pub truncated_packets: u64,
    /// Of which undecodable: skipped.
    pub malformed_packets: u64,
    /// TCP segments ignored: after their connection closed, or a lone RST.
    pub ignored_packets: u64,
    /// TCP connections.
    pub flows: u64,
    /// Of which seen without their handshake (roles from the port heuristic).
    pub flows_mid_stream: u64,
    /// Of which closed by FINs on both sides.
    pub flows_closed: u64,
    /// Of which ended by an RST.
    pub flows_reset: u64,
    /// Client → server streams (all connections).
    pub client_to_server: StreamStats,
    /// Server → client streams (all connections).
    pub server_to_client: StreamStats,
    /// Retransmitted (duplicate or overlapping) segments, both directions.
    pub retransmits: u64,
    /// Segments that arrived ahead of a hole, both directions.
    pub out_of_order: u64,
    /// Holes declared lost (rows flagged `GAP_BEFORE`), both directions.
    pub gaps: u64,
    /// `k8s_object` rows written.
    pub k8s_objects: u64,
    /// Rows written in total.
    pub rows_written: u64,
    /// Rows whose timestamp was raised to keep the file sorted (unsorted input).
    pub late_rows: u64,
    /// Time of the first packet, ns since the epoch.
    pub first_ts_ns: Option<u64>,
    /// Time of the last packet, ns since the epoch.
    pub last_ts_ns: Option<u64>,
}

impl fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let span_s = match (self.first_ts_ns, self.last_ts_ns) {
            (Some(a), Some(b)) => b.saturating_sub(a) as f64 / 1e9,
            _ => 0.0,
        };
        writeln!(
            f,
            "packets        {} in {span_s:.3} s (tcp {}, other {}, truncated {}, malformed {}, ignored {})",
            self.packets,
            self.tcp_packets,
            self.other_packets,
            self.truncated_packets,
            self.malformed_packets,
            self.ignored_packets
        )?;
        if self.input_truncated {
            writeln!(f, "input          truncated: imported up to the cut")?;
        }
        writeln!(
            f,
            "connections    {} ({} closed, {} reset, {} seen mid-stream)",
            self.flows, self.flows_closed, self.flows_reset, self.flows_mid_stream
        )?;
        for (name, s) in [
            ("client→server", &self.client_to_server),
            ("server→client", &self.server_to_client),
        ] {
            writeln!(
                f,
                "{name}  {} bytes in {} segments ({} retransmits, {} out of order, {} gaps / {} bytes missing)",
                s.bytes, s.segments, s.retransmits, s.out_of_order, s.gaps, s.gap_bytes
            )?;
        }
        write!(
            f,
            "rows written   {} ({} k8s objects, {} late)",
            self.rows_written, self.k8s_objects, self.late_rows
        )
    }
}
