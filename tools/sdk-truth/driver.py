#!/usr/bin/env python3
"""The load balancer in front of the SDK-truth scenario (not instrumented, stdlib only).

Sends GET /shop/<i> for i = 1..N to the frontend from `--concurrency` threads, each on its
own keep-alive connection bound to the driver's address. Requests with i % 4 in (1, 2)
carry a W3C traceparent the driver makes up (its own "span" is then the frontend's remote
parent); the others carry no trace context at all (the frontend's SDK starts the trace).
Writes one JSON line per request to `--out`: i, path, trace_id/span_id sent ("" when none),
start_ns, end_ns, status.

Usage: driver.py --ip IP --target IP:PORT --n N --concurrency C --out FILE
"""

import argparse
import http.client
import json
import queue
import secrets
import sys
import threading
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ip", required=True, help="the driver's own (source) address")
    ap.add_argument("--target", required=True, help="frontend IP:PORT")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    host, port = args.target.split(":")
    todo = queue.Queue()
    for i in range(1, args.n + 1):
        todo.put(i)
    lock = threading.Lock()
    out = open(args.out, "w", encoding="utf-8")
    failures = []

    def worker():
        conn = http.client.HTTPConnection(host, int(port), timeout=10,
                                          source_address=(args.ip, 0))
        while True:
            try:
                i = todo.get_nowait()
            except queue.Empty:
                break
            headers = {"User-Agent": "sdk-truth-driver/1"}
            trace_id = span_id = ""
            if i % 4 in (1, 2):
                trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
                headers["traceparent"] = f"00-{trace_id}-{span_id}-01"
            path = f"/shop/{i}"
            start = time.time_ns()
            try:
                conn.request("GET", path, headers=headers)
                resp = conn.getresponse()
                resp.read()
                status = resp.status
            except (OSError, http.client.HTTPException) as e:
                status = 0
                failures.append(f"{path}: {e}")
                conn.close()
            rec = {"i": i, "path": path, "trace_id": trace_id, "span_id": span_id,
                   "start_ns": start, "end_ns": time.time_ns(), "status": status}
            with lock:
                out.write(json.dumps(rec) + "\n")
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.close()
    if failures:
        print("driver: failed requests: " + "; ".join(failures[:5]), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
