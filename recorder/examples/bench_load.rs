//! `bench_load`: a lean fixed-rate HTTP/1.1 load generator for the recorder's overhead
//! benchmark (`make bench`, tools/bench/recorder.sh), and the pooled percentiles of its runs.
//!
//! `oha -q` measures what a user would run, but it is a multi-threaded tokio client that takes
//! a large share of a 2-core machine at 10 k req/s, and its p99 moves by ±15 % between
//! identical rounds: far more than the +5 % a recorder's cost is judged by. This generator
//! is what the p99 comparison needs instead:
//! - **open loop at a fixed rate**: each of `--conns` keep-alive connections has a thread that
//!   sends at its own fixed times (`rate / conns` per second, the connections' times
//!   interleaved), sleeping with a 1 ns timer slack until the next one;
//! - **every latency kept**: from the request's send to the response's last byte, in ns,
//!   appended to `--out` (u32 little-endian), so that many short rounds of one configuration
//!   are pooled into one distribution (`--pool`) instead of taking medians of percentiles;
//! - a request whose send started more than 1 ms after its time is counted (`late`): the
//!   generator fell behind, the round is not at its rate.
//!
//! Usage:
//! - `bench_load --port P --rate R --seconds S [--conns C] [--host H] [--out FILE]`: one run;
//!   prints `requests=N late=N errors=N rps=X p50_us=X p99_us=X p999_us=X`.
//! - `bench_load --pool FILE...`: the same percentiles over all latencies of the files.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A send later than this after its scheduled time counts as late.
const LATE: Duration = Duration::from_millis(1);

/// One run's settings.
struct Load {
    host: String,
    port: u16,
    rate: f64,
    seconds: f64,
    conns: usize,
    out: Option<PathBuf>,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = if args.first().map(String::as_str) == Some("--pool") {
        pool(&args[1..])
    } else {
        parse(&args).and_then(|load| run(&load))
    };
    if let Err(e) = result {
        eprintln!("bench_load: {e}");
        std::process::exit(1);
    }
}

fn parse(args: &[String]) -> Result<Load, String> {
    let mut load = Load {
        host: "127.0.0.1".into(),
        port: 0,
        rate: 0.0,
        seconds: 0.0,
        conns: 32,
        out: None,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = || format!("bad value for {flag}: {value}");
        match flag.as_str() {
            "--host" => load.host = value.clone(),
            "--port" => load.port = value.parse().map_err(|_| bad())?,
            "--rate" => load.rate = value.parse().map_err(|_| bad())?,
            "--seconds" => load.seconds = value.parse().map_err(|_| bad())?,
            "--conns" => load.conns = value.parse().map_err(|_| bad())?,
            "--out" => load.out = Some(PathBuf::from(value)),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if load.port == 0 || load.rate <= 0.0 || load.seconds <= 0.0 || load.conns == 0 {
        return Err("usage: bench_load --port P --rate R --seconds S [--conns C] [--host H] [--out FILE] | --pool FILE...".into());
    }
    Ok(load)
}

/// Counters shared by the connection threads.
#[derive(Default)]
struct Counts {
    late: AtomicU64,
    errors: AtomicU64,
}

fn run(load: &Load) -> Result<(), String> {
    let interval = Duration::from_secs_f64(load.conns as f64 / load.rate);
    let per_conn = (load.seconds * load.rate / load.conns as f64).round() as u64;
    let counts = Arc::new(Counts::default());
    let mut streams = Vec::with_capacity(load.conns);
    for _ in 0..load.conns {
        let s = TcpStream::connect((load.host.as_str(), load.port))
            .map_err(|e| format!("connect {}:{}: {e}", load.host, load.port))?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        streams.push(s);
    }
    let request = format!("GET / HTTP/1.1\r\nHost: {}\r\n\r\n", load.host).into_bytes();
    // The first send 20 ms from now, when every thread is up.
    let start = Instant::now() + Duration::from_millis(20);
    let threads: Vec<_> = streams
        .into_iter()
        .enumerate()
        .map(|(i, stream)| {
            let first = start + interval.mul_f64(i as f64 / load.conns as f64);
            let (counts, request) = (Arc::clone(&counts), request.clone());
            std::thread::spawn(move || {
                connection(stream, &request, first, interval, per_conn, &counts)
            })
        })
        .collect();
    let mut lat: Vec<u32> = Vec::new();
    for t in threads {
        lat.extend(t.join().map_err(|_| "a connection thread panicked")?);
    }
    let wall = start.elapsed().as_secs_f64();
    if let Some(out) = &load.out {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(out)
            .map_err(|e| format!("{}: {e}", out.display()))?;
        let bytes: Vec<u8> = lat.iter().flat_map(|v| v.to_le_bytes()).collect();
        f.write_all(&bytes)
            .map_err(|e| format!("{}: {e}", out.display()))?;
    }
    let n = lat.len();
    lat.sort_unstable();
    println!(
        "requests={n} late={} errors={} rps={:.0} {}",
        counts.late.load(Ordering::Relaxed),
        counts.errors.load(Ordering::Relaxed),
        n as f64 / wall,
        percentiles(&lat)
    );
    Ok(())
}

/// One connection's schedule: `count` requests at `first + k * interval`; the latencies in ns.
fn connection(
    mut stream: TcpStream,
    request: &[u8],
    first: Instant,
    interval: Duration,
    count: u64,
    counts: &Counts,
) -> Vec<u32> {
    // SAFETY: prctl(PR_SET_TIMERSLACK) takes an integer and changes only this thread's slack.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1u64, 0u64, 0u64, 0u64) };
    let mut lat = Vec::with_capacity(count as usize);
    let mut buf = vec![0u8; 16 << 10];
    for k in 0..count {
        let at = first + interval.mul_f64(k as f64);
        let now = Instant::now();
        if at > now {
            std::thread::sleep(at - now);
        }
        let sent = Instant::now();
        if sent.duration_since(at) > LATE {
            counts.late.fetch_add(1, Ordering::Relaxed);
        }
        if stream.write_all(request).is_err() || read_response(&mut stream, &mut buf).is_err() {
            counts.errors.fetch_add(1, Ordering::Relaxed);
            break;
        }
        lat.push(sent.elapsed().as_nanos().min(u32::MAX as u128) as u32);
    }
    lat
}

/// Reads one HTTP/1.1 response with a Content-Length body (what nginx sends here).
fn read_response(stream: &mut TcpStream, buf: &mut [u8]) -> std::io::Result<()> {
    let mut have = 0;
    loop {
        let n = stream.read(&mut buf[have..])?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        have += n;
        let head = &buf[..have];
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let body = content_length(&head[..end]).ok_or(std::io::ErrorKind::InvalidData)?;
            if have >= end + 4 + body {
                return Ok(());
            }
        }
        if have == buf.len() {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
    }
}

/// The Content-Length of a response head.
fn content_length(head: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(head).ok()?;
    text.split("\r\n").find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())
            .flatten()
    })
}

/// `p50_us=.. p99_us=.. p999_us=..` of sorted latencies in ns (nearest rank).
fn percentiles(sorted: &[u32]) -> String {
    let at = |q: f64| {
        if sorted.is_empty() {
            return 0.0;
        }
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1] as f64 / 1000.0
    };
    format!(
        "p50_us={:.1} p99_us={:.1} p999_us={:.1}",
        at(0.50),
        at(0.99),
        at(0.999)
    )
}

/// `--pool FILE...`: the percentiles over every latency of the files.
fn pool(files: &[String]) -> Result<(), String> {
    let mut lat = Vec::new();
    for f in files {
        let bytes = std::fs::read(f).map_err(|e| format!("{f}: {e}"))?;
        lat.extend(
            bytes
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        );
    }
    lat.sort_unstable();
    println!("requests={} {}", lat.len(), percentiles(&lat));
    Ok(())
}
