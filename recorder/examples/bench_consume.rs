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

/// x86_64 syscall numbers of the names the capture stores (the converter maps them back).
fn syscall_nr(name: &str) -> u32 {
    match name {
        "read" => 0,
        "write" => 1,
        "close" => 3,
        "sendfile" => 40,
        "connect" => 42,
        "accept" => 43,
        "sendto" => 44,
        "recvfrom" => 45,
        "sendmsg" => 46,
        "recvmsg" => 47,
        "readv" => 19,
        "writev" => 20,
        "accept4" => 288,
        "recvmmsg" => 299,
        "sendmmsg" => 307,
        _ => 1,
    }
}

/// The header fields a row's metadata gives (the kernel's `struct sock *` stands in as the
/// connection id: one socket per connection).
fn header(m: &SocketMeta, kind: u32, syscall: &str) -> PtEvent {
    let mut e = PtEvent {
        ts_ns: m.ts_ns,
        cgroup_id: m.cgroup_id,
        sock: m.conn_id,
        pid: m.pid,
        tid: m.tid,
        kind,
        syscall: syscall_nr(syscall),
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

/// `e` and `payload` as one ring-buffer record.
fn ring_record(mut e: PtEvent, payload: &[u8]) -> Vec<u8> {
    e.cap_len = payload.len() as u32;
    let mut v = vec![0u8; ev::EVENT_SIZE];
    // SAFETY: the buffer holds EVENT_SIZE bytes; PtEvent is plain old data.
    unsafe { std::ptr::write_unaligned(v.as_mut_ptr().cast::<PtEvent>(), e) };
    v.extend_from_slice(payload);
    v
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
    let (mut out, mut bytes) = (Vec::new(), 0);
    for r in reader.records(&ReadOptions::default()) {
        let rec = match r? {
            Record::SocketData(d) => {
                let mut e = header(&d.meta, ev::KIND_DATA, &d.syscall);
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
                ring_record(e, &d.payload)
            }
            Record::SocketOpen(o) => {
                let mut e = header(&o.meta, ev::KIND_OPEN, &o.syscall);
                e.role = role(o.role);
                ring_record(e, &[])
            }
            Record::SocketClose(c) => {
                let mut e = header(&c.meta, ev::KIND_CLOSE, &c.syscall);
                e.role = role(c.role);
                ring_record(e, &[])
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
