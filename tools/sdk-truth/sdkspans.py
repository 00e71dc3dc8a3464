"""The SDK side of the SDK-truth scenario: a tracer provider whose every finished span is
written as one JSON line to a file (SimpleSpanProcessor: written when the span ends).

One line per span: service, trace_id, span_id, parent_span_id ("" for a root),
parent_remote, name, kind (SERVER/CLIENT/INTERNAL), start_ns, end_ns, status
(UNSET/OK/ERROR), status_description, attributes.
"""

import json
import threading

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult


def _plain(v):
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


class FileSpanExporter(SpanExporter):
    """Appends one JSON line per span to `path`."""

    def __init__(self, path: str, service: str):
        self.service = service
        self.lock = threading.Lock()
        self.f = open(path, "a", buffering=1, encoding="utf-8")

    def export(self, spans):
        for s in spans:
            parent = s.parent
            rec = {
                "service": self.service,
                "trace_id": f"{s.context.trace_id:032x}",
                "span_id": f"{s.context.span_id:016x}",
                "parent_span_id": f"{parent.span_id:016x}" if parent else "",
                "parent_remote": bool(parent.is_remote) if parent else False,
                "name": s.name,
                "kind": s.kind.name,
                "start_ns": s.start_time,
                "end_ns": s.end_time,
                "status": s.status.status_code.name,
                "status_description": s.status.description or "",
                "attributes": {k: _plain(v) for k, v in (s.attributes or {}).items()},
            }
            line = json.dumps(rec, default=str)
            with self.lock:
                self.f.write(line + "\n")
        return SpanExportResult.SUCCESS

    def shutdown(self):
        with self.lock:
            self.f.close()


def setup(service: str, path: str):
    """Installs the global tracer provider writing `service`'s spans to `path`."""
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(FileSpanExporter(path, service)))
    trace.set_tracer_provider(provider)
    return provider
