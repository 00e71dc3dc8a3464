"""Shared plumbing of podtrace's test receivers (not a protocol: see each receiver).

A receiver is a ThreadingHTTPServer on 127.0.0.1 that prints `LISTENING <port>` on stdout
once it accepts connections (port 0 = pick a free one), appends what it decoded as JSON lines
to --out, and can inject faults so the exporters' retry and timeout logic can be tested:

  --fail N --fail-status S [--fail-body TEXT] [--retry-after SECS]
        answer the first N POSTs with status S (and Retry-After) instead of processing them
  --hang  accept POSTs, read them, never answer (until the process is killed)
  --cert/--key  serve HTTPS with this PEM certificate and key
"""

import argparse
import gzip
import json
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def arg_parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--out", required=True, help="JSON lines of what was received")
    p.add_argument("--fail", type=int, default=0)
    p.add_argument("--fail-status", type=int, default=503)
    p.add_argument("--fail-body", default="")
    p.add_argument("--retry-after", default=None)
    p.add_argument("--hang", action="store_true")
    p.add_argument("--cert")
    p.add_argument("--key")
    return p


class State:
    """Counters and the output file, shared by handler threads."""

    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.posts = 0
        self.out = open(args.out, "a", encoding="utf-8")

    def next_post(self):
        with self.lock:
            self.posts += 1
            return self.posts

    def record(self, obj):
        line = json.dumps(obj, sort_keys=True)
        with self.lock:
            self.out.write(line + "\n")
            self.out.flush()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    state = None  # set by serve()

    def log_message(self, fmt, *args):  # quiet: tests read --out, not stderr
        pass

    def read_body(self):
        """The request body, gunzipped when Content-Encoding says gzip. None = bad gzip."""
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.headers.get("Content-Encoding", "").lower() == "gzip":
            try:
                return gzip.decompress(raw)
            except OSError:
                return None
        return raw

    def reply(self, status, body=b"", content_type="text/plain", headers=()):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def injected_fault(self, body):
        """Applies --hang / --fail; True when the request was answered (or never will be)."""
        args = self.state.args
        n = self.state.next_post()
        self.request_no = n
        self.state.record(
            {
                "_request": n,
                "path": self.path,
                "bytes": len(body or b""),
                "content_encoding": self.headers.get("Content-Encoding", ""),
            }
        )
        if args.hang:
            time.sleep(3600)
            return True
        if n <= args.fail:
            headers = [("Retry-After", args.retry_after)] if args.retry_after else []
            self.reply(args.fail_status, args.fail_body, "application/json", headers)
            return True
        return False


def serve(args, handler_class):
    handler_class.state = State(args)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler_class)
    server.daemon_threads = True
    if args.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print(f"LISTENING {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)
