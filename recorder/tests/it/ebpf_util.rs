//! Shared helpers of the `ebpf_*` integration tests: root check,
//! a throw-away cgroup v2 directory, processes started inside it, a Python peer script,
//! a tokio runtime, recordings run around a piece of work, captures read back, and grouping
//! of captured rows per connection. Also built as its own (empty) test.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use podtrace_format::model::{Direction, Record, SocketData, SocketEvent};
use podtrace_format::{CaptureReader, ReadOptions, WriterOptions};
use podtrace_recorder::cgroups::Cgroup2;
use podtrace_recorder::{
    record_to_file, RecordConfig, RecordSummary, Recorder, RecorderError, RecorderHandle,
    RecorderStats,
};
use tokio::task::JoinHandle;

/// Bound on every wait of the eBPF tests (peers, recorder start-up).
pub const T: Duration = Duration::from_secs(30);

/// eBPF tests run one at a time (they share the CPU budget and the kernel).
pub static SERIAL: Mutex<()> = Mutex::new(());

/// True when running as root; otherwise prints a loud skip message.
pub fn root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("\n*** SKIPPED {test}: needs root (CAP_BPF + CAP_PERFMON) to load eBPF ***\n");
        return false;
    }
    true
}

/// True when `tool` runs; otherwise prints a loud skip message.
pub fn tool_or_skip(tool: &str, test: &str) -> bool {
    let ok = Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !ok {
        eprintln!("\n*** SKIPPED {test}: `{tool}` not found ***\n");
    }
    ok
}

/// What a test with the Python peer needs: the serial lock, a temp dir holding the peer
/// script, and a free port. Fields drop in order, so the lock is released last.
pub struct PeerEnv {
    /// Temp dir (holds `peer.py`; tests write their files here too).
    pub dir: tempfile::TempDir,
    /// Path of the peer script.
    pub peer: String,
    /// A free loopback port for the peer server.
    pub port: u16,
    _serial: MutexGuard<'static, ()>,
}

impl PeerEnv {
    /// Takes the serial lock and writes the peer script.
    pub fn acquire() -> PeerEnv {
        let serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let dir = tempfile::tempdir().expect("tempdir");
        let peer = peer_script(dir.path())
            .to_str()
            .expect("utf8 path")
            .to_string();
        PeerEnv {
            dir,
            peer,
            port: free_port(),
            _serial: serial,
        }
    }

    /// Starts the peer in `mode` on the port outside any test cgroup and waits until it
    /// listens.
    pub fn listen_outside(&self, mode: &str) -> KillOnDrop {
        let mut cmd = Command::new("python3");
        cmd.args([self.peer.as_str(), mode, &self.port.to_string()]);
        let peer = KillOnDrop::spawn(cmd);
        wait_listening(self.port);
        peer
    }

    /// Starts the peer's HTTP server inside `cg` and waits until it listens; returns its pid.
    pub fn serve_in(&self, cg: &mut TestCgroup) -> u32 {
        let pid = cg.spawn(&["python3", &self.peer, "serve", &self.port.to_string()]);
        wait_listening(self.port);
        pid
    }
}

/// A two-worker tokio runtime for the recorder.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("rt")
}

/// What [`record_while`] gathered.
pub struct Recorded<R> {
    /// What the work returned.
    pub work: R,
    /// Every row the recorder delivered.
    pub rows: Vec<Record>,
    /// The recorder's final counters.
    pub stats: RecorderStats,
}

/// Records with `cfg` while `work` runs (blocking), then stops the recorder. Every byte
/// the recorded applications read or wrote is in the rows, by the kernel's own count at each
/// connection's close (`bytes_read_uncaptured` and `bytes_written_uncaptured` are 0; the
/// socket tracepoint set checks them).
pub fn record_while<R: Send + 'static>(
    rt: &tokio::runtime::Runtime,
    cfg: RecordConfig,
    work: impl FnOnce(&RecorderHandle) -> R + Send + 'static,
) -> Recorded<R> {
    let rec = record_while_throttled(rt, cfg, Duration::ZERO, work);
    assert_eq!(
        (
            rec.stats.bytes_read_uncaptured,
            rec.stats.bytes_written_uncaptured
        ),
        (0, 0),
        "bytes read or written that no event carried: {:?}",
        rec.stats
    );
    rec
}

/// [`record_while`] with a consumer that sleeps `consumer_delay` after each batch (a slow
/// consumer: backpressure reaches the ring buffer).
pub fn record_while_throttled<R: Send + 'static>(
    rt: &tokio::runtime::Runtime,
    cfg: RecordConfig,
    consumer_delay: Duration,
    work: impl FnOnce(&RecorderHandle) -> R + Send + 'static,
) -> Recorded<R> {
    rt.block_on(async {
        let (handle, mut rx) = Recorder::start(cfg).expect("start recorder");
        let collector = tokio::spawn(async move {
            let mut all = Vec::new();
            while let Some(b) = rx.recv().await {
                all.extend(b);
                if !consumer_delay.is_zero() {
                    tokio::time::sleep(consumer_delay).await;
                }
            }
            all
        });
        let (handle, work) = tokio::task::spawn_blocking(move || {
            let r = work(&handle);
            (handle, r)
        })
        .await
        .expect("work");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let stats = handle.stop().await.expect("stop");
        Recorded {
            work,
            rows: collector.await.expect("collector"),
            stats,
        }
    })
}

/// Starts `record_to_file` on `rt` and waits (at most [`T`]) until the recorder runs.
pub fn spawn_record_to_file(
    rt: &tokio::runtime::Runtime,
    cfg: RecordConfig,
    out: &Path,
    opts: WriterOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> JoinHandle<Result<RecordSummary, RecorderError>> {
    let started = Arc::new(AtomicBool::new(false));
    let s2 = started.clone();
    let out = out.to_path_buf();
    let task = rt.spawn(async move {
        record_to_file(cfg, &out, opts, None, shutdown, move |_| {
            s2.store(true, Ordering::SeqCst)
        })
        .await
    });
    let t0 = Instant::now();
    while !started.load(Ordering::SeqCst) {
        assert!(t0.elapsed() < T, "recorder did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    task
}

/// Every row of a capture file.
pub fn read_all(path: &Path) -> Vec<Record> {
    let reader = CaptureReader::open(&[path]).expect("open capture");
    reader
        .records(&ReadOptions::default())
        .collect::<Result<_, _>>()
        .expect("rows")
}

/// The socket open rows.
pub fn open_rows(rows: &[Record]) -> Vec<&SocketEvent> {
    rows.iter()
        .filter_map(|r| match r {
            Record::SocketOpen(e) => Some(e),
            _ => None,
        })
        .collect()
}

/// The socket close rows.
pub fn close_rows(rows: &[Record]) -> Vec<&SocketEvent> {
    rows.iter()
        .filter_map(|r| match r {
            Record::SocketClose(e) => Some(e),
            _ => None,
        })
        .collect()
}

/// A cgroup v2 directory removed (with its processes killed) on drop.
pub struct TestCgroup {
    pub path: PathBuf,
    children: Vec<Child>,
}

impl TestCgroup {
    pub fn new(name: &str) -> TestCgroup {
        let cg = Cgroup2::detect().expect("cgroup v2 mount");
        let path = cg
            .mount
            .join(format!("podtrace-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir(&path);
        std::fs::create_dir(&path).expect("create test cgroup");
        TestCgroup {
            path,
            children: Vec::new(),
        }
    }

    /// A sub-cgroup of this one (drop it before its parent).
    pub fn child(&self, name: &str) -> TestCgroup {
        let path = self.path.join(name);
        std::fs::create_dir(&path).expect("create child cgroup");
        TestCgroup {
            path,
            children: Vec::new(),
        }
    }

    /// The cgroup id (inode) of this directory.
    pub fn id(&self) -> u64 {
        podtrace_recorder::cgroups::cgroup_id(&self.path).expect("cgroup id")
    }

    /// Starts `argv` inside this cgroup (the shell moves itself in, then execs).
    pub fn spawn(&mut self, argv: &[&str]) -> u32 {
        let child = self.command(argv).spawn().expect("spawn in cgroup");
        let pid = child.id();
        self.children.push(child);
        pid
    }

    /// A command that runs `argv` inside this cgroup.
    pub fn command(&self, argv: &[&str]) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(format!(
                "echo $$ > '{}/cgroup.procs' && exec \"$@\"",
                self.path.display()
            ))
            .arg("sh")
            .args(argv)
            .stdin(Stdio::null());
        c
    }

    /// Runs `argv` in the cgroup to completion (bounded) and returns stdout.
    pub fn run(&self, argv: &[&str], timeout: Duration) -> Vec<u8> {
        run_bounded(self.command(argv), timeout)
    }
}

/// Runs a command with a timeout; panics on failure or timeout.
pub fn run_bounded(mut cmd: Command, timeout: Duration) -> Vec<u8> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut out = Vec::new();
            let mut err = String::new();
            if let Some(mut o) = child.stdout.take() {
                o.read_to_end(&mut out).expect("stdout");
            }
            if let Some(mut e) = child.stderr.take() {
                e.read_to_string(&mut err).expect("stderr");
            }
            assert!(status.success(), "{cmd:?} failed: {status}: {err}");
            return out;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} timed out");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Kill anything else left inside, then remove the directory.
        if let Ok(procs) = std::fs::read_to_string(self.path.join("cgroup.procs")) {
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                // SAFETY: sending a signal has no memory-safety preconditions.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        for _ in 0..100 {
            if std::fs::remove_dir(&self.path).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A process killed (and reaped) on drop, so that a failing test leaves nothing behind.
pub struct KillOnDrop(pub Child);

impl KillOnDrop {
    /// Starts `cmd` (outside any test cgroup).
    pub fn spawn(mut cmd: Command) -> KillOnDrop {
        KillOnDrop(cmd.stdout(Stdio::null()).spawn().expect("spawn"))
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Waits until something listens on 127.0.0.1:port.
pub fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The Python peer: an HTTP/1.1 server (keep-alive) and raw clients using several
/// socket syscalls. Written to `dir` and returned.
pub fn peer_script(dir: &Path) -> PathBuf {
    let p = dir.join("peer.py");
    std::fs::write(&p, PEER_PY).expect("write peer.py");
    p
}

const PEER_PY: &str = r#"
import http.server, os, socket, socketserver, sys, hashlib

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        body = ("hello " + self.path + "\n").encode() * 3
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Set-Cookie", "session=SERVERSECRET42")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        left, h = n, hashlib.sha256()
        while left:
            chunk = self.rfile.read(min(left, 65536))
            if not chunk: break
            h.update(chunk); left -= len(chunk)
        body = ("got %d %s\n" % (n, h.hexdigest())).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

def serve(port):
    S(("127.0.0.1", port), H).serve_forever()

def recv_all(s):
    out = b""
    while True:
        d = s.recv(65536)
        if not d: return out
        out += d

def variants(port, outdir):
    """One connection per syscall family; records what was sent and received."""
    sent, got = {}, {}
    # sendto/recvfrom (socket.send / recv)
    s = socket.create_connection(("127.0.0.1", port))
    req = b"GET /send HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    s.sendall(req); sent["send"] = req; got["send"] = recv_all(s); s.close()
    # sendmsg with several buffers / recvmsg
    s = socket.create_connection(("127.0.0.1", port))
    parts = [b"GET /sendmsg HTTP/1.1\r\n", b"Host: x\r\n", b"X-Part: three\r\n", b"Connection: close\r\n\r\n"]
    s.sendmsg(parts); sent["sendmsg"] = b"".join(parts)
    buf = b""
    while True:
        d, _, _, _ = s.recvmsg(65536)
        if not d: break
        buf += d
    got["sendmsg"] = buf; s.close()
    # writev / readv on the raw fd
    s = socket.create_connection(("127.0.0.1", port))
    parts = [b"GET /writev HTTP/1.1\r\n", b"Host: x\r\n", b"Connection: close\r\n\r\n"]
    os.writev(s.fileno(), parts); sent["writev"] = b"".join(parts)
    buf = b""
    while True:
        a, b = bytearray(7), bytearray(100000)
        n = os.readv(s.fileno(), [a, b])
        if n == 0: break
        buf += (bytes(a) + bytes(b))[:n]
    got["writev"] = buf; s.close()
    # write / read on the raw fd
    s = socket.create_connection(("127.0.0.1", port))
    req = b"GET /write HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    os.write(s.fileno(), req); sent["write"] = req
    buf = b""
    while True:
        d = os.read(s.fileno(), 65536)
        if not d: break
        buf += d
    got["write"] = buf; s.close()
    # sendfile: headers with send, body from a file with sendfile
    body = os.urandom(3000)
    fpath = os.path.join(outdir, "sendfile.bin")
    with open(fpath, "wb") as f: f.write(body)
    s = socket.create_connection(("127.0.0.1", port))
    head = b"POST /sendfile HTTP/1.1\r\nHost: x\r\nContent-Length: 3000\r\nConnection: close\r\n\r\n"
    s.sendall(head)
    with open(fpath, "rb") as f:
        n = os.sendfile(s.fileno(), f.fileno(), 0, 3000)
        assert n == 3000, n
    sent["sendfile"] = head + body; got["sendfile"] = recv_all(s); s.close()
    for k in sent:
        with open(os.path.join(outdir, k + ".sent"), "wb") as f: f.write(sent[k])
        with open(os.path.join(outdir, k + ".got"), "wb") as f: f.write(got[k])

def mmsg(port, outdir):
    """sendmmsg (3 messages, several iovecs) and recvmmsg through libc (ctypes)."""
    import ctypes, ctypes.util
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    class iovec(ctypes.Structure):
        _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
    class msghdr(ctypes.Structure):
        _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32),
                    ("iov", ctypes.POINTER(iovec)), ("iovlen", ctypes.c_size_t),
                    ("control", ctypes.c_void_p), ("controllen", ctypes.c_size_t),
                    ("flags", ctypes.c_int)]
    class mmsghdr(ctypes.Structure):
        _fields_ = [("hdr", msghdr), ("len", ctypes.c_uint)]
    s = socket.create_connection(("127.0.0.1", port))
    parts = [[b"GET /mmsg HTTP/1.1\r\n", b"Host: x\r\n"], [b"X-M: 1\r\n"],
             [b"Connection: close\r\n", b"\r\n"]]
    keep, msgs = [], (mmsghdr * 3)()
    for i, p in enumerate(parts):
        iovs = (iovec * len(p))()
        for j, b in enumerate(p):
            buf = ctypes.create_string_buffer(b, len(b)); keep.append(buf)
            iovs[j].base = ctypes.cast(buf, ctypes.c_void_p); iovs[j].len = len(b)
        keep.append(iovs)
        msgs[i].hdr.iov = iovs; msgs[i].hdr.iovlen = len(p)
    n = libc.sendmmsg(s.fileno(), msgs, 3, 0)
    assert n == 3, (n, ctypes.get_errno())
    got = b""
    while True:
        rbufs = [ctypes.create_string_buffer(64) for _ in range(2)]
        riovs, rmsgs = (iovec * 2)(), (mmsghdr * 2)()
        for i in range(2):
            riovs[i].base = ctypes.cast(rbufs[i], ctypes.c_void_p); riovs[i].len = 64
            rmsgs[i].hdr.iov = ctypes.pointer(riovs[i]); rmsgs[i].hdr.iovlen = 1
        n = libc.recvmmsg(s.fileno(), rmsgs, 2, 0x10000, None)  # MSG_WAITFORONE
        if n <= 0: break
        chunk = b"".join(rbufs[i].raw[:rmsgs[i].len] for i in range(n))
        if not chunk: break
        got += chunk
    s.close()
    with open(os.path.join(outdir, "mmsg.sent"), "wb") as f: f.write(b"".join(b"".join(p) for p in parts))
    with open(os.path.join(outdir, "mmsg.got"), "wb") as f: f.write(got)

def split_secret(port, outdir):
    """Authorization header split across three send() calls (name, value middle)."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    parts = [b"GET /split HTTP/1.1\r\nHost: x\r\nAutho", b"rization: Bearer SPLIT", b"SECRET-9\r\nConnection: close\r\n\r\n"]
    for p in parts:
        s.sendall(p)
    got = recv_all(s); s.close()
    with open(os.path.join(outdir, "split.sent"), "wb") as f: f.write(b"".join(parts))
    with open(os.path.join(outdir, "split.got"), "wb") as f: f.write(got)

def keepalive(port, n):
    s = socket.create_connection(("127.0.0.1", port))
    for i in range(n):
        s.sendall(b"GET /ka%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
        buf = b""
        while b"\r\n\r\n" not in buf: buf += s.recv(65536)
        head, rest = buf.split(b"\r\n\r\n", 1)
        cl = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0].split(b":")[1])
        while len(rest) < cl: rest += s.recv(65536)
    s.close()

def blast(port, n, size):
    """Stress: n writes of `size` bytes on one connection to a sink server."""
    s = socket.create_connection(("127.0.0.1", port))
    msg = b"x" * size
    total = 0
    for _ in range(n):
        s.sendall(msg); total += size
    s.shutdown(socket.SHUT_WR)
    recv_all(s)
    s.close()
    print(total)

def sink(port):
    l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind(("127.0.0.1", port)); l.listen(16)
    while True:
        c, _ = l.accept()
        while c.recv(1 << 20): pass
        c.close()

if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "serve": serve(int(sys.argv[2]))
    elif cmd == "variants": variants(int(sys.argv[2]), sys.argv[3])
    elif cmd == "split": split_secret(int(sys.argv[2]), sys.argv[3])
    elif cmd == "mmsg": mmsg(int(sys.argv[2]), sys.argv[3])
    elif cmd == "keepalive": keepalive(int(sys.argv[2]), int(sys.argv[3]))
    elif cmd == "blast": blast(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
    elif cmd == "sink": sink(int(sys.argv[2]))
"#;

/// Socket data rows grouped per (conn_id, direction), in capture order.
pub fn streams(rows: &[Record]) -> BTreeMap<(u64, Direction), Vec<&SocketData>> {
    let mut m: BTreeMap<(u64, Direction), Vec<&SocketData>> = BTreeMap::new();
    for r in rows {
        if let Record::SocketData(d) = r {
            m.entry((d.meta.conn_id, d.direction)).or_default().push(d);
        }
    }
    m
}

/// Concatenated payload of rows.
pub fn concat(rows: &[&SocketData]) -> Vec<u8> {
    rows.iter()
        .flat_map(|d| d.payload.iter().copied())
        .collect()
}

/// Whether `needle` occurs in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn util_builds() {
    assert!(contains(b"abcdef", b"cde"));
}
