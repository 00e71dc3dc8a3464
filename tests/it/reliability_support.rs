//! Helpers shared by the reliability and security tests: running
//! podtrace, a throw-away cgroup v2 with a real HTTP server and a curl client inside, and
//! root / tool checks.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The podtrace binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_podtrace")
}

/// Runs podtrace to completion (panics shown with a backtrace, no inherited PODTRACE_ env).
pub fn podtrace(args: &[&str]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(args).env("RUST_BACKTRACE", "1");
    for (k, _) in std::env::vars() {
        if k.starts_with("PODTRACE_") {
            cmd.env_remove(k);
        }
    }
    cmd.output().expect("run podtrace")
}

/// Stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Whether we run as root (eBPF tests need it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc_geteuid() == 0 }
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// Whether `tool` is on PATH.
pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Skips (returns false with a loud message) unless root and every tool is there.
pub fn need_root_and(tools: &[&str], test: &str) -> bool {
    if !is_root() {
        eprintln!("SKIPPED {test}: needs root (eBPF)");
        return false;
    }
    for t in tools {
        if !have(t) {
            eprintln!("SKIPPED {test}: `{t}` not installed");
            return false;
        }
    }
    if cgroup2_root().is_none() {
        eprintln!("SKIPPED {test}: no cgroup v2 mount");
        return false;
    }
    true
}

/// The cgroup v2 mount point (`/sys/fs/cgroup` or `/sys/fs/cgroup/unified`).
pub fn cgroup2_root() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        if !right.starts_with("cgroup2 ") {
            return None;
        }
        left.split(' ').nth(4).map(PathBuf::from)
    })
}

/// A free loopback TCP port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A cgroup v2 directory with processes in it; dropping it kills them and removes it.
pub struct TestCgroup {
    /// The cgroup directory.
    pub path: PathBuf,
    children: Vec<Child>,
}

impl TestCgroup {
    /// Creates `<cgroup2>/podtrace-test-<name>-<pid>`.
    pub fn new(name: &str) -> TestCgroup {
        let root = cgroup2_root().expect("cgroup2 mount");
        let path = root.join(format!("podtrace-test-{name}-{}", std::process::id()));
        let _ = std::fs::create_dir(&path);
        TestCgroup {
            path,
            children: Vec::new(),
        }
    }

    /// Starts `script` (sh) inside the cgroup.
    pub fn spawn(&mut self, script: &str) {
        let procs = self.path.join("cgroup.procs");
        let child = Command::new("sh")
            .args([
                "-c",
                &format!(
                    "echo $$ > {} && exec sh -c '{}'",
                    procs.display(),
                    script.replace('\'', "'\\''")
                ),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn in cgroup");
        self.children.push(child);
    }

    /// Starts a Python HTTP server on `port` (answers GET / with the listing of `/`).
    pub fn http_server(&mut self, port: u16) {
        self.spawn(&format!(
            "cd / && exec python3 -m http.server {port} --bind 127.0.0.1"
        ));
        wait_port(port);
    }

    /// Starts a curl loop against `port` with extra `-H` headers, `sleep` s between requests.
    pub fn curl_loop(&mut self, port: u16, headers: &[&str], sleep: &str) {
        let hs: String = headers.iter().map(|h| format!(" -H \"{h}\"")).collect();
        self.spawn(&format!(
            "while true; do curl -s -o /dev/null{hs} http://127.0.0.1:{port}/; sleep {sleep}; done"
        ));
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        // cgroup.kill (Linux ≥ 5.14) kills everything at once; else kill what is listed
        // until nothing is left (loops may fork between a read and the kill).
        let _ = std::fs::write(self.path.join("cgroup.kill"), "1");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let procs = std::fs::read_to_string(self.path.join("cgroup.procs")).unwrap_or_default();
            let pids: Vec<&str> = procs.split_whitespace().collect();
            if pids.is_empty() || Instant::now() > deadline {
                break;
            }
            let _ = Command::new("kill")
                .arg("-9")
                .args(&pids)
                .stderr(Stdio::null())
                .status();
            std::thread::sleep(Duration::from_millis(20));
        }
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        while std::fs::remove_dir(&self.path).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Waits (≤ 10 s) until something listens on the loopback port.
pub fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits (≤ `secs`) for a child, killing it on timeout.
pub fn wait_timeout(child: &mut Child, secs: u64) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("child did not exit within {secs} s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends a signal to a process.
pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status();
}

/// Path as &str.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn cgroup2_mount_is_found_when_present() {
    if let Some(root) = cgroup2_root() {
        assert!(
            root.join("cgroup.controllers").exists(),
            "{}",
            root.display()
        );
    } else {
        eprintln!("SKIPPED: no cgroup v2 mount");
    }
}
