#!/usr/bin/env python3
"""HTTP/1.1 keep-alive test server for podtrace's pcap import tests and fixtures.

Usage: http1_server.py [PORT [HOST]]   (default: port 0 = any free port, host 127.0.0.1;
HOST may be an IPv6 address such as ::1)

Prints "listening on <host>:<port>" on stdout once it accepts connections, then serves
until SIGTERM/SIGINT:
  GET  /size/<n>   -> 200, <n> bytes of a repeating "0123456789abcdef" pattern
  GET  /status/<c> -> status <c>, short text body
  GET  anything    -> 200, a short text body naming the path
  POST anything    -> 200, JSON {"path", "length", "sha256", "headers"} of the request body
Every response carries Content-Length, so connections stay open (HTTP/1.1 keep-alive).
Nagle is disabled (otherwise delayed ACKs stall keep-alive by 40 ms).
"""
import hashlib
import json
import signal
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PATTERN = b"0123456789abcdef"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "podtrace-test/1"
    sys_version = ""

    def log_message(self, fmt, *args):  # keep test output quiet
        pass

    def _send(self, code, body, ctype="text/plain"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        parts = self.path.strip("/").split("/")
        if len(parts) == 2 and parts[0] == "size" and parts[1].isdigit():
            n = int(parts[1])
            body = (PATTERN * (n // len(PATTERN) + 1))[:n]
            self._send(200, body, "application/octet-stream")
        elif len(parts) == 2 and parts[0] == "status" and parts[1].isdigit():
            self._send(int(parts[1]), ("status %s\n" % parts[1]).encode())
        else:
            self._send(200, ("hello from %s\n" % self.path).encode())

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        reply = {
            "path": self.path,
            "length": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
            "headers": {k.lower(): v for k, v in self.headers.items() if k.lower().startswith("x-")},
        }
        self._send(200, json.dumps(reply, sort_keys=True).encode(), "application/json")


class Server6(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    host = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"
    cls = Server6 if ":" in host else ThreadingHTTPServer
    server = cls((host, port), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("listening on %s:%d" % (host, server.server_address[1]), flush=True)
    try:
        server.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
