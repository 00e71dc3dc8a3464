"""Jaeger collector stand-in (the HTTP `/api/traces` contract) for podtrace's tests.

POST /api/traces with Content-Type application/x-thrift (or
application/vnd.apache.thrift.binary): the body is ONE Thrift binary-protocol `jaeger.Batch`
struct, decoded with PyPI jaeger-client's generated `jaeger_client.thrift_gen.jaeger.ttypes`
(independent of podtrace's Rust code) over TBinaryProtocol/TMemoryBuffer. Answers 202 with an
empty body; 400 "Unsupported content type" / "Unable to process request body". Appends one
JSON line per span to --out with ids as unsigned hex:
  {"trace_id" (32 hex), "span_id", "parent_span_id" (16 hex, 0 = root), "operation",
   "flags", "start_us", "duration_us", "tags" {key: value}, "references" [[type, trace, span]],
   "service", "process_tags" {key: value}}
Faults: see _server.py.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from jaeger_client.thrift_gen.jaeger import ttypes  # noqa: E402
from thrift.protocol import TBinaryProtocol  # noqa: E402
from thrift.transport import TTransport  # noqa: E402

import _server  # noqa: E402

ACCEPTED_TYPES = ("application/x-thrift", "application/vnd.apache.thrift.binary")


def unsigned(i):
    return i + (1 << 64) if i < 0 else i


def tag_value(t):
    if t.vType == ttypes.TagType.STRING:
        return t.vStr
    if t.vType == ttypes.TagType.DOUBLE:
        return t.vDouble
    if t.vType == ttypes.TagType.BOOL:
        return t.vBool
    if t.vType == ttypes.TagType.LONG:
        return t.vLong
    return {"binary": (t.vBinary or b"").hex()}


def decode_batch(body):
    batch = ttypes.Batch()
    batch.read(TBinaryProtocol.TBinaryProtocol(TTransport.TMemoryBuffer(body)))
    batch.validate()
    return batch


class JaegerHandler(_server.Handler):
    def do_POST(self):
        body = self.read_body()
        if self.injected_fault(body):
            return
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype not in ACCEPTED_TYPES:
            self.reply(400, f"Unsupported content type: {ctype}")
            return
        try:
            if not body:
                raise ValueError("empty body")
            batch = decode_batch(body)
        except Exception as e:  # any decode failure is the client's fault
            self.reply(400, f"Unable to process request body: {e}")
            return
        process_tags = {t.key: tag_value(t) for t in (batch.process.tags or [])}
        for s in batch.spans:
            self.state.record(
                {
                    "trace_id": "%016x%016x" % (unsigned(s.traceIdHigh), unsigned(s.traceIdLow)),
                    "span_id": "%016x" % unsigned(s.spanId),
                    "parent_span_id": "%016x" % unsigned(s.parentSpanId),
                    "operation": s.operationName,
                    "flags": s.flags,
                    "start_us": s.startTime,
                    "duration_us": s.duration,
                    "tags": {t.key: tag_value(t) for t in (s.tags or [])},
                    "references": [
                        [r.refType, "%016x%016x" % (unsigned(r.traceIdHigh), unsigned(r.traceIdLow)),
                         "%016x" % unsigned(r.spanId)]
                        for r in (s.references or [])
                    ],
                    "service": batch.process.serviceName,
                    "process_tags": process_tags,
                }
            )
        self.reply(202, b"")


if __name__ == "__main__":
    _server.serve(_server.arg_parser(__doc__).parse_args(), JaegerHandler)
