#!/usr/bin/env python3
"""A tiny HTTP/1.1 service or load generator to run inside fakenode pods (demo and tests).

What it is for: giving a fake cluster real traffic between pod IPs on loopback, with trace
context on the wire in the styles real services use, so podtrace has something to record
and turn into traces. What it is not: an instrumented app — it only forwards context the
way a service with propagation libraries would (same trace id, a new span id per hop).

  server:  demo_app.py --listen 127.0.1.10:8080 --name frontend
           [--upstream [STYLE=]URL ...] [--error-rate 0.05] [--log FILE]
  load:    demo_app.py --load http://127.0.1.10:8080/ --rps 5 [--source 127.0.1.12] [--count N]
           [--log FILE] [--wait-for FILE]

STYLE of an upstream is how context is sent to it: `w3c` (default: `traceparent`),
`b3multi` (`X-B3-TraceId`, `X-B3-SpanId`, `X-B3-Sampled`), `b3` (single `b3: trace-span-1`)
or `splunk` (`X-Request-ID` = trace id, `X-Span-ID` = span id). A server reads incoming
context in any of these styles (W3C first, then B3 single, B3 multi, Splunk) and calls every
upstream in order for each request. `--error-rate R` answers HTTP 500 deterministically: the
k-th request fails when floor(k·R) > floor((k-1)·R) (R = 0.05 → every 20th).

`--log FILE` appends one JSON line per request, flushed at once:
  load:   {"trace_id", "span_id", "start_ns", "end_ns", "status", "url"}  (the span id sent)
  server: {"service", "trace_id", "span_id" (incoming), "status", "upstreams": [[style, span_id, status]]}
Outgoing connections bind to --source (default $POD_IP) so peers see the pod's address.
Python 3.11 standard library only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import secrets
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
B3_SINGLE = re.compile(r"^([0-9a-f]{32}|[0-9a-f]{16})-([0-9a-f]{16})(?:-([01d]))?(?:-[0-9a-f]{16})?$")
HEX_ID = re.compile(r"^([0-9a-f]{32}|[0-9a-f]{16})$")
STYLES = ("w3c", "b3multi", "b3", "splunk")


def incoming_context(headers) -> tuple[str, str] | None:
    """(trace id, span id) of the request's context, in the analyzer's precedence order."""
    m = TRACEPARENT.match(headers.get("traceparent") or "")
    if m:
        return m.group(1), m.group(2)
    m = B3_SINGLE.match(headers.get("b3") or "")
    if m:
        return m.group(1).rjust(32, "0"), m.group(2)
    trace, span = headers.get("x-b3-traceid") or "", headers.get("x-b3-spanid") or ""
    if HEX_ID.match(trace) and HEX_ID.match(span) and len(span) == 16:
        return trace.rjust(32, "0"), span
    trace, span = (headers.get("x-request-id") or "").replace("-", ""), headers.get("x-span-id") or ""
    if HEX_ID.match(trace) and HEX_ID.match(span) and len(span) == 16:
        return trace.rjust(32, "0"), span
    return None


def context_headers(style: str, trace_id: str, span_id: str) -> dict:
    """The headers that carry (trace id, span id) downstream in `style`."""
    if style == "w3c":
        return {"traceparent": f"00-{trace_id}-{span_id}-01"}
    if style == "b3multi":
        return {"X-B3-TraceId": trace_id, "X-B3-SpanId": span_id, "X-B3-Sampled": "1"}
    if style == "b3":
        return {"b3": f"{trace_id}-{span_id}-1"}
    if style == "splunk":
        return {"X-Request-ID": trace_id, "X-Span-ID": span_id}
    raise ValueError(f"unknown propagation style {style!r}")


class JsonLog:
    """Appends JSON lines to a file (or nowhere), one write + flush per line, thread-safe."""

    def __init__(self, path: str | None):
        self.fh = open(path, "a", encoding="utf-8") if path else None
        self.lock = threading.Lock()

    def write(self, obj: dict):
        if self.fh is None:
            return
        line = json.dumps(obj, sort_keys=True) + "\n"
        with self.lock:
            self.fh.write(line)
            self.fh.flush()


class Upstream:
    """One keep-alive connection per thread to an upstream service, with a propagation style."""

    def __init__(self, url: str, source: str | None, style: str = "w3c"):
        u = urlsplit(url)
        self.host, self.port, self.path = u.hostname or "127.0.0.1", u.port or 80, u.path or "/"
        self.source = source
        self.style = style
        self.local = threading.local()

    @classmethod
    def parse(cls, spec: str, source: str | None) -> "Upstream":
        """`[STYLE=]URL`."""
        style, sep, url = spec.partition("=")
        if not sep or style not in STYLES:
            style, url = "w3c", spec
        return cls(url, source, style)

    def get(self, headers: dict) -> tuple[int, bytes]:
        for attempt in range(2):
            conn = getattr(self.local, "conn", None)
            if conn is None:
                src = (self.source, 0) if self.source else None
                conn = http.client.HTTPConnection(self.host, self.port, timeout=10, source_address=src)
                self.local.conn = conn
            try:
                conn.request("GET", self.path, headers=headers)
                resp = conn.getresponse()
                return resp.status, resp.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                self.local.conn = None
                if attempt:
                    raise
        raise RuntimeError("unreachable")


class ErrorSchedule:
    """Deterministic failures: the k-th request fails when floor(k·rate) > floor((k-1)·rate)."""

    def __init__(self, rate: float):
        self.rate = rate
        self.count = 0
        self.lock = threading.Lock()

    def next_fails(self) -> bool:
        with self.lock:
            self.count += 1
            k = self.count
        return int(k * self.rate) > int((k - 1) * self.rate)


def serve(listen: str, name: str, upstreams: list[Upstream], error_rate: float, log: JsonLog):
    host, _, port = listen.rpartition(":")
    errors = ErrorSchedule(error_rate)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802
            status, body = 200, {"service": name, "path": self.path}
            ctx = incoming_context(self.headers)
            trace_id = ctx[0] if ctx else secrets.token_hex(16)
            called = []
            for up in upstreams:
                span_id = secrets.token_hex(8)
                try:
                    up_status, _ = up.get(context_headers(up.style, trace_id, span_id))
                except (OSError, http.client.HTTPException) as e:
                    up_status, body["error"] = 0, str(e)
                called.append([up.style, span_id, up_status])
                body.setdefault("upstream", up_status)
                if up_status >= 500 or up_status == 0:
                    status = 502
            if status == 200 and errors.next_fails():
                status = 500
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            log.write({"service": name, "path": self.path, "trace_id": trace_id,
                       "span_id": ctx[1] if ctx else "", "status": status, "upstreams": called})

    server = ThreadingHTTPServer((host, int(port)), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    server.serve_forever(poll_interval=0.2)


def load(url: str, rps: float, count: int, source: str | None, log: JsonLog, wait_for: str | None = None):
    target = Upstream(url, source)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while wait_for and not os.path.exists(wait_for) and not stop.wait(0.02):
        pass
    sent = 0
    interval = 1.0 / rps if rps > 0 else 0.0
    while not stop.is_set() and (count <= 0 or sent < count):
        trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
        start = time.time_ns()
        try:
            status, _ = target.get(context_headers("w3c", trace_id, span_id))
        except (OSError, http.client.HTTPException) as e:
            status = 0
            print(f"demo_app: {url}: {e}", file=sys.stderr)
        log.write({"trace_id": trace_id, "span_id": span_id, "start_ns": start, "end_ns": time.time_ns(),
                   "status": status, "url": url})
        sent += 1
        if interval:
            stop.wait(max(0.0, interval - (time.time_ns() - start) / 1e9))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="demo HTTP service / load generator for fakenode pods")
    ap.add_argument("--listen", help="HOST:PORT to serve on")
    ap.add_argument("--name", default="app", help="service name in responses")
    ap.add_argument("--upstream", action="append", default=[],
                    help="[STYLE=]URL to call for every request (STYLE: w3c, b3multi, b3, splunk); repeatable")
    ap.add_argument("--error-rate", type=float, default=0.0, help="fraction of 500 answers (deterministic)")
    ap.add_argument("--load", help="URL to send requests to (load generator mode)")
    ap.add_argument("--rps", type=float, default=5.0, help="requests per second in load mode (0 = flat out)")
    ap.add_argument("--count", type=int, default=0, help="stop after N requests (0 = until signalled)")
    ap.add_argument("--source", default=os.environ.get("POD_IP"), help="source address for outgoing connections")
    ap.add_argument("--log", help="append one JSON line per request to this file")
    ap.add_argument("--wait-for", help="load mode: send nothing until this file exists")
    args = ap.parse_args(argv)
    if bool(args.listen) == bool(args.load):
        ap.error("give exactly one of --listen or --load")
    log = JsonLog(args.log)
    if args.listen:
        ups = [Upstream.parse(u, args.source) for u in args.upstream]
        serve(args.listen, args.name, ups, args.error_rate, log)
    else:
        load(args.load, args.rps, args.count, args.source, log, args.wait_for)
    return 0


if __name__ == "__main__":
    sys.exit(main())
