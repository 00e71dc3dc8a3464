//! `make bench-recorder`: what the recorder costs, measured against the same workload
//! without podtrace in the same run (needs root).
//!
//! 1. Untargeted syscalls: `write(2)` of 1 byte to /dev/null and to a loopback TCP socket
//!    from a process outside the recorded cgroup (the programs run, look up the cgroup and
//!    leave), and a syscall podtrace does not follow (`getppid`): ns added per syscall.
//! 2. Captured events: a worker process in a recorded cgroup writes 64 B / 4 KiB messages
//!    to a loopback TCP sink outside the cgroup: ns added per captured event, and the
//!    events/s reached with and without podtrace, with drops (0 expected; any drop is
//!    printed, never hidden).
//!
//! Every figure is measured for both hook sets in the same run: the per-syscall tracepoints
//! (default, `tracepoints`) and the `tp_btf` sys_enter/sys_exit fallback (`tp_btf`).
//!
//! Usage: `bench_recorder [--quick] [--untargeted-only]` (the worker mode `--worker PORT N SIZE` is internal).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use podtrace_format::model::Record;
use podtrace_recorder::cgroups::Cgroup2;
use podtrace_recorder::{ProbeSet, RecordConfig, Recorder, RecorderStats};

/// ns per getppid, per write to /dev/null, per write to an untargeted socket.
type Times = (f64, f64, f64);

/// A printed label and the figure of [`Times`] it shows.
type Field = (&'static str, fn(&Times) -> f64);

/// The hook sets compared, with their names in the output.
const SETS: [(ProbeSet, &str); 2] = [
    (ProbeSet::Syscalls, "tracepoints"),
    (ProbeSet::TpBtf, "tp_btf"),
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--worker") {
        worker(&args[2..]);
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("bench_recorder needs root (CAP_BPF + CAP_PERFMON): skipped");
        std::process::exit(2);
    }
    let quick = args.iter().any(|a| a == "--quick");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let cg = BenchCgroup::new();
    let scale = if quick { 1 } else { 4 };

    println!("# podtrace recorder benchmark (ratios matter; 2-core shared machine)");
    // --- 1. untargeted syscalls: baseline and each hook set, interleaved twice
    let n = 500_000 * scale;
    let sock = UntargetedSocket::new();
    let measure = |sock: &mut UntargetedSocket| {
        (
            time_getppid(n),
            time_devnull_writes(n),
            sock.time_writes(n / 4),
        )
    };
    let mut base = Vec::new();
    let mut with: Vec<Vec<Times>> = vec![Vec::new(); SETS.len()];
    let mut sock = sock;
    for _round in 0..2 {
        base.push(measure(&mut sock));
        for (i, (set, _)) in SETS.iter().enumerate() {
            let m = rt.block_on(async {
                // Record the (empty) bench cgroup: this process is outside it.
                let (h, rx) = start(&cg, &rt, *set);
                let m = measure(&mut sock);
                let _ = stop(h, rx).await;
                m
            });
            with[i].push(m);
        }
    }
    let min = |v: &[Times], f: fn(&Times) -> f64| v.iter().map(f).fold(f64::INFINITY, f64::min);
    let fields: [Field; 3] = [
        ("unfollowed getppid(2)", |m| m.0),
        ("untargeted write(2) /dev/null", |m| m.1),
        ("untargeted write(2) socket", |m| m.2),
    ];
    for (label, f) in fields {
        let b = min(&base, f);
        for (i, (_, name)) in SETS.iter().enumerate() {
            let w = min(&with[i], f);
            println!(
                "{label} [{name}]: {b:7.1} ns -> {w:7.1} ns  (+{:6.1} ns/syscall, x{:.2})",
                w - b,
                w / b
            );
        }
    }

    if args.iter().any(|a| a == "--untargeted-only") {
        return;
    }

    // --- 2. captured events
    for (set, name) in SETS {
        for (size, count) in [(64usize, 200_000 * scale), (4096, 50_000 * scale)] {
            let (base, _) = run_worker(&cg, count, size);
            let (with, stats, rows, consumer_cpu) = rt.block_on(async {
                let (h, rx) = start(&cg, &rt, set);
                let cpu0 = self_cpu_ns(); // after loading: the verifier's time is not the consumer's
                let counter = tokio::spawn(count_rows(rx));
                let (t, sink_cpu) = tokio::task::spawn_blocking({
                    let cg = cg.path.clone();
                    move || run_worker_in(&cg, count, size)
                })
                .await
                .expect("worker");
                let stats = h.stop().await.expect("stop");
                let rows = counter.await.expect("counter");
                (
                    t,
                    stats,
                    rows,
                    (self_cpu_ns() - cpu0).saturating_sub(sink_cpu),
                )
            });
            // CPU of this process minus the sink thread = the consumer (ring buffer → rows).
            let consumer_ns = consumer_cpu as f64 / count as f64;
            let ns_base = base.as_nanos() as f64 / count as f64;
            let ns_with = with.as_nanos() as f64 / count as f64;
            println!(
                "captured {size:>4} B write [{name}]: {ns_base:7.1} ns -> {ns_with:7.1} ns  (+{:6.1} ns/event, x{:.2}); \
                 {:.0} -> {:.0} events/s; consumer CPU {consumer_ns:.0} ns/event; captured rows {rows}, dropped {} events ({} B)",
                ns_with - ns_base,
                ns_with / ns_base,
                1e9 / ns_base,
                1e9 / ns_with,
                stats.dropped_ringbuf_full,
                stats.bytes_dropped
            );
        }
    }

    // --- 3. peak rate: two writers at once (64 B), the events/s the recorder sustains
    let count = 200_000 * scale;
    let two = move |cg: PathBuf| {
        let a = std::thread::spawn({
            let cg = cg.clone();
            move || run_worker_in(&cg, count, 64)
        });
        let b = std::thread::spawn(move || run_worker_in(&cg, count, 64));
        let (ta, _) = a.join().expect("writer a");
        let (tb, _) = b.join().expect("writer b");
        ta.max(tb)
    };
    let base = two(cg.path.clone());
    let rate = |d: Duration| 2.0 * count as f64 / d.as_secs_f64();
    for (set, name) in SETS {
        let (with, stats, rows) = rt.block_on(async {
            let (h, rx) = start(&cg, &rt, set);
            let counter = tokio::spawn(count_rows(rx));
            let t = tokio::task::spawn_blocking({
                let cg = cg.path.clone();
                move || two(cg)
            })
            .await
            .expect("writers");
            let stats = h.stop().await.expect("stop");
            let rows = counter.await.expect("counter");
            (t, stats, rows)
        });
        println!(
            "two 64 B writers [{name}]: {:.0} -> {:.0} events/s (x{:.2}); captured rows {rows}, dropped {} events (captured + dropped = {} of {})",
            rate(base),
            rate(with),
            rate(base) / rate(with),
            stats.dropped_ringbuf_full,
            rows + stats.dropped_ringbuf_full,
            2 * count
        );
    }
}

/// A loopback TCP connection of this process (outside the recorded cgroup) to a sink
/// thread: `write(2)` on it is a followed socket call of an untargeted process.
struct UntargetedSocket {
    stream: TcpStream,
}

impl UntargetedSocket {
    fn new() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind sink");
        let port = listener.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut buf = vec![0u8; 1 << 20];
            while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
        });
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect sink");
        UntargetedSocket { stream }
    }

    /// ns per 1-byte `write(2)` on the socket.
    fn time_writes(&mut self, n: usize) -> f64 {
        let t = Instant::now();
        for _ in 0..n {
            let _ = self.stream.write(b"x");
        }
        t.elapsed().as_nanos() as f64 / n as f64
    }
}

fn start(
    cg: &BenchCgroup,
    rt: &tokio::runtime::Runtime,
    probes: ProbeSet,
) -> (
    podtrace_recorder::RecorderHandle,
    tokio::sync::mpsc::Receiver<Vec<Record>>,
) {
    let _g = rt.enter();
    let cfg = RecordConfig {
        cgroup_paths: vec![cg.path.clone()],
        probes,
        ..Default::default()
    };
    match Recorder::start(cfg) {
        Ok(x) => {
            if probes == ProbeSet::Syscalls && !x.0.probes_attached().starts_with("syscall") {
                println!("# note: {}", x.0.probes_attached());
            }
            x
        }
        Err(e) => {
            eprintln!("cannot start the recorder: {e}");
            std::process::exit(1);
        }
    }
}

async fn stop(
    h: podtrace_recorder::RecorderHandle,
    rx: tokio::sync::mpsc::Receiver<Vec<Record>>,
) -> RecorderStats {
    let counter = tokio::spawn(count_rows(rx));
    let s = h.stop().await.expect("stop");
    let _ = counter.await;
    s
}

async fn count_rows(mut rx: tokio::sync::mpsc::Receiver<Vec<Record>>) -> u64 {
    let mut n = 0;
    while let Some(b) = rx.recv().await {
        n += b
            .iter()
            .filter(|r| matches!(r, Record::SocketData(_)))
            .count() as u64;
    }
    n
}

/// CPU time (user + system) of this process so far, ns.
fn self_cpu_ns() -> u64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// CPU time of the calling thread, ns.
fn thread_cpu_ns() -> u64 {
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// ns per 1-byte write to /dev/null.
fn time_devnull_writes(n: usize) -> f64 {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .expect("/dev/null");
    let t = Instant::now();
    for _ in 0..n {
        let _ = f.write(b"x");
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

/// ns per getppid().
fn time_getppid(n: usize) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        // SAFETY: getppid has no preconditions; the syscall is the point.
        unsafe { libc::syscall(libc::SYS_getppid) };
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

struct BenchCgroup {
    path: PathBuf,
}

impl BenchCgroup {
    fn new() -> Self {
        let cg = Cgroup2::detect().expect("cgroup v2 mount");
        let path = cg
            .mount
            .join(format!("podtrace-bench-{}", std::process::id()));
        std::fs::create_dir_all(&path).expect("create bench cgroup");
        BenchCgroup { path }
    }
}

impl Drop for BenchCgroup {
    fn drop(&mut self) {
        for _ in 0..100 {
            if std::fs::remove_dir(&self.path).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The worker's time for `count` writes of `size` bytes (run in the bench cgroup, which
/// is recorded only when a recorder is running).
fn run_worker(cg: &BenchCgroup, count: usize, size: usize) -> (Duration, u64) {
    run_worker_in(&cg.path, count, size)
}

fn run_worker_in(cg: &std::path::Path, count: usize, size: usize) -> (Duration, u64) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind sink");
    let port = listener.local_addr().expect("addr").port();
    let sink = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut buf = vec![0u8; 1 << 20];
        while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
        thread_cpu_ns()
    });
    let exe = std::env::current_exe().expect("current exe");
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "echo $$ > '{}/cgroup.procs' && exec \"$@\"",
            cg.display()
        ))
        .arg("sh")
        .arg(exe)
        .args([
            "--worker",
            &port.to_string(),
            &count.to_string(),
            &size.to_string(),
        ])
        .stdout(Stdio::piped())
        .output()
        .expect("worker");
    let sink_cpu = sink.join().expect("sink");
    let ns: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("worker output");
    (Duration::from_nanos(ns), sink_cpu)
}

/// Worker mode: connect, write `count` messages of `size` bytes, print elapsed ns.
fn worker(args: &[String]) {
    let port: u16 = args[0].parse().expect("port");
    let count: usize = args[1].parse().expect("count");
    let size: usize = args[2].parse().expect("size");
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let msg = vec![b'x'; size];
    let t = Instant::now();
    for _ in 0..count {
        s.write_all(&msg).expect("write");
    }
    let ns = t.elapsed().as_nanos();
    drop(s);
    println!("{ns}");
}
