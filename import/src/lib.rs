//! # podtrace-import — packet captures to podtrace captures
//!
//! `podtrace import` turns a pcap or pcapng file (tcpdump, Wireshark, tshark) into a podtrace
//! capture, so that traffic recorded on the wire can be analyzed like traffic recorded by the
//! eBPF recorder. Every TCP connection is reassembled per direction and written as the
//! socket I/O the two processes would have seen: `socket_open` (`connect` / `accept` side),
//! `socket_data` rows of in-order payload, `socket_close` at FIN/RST.
//!
//! The pipeline reads like the data flows:
//! [`source`] (pcap/pcapng frames) → [`decode`] (etherparse: link layer → TCP segment) →
//! [`flow`] (connections, roles, boundaries; per direction [`reassembly`]) → [`rows`]
//! (events → capture rows for a [`View`]) → [`order`] (timestamp-ordered writing).
//!
//! It is not a general packet analyzer: UDP, ICMP and IP fragments are counted and skipped,
//! and TLS payload stays encrypted.
//!
//! ```no_run
//! use podtrace_import::{import, ImportOptions, View};
//! let opts = ImportOptions { view: View::Server, ..ImportOptions::default() };
//! let summary = import("traffic.pcap".as_ref(), "cap.parquet".as_ref(), &opts)?;
//! println!("{summary}");
//! # Ok::<(), podtrace_import::ImportError>(())
//! ```

#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)
)]

pub mod decode;
pub mod error;
pub mod flow;
mod k8s;
pub mod order;
pub mod reassembly;
pub mod rows;
pub mod source;
mod summary;

use std::path::{Path, PathBuf};

use podtrace_format::{sidecar_path, CaptureWriter, FileMeta, WriterOptions};

pub use error::ImportError;
pub use reassembly::StreamStats;
pub use rows::View;
pub use summary::ImportSummary;

use decode::Decoded;
use flow::{FlowEvent, FlowTracker};
use order::OrderedWriter;

/// Default bound of buffered out-of-order bytes per connection direction.
pub const DEFAULT_MAX_OUT_OF_ORDER_BYTES: usize = 8 << 20;

/// How to import.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Which sockets of each connection to write (default both).
    pub view: View,
    /// `kubectl get pods,services,endpointslices -A -o json` output to add as `k8s_object`
    /// rows (event `snapshot`, at the time of the first packet).
    pub k8s_objects: Option<PathBuf>,
    /// Node name written into the capture's metadata.
    pub node: String,
    /// Options of the capture writer. The default is the recorder's, without the
    /// time-based flush (an import is not live: row groups are cut by rows and bytes).
    pub writer: WriterOptions,
    /// Bound of buffered out-of-order bytes per connection direction; past it the hole
    /// before the buffered data is declared lost.
    pub max_out_of_order_bytes: usize,
    /// Import a file that ends inside a packet (the capturing tool was killed) up to the
    /// cut instead of failing with [`ImportError::Truncated`]; the summary says so.
    pub allow_truncated: bool,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            view: View::Both,
            k8s_objects: None,
            node: "pcap".to_string(),
            writer: WriterOptions::default().flush_interval(None),
            max_out_of_order_bytes: DEFAULT_MAX_OUT_OF_ORDER_BYTES,
            allow_truncated: false,
        }
    }
}

/// Imports the packet capture `input` into a new podtrace capture `output`.
///
/// On error the partly written output is removed.
pub fn import(
    input: &Path,
    output: &Path,
    opts: &ImportOptions,
) -> Result<ImportSummary, ImportError> {
    // Bad inputs fail before the output is created.
    source::sniff(input)?;
    let k8s_objects = match &opts.k8s_objects {
        Some(path) => Some(k8s::read(path)?),
        None => None,
    };
    let meta = file_meta(input, opts);
    let writer = CaptureWriter::create(output, meta, opts.writer.clone())?;
    let mut run = Run {
        opts,
        tracker: FlowTracker::new(opts.max_out_of_order_bytes),
        out: OrderedWriter::new(writer),
        summary: ImportSummary::default(),
        k8s_objects,
        events: Vec::new(),
        rows: Vec::new(),
    };
    match run.all(input) {
        Ok(()) => Ok(run.finish()?),
        Err(e) => {
            drop(run);
            // Best effort: the output is useless after a failed import.
            let _ = std::fs::remove_file(output);
            let _ = std::fs::remove_file(sidecar_path(output));
            Err(e)
        }
    }
}

fn file_meta(input: &Path, opts: &ImportOptions) -> FileMeta {
    let name = input
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| input.display().to_string());
    let view = match opts.view {
        View::Client => "client",
        View::Server => "server",
        View::Both => "both",
    };
    FileMeta {
        node: opts.node.clone(),
        kernel: String::new(),
        target: format!("pcap {name}"),
        recorder_version: env!("CARGO_PKG_VERSION").to_string(),
        boot_time_offset_ns: 0,
        extra: vec![("import.view".to_string(), view.to_string())],
    }
}

/// State of one import.
struct Run<'o> {
    opts: &'o ImportOptions,
    tracker: FlowTracker,
    out: OrderedWriter,
    summary: ImportSummary,
    /// The `--k8s-objects` objects, until the first packet gives their timestamp.
    k8s_objects: Option<Vec<podtrace_format::K8sObject>>,
    events: Vec<FlowEvent>,
    rows: Vec<podtrace_format::Record>,
}

impl Run<'_> {
    fn all(&mut self, input: &Path) -> Result<(), ImportError> {
        let read = source::for_each_frame(input, |frame| {
            if !decode::supported(frame.linktype) {
                return Err(ImportError::UnsupportedLinkType {
                    path: input.to_path_buf(),
                    linktype: format!("{:?}", frame.linktype),
                });
            }
            self.frame(frame)
        });
        match read {
            Ok(_) => {}
            Err(ImportError::Truncated { .. }) if self.opts.allow_truncated => {
                self.summary.input_truncated = true;
            }
            Err(e) => return Err(e),
        }
        self.tracker.finish(&mut self.events);
        self.flush_events();
        self.k8s_rows(self.summary.first_ts_ns.unwrap_or(0));
        Ok(())
    }

    fn frame(&mut self, frame: source::Frame<'_>) -> Result<(), ImportError> {
        let s = &mut self.summary;
        s.packets += 1;
        s.first_ts_ns.get_or_insert(frame.ts_ns);
        s.last_ts_ns = Some(s.last_ts_ns.unwrap_or(0).max(frame.ts_ns));
        self.k8s_rows(frame.ts_ns);
        match decode::decode(frame.linktype, frame.data, frame.orig_len) {
            Decoded::Tcp(seg) => {
                self.summary.tcp_packets += 1;
                self.tracker.packet(frame.ts_ns, &seg, &mut self.events);
                self.flush_events();
            }
            Decoded::Other => self.summary.other_packets += 1,
            Decoded::Truncated => self.summary.truncated_packets += 1,
            Decoded::Malformed => self.summary.malformed_packets += 1,
        }
        self.out.advance(frame.ts_ns)
    }

    /// Queues the `--k8s-objects` rows (once), stamped `ts_ns`.
    fn k8s_rows(&mut self, ts_ns: u64) {
        if let Some(mut objects) = self.k8s_objects.take() {
            k8s::stamp(&mut objects, ts_ns);
            for obj in objects {
                self.out.push(podtrace_format::Record::K8sObject(obj));
                self.summary.k8s_objects += 1;
            }
        }
    }

    fn flush_events(&mut self) {
        let flows = self.tracker.flows();
        for event in self.events.drain(..) {
            let flow = match &event {
                FlowEvent::Open { flow, .. }
                | FlowEvent::Data { flow, .. }
                | FlowEvent::Close { flow, .. } => &flows[*flow],
            };
            rows::event_rows(self.opts.view, flow, &event, &mut self.rows);
        }
        for row in self.rows.drain(..) {
            self.out.push(row);
        }
    }

    fn finish(mut self) -> Result<ImportSummary, ImportError> {
        let stats = self.tracker.stats();
        let s = &mut self.summary;
        s.flows = stats.flows;
        s.flows_mid_stream = stats.mid_stream;
        s.flows_closed = stats.closed;
        s.flows_reset = stats.resets;
        s.ignored_packets = stats.ignored_packets;
        s.client_to_server = stats.client_to_server;
        s.server_to_client = stats.server_to_client;
        s.retransmits = stats.client_to_server.retransmits + stats.server_to_client.retransmits;
        s.out_of_order = stats.client_to_server.out_of_order + stats.server_to_client.out_of_order;
        s.gaps = stats.client_to_server.gaps + stats.server_to_client.gaps;
        let (written, late) = self.out.finish()?;
        self.summary.rows_written = written;
        self.summary.late_rows = late;
        tracing::debug!(
            packets = self.summary.packets,
            flows = self.summary.flows,
            gaps = self.summary.gaps,
            rows = written,
            "pcap import finished"
        );
        Ok(self.summary)
    }
}
