#!/usr/bin/env python3
"""A whole fake cluster in one command: the test API server plus fakenode pods with traffic.

What it is for: `make demo` and end-to-end tests that need "a cluster with services talking
to each other" — podtrace then records a pod by name (`podtrace record -n demo frontend-0`)
exactly as on a real node. What it is not: anything but loopback processes in
kubelet-shaped cgroups (see fakenode.py) and an in-memory API server (tools/k8s-apiserver).

Default topology (namespace `demo`, every pod on this node, pod IPs on 127.0.1.0/24):
  loadgen-0 (127.0.1.12) ──GET /──► frontend-0 (127.0.1.10:8080) ──GET /api──► backend-0 (127.0.1.11:8080)
with Services `frontend` (10.96.0.10) and `backend` (10.96.0.11) and their EndpointSlices,
and W3C traceparent propagated on every hop (tools/fakenode/demo_app.py).

  sudo python3 tools/fakenode/demo_cluster.py --dir /tmp/podtrace-demo [--rps 5] [--spec spec.json]

prints one JSON line {"kubeconfig": ..., "node": ..., "pods": {name: {uid, ip, pids, cgroup_dirs}}}
once everything runs, then waits for SIGINT/SIGTERM and tears everything down.
A --spec file has the shape of `default_spec()` (`{tools}` in argv is replaced by this
tools/ directory, `{python}` by the running interpreter).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import fakenode  # noqa: E402  (after the path tweak: this directory is not a package)


def default_spec(rps: float) -> dict:
    app = ["{python}", "{tools}/fakenode/demo_app.py"]
    return {
        "namespace": "demo",
        "pods": [
            {"name": "backend-0", "labels": {"app": "backend"}, "ip": "127.0.1.11",
             "containers": [{"name": "backend", "argv": app + ["--listen", "127.0.1.11:8080", "--name", "backend",
                                                               "--error-rate", "0.05"]}],
             "expose": {"service": "backend", "port": 8080, "cluster_ip": "10.96.0.11"}},
            {"name": "frontend-0", "labels": {"app": "frontend"}, "ip": "127.0.1.10",
             "containers": [{"name": "frontend", "argv": app + ["--listen", "127.0.1.10:8080", "--name", "frontend",
                                                                "--upstream", "http://127.0.1.11:8080/api"]}],
             "expose": {"service": "frontend", "port": 8080, "cluster_ip": "10.96.0.10"}},
            {"name": "loadgen-0", "labels": {"app": "loadgen"}, "ip": "127.0.1.12",
             "containers": [{"name": "loadgen", "argv": app + ["--load", "http://127.0.1.10:8080/", "--rps", str(rps)]}]},
        ],
    }


def _expand(argv: list[str]) -> list[str]:
    return [a.replace("{tools}", TOOLS).replace("{python}", sys.executable) for a in argv]


def start_apiserver(d: str) -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen([sys.executable, os.path.join(TOOLS, "k8s-apiserver", "apiserver.py"), "--dir", d,
                             "--namespace", "demo"], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)  # a terminal's Ctrl-C must not stop it before teardown
    line = proc.stdout.readline() if proc.stdout else ""
    if not line:
        proc.kill()
        raise RuntimeError("the API server did not start")
    return proc, json.loads(line)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="fake cluster: API server + fakenode pods with traffic")
    ap.add_argument("--dir", required=True, help="directory for the API server's certificates and kubeconfig")
    ap.add_argument("--spec", help="JSON topology (default: loadgen → frontend → backend)")
    ap.add_argument("--rps", type=float, default=5.0, help="load generator requests per second (default spec)")
    ap.add_argument("--driver", choices=["systemd", "cgroupfs"], default="systemd")
    ap.add_argument("--node-name", help="spec.nodeName of the pods (default: hostname)")
    args = ap.parse_args(argv)
    if args.spec:
        with open(args.spec) as fh:
            spec = json.load(fh)
    else:
        spec = default_spec(args.rps)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    os.makedirs(args.dir, exist_ok=True)
    api, ready = start_apiserver(args.dir)
    try:
        with fakenode.FakeNode(ready["kubeconfig"], args.node_name, args.driver) as node:
            ns = spec.get("namespace", "default")
            pods = {}
            for p in spec["pods"]:
                containers = [fakenode.Container(c["name"], _expand(c["argv"]), c.get("env")) for c in p["containers"]]
                pod = node.start_pod(ns, p["name"], containers, p.get("labels"), p["ip"], qos=p.get("qos", "besteffort"))
                pods[p["name"]] = pod
                if p.get("expose"):
                    e = p["expose"]
                    node.expose(e["service"], [pod], e["port"], e.get("target_port"), e.get("cluster_ip"))
            print(json.dumps({"kubeconfig": ready["kubeconfig"], "url": ready["url"], "node": node.node_name,
                              "namespace": ns,
                              "pods": {n: {"uid": p.uid, "ip": p.ip, "pids": p.pids, "cgroup_dirs": p.cgroup_dirs}
                                       for n, p in pods.items()}}), flush=True)
            while not stop.wait(0.5):
                dead = [n for n, p in pods.items() if any(pr.poll() is not None for pr in p.processes.values())]
                if dead:
                    print(f"demo_cluster: container exited in {', '.join(dead)}; stopping", file=sys.stderr)
                    break
    finally:
        api.terminate()
        try:
            api.wait(5)
        except subprocess.TimeoutExpired:
            api.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
