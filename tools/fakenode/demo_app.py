#!/usr/bin/env python3
"""A tiny HTTP/1.1 service or load generator to run inside fakenode pods (demo and tests).

What it is for: giving a fake cluster real traffic between pod IPs on loopback, with W3C
trace context on the wire, so podtrace has something to record and turn into traces.
What it is not: an instrumented app — it only forwards `traceparent` the way a service
with OpenTelemetry propagation would (same trace id, a new parent span id per hop).

  server:  demo_app.py --listen 127.0.1.10:8080 --name frontend [--upstream http://127.0.1.11:8080/api]
           [--error-rate 0.05]
  load:    demo_app.py --load http://127.0.1.10:8080/ --rps 5 [--source 127.0.1.12] [--count N]

Outgoing connections bind to --source (default $POD_IP) so peers see the pod's address.
Python 3.11 standard library only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import secrets
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def child_traceparent(incoming: str | None) -> str:
    """The traceparent to send downstream: same trace (or a new one), a new span id."""
    m = TRACEPARENT.match(incoming or "")
    trace_id = m.group(1) if m else secrets.token_hex(16)
    flags = m.group(3) if m else "01"
    return f"00-{trace_id}-{secrets.token_hex(8)}-{flags}"


class Upstream:
    """One keep-alive connection per thread to the upstream service."""

    def __init__(self, url: str, source: str | None):
        u = urlsplit(url)
        self.host, self.port, self.path = u.hostname or "127.0.0.1", u.port or 80, u.path or "/"
        self.source = source
        self.local = threading.local()

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


def serve(listen: str, name: str, upstream: Upstream | None, error_rate: float):
    host, _, port = listen.rpartition(":")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True

        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802
            status, body = 200, {"service": name, "path": self.path}
            if upstream is not None:
                try:
                    up_status, _ = upstream.get({"traceparent": child_traceparent(self.headers.get("traceparent"))})
                    body["upstream"] = up_status
                    if up_status >= 500:
                        status = 502
                except (OSError, http.client.HTTPException) as e:
                    status, body["error"] = 502, str(e)
            if status == 200 and random.random() < error_rate:
                status = 500
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer((host, int(port)), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    server.serve_forever(poll_interval=0.2)


def load(url: str, rps: float, count: int, source: str | None):
    target = Upstream(url, source)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    sent = 0
    interval = 1.0 / rps if rps > 0 else 0.0
    while not stop.is_set() and (count <= 0 or sent < count):
        try:
            target.get({"traceparent": child_traceparent(None)})
        except (OSError, http.client.HTTPException) as e:
            print(f"demo_app: {url}: {e}", file=sys.stderr)
        sent += 1
        if interval:
            stop.wait(interval)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="demo HTTP service / load generator for fakenode pods")
    ap.add_argument("--listen", help="HOST:PORT to serve on")
    ap.add_argument("--name", default="app", help="service name in responses")
    ap.add_argument("--upstream", help="URL to call for every request (propagating traceparent)")
    ap.add_argument("--error-rate", type=float, default=0.0, help="fraction of 500 answers")
    ap.add_argument("--load", help="URL to send requests to (load generator mode)")
    ap.add_argument("--rps", type=float, default=5.0, help="requests per second in load mode")
    ap.add_argument("--count", type=int, default=0, help="stop after N requests (0 = until signalled)")
    ap.add_argument("--source", default=os.environ.get("POD_IP"), help="source address for outgoing connections")
    args = ap.parse_args(argv)
    if bool(args.listen) == bool(args.load):
        ap.error("give exactly one of --listen or --load")
    if args.listen:
        up = Upstream(args.upstream, args.source) if args.upstream else None
        serve(args.listen, args.name, up, args.error_rate)
    else:
        load(args.load, args.rps, args.count, args.source)
    return 0


if __name__ == "__main__":
    sys.exit(main())
