"""Splunk HTTP Event Collector stand-in for podtrace's tests (follows CONTRACTS.md).

Endpoints: POST /services/collector, /services/collector/event,
/services/collector/event/1.0 (events); GET /services/collector/health.
  - Authorization must be `Splunk <token>` with a token given by --token:
    none → 401 {"text":"Token is required","code":2};
    not `Splunk <x>` → 401 {"text":"Invalid authorization","code":3};
    unknown token → 403 {"text":"Invalid token","code":4}.
  - Body: one or more JSON objects back to back (no array), optionally gzip
    (Content-Encoding: gzip). Content-Type is ignored, as a real HEC does.
    empty → 400 code 5 "No data"; not JSON objects → 400 code 6 "Invalid data format";
    an object without "event" → 400 code 12 "Event field is required";
    a blank event ("" / {} / null) → 400 code 13 "Event field cannot be blank".
    Success → 200 {"text":"Success","code":0}.
  - --busy N: the first N event POSTs get 503 {"text":"Server is busy","code":9}.
  - --cert/--key: HTTPS.
Appends each accepted event object as a JSON line to --out (the token is never written).
Other faults: see _server.py.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _server  # noqa: E402

EVENT_PATHS = ("/services/collector", "/services/collector/event", "/services/collector/event/1.0")


def hec(code, text):
    return json.dumps({"text": text, "code": code})


def parse_events(text):
    """Concatenated JSON objects → list, or raises ValueError."""
    decoder = json.JSONDecoder()
    events, i = [], 0
    while True:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        if i >= len(text):
            return events
        obj, i = decoder.raw_decode(text, i)
        if not isinstance(obj, dict):
            raise ValueError("not an object")
        events.append(obj)


class HecHandler(_server.Handler):
    def answer(self, status, code, text):
        self.reply(status, hec(code, text), "application/json")

    def do_GET(self):
        if self.path.split("?")[0].rstrip("/") == "/services/collector/health":
            self.answer(200, 17, "HEC is healthy")
        else:
            self.reply(404, "not found")

    def do_POST(self):
        body = self.read_body()
        path = self.path.split("?")[0].rstrip("/")
        if path not in EVENT_PATHS:
            self.reply(404, "not found")
            return
        auth = self.headers.get("Authorization")
        if auth is None:
            self.answer(401, 2, "Token is required")
            return
        scheme, _, token = auth.partition(" ")
        if scheme != "Splunk" or not token.strip():
            self.answer(401, 3, "Invalid authorization")
            return
        if token.strip() not in self.state.args.token:
            self.answer(403, 4, "Invalid token")
            return
        if self.injected_fault(body):
            return
        if self.request_no <= self.state.args.busy:
            self.answer(503, 9, "Server is busy")
            return
        if body is None:
            self.answer(400, 6, "Invalid data format")
            return
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            self.answer(400, 6, "Invalid data format")
            return
        if not text.strip():
            self.answer(400, 5, "No data")
            return
        try:
            events = parse_events(text)
        except ValueError:
            self.answer(400, 6, "Invalid data format")
            return
        for e in events:
            if "event" not in e:
                self.answer(400, 12, "Event field is required")
                return
            if e["event"] in ("", {}, None):
                self.answer(400, 13, "Event field cannot be blank")
                return
        for e in events:
            e["_path"] = path
            self.state.record(e)
        self.answer(200, 0, "Success")


if __name__ == "__main__":
    p = _server.arg_parser(__doc__)
    p.add_argument("--token", action="append", default=[], help="a valid token (repeatable)")
    p.add_argument("--busy", type=int, default=0)
    _server.serve(p.parse_args(), HecHandler)
