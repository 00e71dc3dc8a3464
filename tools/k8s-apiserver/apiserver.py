#!/usr/bin/env python3
"""A small but faithful HTTPS Kubernetes API server for podtrace's tests and demo.

What it is for: letting real Kubernetes clients (the preinstalled `kubectl`, kube-rs in
podtrace's recorder) list, get and watch Pods, Services, EndpointSlices (plus Nodes and
Namespaces) without a cluster. What it is not: a cluster. It stores objects in memory,
never runs anything, and only accepts writes through a small control API.

Served (JSON only; protobuf is never offered, clients fall back to JSON):
  GET /version, /api, /api/v1, /apis, /apis/discovery.k8s.io, /apis/discovery.k8s.io/v1
      (aggregated discovery `apidiscovery.k8s.io/v2` (or v2beta1) on /api and /apis when the
      Accept header asks for it, as kubectl >= 1.26 does; the legacy documents otherwise)
  GET list / get / watch of every served resource, cluster-wide and per namespace:
      labelSelector (=, ==, !=, in, notin, exists, !exists), fieldSelector
      (metadata.name, metadata.namespace, spec.nodeName, status.phase; =, ==, !=),
      limit + continue, resourceVersion on lists and objects, watch as chunked JSON lines
      (ADDED/MODIFIED/DELETED, BOOKMARK with allowWatchBookmarks, 410 Gone for a too-old
      resourceVersion, sendInitialEvents streaming lists), `Table` output when the client
      asks for `as=Table` (kubectl get), timeoutSeconds.
  Control API (same bearer token), which changes state and emits watch events:
      PUT    /_control/objects   body: an object or a v1 List — create or replace
      POST   /_control/objects   body: an object or a v1 List — create (409 if it exists)
      DELETE /_control/objects   body: an object (apiVersion, kind, metadata.namespace/name)
                                 or query ?apiVersion=v1&kind=Pod&namespace=N&name=X
      GET    /_control/objects   every stored object as a v1 List
      POST   /_control/watches   body {"paused": true|false}: true ends every open watch and
                                 refuses new ones (503) until false — a lost connection
      POST   /_control/compact   forgets the event history (etcd compaction): watches from an
                                 older resourceVersion then get 410 Gone and must re-list

Start-up: creates a CA and a leaf certificate (CA:FALSE, SAN IP:127.0.0.1, DNS:localhost)
with the `openssl` CLI in --dir, binds 127.0.0.1:--port (0 = any free port), writes
<dir>/kubeconfig (JSON, which is valid YAML: kubectl and kube-rs both read it) with a
bearer token, then prints one JSON line on stdout:
  {"ready": true, "port": P, "url": "https://127.0.0.1:P", "kubeconfig": "...", "ca": "...",
   "token": "..."}
Stops on SIGINT/SIGTERM.

With --allowed-namespaces a,b the token acts like a namespace-scoped Role: cluster-wide and
other-namespace reads are 403 Forbidden with kube-apiserver's RBAC message.

Usage: apiserver.py --dir DIR [--state objects.json] [--port 0] [--token T] [--allowed-namespaces a,b]
Python 3.11 standard library only (+ the openssl command for the certificates).
"""

from __future__ import annotations

import argparse
import base64
import copy
import datetime as dt
import json
import os
import re
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

SERVER_VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-podtrace",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-11-01T00:00:00Z",
    "goVersion": "go1.23.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}


# --------------------------------------------------------------------------------------
# Resources
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resource:
    """One served resource type (what discovery advertises)."""

    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def discovery(self) -> dict:
        doc = {
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": ["get", "list", "watch"],
        }
        if self.short_names:
            doc["shortNames"] = list(self.short_names)
        if self.categories:
            doc["categories"] = list(self.categories)
        return doc


RESOURCES = [
    Resource("", "v1", "pods", "pod", "Pod", True, ("po",), ("all",)),
    Resource("", "v1", "services", "service", "Service", True, ("svc",), ("all",)),
    Resource("", "v1", "namespaces", "namespace", "Namespace", False, ("ns",)),
    Resource("", "v1", "nodes", "node", "Node", False, ("no",)),
    Resource("discovery.k8s.io", "v1", "endpointslices", "endpointslice", "EndpointSlice", True),
]
BY_PATH = {(r.group, r.version, r.plural): r for r in RESOURCES}
BY_KIND = {(r.api_version, r.kind): r for r in RESOURCES}
GROUPS = {"discovery.k8s.io": ["v1"]}


class ApiError(Exception):
    """An error answered as a Kubernetes `Status` object."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self) -> dict:
        doc = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            doc["details"] = self.details
        return doc


# --------------------------------------------------------------------------------------
# Selectors
# --------------------------------------------------------------------------------------


def _split_top(s: str) -> list[str]:
    """Splits a selector on commas that are not inside parentheses."""
    out, depth, cur = [], 0, ""
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [p.strip() for p in out if p.strip()]


_SET_RE = re.compile(r"^([^\s!=()]+)\s+(in|notin)\s+\(([^)]*)\)$")
_EQ_RE = re.compile(r"^([^\s!=()]+)\s*(==|=|!=)\s*([^\s,()]*)$")
_KEY_RE = re.compile(r"^(!?)\s*([^\s!=()]+)$")


def parse_label_selector(s: str):
    """Returns a predicate over a labels dict; raises ApiError(400) on bad syntax."""
    reqs = []
    for part in _split_top(s or ""):
        m = _SET_RE.match(part)
        if m:
            key, op, vals = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",") if v.strip()}
            reqs.append((key, op, vals))
            continue
        m = _EQ_RE.match(part)
        if m:
            key, op, val = m.group(1), m.group(2), m.group(3)
            reqs.append((key, "!=" if op == "!=" else "=", {val}))
            continue
        m = _KEY_RE.match(part)
        if m:
            reqs.append((m.group(2), "!exists" if m.group(1) else "exists", set()))
            continue
        raise ApiError(400, "BadRequest", f"unable to parse requirement: {part!r}")

    def pred(labels: dict) -> bool:
        for key, op, vals in reqs:
            present = key in labels
            val = labels.get(key)
            if op == "=" and not (present and val in vals):
                return False
            if op == "!=" and present and val in vals:
                return False
            if op == "in" and not (present and val in vals):
                return False
            if op == "notin" and present and val in vals:
                return False
            if op == "exists" and not present:
                return False
            if op == "!exists" and present:
                return False
        return True

    return pred


FIELDS = {
    "metadata.name": lambda o: o.get("metadata", {}).get("name", ""),
    "metadata.namespace": lambda o: o.get("metadata", {}).get("namespace", ""),
    "spec.nodeName": lambda o: (o.get("spec") or {}).get("nodeName", ""),
    "status.phase": lambda o: (o.get("status") or {}).get("phase", ""),
}


def parse_field_selector(s: str):
    """Returns a predicate over an object; raises ApiError(400) on an unknown field."""
    reqs = []
    for part in _split_top(s or ""):
        m = re.match(r"^([^\s!=]+)\s*(==|=|!=)\s*(.*)$", part)
        if not m:
            raise ApiError(400, "BadRequest", f"invalid selector: {part!r}")
        field, op, val = m.groups()
        if field not in FIELDS:
            raise ApiError(400, "BadRequest", f'field label not supported: "{field}"')
        reqs.append((FIELDS[field], op != "!=", val))

    def pred(obj: dict) -> bool:
        return all((get(obj) == val) == want for get, want, val in reqs)

    return pred


# --------------------------------------------------------------------------------------
# Store with an event log (the watch cache)
# --------------------------------------------------------------------------------------


@dataclass
class Event:
    rv: int
    type: str  # ADDED / MODIFIED / DELETED
    resource: Resource
    old: dict | None
    new: dict  # for DELETED: the object as deleted (with the deletion's resourceVersion)


def now_rfc3339() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Store:
    """Objects by (resource, namespace, name), a global resourceVersion and an event log."""

    def __init__(self):
        self.lock = threading.Condition()
        self.rv = 100
        self.objects: dict[tuple[Resource, str, str], dict] = {}
        self.events: list[Event] = []
        self.compacted_rv = 0  # watches from an older resourceVersion get 410 Gone
        self.watch_epoch = 0  # bumped to end every open watch
        self.watches_paused = False  # new watches get 503 while set

    def resource_of(self, obj: dict) -> Resource:
        key = (obj.get("apiVersion", ""), obj.get("kind", ""))
        res = BY_KIND.get(key)
        if res is None:
            raise ApiError(400, "BadRequest", f"unsupported apiVersion/kind {key[0]}/{key[1]}")
        return res

    def _key(self, res: Resource, obj: dict) -> tuple[Resource, str, str]:
        meta = obj.get("metadata") or {}
        name = meta.get("name")
        if not name:
            raise ApiError(422, "Invalid", f"{res.kind}: metadata.name is required")
        ns = meta.get("namespace", "") if res.namespaced else ""
        if res.namespaced and not ns:
            ns = "default"
        return (res, ns, name)

    def put(self, obj: dict, create_only: bool = False) -> dict:
        """Creates or replaces an object; emits ADDED or MODIFIED."""
        if not isinstance(obj, dict):
            raise ApiError(400, "BadRequest", "object must be a JSON object")
        res = self.resource_of(obj)
        with self.lock:
            key = self._key(res, obj)
            old = self.objects.get(key)
            if old is not None and create_only:
                raise ApiError(409, "AlreadyExists", f'{res.plural} "{key[2]}" already exists',
                               {"name": key[2], "kind": res.plural})
            new = copy.deepcopy(obj)
            meta = new.setdefault("metadata", {})
            if res.namespaced:
                meta["namespace"] = key[1]
            else:
                meta.pop("namespace", None)
            if old is not None:
                meta["uid"] = old["metadata"]["uid"]
                meta["creationTimestamp"] = old["metadata"]["creationTimestamp"]
            else:
                meta.setdefault("uid", str(uuid.uuid4()))
                meta.setdefault("creationTimestamp", now_rfc3339())
            self.rv += 1
            meta["resourceVersion"] = str(self.rv)
            self.objects[key] = new
            self.events.append(Event(self.rv, "MODIFIED" if old else "ADDED", res, old, new))
            if res.namespaced:
                self.ensure_namespace(key[1])
            self.lock.notify_all()
            return copy.deepcopy(new)

    def ensure_namespace(self, ns: str):
        """Namespaced objects imply their Namespace (kubectl checks it on NotFound)."""
        res = BY_KIND[("v1", "Namespace")]
        with self.lock:
            if (res, "", ns) in self.objects:
                return
            self.rv += 1
            obj = {"apiVersion": "v1", "kind": "Namespace",
                   "metadata": {"name": ns, "uid": str(uuid.uuid4()), "creationTimestamp": now_rfc3339(),
                                "resourceVersion": str(self.rv),
                                "labels": {"kubernetes.io/metadata.name": ns}},
                   "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}
            self.objects[(res, "", ns)] = obj
            self.events.append(Event(self.rv, "ADDED", res, None, obj))
            self.lock.notify_all()

    def delete(self, res: Resource, ns: str, name: str) -> dict:
        with self.lock:
            key = (res, ns if res.namespaced else "", name)
            old = self.objects.pop(key, None)
            if old is None:
                raise ApiError(404, "NotFound", f'{res.plural} "{name}" not found',
                               {"name": name, "kind": res.plural})
            self.rv += 1
            gone = copy.deepcopy(old)
            gone["metadata"]["resourceVersion"] = str(self.rv)
            self.events.append(Event(self.rv, "DELETED", res, old, gone))
            self.lock.notify_all()
            return copy.deepcopy(gone)

    def snapshot(self, res: Resource, ns: str | None) -> tuple[int, list[dict]]:
        """Objects of a resource (in one namespace or all), sorted, and the current RV."""
        with self.lock:
            items = [copy.deepcopy(o) for (r, n, _), o in self.objects.items()
                     if r == res and (ns is None or n == ns)]
            rv = self.rv
        items.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        return rv, items

    def get(self, res: Resource, ns: str, name: str) -> dict:
        with self.lock:
            obj = self.objects.get((res, ns if res.namespaced else "", name))
            if obj is None:
                raise ApiError(404, "NotFound", f'{res.plural} "{name}" not found',
                               {"name": name, "kind": res.plural})
            return copy.deepcopy(obj)

    def all_objects(self) -> list[dict]:
        with self.lock:
            return [copy.deepcopy(o) for o in self.objects.values()]

    def first_rv(self) -> int:
        """The oldest resourceVersion a watch may start from."""
        with self.lock:
            first = self.events[0].rv - 1 if self.events else self.rv
            return max(first, self.compacted_rv)

    def compact(self) -> int:
        """Forgets the event history up to now, as etcd compaction does."""
        with self.lock:
            self.compacted_rv = self.rv
            self.events = []
            self.watch_epoch += 1  # open watches hold positions in the old history: end them
            self.lock.notify_all()
            return self.rv

    def set_watches_paused(self, paused: bool):
        """Ends every open watch; while paused, new watch requests are refused (503)."""
        with self.lock:
            self.watches_paused = paused
            if paused:
                self.watch_epoch += 1
            self.lock.notify_all()


# --------------------------------------------------------------------------------------
# Table output (what `kubectl get` prints)
# --------------------------------------------------------------------------------------


def human_duration(seconds: float) -> str:
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        sec = s % 60
        return f"{minutes}m" if sec == 0 else f"{minutes}m{sec}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        d = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if d == 0 else f"{hours // 24 // 365}y{d}d"
    return f"{hours // 24 // 365}y"


def age(obj: dict) -> str:
    ts = (obj.get("metadata") or {}).get("creationTimestamp")
    if not ts:
        return "<unknown>"
    try:
        created = dt.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        return "<unknown>"
    return human_duration((dt.datetime.now(dt.timezone.utc) - created).total_seconds())


def col(name: str, typ: str = "string", fmt: str = "", priority: int = 0, desc: str = "") -> dict:
    return {"name": name, "type": typ, "format": fmt, "description": desc or name, "priority": priority}


def pod_row(o: dict) -> list:
    spec, status = o.get("spec") or {}, o.get("status") or {}
    cstat = status.get("containerStatuses") or []
    total = len(spec.get("containers") or []) or len(cstat)
    ready = sum(1 for c in cstat if c.get("ready"))
    restarts = sum(int(c.get("restartCount") or 0) for c in cstat)
    reason = status.get("reason") or status.get("phase") or "Unknown"
    for c in cstat:
        st = c.get("state") or {}
        if "waiting" in st and st["waiting"].get("reason"):
            reason = st["waiting"]["reason"]
        elif "terminated" in st and st["terminated"].get("reason"):
            reason = st["terminated"]["reason"]
    if (o.get("metadata") or {}).get("deletionTimestamp"):
        reason = "Terminating"
    return [o["metadata"]["name"], f"{ready}/{total}", reason, str(restarts), age(o),
            status.get("podIP") or "<none>", spec.get("nodeName") or "<none>", "<none>", "<none>"]


def svc_ports(spec: dict) -> str:
    out = []
    for p in spec.get("ports") or []:
        proto = p.get("protocol", "TCP")
        if p.get("nodePort"):
            out.append(f"{p.get('port')}:{p['nodePort']}/{proto}")
        else:
            out.append(f"{p.get('port')}/{proto}")
    return ",".join(out) or "<none>"


def svc_row(o: dict) -> list:
    spec = o.get("spec") or {}
    sel = spec.get("selector") or {}
    ext = spec.get("externalIPs") or []
    return [o["metadata"]["name"], spec.get("type", "ClusterIP"), spec.get("clusterIP") or "<none>",
            ",".join(ext) or "<none>", svc_ports(spec), age(o),
            ",".join(f"{k}={v}" for k, v in sorted(sel.items())) or "<none>"]


def eps_row(o: dict) -> list:
    ports = o.get("ports")
    if ports is None:
        ports_s = "<unset>"
    else:
        ports_s = ",".join(str(p["port"]) if p.get("port") is not None else "<unset>" for p in ports) or "<none>"
    addrs = [a for e in (o.get("endpoints") or []) for a in (e.get("addresses") or [])]
    if not addrs:
        ends = "<none>"
    elif len(addrs) > 3:
        ends = ",".join(addrs[:3]) + f" + {len(addrs) - 3} more..."
    else:
        ends = ",".join(addrs)
    return [o["metadata"]["name"], o.get("addressType", ""), ports_s, ends, age(o)]


def node_row(o: dict) -> list:
    conds = (o.get("status") or {}).get("conditions") or []
    ready = next((c for c in conds if c.get("type") == "Ready"), None)
    status = "Ready" if ready and ready.get("status") == "True" else "NotReady" if ready else "Unknown"
    info = (o.get("status") or {}).get("nodeInfo") or {}
    return [o["metadata"]["name"], status, "<none>", age(o), info.get("kubeletVersion", "")]


def ns_row(o: dict) -> list:
    return [o["metadata"]["name"], ((o.get("status") or {}).get("phase") or "Active"), age(o)]


NAME_COL = col("Name", fmt="name", desc="Name must be unique within a namespace.")
TABLES = {
    "Pod": ([NAME_COL, col("Ready"), col("Status"), col("Restarts"), col("Age"), col("IP", priority=1),
             col("Node", priority=1), col("Nominated Node", priority=1), col("Readiness Gates", priority=1)],
            pod_row),
    "Service": ([NAME_COL, col("Type"), col("Cluster-IP"), col("External-IP"), col("Port(s)"), col("Age"),
                 col("Selector", priority=1)], svc_row),
    "EndpointSlice": ([NAME_COL, col("AddressType"), col("Ports"), col("Endpoints"), col("Age")], eps_row),
    "Node": ([NAME_COL, col("Status"), col("Roles"), col("Age"), col("Version")], node_row),
    "Namespace": ([NAME_COL, col("Status"), col("Age")], ns_row),
}


def table_row(obj: dict, include: str) -> dict:
    _, fn = TABLES[obj["kind"]]
    row = {"cells": fn(obj)}
    if include == "Object":
        row["object"] = obj
    elif include != "None":
        row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                         "metadata": obj.get("metadata", {})}
    return row


def to_table(objs: list[dict], kind: str, rv: str, include: str, cont: str | None, columns: bool = True) -> dict:
    cols, _ = TABLES[kind]
    meta = {"resourceVersion": rv}
    if cont:
        meta["continue"] = cont
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
            "columnDefinitions": cols if columns else [], "rows": [table_row(o, include) for o in objs]}


# --------------------------------------------------------------------------------------
# HTTP handler
# --------------------------------------------------------------------------------------


def aggregated_discovery_version(accept: str) -> str | None:
    """The aggregated discovery version the client accepts (v2 preferred), if any."""
    offered = []
    for part in (accept or "").split(","):
        params = dict(p.strip().split("=", 1) for p in part.split(";")[1:] if "=" in p)
        if params.get("g") == "apidiscovery.k8s.io" and params.get("as") == "APIGroupDiscoveryList":
            offered.append(params.get("v"))
    for v in ("v2", "v2beta1"):
        if v in offered:
            return v
    return None


def aggregated_discovery(legacy: bool, version: str) -> dict:
    """`/api` or `/apis` as an APIGroupDiscoveryList (what kubectl >= 1.26 asks for first)."""
    groups = [""] if legacy else list(GROUPS)
    items = []
    for g in groups:
        versions = []
        for v in (["v1"] if legacy else GROUPS[g]):
            resources = []
            for r in RESOURCES:
                if r.group != g or r.version != v:
                    continue
                doc = {"resource": r.plural, "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                       "scope": "Namespaced" if r.namespaced else "Cluster", "singularResource": r.singular,
                       "verbs": ["get", "list", "watch"]}
                if r.short_names:
                    doc["shortNames"] = list(r.short_names)
                if r.categories:
                    doc["categories"] = list(r.categories)
                resources.append(doc)
            versions.append({"version": v, "resources": resources, "freshness": "Current"})
        meta = {"creationTimestamp": None}
        if g:
            meta["name"] = g
        items.append({"metadata": meta, "versions": versions})
    return {"kind": "APIGroupDiscoveryList", "apiVersion": f"apidiscovery.k8s.io/{version}", "metadata": {},
            "items": items}


USER = "system:serviceaccount:podtrace:podtrace"  # who the token authenticates as (in 403 messages)

PUBLIC_PATHS = {"/version", "/healthz", "/readyz", "/livez"}


def wants_table(accept: str) -> bool:
    return any("as=Table" in part for part in (accept or "").split(","))


def first(q: dict, key: str, default: str | None = None) -> str | None:
    v = q.get(key)
    return v[0] if v else default


def truthy(v: str | None) -> bool:
    return v is not None and v.lower() in ("1", "true", "yes")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "podtrace-apiserver/1"
    disable_nagle_algorithm = True

    # quiet by default; --verbose turns request logs on
    def log_message(self, fmt, *args):  # noqa: N802 (stdlib name)
        if self.server.verbose:
            sys.stderr.write("apiserver: %s - %s\n" % (self.address_string(), fmt % args))

    # ---- plumbing ---------------------------------------------------------------------
    @property
    def store(self) -> Store:
        return self.server.store

    def send_json(self, code: int, doc: dict, ctype: str = "application/json"):
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.write(body)

    def send_error_status(self, err: ApiError):
        self.send_json(err.code, err.status())

    def read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            raw = self.read_chunked()
        else:
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n) if n else b""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except json.JSONDecodeError as e:
            raise ApiError(400, "BadRequest", f"invalid JSON body: {e}")

    def read_chunked(self) -> bytes:
        """Reads a `Transfer-Encoding: chunked` request body (kubectl --raw sends those)."""
        out = b""
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";")[0].strip() or b"0", 16)
            except ValueError:
                raise ApiError(400, "BadRequest", "bad chunked encoding")
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return out
            if len(out) + size > 64 << 20:
                raise ApiError(413, "RequestEntityTooLarge", "request body too large")
            out += self.rfile.read(size)
            self.rfile.readline(16)  # CRLF after the chunk

    def authorized(self) -> bool:
        auth = self.headers.get("Authorization", "")
        return secrets.compare_digest(auth.encode(), f"Bearer {self.server.token}".encode())

    def dispatch(self, method: str):
        try:
            url = urlsplit(self.path)
            # like system:public-info-viewer: version and health need no credentials
            if not self.authorized() and url.path not in PUBLIC_PATHS:
                raise ApiError(401, "Unauthorized", "Unauthorized")
            q = parse_qs(url.query, keep_blank_values=True)
            path = url.path.rstrip("/") or "/"
            if path == "/_control/objects":
                return self.control(method, q)
            if path == "/_control/compact" and method == "POST":
                self.read_body()
                return self.send_json(200, {"compactedResourceVersion": str(self.store.compact())})
            if path == "/_control/watches" and method == "POST":
                body = self.read_body() or {}
                self.store.set_watches_paused(bool(body.get("paused")))
                return self.send_json(200, {"paused": self.store.watches_paused})
            if method != "GET":
                raise ApiError(405, "MethodNotAllowed", f"the server does not allow this method on the requested resource")
            return self.get(path, q)
        except ApiError as e:
            self.send_error_status(e)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True

    def do_GET(self):  # noqa: N802
        self.dispatch("GET")

    def do_PUT(self):  # noqa: N802
        self.dispatch("PUT")

    def do_POST(self):  # noqa: N802
        self.dispatch("POST")

    def do_DELETE(self):  # noqa: N802
        self.dispatch("DELETE")

    def do_PATCH(self):  # noqa: N802
        self.dispatch("PATCH")

    # ---- control API ------------------------------------------------------------------
    def control(self, method: str, q: dict):
        if method == "GET":
            return self.send_json(200, {"kind": "List", "apiVersion": "v1", "metadata": {},
                                        "items": self.store.all_objects()})
        body = self.read_body()
        if method in ("PUT", "POST"):
            if body is None:
                raise ApiError(400, "BadRequest", "body required")
            objs = body.get("items", []) if body.get("kind") == "List" else [body]
            out = [self.store.put(o, create_only=(method == "POST")) for o in objs]
            doc = out[0] if body.get("kind") != "List" else {"kind": "List", "apiVersion": "v1",
                                                               "metadata": {}, "items": out}
            return self.send_json(201 if method == "POST" else 200, doc)
        if method == "DELETE":
            if body is None:
                body = {"apiVersion": first(q, "apiVersion", "v1"), "kind": first(q, "kind", ""),
                        "metadata": {"namespace": first(q, "namespace", ""), "name": first(q, "name", "")}}
            res = self.store.resource_of(body)
            meta = body.get("metadata") or {}
            ns = (meta.get("namespace") or "default") if res.namespaced else ""
            return self.send_json(200, self.store.delete(res, ns, meta.get("name", "")))
        raise ApiError(405, "MethodNotAllowed", "method not allowed")

    # ---- discovery and resources --------------------------------------------------------
    def get(self, path: str, q: dict):
        if path == "/version":
            return self.send_json(200, SERVER_VERSION)
        if path in ("/healthz", "/readyz", "/livez"):
            body = b"ok"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if path in ("/api", "/apis"):
            aggregated = aggregated_discovery_version(self.headers.get("Accept", ""))
            if aggregated:
                return self.send_json(200, aggregated_discovery(path == "/api", aggregated),
                                      f"application/json;g=apidiscovery.k8s.io;v={aggregated};as=APIGroupDiscoveryList")
        if path == "/api":
            return self.send_json(200, {
                "kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                                "serverAddress": f"127.0.0.1:{self.server.server_address[1]}"}]})
        if path == "/apis":
            return self.send_json(200, {"kind": "APIGroupList", "apiVersion": "v1",
                                        "groups": [self.group_doc(g) for g in GROUPS]})
        parts = path.strip("/").split("/")
        if parts[0] == "apis" and len(parts) == 2:
            if parts[1] not in GROUPS:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            return self.send_json(200, self.group_doc(parts[1]))
        if parts[0] == "api" and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if not any(r.group == group and r.version == version for r in RESOURCES):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if not rest:
            return self.send_json(200, {
                "kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": f"{group}/{version}" if group else version,
                "resources": [r.discovery() for r in RESOURCES if r.group == group and r.version == version]})
        watch_path = False
        if rest[0] == "watch":
            watch_path, rest = True, rest[1:]
        ns = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            ns, rest = rest[1], rest[2:]
        res = BY_PATH.get((group, version, rest[0]))
        if res is None or len(rest) > 2 or (ns is not None and not res.namespaced):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) == 2 else None
        if name is not None and res.namespaced and ns is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        watching = watch_path or truthy(first(q, "watch"))
        self.authorize("watch" if watching else "get" if name is not None else "list", res, ns)
        if watching:
            return self.watch(res, ns, name, q)
        if name is not None:
            obj = self.store.get(res, ns or "", name)
            if wants_table(self.headers.get("Accept", "")):
                return self.send_json(200, to_table([obj], res.kind, obj["metadata"]["resourceVersion"],
                                                    first(q, "includeObject", "Metadata"), None))
            return self.send_json(200, obj)
        return self.list(res, ns, q)

    def authorize(self, verb: str, res: Resource, ns: str | None):
        """RBAC as a namespace-scoped Role would grant it (--allowed-namespaces); 403 like kube-apiserver."""
        allowed = self.server.allowed_namespaces
        if allowed is None:
            return
        if res.namespaced and ns is not None and ns in allowed:
            return
        where = f'in the namespace "{ns}"' if ns is not None else "at the cluster scope"
        raise ApiError(403, "Forbidden",
                       f'{res.plural} is forbidden: User "{USER}" cannot {verb} resource "{res.plural}" '
                       f'in API group "{res.group}" {where}', {"kind": res.plural, "group": res.group})

    def group_doc(self, group: str) -> dict:
        versions = [{"groupVersion": f"{group}/{v}", "version": v} for v in GROUPS[group]]
        return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": versions,
                "preferredVersion": versions[0]}

    def matcher(self, q: dict, name: str | None):
        labels = parse_label_selector(first(q, "labelSelector", ""))
        fields = parse_field_selector(first(q, "fieldSelector", ""))

        def pred(obj: dict) -> bool:
            meta = obj.get("metadata") or {}
            if name is not None and meta.get("name") != name:
                return False
            return labels(meta.get("labels") or {}) and fields(obj)

        return pred

    def list(self, res: Resource, ns: str | None, q: dict):
        """A list, paged with limit/continue over one consistent snapshot (as etcd serves it)."""
        limit = int(first(q, "limit", "0") or 0)
        start = 0
        cont_in = first(q, "continue")
        if cont_in:
            try:
                rv_s, off_s, snap_id = base64.urlsafe_b64decode(cont_in.encode()).decode().split(":")
                rv, start = int(rv_s), int(off_s)
            except (ValueError, UnicodeDecodeError):
                raise ApiError(400, "BadRequest", "invalid continue token")
            with self.server.paged_lock:
                items = self.server.paged.get(snap_id)
            if items is None or rv < self.store.compacted_rv:
                raise ApiError(410, "Expired", "The provided continue parameter is too old to display a "
                               "consistent list result. You can start a new list without the continue parameter.")
        else:
            pred = self.matcher(q, None)
            rv, items = self.store.snapshot(res, ns)
            items = [o for o in items if pred(o)]
            snap_id = secrets.token_hex(8)
        cont_out = None
        page = items[start:]
        if limit > 0 and len(page) > limit:
            page = page[:limit]
            cont_out = base64.urlsafe_b64encode(f"{rv}:{start + limit}:{snap_id}".encode()).decode()
            with self.server.paged_lock:
                self.server.paged[snap_id] = items
                self.server.paged.move_to_end(snap_id)
                while len(self.server.paged) > 32:
                    self.server.paged.popitem(last=False)
        if wants_table(self.headers.get("Accept", "")):
            return self.send_json(200, to_table(page, res.kind, str(rv), first(q, "includeObject", "Metadata"),
                                                cont_out))
        meta = {"resourceVersion": str(rv)}
        if cont_out:
            meta["continue"] = cont_out
            meta["remainingItemCount"] = len(items) - start - limit
        self.send_json(200, {"kind": f"{res.kind}List", "apiVersion": res.api_version, "metadata": meta,
                             "items": page})

    # ---- watch ------------------------------------------------------------------------
    def write_chunk(self, data: bytes):
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def watch(self, res: Resource, ns: str | None, name: str | None, q: dict):
        pred = self.matcher(q, name)
        table = wants_table(self.headers.get("Accept", ""))
        include = first(q, "includeObject", "Metadata")
        bookmarks = truthy(first(q, "allowWatchBookmarks"))
        initial = truthy(first(q, "sendInitialEvents"))
        rv_param = first(q, "resourceVersion", "")
        timeout = float(first(q, "timeoutSeconds", "0") or 0) or 1800.0
        deadline = time.monotonic() + timeout
        store = self.store

        # Where to start: events after rv_param, or the current state as ADDED events.
        expired = None
        with store.lock:
            if store.watches_paused:
                raise ApiError(503, "ServiceUnavailable", "watches are paused (test control API)")
            epoch = store.watch_epoch
            if rv_param not in ("", "0") and not initial:
                try:
                    start_rv = int(rv_param)
                except ValueError:
                    raise ApiError(400, "BadRequest", f"invalid resourceVersion {rv_param!r}")
                if start_rv < store.first_rv():
                    # like kube-apiserver: 200, then one ERROR event carrying a 410 Status
                    expired = ApiError(410, "Expired", f"too old resource version: {start_rv} ({store.first_rv()})")
                cursor = next((i for i, e in enumerate(store.events) if e.rv > start_rv), len(store.events))
                initial_objs = []
            else:
                cursor = len(store.events)
                initial_objs = [copy.deepcopy(o) for (r, n, _), o in store.objects.items()
                                if r == res and (ns is None or n == ns) and pred(o)]
                initial_objs.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
            current_rv = store.rv

        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        first_table = [True]

        def emit(etype: str, obj: dict):
            if table and etype != "BOOKMARK":
                out = to_table([obj], res.kind, obj["metadata"]["resourceVersion"], include, None,
                               columns=first_table[0])
                first_table[0] = False
            else:
                out = obj
            self.write_chunk(json.dumps({"type": etype, "object": out}).encode() + b"\n")

        def bookmark(rv: int, initial_end: bool = False):
            meta = {"resourceVersion": str(rv)}
            if initial_end:
                meta["annotations"] = {"k8s.io/initial-events-end": "true"}
            emit("BOOKMARK", {"kind": res.kind, "apiVersion": res.api_version, "metadata": meta})

        try:
            if expired is not None:
                self.write_chunk(json.dumps({"type": "ERROR", "object": expired.status()}).encode() + b"\n")
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
                self.close_connection = True
                return
            for o in initial_objs:
                emit("ADDED", o)
            if initial and bookmarks:
                bookmark(current_rv, initial_end=True)
            last_bookmark = time.monotonic()
            while not self.server.stopping.is_set():
                with store.lock:
                    while (cursor >= len(store.events) and not self.server.stopping.is_set()
                           and store.watch_epoch == epoch):
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        store.lock.wait(min(left, 1.0))
                        if bookmarks and time.monotonic() - last_bookmark >= self.server.bookmark_interval:
                            break
                    if store.watch_epoch != epoch:
                        break  # connection dropped by the control API
                    pending = store.events[cursor:]
                    cursor = len(store.events)
                    rv_now = store.rv
                for ev in pending:
                    if ev.resource != res:
                        continue
                    if ns is not None and ev.new["metadata"].get("namespace", "") != ns:
                        continue
                    was = ev.old is not None and pred(ev.old)
                    now = pred(ev.new)
                    if ev.type == "DELETED":
                        if was:
                            emit("DELETED", ev.new)
                    elif ev.type == "ADDED":
                        if now:
                            emit("ADDED", ev.new)
                    elif was and now:
                        emit("MODIFIED", ev.new)
                    elif now:
                        emit("ADDED", ev.new)
                    elif was:
                        emit("DELETED", ev.new)
                if time.monotonic() >= deadline:
                    if bookmarks:
                        bookmark(rv_now)
                    break
                if bookmarks and time.monotonic() - last_bookmark >= self.server.bookmark_interval:
                    bookmark(rv_now)
                    last_bookmark = time.monotonic()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            pass
        self.close_connection = True


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, ctx: ssl.SSLContext, store: Store, token: str, verbose: bool, bookmark_interval: float,
                 allowed_namespaces: set[str] | None = None):
        self.ctx, self.store, self.token, self.verbose = ctx, store, token, verbose
        self.allowed_namespaces = allowed_namespaces
        self.bookmark_interval = bookmark_interval
        self.stopping = threading.Event()
        self.paged: OrderedDict[str, list[dict]] = OrderedDict()  # list snapshots behind continue tokens
        self.paged_lock = threading.Lock()
        super().__init__(addr, Handler)

    def finish_request(self, request, client_address):
        # TLS handshake in the worker thread, so a slow client never blocks accept().
        request.settimeout(30)
        try:
            tls = self.ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        tls.settimeout(None)
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            try:
                tls.close()
            except OSError:
                pass


# --------------------------------------------------------------------------------------
# Certificates and kubeconfig
# --------------------------------------------------------------------------------------


def run_openssl(*args: str):
    subprocess.run(["openssl", *args], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def make_certs(d: str) -> tuple[str, str, str]:
    """Creates ca.crt, server.crt, server.key in d (reused when present)."""
    ca_key, ca_crt = os.path.join(d, "ca.key"), os.path.join(d, "ca.crt")
    key, csr, crt = os.path.join(d, "server.key"), os.path.join(d, "server.csr"), os.path.join(d, "server.crt")
    if all(os.path.exists(p) for p in (ca_crt, crt, key)):
        return ca_crt, crt, key
    ext = os.path.join(d, "server.ext")
    run_openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", ca_key, "-out", ca_crt, "-days", "30", "-subj", "/CN=podtrace-test-ca",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature")
    run_openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", key, "-out", csr, "-subj", "/CN=kube-apiserver")
    with open(ext, "w") as f:
        f.write("basicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n"
                "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                "subjectKeyIdentifier=hash\n"
                "authorityKeyIdentifier=keyid\n")
    run_openssl("x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial",
                "-out", crt, "-days", "30", "-extfile", ext)
    for private in (ca_key, key):
        os.chmod(private, 0o600)
    return ca_crt, crt, key


def write_kubeconfig(d: str, url: str, ca_crt: str, token: str, namespace: str) -> str:
    with open(ca_crt, "rb") as f:
        ca_b64 = base64.b64encode(f.read()).decode()
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "podtrace-test", "cluster": {"server": url, "certificate-authority-data": ca_b64}}],
        "users": [{"name": "podtrace-test", "user": {"token": token}}],
        "contexts": [{"name": "podtrace-test",
                      "context": {"cluster": "podtrace-test", "user": "podtrace-test", "namespace": namespace}}],
        "current-context": "podtrace-test",
        "preferences": {},
    }
    path = os.path.join(d, "kubeconfig")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(cfg, f, indent=2)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def load_state(store: Store, path: str):
    with open(path) as f:
        doc = json.load(f)
    items = doc.get("items", []) if doc.get("kind", "").endswith("List") else [doc]
    for obj in items:
        store.put(obj)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", required=True, help="directory for certificates and the kubeconfig")
    ap.add_argument("--state", help="JSON file (a v1 List) with the initial objects")
    ap.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 = any free port)")
    ap.add_argument("--token", default=None, help="bearer token (default: random)")
    ap.add_argument("--namespace", default="default", help="the kubeconfig context's namespace")
    ap.add_argument("--bookmark-interval", type=float, default=5.0, help="seconds between idle BOOKMARKs")
    ap.add_argument("--verbose", action="store_true", help="log requests on stderr")
    ap.add_argument("--allowed-namespaces", help="comma list: the token may only read namespaced resources in "
                    "these namespaces (RBAC Role), everything else is 403 Forbidden")
    args = ap.parse_args(argv)

    os.makedirs(args.dir, exist_ok=True)
    ca_crt, crt, key = make_certs(args.dir)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    ctx.set_alpn_protocols(["http/1.1"])
    token = args.token or secrets.token_hex(16)

    store = Store()
    for ns in ("default", "kube-system"):
        store.ensure_namespace(ns)
    if args.state:
        load_state(store, args.state)
    allowed = {n.strip() for n in args.allowed_namespaces.split(",") if n.strip()} if args.allowed_namespaces else None
    server = Server(("127.0.0.1", args.port), ctx, store, token, args.verbose, args.bookmark_interval, allowed)
    port = server.server_address[1]
    url = f"https://127.0.0.1:{port}"
    kubeconfig = write_kubeconfig(args.dir, url, ca_crt, token, args.namespace)

    def stop(*_):
        server.stopping.set()
        with store.lock:
            store.lock.notify_all()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(json.dumps({"ready": True, "port": port, "url": url, "kubeconfig": kubeconfig, "ca": ca_crt,
                      "token": token}), flush=True)
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
