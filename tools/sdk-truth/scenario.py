#!/usr/bin/env python3
"""Runs the SDK-truth scenario, captures it, analyzes the capture and compares podtrace's
spans with the ones the services' own OpenTelemetry SDKs wrote.

    driver (NET.1, uninstrumented) -> frontend (NET.2, Node.js, W3C)
        -> backend (NET.3, Flask + requests + grpcio) -> grpcsvc (NET.5, gRPC, W3C/B3)
                                                     -> b3svc (NET.4, Flask, B3 only)

Modes:
  record OUTDIR   services in their own cgroup v2 directories under one parent;
                  `podtrace record --cgroup PARENT -o OUTDIR/capture.parquet`
  pcap OUTDIR     `tcpdump -i lo -w OUTDIR/capture.pcap`, then
                  `podtrace import OUTDIR/capture.pcap -o OUTDIR/capture.parquet`
  analyze OUTDIR  only `podtrace analyze OUTDIR/capture.parquet --out OUTDIR/analysis` and
                  the comparison (re-analyze a saved capture with a new build)

OUTDIR then holds: capture.parquet (and capture.pcap), sdk/*.jsonl (the SDK spans),
driver.jsonl (what the driver sent), logs/, analysis/ (spans.json, summary.json, ...),
compare.json and compare.txt. Exit status: 0 when every criterion holds (100 %), 1 when
the comparison found mismatches, 2 on a setup failure.

Needs root (cgroups, eBPF, routes, tcpdump), node + tools/sdk-truth/node_modules, and the
venv's Python with the OpenTelemetry packages (tools/install-deps.sh installs both).
Everything it starts, the cgroups and the route are removed on exit (also on SIGTERM/SIGINT).
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SERVICES = ["frontend", "backend", "b3svc", "grpcsvc"]


class Failure(Exception):
    """A setup step failed (exit 2)."""


def log(msg):
    print(f"[sdk-truth] {msg}", file=sys.stderr, flush=True)


def cgroup2_mount():
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.startswith("cgroup2 "):
                return left.split(" ")[4]
    raise Failure("no cgroup v2 mount")


def default_podtrace():
    for p in ("target/release/podtrace", "target/debug/podtrace"):
        if os.access(os.path.join(REPO, p), os.X_OK):
            return os.path.join(REPO, p)
    return shutil.which("podtrace") or "podtrace"


def default_python():
    venv = os.environ.get("PODTRACE_VENV", os.path.join(REPO, ".venv"))
    return os.path.join(venv, "bin", "python")


class Lines:
    """A child's pipe read line by line by a thread, copied to a log file."""

    def __init__(self, pipe, logpath):
        self.lines, self.cv = [], threading.Condition()
        self.log = open(logpath, "a", encoding="utf-8", errors="replace")
        threading.Thread(target=self._read, args=(pipe,), daemon=True).start()

    def _read(self, pipe):
        for raw in iter(pipe.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.log.write(line + "\n")
            self.log.flush()
            with self.cv:
                self.lines.append(line)
                self.cv.notify_all()

    def wait_for(self, needle, timeout):
        deadline = time.monotonic() + timeout
        with self.cv:
            while not any(needle in l for l in self.lines):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cv.wait(left)
        return True


class Scenario:
    """Processes, cgroups and the route of one run; `close()` removes all of them."""

    def __init__(self, args):
        self.args = args
        self.out = os.path.abspath(args.outdir)
        net = args.net
        self.ip = {"driver": f"{net}.1", "frontend": f"{net}.2", "backend": f"{net}.3",
                   "b3svc": f"{net}.4", "grpcsvc": f"{net}.5"}
        base = args.base_port
        self.port = {"frontend": base + 2, "backend": base + 3, "b3svc": base + 4,
                     "grpcsvc": base + 5}
        self.cg_parent = None
        self.cg = {}
        self.route = None
        self.procs = []  # (name, Popen)
        self.capture = None  # (name, Popen, stop signal)

    # --- setup ---------------------------------------------------------------------------

    def make_dirs(self):
        for d in ("sdk", "logs"):
            shutil.rmtree(os.path.join(self.out, d), ignore_errors=True)
            os.makedirs(os.path.join(self.out, d))
        for f in ("capture.parquet", "capture.pcap", "driver.jsonl", "compare.json",
                  "compare.txt", "scenario.json"):
            try:
                os.unlink(os.path.join(self.out, f))
            except FileNotFoundError:
                pass
        shutil.rmtree(os.path.join(self.out, "analysis"), ignore_errors=True)

    def make_cgroups(self):
        root = cgroup2_mount()
        self.cg_parent = os.path.join(root, f"podtrace-sdk-truth-{os.getpid()}")
        os.mkdir(self.cg_parent)
        for s in SERVICES:
            d = os.path.join(self.cg_parent, s)
            os.mkdir(d)
            self.cg[s] = d

    def add_route(self):
        # grpcio cannot bind its source address: connections to grpcsvc leave from backend's.
        dst, src = self.ip["grpcsvc"], self.ip["backend"]
        have = subprocess.run(["ip", "route", "show", "table", "local", f"{dst}/32"],
                              capture_output=True, text=True, timeout=10).stdout
        if have.strip():
            raise Failure(f"a route to {dst} exists already ({have.strip()}): another run, or "
                          f"left by a killed one (ip route del local {dst}/32 table local)")
        self.run_checked(["ip", "route", "add", "local", f"{dst}/32", "dev", "lo", "src", src,
                          "table", "local"])
        self.route = (dst, src)

    def run_checked(self, cmd, timeout=60):
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        if p.returncode != 0:
            raise Failure(f"{' '.join(cmd)}: exit {p.returncode}: "
                          f"{p.stderr.decode(errors='replace').strip()}")
        return p

    def start_service(self, name, cmd):
        procs_file = os.path.join(self.cg[name], "cgroup.procs")

        def join_cgroup():
            with open(procs_file, "w") as f:
                f.write(str(os.getpid()))

        logpath = os.path.join(self.out, "logs", f"{name}.log")
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=open(logpath, "a"), preexec_fn=join_cgroup,
                             cwd=HERE)
        self.procs.append((name, p))
        return Lines(p.stdout, logpath)

    def start_services(self):
        a, ip, port, sdk = self.args, self.ip, self.port, os.path.join(self.out, "sdk")
        py = [a.python, os.path.join(HERE, "services.py")]
        ready = {
            "grpcsvc": self.start_service("grpcsvc", py + [
                "grpcsvc", "--ip", ip["grpcsvc"], "--port", str(port["grpcsvc"]),
                "--spans", f"{sdk}/grpcsvc.jsonl"]),
            "b3svc": self.start_service("b3svc", py + [
                "b3svc", "--ip", ip["b3svc"], "--port", str(port["b3svc"]),
                "--spans", f"{sdk}/b3svc.jsonl"]),
            "backend": self.start_service("backend", py + [
                "backend", "--ip", ip["backend"], "--port", str(port["backend"]),
                "--spans", f"{sdk}/backend.jsonl",
                "--grpc", f"{ip['grpcsvc']}:{port['grpcsvc']}",
                "--b3", f"{ip['b3svc']}:{port['b3svc']}"]),
            "frontend": self.start_service("frontend", [
                a.node, os.path.join(HERE, "frontend.js"), "--ip", ip["frontend"],
                "--port", str(port["frontend"]),
                "--backend", f"{ip['backend']}:{port['backend']}",
                "--spans", f"{sdk}/frontend.jsonl"]),
        }
        for name, lines in ready.items():
            if not lines.wait_for("READY", 30):
                raise Failure(f"{name} did not start within 30 s (see logs/{name}.log)")
        log("services ready: " + ", ".join(f"{s} {ip[s]}:{port[s]}" for s in SERVICES))

    def start_capture(self, mode):
        a = self.args
        if mode == "record":
            cmd = [a.podtrace, "record", "--cgroup", self.cg_parent, "-o",
                   os.path.join(self.out, "capture.parquet")]
            env = {k: v for k, v in os.environ.items() if not k.startswith("PODTRACE_")}
            # the progress lines (debug) start once the probes run: the readiness signal
            env["RUST_LOG"] = "warn,podtrace::cmd::record=debug"
            p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, env=env)
            lines = Lines(p.stderr, os.path.join(self.out, "logs", "record.log"))
            self.capture = ("podtrace record", p, signal.SIGINT)
            if not lines.wait_for("events/s", 60):
                raise Failure("podtrace record did not start within 60 s (logs/record.log)")
        else:
            cmd = ["tcpdump", "-i", "lo", "--immediate-mode", "-U", "-B", "65536", "-Z", "root",
                   "-s", "0", "-w", os.path.join(self.out, "capture.pcap"),
                   f"net {self.args.net}.0/24"]
            p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE)
            lines = Lines(p.stderr, os.path.join(self.out, "logs", "tcpdump.log"))
            self.capture = ("tcpdump", p, signal.SIGINT)
            if not lines.wait_for("listening on", 20):
                raise Failure("tcpdump did not start within 20 s (logs/tcpdump.log)")
        log(f"{self.capture[0]} running")

    def drive(self):
        a = self.args
        cmd = [a.python, os.path.join(HERE, "driver.py"), "--ip", self.ip["driver"],
               "--target", f"{self.ip['frontend']}:{self.port['frontend']}",
               "--n", str(a.requests), "--concurrency", str(a.concurrency),
               "--out", os.path.join(self.out, "driver.jsonl")]
        t0 = time.monotonic()
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
        if p.returncode != 0:
            raise Failure(f"driver failed: {p.stderr.decode(errors='replace').strip()}")
        log(f"driver: {a.requests} requests, concurrency {a.concurrency}, "
            f"{time.monotonic() - t0:.2f} s")

    def stop_capture(self):
        if not self.capture:
            return
        name, p, sig = self.capture
        self.capture = None
        if name == "tcpdump":
            # SIGINT ends tcpdump without draining what the kernel still holds for it, and
            # on a loaded machine it lags the traffic: wait until the file stops growing.
            path = os.path.join(self.out, "capture.pcap")
            size = lambda: os.path.getsize(path) if os.path.exists(path) else 0
            last, since, t0 = size(), time.monotonic(), time.monotonic()
            while time.monotonic() - t0 < 10 and time.monotonic() - since < 0.5:
                time.sleep(0.05)
                now = size()
                if now != last:
                    last, since = now, time.monotonic()
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                raise Failure(f"{name} did not stop within 30 s")
        if p.returncode not in (0, -signal.SIGINT, 130):
            raise Failure(f"{name} exited with {p.returncode} (see logs/)")

    # --- teardown ------------------------------------------------------------------------

    def stop_services(self):
        for _, p in self.procs:
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + 5
        for _, p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []

    def close(self):
        if self.capture:
            _, p, _ = self.capture
            self.capture = None
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.stop_services()
        for d in self.cg.values():
            kill_members(d)
            rmdir_retry(d)
        if self.cg_parent:
            rmdir_retry(self.cg_parent)
        self.cg, self.cg_parent = {}, None
        if self.route:
            dst, src = self.route
            subprocess.run(["ip", "route", "del", "local", f"{dst}/32", "dev", "lo", "src", src,
                            "table", "local"], stdin=subprocess.DEVNULL, capture_output=True)
            self.route = None


def kill_members(cdir):
    kill = os.path.join(cdir, "cgroup.kill")
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        try:
            with open(os.path.join(cdir, "cgroup.procs")) as f:
                pids = [int(x) for x in f.read().split()]
        except OSError:
            return
        if not pids:
            return
        if os.path.exists(kill):
            with open(kill, "w") as f:
                f.write("1")
        else:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        time.sleep(0.02)


def rmdir_retry(d):
    for _ in range(100):
        try:
            os.rmdir(d)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.02)
    log(f"could not remove {d}")


def podtrace_env():
    return {k: v for k, v in os.environ.items() if not k.startswith("PODTRACE_")}


def analyze_and_compare(args, out):
    cap = os.path.join(out, "capture.parquet")
    if not os.path.exists(cap):
        raise Failure(f"no capture at {cap}")
    adir = os.path.join(out, "analysis")
    shutil.rmtree(adir, ignore_errors=True)
    t0 = time.monotonic()
    p = subprocess.run([args.podtrace, "analyze", cap, "--out", adir] + args.analyze_arg,
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=120,
                       env=podtrace_env())
    with open(os.path.join(out, "logs", "analyze.log"), "wb") as f:
        f.write(p.stdout + p.stderr)
    if p.returncode != 0:
        raise Failure(f"podtrace analyze: exit {p.returncode}: "
                      f"{p.stderr.decode(errors='replace').strip()[-2000:]}")
    log(f"analyze: {time.monotonic() - t0:.2f} s")
    p = subprocess.run([sys.executable, os.path.join(HERE, "compare.py"), out,
                        "--json", os.path.join(out, "compare.json")],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    text = p.stdout.decode(errors="replace")
    with open(os.path.join(out, "compare.txt"), "w") as f:
        f.write(text)
    sys.stdout.write(text)
    sys.stderr.write(p.stderr.decode(errors="replace"))
    if p.returncode not in (0, 1):
        raise Failure(f"compare.py failed with exit {p.returncode}")
    return p.returncode


def run(args):
    out = os.path.abspath(args.outdir)
    os.makedirs(out, exist_ok=True)
    if args.mode == "analyze":
        os.makedirs(os.path.join(out, "logs"), exist_ok=True)
        return analyze_and_compare(args, out)
    if os.geteuid() != 0:
        raise Failure("needs root (cgroups, eBPF, routes, tcpdump)")
    sc = Scenario(args)
    sc.make_dirs()
    t0 = time.monotonic()
    try:
        sc.make_cgroups()
        sc.add_route()
        sc.start_services()
        sc.start_capture(args.mode)
        sc.drive()
        time.sleep(0.5)  # the last responses' bytes and FINs reach the capture
        sc.stop_capture()
    finally:
        sc.close()
    with open(os.path.join(out, "scenario.json"), "w") as f:
        json.dump({"mode": args.mode, "ip": sc.ip, "port": sc.port,
                   "requests": args.requests, "concurrency": args.concurrency}, f, indent=1)
    if args.mode == "pcap":
        p = subprocess.run([args.podtrace, "import", os.path.join(out, "capture.pcap"), "-o",
                            os.path.join(out, "capture.parquet")], stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=120, env=podtrace_env())
        if p.returncode != 0:
            raise Failure(f"podtrace import: exit {p.returncode}: "
                          f"{p.stderr.decode(errors='replace').strip()}")
    log(f"capture done in {time.monotonic() - t0:.2f} s")
    if args.capture_only:
        return 0
    return analyze_and_compare(args, out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 2)[2])
    ap.add_argument("mode", choices=["record", "pcap", "analyze"])
    ap.add_argument("outdir")
    ap.add_argument("--podtrace", default=os.environ.get("SDK_TRUTH_PODTRACE") or default_podtrace(),
                    help="the podtrace binary (default: SDK_TRUTH_PODTRACE, target/release, "
                    "target/debug, PATH)")
    ap.add_argument("--python", default=default_python(), help="Python with the OTel packages")
    ap.add_argument("--node", default=shutil.which("node") or "node")
    ap.add_argument("--net", default="127.0.15", help="first three octets of the addresses")
    ap.add_argument("--base-port", type=int, default=18500)
    ap.add_argument("--requests", type=int, default=40)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--capture-only", action="store_true", help="no analyze/compare")
    ap.add_argument("--analyze-arg", action="append", default=[],
                    help="extra argument for `podtrace analyze` (repeatable)")
    args = ap.parse_args()

    def stop(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        sys.exit(run(args))
    except Failure as e:
        log(f"FAILED: {e}")
        sys.exit(2)


if __name__ == "__main__":
    main()
