//! The ring consumer's user-space cost per event on a real capture, without the kernel: every
//! socket row of CAPTURE is turned back into the ring-buffer record the programs wrote for
//! it (`PtEvent` header + payload), then ROUNDS times a fresh [`Converter`] (redacting, as
//! `podtrace record` does by default) decodes them in capture order into batches of up to
//! [`BATCH`] rows (each allocated as the consumer does, [`batch_capacity`]), which go over a
//! channel to a second thread standing in for the capture writer, which drops them: what
//! is measured is decoding, redaction, the rows' allocation and their freeing on the other
//! thread.
//!
//! ```text
//! cargo run --release -p podtrace-recorder --example bench_consume -- CAPTURE [ROUNDS]
//! ```
//! Prints one line of `key=value` pairs: events, rows (out of the converter), payload_bytes,
//! rounds, ns_per_event (the fastest round). Under callgrind the instructions per event are
//! the repeatable figure (both threads are counted; subtract a run of 1 round from one of
//! 3 and halve: the setup is the same).

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::Instant;

use podtrace_format::model::{flags, Direction, Record, Role, SocketMeta};
use podtrace_format::{CaptureReader, ReadOptions};
use podtrace_recorder::convert::Converter;
use podtrace_recorder::recorder::batch_capacity;
use podtrace_recorder::redact::Redactor;
use podtrace_recorder::RecordConfig;
use podtrace_recorder_ebpf::event::{self as ev, PtEvent};
use podtrace_recorder_ebpf::tls::FLAG_TLS_PLAINTEXT;

/// The shipping binary's allocator (src/main.rs), as in the other benchmarks.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Rows per batch: `RecordConfig::batch_records`' default.
const BATCH: usize = 4096;

/// The syscall numbers of the names a capture stores: the inverse of the converter's own
/// table ([`ev::syscall_name`], syscalls, kprobe functions and TLS calls, all below 4096).
struct SyscallNumbers(HashMap<&'static str, u32>);

impl SyscallNumbers {
    fn new() -> Self {
        let mut by_name = HashMap::new();
        for nr in (0..4096).rev() {
            by_name.insert(ev::syscall_name(nr), nr);
        }
        SyscallNumbers(by_name)
    }

    /// The number of `name` (one the converter names `?` for a name it does not know).
    fn of(&self, name: &str) -> u32 {
        self.0
            .get(name)
            .or_else(|| self.0.get("?"))
            .copied()
            .unwrap_or(0)
    }
}

/// The header fields a row's metadata gives (the kernel's `struct sock *` stands in as the
/// connection id: one socket per connection).
fn header(m: &SocketMeta, kind: u32, syscall: u32) -> PtEvent {
    let mut e = PtEvent {
        ts_ns: m.ts_ns,
        cgroup_id: m.cgroup_id,
        sock: m.conn_id,
        pid: m.pid,
        tid: m.tid,
        kind,
        syscall,
        cpu: m.cpu,
        ..Default::default()
    };
    for (addr, raw, port) in [
        (m.local, &mut e.laddr, &mut e.lport),
        (m.remote, &mut e.raddr, &mut e.rport),
    ] {
        if let Some(a) = addr {
            *port = a.port();
            match a.ip() {
                std::net::IpAddr::V4(ip) => {
                    e.family = 2;
                    raw[..4].copy_from_slice(&ip.octets());
                }
                std::net::IpAddr::V6(ip) => {
                    e.family = 10;
                    raw.copy_from_slice(&ip.octets());
                }
            }
        }
    }
    let comm = m.comm.as_bytes();
    let n = comm.len().min(15);
    e.comm[..n].copy_from_slice(&comm[..n]);
    e
}

fn role(r: Role) -> u8 {
    match r {
        Role::Client => ev::ROLE_CLIENT,
        Role::Server => ev::ROLE_SERVER,
        Role::Unknown => ev::ROLE_UNKNOWN,
    }
}

/// What the benchmark's setup and run fail with.
type Error = Box<dyn std::error::Error>;

/// The ring-buffer records of a capture's socket rows, and their payload bytes.
fn ring_records(input: String) -> Result<(Vec<Vec<u8>>, usize), Error> {
    let reader = CaptureReader::open(&[input])?;
    let nrs = SyscallNumbers::new();
    let (mut out, mut bytes) = (Vec::new(), 0);
    for r in reader.records(&ReadOptions::default()) {
        let rec = match r? {
            Record::SocketData(d) => {
                let mut e = header(&d.meta, ev::KIND_DATA, nrs.of(&d.syscall));
                e.ret = d.ret;
                e.direction = if d.direction == Direction::Ingress {
                    ev::DIR_INGRESS
                } else {
                    ev::DIR_EGRESS
                };
                if d.flags & flags::TRUNCATED != 0 {
                    e.flags |= ev::FLAG_TRUNCATED;
                }
                if d.flags & flags::GAP_BEFORE != 0 {
                    e.flags |= ev::FLAG_GAP;
                }
                if d.flags & flags::TLS_PLAINTEXT != 0 {
                    e.flags |= FLAG_TLS_PLAINTEXT;
                }
                bytes += d.payload.len();
                e.cap_len = d.payload.len() as u32;
                e.to_record(&d.payload)
            }
            Record::SocketOpen(o) => {
                let mut e = header(&o.meta, ev::KIND_OPEN, nrs.of(&o.syscall));
                e.role = role(o.role);
                e.to_record(&[])
            }
            Record::SocketClose(c) => {
                let mut e = header(&c.meta, ev::KIND_CLOSE, nrs.of(&c.syscall));
                e.role = role(c.role);
                e.to_record(&[])
            }
            _ => continue,
        };
        out.push(rec);
    }
    Ok((out, bytes))
}

/// One round: every record through a fresh converter into batches, each batch sent to a
/// second thread that drops it; the rows out of the converter.
fn round(records: &[Vec<u8>]) -> usize {
    let redactor = Redactor::new(&RecordConfig::default().redact_headers);
    let mut conv = Converter::new(0, Some(redactor));
    let (tx, rx) = mpsc::sync_channel::<Vec<Record>>(64);
    let writer = std::thread::spawn(move || rx.into_iter().map(|batch| batch.len()).sum());
    let mut batch = Vec::with_capacity(batch_capacity(0, BATCH));
    for r in records {
        conv.convert(r, &mut batch);
        if batch.len() >= BATCH {
            let next = Vec::with_capacity(batch_capacity(batch.len(), BATCH));
            let full = std::mem::replace(&mut batch, next);
            if tx.send(full).is_err() {
                break;
            }
        }
    }
    let _ = tx.send(batch);
    drop(tx);
    writer.join().unwrap_or(0)
}

fn run() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let input = args.next().ok_or("usage: bench_consume CAPTURE [ROUNDS]")?;
    let rounds: usize = args.next().map_or(Ok(5), |s| s.parse())?;
    let (records, bytes) = ring_records(input)?;
    let mut best = f64::INFINITY;
    let mut rows = 0;
    for _ in 0..rounds {
        let t = Instant::now();
        rows = round(&records);
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!(
        "events={} rows={rows} payload_bytes={bytes} rounds={rounds} ns_per_event={:.1}",
        records.len(),
        best * 1e9 / records.len().max(1) as f64
    );
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_consume: {e}");
            ExitCode::FAILURE
        }
    }
}
