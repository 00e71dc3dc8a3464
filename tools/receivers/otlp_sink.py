"""OTLP/HTTP traces sink for podtrace's tests.

Accepts POST /v1/traces with an ExportTraceServiceRequest as protobuf
(application/x-protobuf) or OTLP/JSON (application/json), optionally gzip-compressed,
decodes it with PyPI `opentelemetry-proto` (independent of podtrace's Rust encoder) and
appends one JSON line per span to --out:
  {"trace_id", "span_id", "parent_span_id" (hex, "" = root), "name", "kind" (int),
   "flags", "trace_state", "start", "end", "attributes" {key: typed value},
   "status_code", "status_message", "service", "resource" {key: value},
   "scope", "scope_version", "via": content type}
Answers 200 with an empty ExportTraceServiceResponse; 400 for undecodable bodies,
415 for other content types. Faults: see _server.py.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from google.protobuf import json_format  # noqa: E402
from google.protobuf.message import DecodeError  # noqa: E402
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (  # noqa: E402
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

import _server  # noqa: E402


def any_value(v):
    kind = v.WhichOneof("value")
    if kind == "string_value":
        return v.string_value
    if kind == "bool_value":
        return v.bool_value
    if kind == "int_value":
        return v.int_value
    if kind == "double_value":
        return v.double_value
    return {"unsupported": kind}


def spans_of(req, via):
    for rs in req.resource_spans:
        resource = {kv.key: any_value(kv.value) for kv in rs.resource.attributes}
        for ss in rs.scope_spans:
            for s in ss.spans:
                yield {
                    "trace_id": s.trace_id.hex(),
                    "span_id": s.span_id.hex(),
                    "parent_span_id": s.parent_span_id.hex(),
                    "name": s.name,
                    "kind": s.kind,
                    "flags": s.flags,
                    "trace_state": s.trace_state,
                    "start": s.start_time_unix_nano,
                    "end": s.end_time_unix_nano,
                    "attributes": {kv.key: any_value(kv.value) for kv in s.attributes},
                    "status_code": s.status.code,
                    "status_message": s.status.message,
                    "service": resource.get("service.name"),
                    "resource": resource,
                    "scope": ss.scope.name,
                    "scope_version": ss.scope.version,
                    "via": via,
                }


def otlp_json_to_proto(text):
    """OTLP/JSON differs from the protobuf JSON mapping only in hex (not base64) ids."""
    import json

    doc = json.loads(text)
    for rs in doc.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for s in ss.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in s:
                        s[key] = _hex_to_b64(s[key])
    req = ExportTraceServiceRequest()
    json_format.ParseDict(doc, req)
    return req


def _hex_to_b64(h):
    import base64

    return base64.b64encode(bytes.fromhex(h)).decode()


class OtlpHandler(_server.Handler):
    def do_POST(self):
        body = self.read_body()
        if self.injected_fault(body):
            return
        if not self.path.rstrip("/").endswith("/v1/traces"):
            self.reply(404, "not found")
            return
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip()
        try:
            if body is None:
                raise ValueError("bad gzip")
            if ctype == "application/x-protobuf":
                req = ExportTraceServiceRequest()
                req.ParseFromString(body)
            elif ctype == "application/json":
                req = otlp_json_to_proto(body.decode())
            else:
                self.reply(415, f"unsupported content type {ctype!r}")
                return
        except (DecodeError, ValueError, UnicodeDecodeError, json_format.ParseError) as e:
            self.reply(400, f"cannot decode request: {e}")
            return
        for span in spans_of(req, ctype):
            self.state.record(span)
        self.reply(
            200,
            ExportTraceServiceResponse().SerializeToString(),
            "application/x-protobuf",
        )


if __name__ == "__main__":
    _server.serve(_server.arg_parser(__doc__).parse_args(), OtlpHandler)
