#!/usr/bin/env python3
"""A whole fake cluster in one command: the test API server plus fakenode pods with traffic.

What it is for: `make demo` and end-to-end tests that need "a cluster with services talking
to each other" — podtrace then records a pod by name (`podtrace record -n demo frontend-0`)
exactly as on a real node. What it is not: anything but loopback processes in
kubelet-shaped cgroups (see fakenode.py) and an in-memory API server (tools/k8s-apiserver).

Default topology (namespace `demo`, every pod on this node, pod IPs on 127.0.1.0/24,
`--net` picks another /24; every pod labelled `app.kubernetes.io/part-of=podtrace-demo`):

  loadgen-0 (.12) ──GET /──► frontend-0 (.10:8080) ──GET /api  (W3C traceparent)──► backend-0 (.11:8080)
                                      │                                                  │ GET /query
                                      │                                                  ▼ (Splunk X-Request-ID/X-Span-ID)
                                      └──GET /stock (B3 multi X-B3-*)──► inventory-0 (.13:8080) ──GET /query (B3 single b3:)──► db-0 (.14:8080)

Services `frontend`, `backend`, `inventory`, `db` (cluster IPs 10.96.0.{10,11,13,14}) select
their pods by `app=<name>` and have EndpointSlices. backend answers HTTP 500 to every 20th
request (deterministic 5 %), which frontend turns into 502. Apps: tools/fakenode/demo_app.py.

  sudo python3 tools/fakenode/demo_cluster.py --dir /tmp/podtrace-demo [--rps 5] [--net 127.0.1]
      [--load-log FILE] [--load-wait FILE] [--spec spec.json]

prints one JSON line {"kubeconfig": ..., "node": ..., "selector": ..., "pods": {name: {uid, ip, pids,
cgroup_dirs}}} once everything runs, then waits for SIGINT/SIGTERM and tears everything down.
`--load-wait FILE` holds the load generator back until FILE exists (start recording first).
`--load-log FILE` makes the load generator log every request it made (trace id, span id,
times, status) as JSON lines. A --spec file has the shape of `default_spec()` (`{tools}` in
argv is replaced by this tools/ directory, `{python}` by the running interpreter, `{dir}` by --dir).
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


PART_OF = "app.kubernetes.io/part-of"
SELECTOR = f"{PART_OF}=podtrace-demo"


def default_spec(rps: float, net: str = "127.0.1", cluster_net: str = "10.96.0", load_log: str | None = None,
                 error_rate: float = 0.05, load_wait: str | None = None) -> dict:
    """The demo topology on pod IPs `net`.10-14 (see the module doc)."""
    app = ["{python}", "{tools}/fakenode/demo_app.py"]

    def server(name: str, last: int, upstreams: list[str], extra: list[str] | None = None) -> dict:
        ip = f"{net}.{last}"
        argv = app + ["--listen", f"{ip}:8080", "--name", name]
        for u in upstreams:
            argv += ["--upstream", u]
        return {"name": f"{name}-0", "labels": {"app": name, PART_OF: "podtrace-demo"}, "ip": ip,
                "containers": [{"name": name, "argv": argv + (extra or [])}],
                "expose": {"service": name, "port": 8080, "cluster_ip": f"{cluster_net}.{last}"}}

    load = app + ["--load", f"http://{net}.10:8080/", "--rps", str(rps)]
    if load_log:
        load += ["--log", load_log]
    if load_wait:
        load += ["--wait-for", load_wait]
    return {
        "namespace": "demo",
        "selector": SELECTOR,
        "pods": [
            server("db", 14, []),
            server("inventory", 13, [f"b3=http://{net}.14:8080/query"]),
            server("backend", 11, [f"splunk=http://{net}.14:8080/query"], ["--error-rate", str(error_rate)]),
            server("frontend", 10, [f"w3c=http://{net}.11:8080/api", f"b3multi=http://{net}.13:8080/stock"]),
            {"name": "loadgen-0", "labels": {"app": "loadgen", PART_OF: "podtrace-demo"}, "ip": f"{net}.12",
             "containers": [{"name": "loadgen", "argv": load}]},
        ],
    }


def _expand(argv: list[str], d: str) -> list[str]:
    return [a.replace("{tools}", TOOLS).replace("{python}", sys.executable).replace("{dir}", d) for a in argv]



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
    ap.add_argument("--spec", help="JSON topology (default: the demo shop, see above)")
    ap.add_argument("--rps", type=float, default=5.0, help="load generator requests per second (default spec)")
    ap.add_argument("--net", default="127.0.1", help="first three octets of the pod IPs (default spec)")
    ap.add_argument("--load-log", help="the load generator logs every request here (default spec)")
    ap.add_argument("--load-wait", metavar="FILE", help="the load generator starts once FILE exists (default spec)")
    ap.add_argument("--error-rate", type=float, default=0.05, help="backend's fraction of HTTP 500 (default spec)")
    ap.add_argument("--driver", choices=["systemd", "cgroupfs"], default="systemd")
    ap.add_argument("--node-name", help="spec.nodeName of the pods (default: hostname)")
    args = ap.parse_args(argv)
    if args.spec:
        with open(args.spec) as fh:
            spec = json.load(fh)
    else:
        spec = default_spec(args.rps, args.net, load_log=args.load_log and os.path.abspath(args.load_log),
                            error_rate=args.error_rate, load_wait=args.load_wait and os.path.abspath(args.load_wait))

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
                containers = [fakenode.Container(c["name"], _expand(c["argv"], args.dir), c.get("env")) for c in p["containers"]]
                pod = node.start_pod(ns, p["name"], containers, p.get("labels"), p["ip"], qos=p.get("qos", "besteffort"))
                pods[p["name"]] = pod
                if p.get("expose"):
                    e = p["expose"]
                    node.expose(e["service"], [pod], e["port"], e.get("target_port"), e.get("cluster_ip"))
            print(json.dumps({"kubeconfig": ready["kubeconfig"], "url": ready["url"], "node": node.node_name,
                              "namespace": ns, "selector": spec.get("selector"),
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
