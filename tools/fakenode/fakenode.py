#!/usr/bin/env python3
"""A fake kubelet node for podtrace's tests and demo.

What it is for: putting real processes where a kubelet would put a pod's containers, so the
recorder's pod targeting (API server → pod UID and container IDs → cgroup directories →
cgroup ids) runs end to end on a machine without Kubernetes. What it is not: a container
runtime. There are no namespaces, images or isolation; the "containers" are plain child
processes placed in kubelet-shaped cgroup v2 directories.

For each pod it:
  1. creates the cgroup v2 directories under the v2 mount (found in /proc/self/mountinfo):
     systemd driver (default):
       kubepods.slice/kubepods-<qos>.slice/kubepods-<qos>-pod<uid with _>.slice/cri-containerd-<id>.scope
       (guaranteed QoS: kubepods.slice/kubepods-pod<uid with _>.slice/...)
     cgroupfs driver:
       kubepods/<qos>/pod<uid>/<id>      (guaranteed: kubepods/pod<uid>/<id>)
  2. starts each container's command with its pid written to the container directory's
     `cgroup.procs` before exec (so the process never runs outside it);
  3. builds the Pod object (status.phase Running, podIP, spec.nodeName = this node,
     containerStatuses with containerd://<id>, optional ownerReferences) and PUTs it to the
     test API server's control API (tools/k8s-apiserver);
  4. on stop (or exit, or SIGINT/SIGTERM in the CLI): kills the processes, deletes the Pod
     from the API server, removes the cgroup directories bottom-up.

Module API (from test scripts):
    from fakenode import FakeNode, Container
    with FakeNode(kubeconfig="…/kubeconfig") as node:
        pod = node.start_pod("demo", "web", [Container("web", ["python3", "-m", "http.server"])],
                             labels={"app": "web"}, ip="127.0.1.5")
        pod.uid, pod.container_ids, pod.cgroup_dirs, pod.pids, pod.object
        node.expose("web", [pod], port=80, target_port=8080, cluster_ip="10.96.0.10")
CLI:
    fakenode.py --kubeconfig K pod -n demo --name web -l app=web --ip 127.0.1.5 -- CMD ARGS...
    fakenode.py pod ... --container 'sidecar=sleep 1000' --container 'web=python3 -m http.server'
    fakenode.py pod ... --expose web:80:8080:10.96.0.10    (+ a Service and its EndpointSlice)
  prints one JSON line describing the pod once it runs, then waits until SIGINT/SIGTERM or
  until every container process exited. `--no-api` skips the API server.

Needs root (cgroup writes). Python 3.11 standard library only.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import datetime as dt
import errno
import json
import os
import secrets
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field

QOS_CLASSES = ("guaranteed", "burstable", "besteffort")


# --------------------------------------------------------------------------------------
# cgroup v2 mount and layouts
# --------------------------------------------------------------------------------------


def _unescape_mountinfo(s: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo octal."""
    out, i = "", 0
    while i < len(s):
        if s[i] == "\\" and i + 3 < len(s) + 1 and s[i + 1:i + 4].isdigit():
            out += chr(int(s[i + 1:i + 4], 8))
            i += 4
        else:
            out += s[i]
            i += 1
    return out


def cgroup2_mount(mountinfo: str = "/proc/self/mountinfo") -> str:
    """The mount point of the cgroup v2 (unified) hierarchy; RuntimeError if there is none."""
    v1 = []
    with open(mountinfo) as f:
        for line in f:
            fields = line.split()
            try:
                sep = fields.index("-")
            except ValueError:
                continue
            fstype = fields[sep + 1]
            if fstype == "cgroup2":
                return _unescape_mountinfo(fields[4])
            if fstype == "cgroup":
                v1.append(_unescape_mountinfo(fields[4]))
    raise RuntimeError("no cgroup v2 mount in %s (cgroup v1 hierarchies: %s); fakenode needs cgroup v2"
                       % (mountinfo, ", ".join(v1) or "none"))


def pod_dir_parts(driver: str, qos: str, uid: str) -> list[str]:
    """Directory names from the cgroup root down to the pod's directory, as the kubelet makes them."""
    if qos not in QOS_CLASSES:
        raise ValueError(f"unknown QoS class {qos!r} (one of {', '.join(QOS_CLASSES)})")
    if driver == "systemd":
        u = uid.replace("-", "_")
        if qos == "guaranteed":
            return ["kubepods.slice", f"kubepods-pod{u}.slice"]
        return ["kubepods.slice", f"kubepods-{qos}.slice", f"kubepods-{qos}-pod{u}.slice"]
    if driver == "cgroupfs":
        if qos == "guaranteed":
            return ["kubepods", f"pod{uid}"]
        return ["kubepods", qos, f"pod{uid}"]
    raise ValueError(f"unknown cgroup driver {driver!r} (systemd or cgroupfs)")


def container_dir_name(driver: str, container_id: str) -> str:
    return f"cri-containerd-{container_id}.scope" if driver == "systemd" else container_id


def new_container_id() -> str:
    return secrets.token_hex(32)


# --------------------------------------------------------------------------------------
# API server client (control API of tools/k8s-apiserver)
# --------------------------------------------------------------------------------------


class ApiClient:
    """Talks to the test API server's control API using a kubeconfig's server, CA and token."""

    def __init__(self, kubeconfig: str):
        with open(kubeconfig) as f:
            cfg = json.load(f)  # the test API server writes its kubeconfig as JSON
        ctx_name = cfg.get("current-context")
        ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
        user = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])
        self.server = cluster["server"].rstrip("/")
        self.token = user.get("token", "")
        self.ssl = ssl.create_default_context()
        if "certificate-authority-data" in cluster:
            self.ssl.load_verify_locations(cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
        elif "certificate-authority" in cluster:
            self.ssl.load_verify_locations(cafile=cluster["certificate-authority"])

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, context=self.ssl, timeout=10) as resp:
                return json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")
            raise RuntimeError(f"API server {method} {path}: HTTP {e.code}: {detail}") from None

    def put(self, obj: dict) -> dict:
        return self._call("PUT", "/_control/objects", obj)

    def delete(self, obj: dict) -> dict:
        return self._call("DELETE", "/_control/objects", obj)


# --------------------------------------------------------------------------------------
# Pods
# --------------------------------------------------------------------------------------


@dataclass
class Container:
    """One container: a name and the command to run (argv)."""

    name: str
    argv: list[str]
    env: dict[str, str] | None = None


@dataclass
class Pod:
    """A running fake pod."""

    namespace: str
    name: str
    uid: str
    ip: str
    labels: dict[str, str]
    pod_dir: str
    container_ids: dict[str, str]  # container name -> 64-hex id
    cgroup_dirs: dict[str, str]  # container name -> cgroup directory
    processes: dict[str, subprocess.Popen]
    object: dict
    created_dirs: list[str] = field(default_factory=list)

    @property
    def pids(self) -> dict[str, int]:
        return {n: p.pid for n, p in self.processes.items()}


def _move_self_to(procs_file: str):
    """Runs in the child between fork and exec: join the container's cgroup."""
    with open(procs_file, "w") as f:
        f.write(str(os.getpid()))


def _rfc3339(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeNode:
    """A fake kubelet: starts pods' processes in kubelet-shaped cgroups and reports them."""

    def __init__(self, kubeconfig: str | None = None, node_name: str | None = None, driver: str = "systemd",
                 cgroup_root: str | None = None):
        if driver not in ("systemd", "cgroupfs"):
            raise ValueError(f"unknown cgroup driver {driver!r} (systemd or cgroupfs)")
        self.driver = driver
        self.node_name = node_name or socket.gethostname().lower()
        self.cgroup_root = cgroup_root or cgroup2_mount()
        self.api = ApiClient(kubeconfig) if kubeconfig else None
        self.pods: list[Pod] = []
        self.published: list[dict] = []  # Services / EndpointSlices to delete on close()
        self._lock = threading.Lock()
        atexit.register(self.close)  # a test script that forgets close() still cleans up

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ---- start ------------------------------------------------------------------------
    def start_pod(self, namespace: str, name: str, containers: list[Container], labels: dict | None = None,
                  ip: str = "127.0.1.1", uid: str | None = None, qos: str = "besteffort",
                  owner: dict | None = None, annotations: dict | None = None) -> Pod:
        """Creates the pod's cgroups, starts its containers, pushes the Pod to the API server."""
        if not containers:
            raise ValueError("a pod needs at least one container")
        uid = uid or str(uuid.uuid4())
        labels = dict(labels or {})
        parts = pod_dir_parts(self.driver, qos, uid)
        created: list[str] = []
        path = self.cgroup_root
        for part in parts:
            path = os.path.join(path, part)
            if self._mkdir(path):
                created.append(path)
        pod_dir = path
        pod = Pod(namespace, name, uid, ip, labels, pod_dir, {}, {}, {}, {}, created)
        try:
            for c in containers:
                cid = new_container_id()
                cdir = os.path.join(pod_dir, container_dir_name(self.driver, cid))
                self._mkdir(cdir)
                created.append(cdir)
                pod.container_ids[c.name] = cid
                pod.cgroup_dirs[c.name] = cdir
                env = dict(os.environ)
                env.update({"POD_NAME": name, "POD_NAMESPACE": namespace, "POD_IP": ip, "POD_UID": uid})
                env.update(c.env or {})
                procs = os.path.join(cdir, "cgroup.procs")
                pod.processes[c.name] = subprocess.Popen(
                    c.argv, env=env, stdin=subprocess.DEVNULL, start_new_session=True,
                    preexec_fn=lambda procs=procs: _move_self_to(procs))
            pod.object = self.pod_object(pod, containers, qos, owner, annotations)
            if self.api:
                pod.object = self.api.put(pod.object)
        except BaseException:
            self._teardown(pod, delete_from_api=False)
            raise
        with self._lock:
            self.pods.append(pod)
        return pod

    def pod_object(self, pod: Pod, containers: list[Container], qos: str, owner: dict | None,
                   annotations: dict | None) -> dict:
        """The Pod object as a kubelet + scheduler would report it once running."""
        now = _rfc3339(time.time())
        qos_name = {"guaranteed": "Guaranteed", "burstable": "Burstable", "besteffort": "BestEffort"}[qos]
        meta = {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid, "labels": pod.labels,
                "creationTimestamp": now}
        if annotations:
            meta["annotations"] = annotations
        if owner:
            meta["ownerReferences"] = [dict({"controller": True, "blockOwnerDeletion": True}, **owner)]
        statuses = []
        for c in containers:
            statuses.append({
                "name": c.name, "ready": True, "started": True, "restartCount": 0,
                "image": f"podtrace.local/fake/{c.name}:latest",
                "imageID": "sha256:" + "0" * 64,
                "containerID": f"containerd://{pod.container_ids[c.name]}",
                "state": {"running": {"startedAt": now}},
            })
        conds = [{"type": t, "status": "True", "lastTransitionTime": now}
                 for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")]
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": meta,
            "spec": {
                "nodeName": self.node_name,
                "containers": [{"name": c.name, "image": f"podtrace.local/fake/{c.name}:latest",
                                "command": c.argv} for c in containers],
                "restartPolicy": "Always",
            },
            "status": {
                "phase": "Running",
                "conditions": conds,
                "hostIP": "127.0.0.1",
                "podIP": pod.ip,
                "podIPs": [{"ip": pod.ip}],
                "startTime": now,
                "qosClass": qos_name,
                "containerStatuses": statuses,
            },
        }

    # ---- services -----------------------------------------------------------------------
    def expose(self, name: str, pods: list[Pod], port: int, target_port: int | None = None,
               cluster_ip: str | None = None, protocol: str = "TCP") -> tuple[dict, dict]:
        """Publishes a Service selecting `pods` and the EndpointSlice an endpoint controller
        would write for it (ready endpoints at the pods' IPs). Removed again by close()."""
        if not pods:
            raise ValueError("expose needs at least one pod")
        ns = pods[0].namespace
        if any(p.namespace != ns for p in pods):
            raise ValueError("a Service's pods share its namespace")
        target_port = target_port or port
        selector = dict(pods[0].labels)
        svc = {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns, "uid": str(uuid.uuid4()), "labels": {"app": name}},
            "spec": {"type": "ClusterIP", "clusterIP": cluster_ip or "None", "clusterIPs": [cluster_ip or "None"],
                     "selector": selector,
                     "ports": [{"name": "main", "port": port, "targetPort": target_port, "protocol": protocol}]},
            "status": {"loadBalancer": {}},
        }
        eps = {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{name}-{secrets.token_hex(3)}", "namespace": ns, "uid": str(uuid.uuid4()),
                         "labels": {"kubernetes.io/service-name": name,
                                    "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": name,
                                              "uid": svc["metadata"]["uid"], "controller": True,
                                              "blockOwnerDeletion": True}]},
            "addressType": "IPv4",
            "ports": [{"name": "main", "port": target_port, "protocol": protocol}],
            "endpoints": [{"addresses": [p.ip], "conditions": {"ready": True, "serving": True, "terminating": False},
                           "nodeName": self.node_name,
                           "targetRef": {"kind": "Pod", "namespace": p.namespace, "name": p.name, "uid": p.uid}}
                          for p in pods],
        }
        if self.api:
            svc, eps = self.api.put(svc), self.api.put(eps)
        with self._lock:
            self.published.extend([eps, svc])
        return svc, eps

    # ---- stop -------------------------------------------------------------------------
    def stop_pod(self, pod: Pod, timeout: float = 5.0):
        """Kills the pod's processes, deletes it from the API server, removes its cgroups."""
        with self._lock:
            if pod in self.pods:
                self.pods.remove(pod)
        self._teardown(pod, delete_from_api=True, timeout=timeout)

    def close(self):
        """Stops every pod this node started."""
        with self._lock:
            pods, self.pods = self.pods, []
            published, self.published = self.published, []
        for obj in published:
            if self.api:
                try:
                    self.api.delete(obj)
                except (RuntimeError, OSError) as e:
                    print(f"fakenode: deleting {obj['kind']} {obj['metadata']['name']}: {e}", file=sys.stderr)
        for pod in reversed(pods):
            self._teardown(pod, delete_from_api=True)

    def _teardown(self, pod: Pod, delete_from_api: bool, timeout: float = 5.0):
        for proc in pod.processes.values():
            _kill_group(proc, timeout)
        # anything else that ended up in the pod's cgroups (children that left the group)
        for d in pod.cgroup_dirs.values():
            _kill_cgroup_members(d)
        if delete_from_api and self.api and pod.object:
            try:
                self.api.delete(pod.object)
            except (RuntimeError, OSError) as e:
                print(f"fakenode: deleting pod {pod.namespace}/{pod.name}: {e}", file=sys.stderr)
        for d in sorted(pod.created_dirs, key=lambda p: p.count(os.sep), reverse=True):
            _rmdir_retry(d)

    @staticmethod
    def _mkdir(path: str) -> bool:
        """mkdir; True when this call created it, False when it already existed."""
        for _ in range(20):
            try:
                os.mkdir(path)
                return True
            except FileExistsError:
                return False
            except FileNotFoundError:
                # a parent was removed by a concurrent teardown: recreate it
                os.makedirs(os.path.dirname(path), exist_ok=True)
        raise OSError(errno.ENOENT, "could not create cgroup directory", path)


def _kill_group(proc: subprocess.Popen, timeout: float):
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _kill_cgroup_members(cdir: str):
    try:
        with open(os.path.join(cdir, "cgroup.procs")) as f:
            pids = [int(x) for x in f.read().split()]
    except OSError:
        return
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        try:
            with open(os.path.join(cdir, "cgroup.procs")) as f:
                if not f.read().split():
                    return
        except OSError:
            return
        time.sleep(0.02)


def _rmdir_retry(d: str):
    """rmdir a cgroup: EBUSY right after the last process exits is transient; ENOTEMPTY means shared."""
    for _ in range(50):
        try:
            os.rmdir(d)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno == errno.EBUSY:
                time.sleep(0.02)
                continue
            return  # ENOTEMPTY: another pod still uses this parent


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------


def _parse_kv(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for it in items or []:
        k, sep, v = it.partition("=")
        if not sep or not k:
            raise SystemExit(f"fakenode: bad {what} {it!r} (want key=value)")
        out[k] = v
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="fake kubelet node for podtrace tests")
    ap.add_argument("--kubeconfig", help="kubeconfig of the test API server (omit with --no-api)")
    ap.add_argument("--no-api", action="store_true", help="do not push the Pod to an API server")
    ap.add_argument("--node-name", help="spec.nodeName (default: hostname)")
    ap.add_argument("--driver", choices=["systemd", "cgroupfs"], default="systemd", help="kubelet cgroup driver")
    ap.add_argument("--cgroup-root", help="cgroup v2 directory to build kubepods under (default: the v2 mount)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pod", help="run one pod until SIGINT/SIGTERM")
    p.add_argument("-n", "--namespace", default="default")
    p.add_argument("--name", required=True)
    p.add_argument("--uid")
    p.add_argument("-l", "--label", action="append", default=[], help="key=value (repeatable)")
    p.add_argument("--ip", default="127.0.1.1", help="pod IP (a loopback address)")
    p.add_argument("--qos", choices=QOS_CLASSES, default="besteffort")
    p.add_argument("--owner", help="Kind/name of a controller owner, e.g. ReplicaSet/web-5d9c")
    p.add_argument("--container", action="append", default=[], help="'name=command line' (repeatable)")
    p.add_argument("--expose", metavar="SVC:PORT[:TARGETPORT[:CLUSTERIP]]",
                   help="also publish a Service and its EndpointSlice for this pod")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- command of a container named after the pod")
    args = ap.parse_args(argv)

    if not args.no_api and not args.kubeconfig:
        ap.error("--kubeconfig is required (or --no-api)")
    containers = []
    for spec in args.container:
        cname, sep, cmd = spec.partition("=")
        if not sep or not cname or not cmd.strip():
            ap.error(f"bad --container {spec!r} (want 'name=command line')")
        containers.append(Container(cname, shlex.split(cmd)))
    cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
    if cmd:
        containers.append(Container(args.name, cmd))
    if not containers:
        ap.error("give a command after -- or at least one --container")
    owner = None
    if args.owner:
        kind, _, oname = args.owner.partition("/")
        owner = {"apiVersion": "apps/v1", "kind": kind, "name": oname, "uid": str(uuid.uuid4())}

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    node = FakeNode(None if args.no_api else args.kubeconfig, args.node_name, args.driver, args.cgroup_root)
    with node:
        pod = node.start_pod(args.namespace, args.name, containers, _parse_kv(args.label, "label"), args.ip,
                             args.uid, args.qos, owner)
        if args.expose:
            parts = args.expose.split(":")
            if len(parts) < 2 or not parts[1].isdigit() or (len(parts) > 2 and not parts[2].isdigit()):
                ap.error(f"bad --expose {args.expose!r} (want SVC:PORT[:TARGETPORT[:CLUSTERIP]])")
            node.expose(parts[0], [pod], int(parts[1]), int(parts[2]) if len(parts) > 2 else None,
                        parts[3] if len(parts) > 3 else None)
        print(json.dumps({"namespace": pod.namespace, "name": pod.name, "uid": pod.uid, "ip": pod.ip,
                          "node": node.node_name, "pod_dir": pod.pod_dir, "container_ids": pod.container_ids,
                          "cgroup_dirs": pod.cgroup_dirs, "pids": pod.pids}), flush=True)
        while not stop.wait(0.2):
            if all(p.poll() is not None for p in pod.processes.values()):
                break
    return 0


if __name__ == "__main__":
    sys.exit(main())
