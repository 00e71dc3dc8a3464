//! `make bench-recorder`: what the recorder costs, measured against the same workload
//! without podtrace in the same run (needs root).
//!
//! 1. Untargeted syscalls: `write(2)` of 1 byte to /dev/null and to a loopback TCP socket
//!    from a process outside the recorded cgroup (the programs run, look up the cgroup and
//!    leave), and a syscall podtrace does not follow (`getppid`): ns added per syscall,
//!    beside the floors: EMPTY programs on the same hooks, and programs that run only the
//!    cgroup filter (`recorder-ebpf/bpf/floor.bpf.c`), so that what the hook costs and what
//!    podtrace's code adds are told apart.
//! 2. Captured events: a worker process in a recorded cgroup writes 64 B / 4 KiB messages
//!    to a loopback TCP sink outside the cgroup: ns added per captured event (the fastest
//!    chunk of 5 000 writes of each run), and the events/s reached with and without
//!    podtrace (whole runs), with drops (0 expected; any drop is printed, never hidden).
//!
//! 3. Peak rate: two such workers at once (64 B), events/s recorded vs unrecorded, once with
//!    sinks woken on every write and once with batched sinks (`SO_RCVLOWAT` 64 KiB), whose
//!    wakeups no longer take the two cores from the writers and the recorder.
//!
//! Every figure is measured for the three hook sets in the same run: the socket tracepoints
//! (`sockets`, the default where present), the per-syscall tracepoints (`tracepoints`) and
//! the `tp_btf` sys_enter/sys_exit fallback (`tp_btf`).
//!
//! Usage: `bench_recorder [--quick] [--untargeted-only | --peak-only] [--set sockets|tracepoints|tp_btf]`
//! (`--peak-only`: only the two-writer rate; `--set`: one hook set; the worker mode
//! `--worker PORT N SIZE` is internal).

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
const SETS: [(ProbeSet, &str); 3] = [
    (ProbeSet::Sockets, "sockets"),
    (ProbeSet::Tracepoints, "tracepoints"),
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
    let peak_only = args.iter().any(|a| a == "--peak-only");
    let untargeted_only = args.iter().any(|a| a == "--untargeted-only");
    let only_set = args
        .iter()
        .position(|a| a == "--set")
        .and_then(|i| args.get(i + 1).cloned());
    let sets: Vec<(ProbeSet, &str)> = SETS
        .into_iter()
        .filter(|(_, name)| only_set.as_deref().is_none_or(|o| o == *name))
        .collect();
    if sets.is_empty() {
        eprintln!("--set: one of sockets, tracepoints, tp_btf");
        std::process::exit(2);
    }

    println!("# podtrace recorder benchmark (ratios matter; 2-core shared machine)");
    if !peak_only {
        untargeted_and_captured(&rt, &cg, &sets, quick, scale, untargeted_only);
    }
    if untargeted_only {
        return;
    }
    // --- 3. peak rate: two writers at once (64 B), the events/s the recorder sustains; with
    // sinks woken on every write, and with batched sinks (SO_RCVLOWAT): the loopback
    // receivers' ~200 k wakeups/s share the two cores with the writers and the recorder in
    // the first, not in the second
    let count = 200_000 * scale;
    for (lowat, label) in [(None, ""), (Some(SINK_LOWAT), ", batched sinks")] {
        let two = move |cg: PathBuf| {
            let a = std::thread::spawn({
                let cg = cg.clone();
                move || run_worker_in(&cg, count, 64, lowat)
            });
            let b = std::thread::spawn(move || run_worker_in(&cg, count, 64, lowat));
            let ta = a.join().expect("writer a").total;
            let tb = b.join().expect("writer b").total;
            ta.max(tb)
        };
        let base = two(cg.path.clone());
        let rate = |d: Duration| 2.0 * count as f64 / d.as_secs_f64();
        for &(set, name) in &sets {
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
            settle_detach();
            println!(
                "two 64 B writers{label} [{name}]: {:.0} -> {:.0} events/s (x{:.2}); captured rows {rows}, dropped {} events (captured + dropped = {} of {})",
                rate(base),
                rate(with),
                rate(base) / rate(with),
                stats.dropped_ringbuf_full,
                rows + stats.dropped_ringbuf_full,
                2 * count
            );
        }
    }
}

/// SO_RCVLOWAT of the batched sinks (the peak rate's second variant, the untargeted socket):
/// one wakeup per 64 KiB, about a thousand 64 B writes.
const SINK_LOWAT: libc::c_int = 64 * 1024;

/// Sets a receiving socket's SO_RCVLOWAT: its reader is woken once `lowat` bytes wait.
fn set_rcvlowat(s: &TcpStream, lowat: libc::c_int) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid socket fd and an int option value of the right size.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&lowat as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVLOWAT: {}", std::io::Error::last_os_error());
}

/// Sections 1 (untargeted syscalls) and 2 (captured events, skipped with
/// `untargeted_only`) of the module doc.
fn untargeted_and_captured(
    rt: &tokio::runtime::Runtime,
    cg: &BenchCgroup,
    sets: &[(ProbeSet, &str)],
    quick: bool,
    scale: usize,
    untargeted_only: bool,
) {
    // --- 1. untargeted syscalls: no hook, the empty floor programs, and each hook set of
    // the recorder, interleaved; the best of the rounds per configuration
    let n = 500_000 * scale;
    let mut sock = UntargetedSocket::new();
    let measure = |sock: &mut UntargetedSocket| {
        (
            time_getppid(n),
            time_devnull_writes(n),
            sock.time_writes(n / 4),
        )
    };
    let configs: Vec<(Hooks, String)> = [
        (Hooks::None, "no program".to_string()),
        (Hooks::FloorTp, "empty tracepoints on write".to_string()),
        (Hooks::FloorBtf, "empty tp_btf".to_string()),
        (
            Hooks::FloorTpCg,
            "filter-only tracepoints on write".to_string(),
        ),
        (Hooks::FloorBtfCg, "filter-only tp_btf".to_string()),
        (Hooks::FloorSock, "empty socket tracepoints".to_string()),
        (
            Hooks::FloorSockCg,
            "filter-only socket tracepoints".to_string(),
        ),
    ]
    .into_iter()
    .chain(
        sets.iter()
            .map(|(set, name)| (Hooks::Recorder(*set), format!("podtrace {name}"))),
    )
    .collect();
    let rounds = if quick { 2 } else { 3 };
    let mut times: Vec<Vec<Times>> = vec![Vec::new(); configs.len()];
    for _round in 0..rounds {
        for (i, (hooks, _)) in configs.iter().enumerate() {
            let m = match hooks {
                Hooks::None => measure(&mut sock),
                Hooks::FloorTp
                | Hooks::FloorBtf
                | Hooks::FloorTpCg
                | Hooks::FloorBtfCg
                | Hooks::FloorSock
                | Hooks::FloorSockCg => {
                    let _floor = Floor::attach(*hooks);
                    measure(&mut sock)
                }
                Hooks::Recorder(set) => rt.block_on(async {
                    // Record the (empty) bench cgroup: this process is outside it.
                    let (h, rx) = start(cg, rt, *set);
                    let m = measure(&mut sock);
                    let _ = stop(h, rx).await;
                    m
                }),
            };
            if let Hooks::Recorder(_) = hooks {
                settle_detach();
            }
            times[i].push(m);
        }
    }
    let min = |v: &[Times], f: fn(&Times) -> f64| v.iter().map(f).fold(f64::INFINITY, f64::min);
    let fields: [Field; 3] = [
        ("unfollowed getppid(2)", |m| m.0),
        ("untargeted write(2) /dev/null", |m| m.1),
        ("untargeted write(2) socket", |m| m.2),
    ];
    for (label, f) in fields {
        let b = min(&times[0], f);
        for (i, (_, name)) in configs.iter().enumerate().skip(1) {
            let w = min(&times[i], f);
            println!(
                "{label} [{name}]: {b:7.1} ns -> {w:7.1} ns  (+{:6.1} ns/syscall, x{:.2})",
                w - b,
                w / b
            );
        }
    }

    if untargeted_only {
        return;
    }

    // --- 2. captured events
    for &(set, name) in sets {
        for (size, count) in [(64usize, 200_000 * scale), (4096, 50_000 * scale)] {
            let base = run_worker(cg, count, size);
            let (with, stats, rows, consumer_cpu) = rt.block_on(async {
                let (h, rx) = start(cg, rt, set);
                let cpu0 = self_cpu_ns(); // after loading: the verifier's time is not the consumer's
                let counter = tokio::spawn(count_rows(rx));
                let run = tokio::task::spawn_blocking({
                    let cg = cg.path.clone();
                    move || run_worker_in(&cg, count, size, None)
                })
                .await
                .expect("worker");
                let stats = h.stop().await.expect("stop");
                let rows = counter.await.expect("counter");
                (
                    run,
                    stats,
                    rows,
                    (self_cpu_ns() - cpu0).saturating_sub(run.sink_cpu),
                )
            });
            settle_detach();
            // CPU of this process minus the sink thread = the consumer (ring buffer → rows).
            let consumer_ns = consumer_cpu as f64 / count as f64;
            // ns per write: the fastest chunk of each run (a chunk that shared its core
            // with the sink or the consumer is slower, never faster); events/s: whole runs
            let (ns_base, ns_with) = (base.best_ns, with.best_ns);
            let rate = |r: &WorkerRun| count as f64 / r.total.as_secs_f64();
            println!(
                "captured {size:>4} B write [{name}]: {ns_base:7.1} ns -> {ns_with:7.1} ns  (+{:6.1} ns/event, x{:.2}); \
                 {:.0} -> {:.0} events/s; consumer CPU {consumer_ns:.0} ns/event; captured rows {rows}, dropped {} events ({} B)",
                ns_with - ns_base,
                ns_with / ns_base,
                rate(&base),
                rate(&with),
                stats.dropped_ringbuf_full,
                stats.bytes_dropped
            );
        }
    }
}

/// Waits for the probes of a stopped recorder to be gone: they detach on a thread of their
/// own after `stop` (~50 ms per tracepoint), and a measurement taken meanwhile would pay
/// for both hook sets.
fn settle_detach() {
    std::thread::sleep(Duration::from_secs(3));
}

/// What is attached while the untargeted syscalls are timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hooks {
    /// Nothing.
    None,
    /// Empty programs on syscalls/sys_enter_write + sys_exit_write (the hook's own cost).
    FloorTp,
    /// Empty tp_btf programs on sys_enter + sys_exit (the hook's own cost).
    FloorBtf,
    /// [`Hooks::FloorTp`] running only the cgroup filter's fast path.
    FloorTpCg,
    /// [`Hooks::FloorBtf`] running only the syscall-number test and the filter's fast path.
    FloorBtfCg,
    /// Empty tp_btf programs on sock_send_length + sock_recv_length.
    FloorSock,
    /// [`Hooks::FloorSock`] running only the cgroup filter's fast path.
    FloorSockCg,
    /// The recorder with this hook set, recording the empty bench cgroup.
    Recorder(ProbeSet),
}

/// The empty floor programs, attached while this lives.
struct Floor {
    _ebpf: aya::Ebpf,
}

impl Floor {
    fn attach(hooks: Hooks) -> Floor {
        use podtrace_recorder_ebpf::{names, FLOOR_BPF_OBJECT};
        let btf = aya::Btf::from_sys_fs().expect("kernel BTF");
        let mut ebpf = aya::EbpfLoader::new()
            .btf(Some(&btf))
            .allow_unsupported_maps()
            .load(FLOOR_BPF_OBJECT)
            .expect("load floor object");
        let (tp, btf_progs) = match hooks {
            Hooks::FloorTp => (Some(names::FLOOR_TP), None),
            Hooks::FloorTpCg => (Some(names::FLOOR_TP_CG), None),
            Hooks::FloorBtfCg => (None, Some(names::FLOOR_BTF_CG)),
            Hooks::FloorSock => (None, Some(names::FLOOR_SOCK)),
            Hooks::FloorSockCg => (None, Some(names::FLOOR_SOCK_CG)),
            _ => (None, Some(names::FLOOR_BTF)),
        };
        if let Some(progs) = tp {
            // a fresh machine may have no tracefs mounted yet: mount it as the recorder does
            podtrace_recorder::probes::syscall_events_dir().expect("tracefs");
            for (prog, event) in progs {
                let p: &mut aya::programs::TracePoint = ebpf
                    .program_mut(prog)
                    .expect("floor program")
                    .try_into()
                    .expect("tracepoint");
                p.load().expect("load floor tracepoint");
                p.attach(names::TP_CATEGORY_SYSCALLS, event)
                    .expect("attach floor tracepoint");
            }
        }
        if let Some(progs) = btf_progs {
            for (prog, tp) in progs {
                let p: &mut aya::programs::BtfTracePoint = ebpf
                    .program_mut(prog)
                    .expect("floor program")
                    .try_into()
                    .expect("tp_btf");
                p.load(tp, &btf).expect("load floor tp_btf");
                p.attach().expect("attach floor tp_btf");
            }
        }
        Floor { _ebpf: ebpf }
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
            // woken once per 64 KiB, not per 1-byte write: the sink's wakeups made the
            // per-write time swing by hundreds of ns between runs
            set_rcvlowat(&s, SINK_LOWAT);
            let mut buf = vec![0u8; 1 << 20];
            while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
        });
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect sink");
        UntargetedSocket { stream }
    }

    /// ns per 1-byte `write(2)` on the socket (best chunk, see [`best_chunk`]).
    fn time_writes(&mut self, n: usize) -> f64 {
        best_chunk(n, || {
            let _ = self.stream.write(b"x");
        })
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
        Ok(x) => x,
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
    best_chunk(n, || {
        let _ = f.write(b"x");
    })
}

/// ns per getppid().
fn time_getppid(n: usize) -> f64 {
    best_chunk(n, || {
        // SAFETY: getppid has no preconditions; the syscall is the point.
        unsafe { libc::syscall(libc::SYS_getppid) };
    })
}

/// Syscalls per timed chunk in [`best_chunk`].
const CHUNK: usize = 5_000;

/// ns per call of `f` over `n` calls, taken as the fastest of the chunks of [`CHUNK`]
/// calls: on a shared machine a chunk that was preempted or shared its core is slower,
/// never faster, so the fastest chunk is the cost of the path itself.
fn best_chunk(n: usize, mut f: impl FnMut()) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..n.div_ceil(CHUNK) {
        let t = Instant::now();
        for _ in 0..CHUNK {
            f();
        }
        best = best.min(t.elapsed().as_nanos() as f64 / CHUNK as f64);
    }
    best
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
/// What one worker run measured.
#[derive(Debug, Clone, Copy)]
struct WorkerRun {
    /// Wall time of all the writes.
    total: Duration,
    /// ns per write of the fastest chunk of [`CHUNK`] writes.
    best_ns: f64,
    /// CPU time of the sink thread (this process), ns.
    sink_cpu: u64,
}

fn run_worker(cg: &BenchCgroup, count: usize, size: usize) -> WorkerRun {
    run_worker_in(&cg.path, count, size, None)
}

/// Runs a worker in cgroup `cg` writing `count` messages of `size` bytes to a sink thread
/// of this process; `sink_lowat`: the sink's SO_RCVLOWAT (it is woken once that many bytes
/// wait instead of on every write).
fn run_worker_in(
    cg: &std::path::Path,
    count: usize,
    size: usize,
    sink_lowat: Option<libc::c_int>,
) -> WorkerRun {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind sink");
    let port = listener.local_addr().expect("addr").port();
    let sink = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        if let Some(lowat) = sink_lowat {
            set_rcvlowat(&s, lowat);
        }
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
    let text = String::from_utf8_lossy(&out.stdout);
    let mut fields = text.split_whitespace();
    let ns: u64 = fields
        .next()
        .and_then(|f| f.parse().ok())
        .expect("worker output: total ns");
    let best_ns: f64 = fields
        .next()
        .and_then(|f| f.parse().ok())
        .expect("worker output: best chunk ns");
    WorkerRun {
        total: Duration::from_nanos(ns),
        best_ns,
        sink_cpu,
    }
}

/// Worker mode: connect, write `count` messages of `size` bytes, print the elapsed ns and
/// the ns per write of the fastest chunk of [`CHUNK`] writes (see [`best_chunk`]).
fn worker(args: &[String]) {
    let port: u16 = args[0].parse().expect("port");
    let count: usize = args[1].parse().expect("count");
    let size: usize = args[2].parse().expect("size");
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let msg = vec![b'x'; size];
    let t = Instant::now();
    let mut best = f64::INFINITY;
    let mut left = count;
    while left > 0 {
        let n = left.min(CHUNK);
        let c = Instant::now();
        for _ in 0..n {
            s.write_all(&msg).expect("write");
        }
        if n == CHUNK {
            best = best.min(c.elapsed().as_nanos() as f64 / n as f64);
        }
        left -= n;
    }
    let ns = t.elapsed().as_nanos();
    drop(s);
    println!("{ns} {best}");
}
