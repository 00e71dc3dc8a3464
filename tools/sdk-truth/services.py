#!/usr/bin/env python3
"""The Python services of the SDK-truth scenario, each instrumented with the official
OpenTelemetry SDK and instrumentations, writing its finished spans to a JSON-lines file.

    backend  Flask (threaded, HTTP/1.1 keep-alive) + requests + grpcio client instrumentation.
             GET /api/order/<int:order_id>: gRPC /shop.Inventory/Lookup on grpcsvc (NOT_FOUND
             for some ids: the order goes on), then GET b3svc /item/<id> (or /fail/<id>);
             502 when b3svc answered 5xx. GET /api/stock/<int:item_id>: no downstream call.
             W3C in; W3C on gRPC, B3 multi (only) on the call to b3svc (per call, below).
    b3svc    Flask with the B3 propagator only. GET /item/<int:item_id>: 200, or 404 for
             some ids; GET /fail/<int:item_id>: 500 (the HTTP error path).
    grpcsvc  grpcio server (generic handler, no code generation) + server instrumentation,
             W3C and B3 extraction. /shop.Inventory/Lookup: NOT_FOUND when id % 5 == 0.

Every service listens on its own loopback address; outgoing HTTP calls are bound to the
caller's own address (requests adapter with source_address). grpcio cannot bind: the
scenario adds a host route giving connections to grpcsvc the backend's source address.

Usage: services.py backend|b3svc|grpcsvc --ip IP --port PORT --spans FILE [--grpc IP:PORT]
       [--b3 IP:PORT]
Prints "READY" on stdout once it listens; stops on SIGTERM.
"""

import argparse
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import sdkspans  # noqa: E402

B3_ONLY_KEY = "sdk-truth.b3-only"


def ready():
    print("READY", flush=True)


def run_flask(app, ip, port):
    from werkzeug.serving import WSGIRequestHandler, make_server

    WSGIRequestHandler.protocol_version = "HTTP/1.1"
    WSGIRequestHandler.disable_nagle_algorithm = True
    WSGIRequestHandler.log_request = lambda *a, **k: None
    server = make_server(ip, port, app, threaded=True)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    ready()
    server.serve_forever()


from opentelemetry.propagators.textmap import TextMapPropagator  # noqa: E402


class PerCallPropagator(TextMapPropagator):
    """W3C trace context, except for calls made under the `B3_ONLY_KEY` context value,
    which carry B3 multi headers only (a service that talks B3 to a B3-only peer)."""

    def __init__(self):
        from opentelemetry.propagators.b3 import B3MultiFormat
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.w3c = TraceContextTextMapPropagator()
        self.b3 = B3MultiFormat()

    def extract(self, carrier, context=None, getter=None):
        from opentelemetry.propagators.textmap import default_getter

        return self.w3c.extract(carrier, context, getter or default_getter)

    def inject(self, carrier, context=None, setter=None):
        from opentelemetry import context as otel_context
        from opentelemetry.propagators.textmap import default_setter

        which = self.b3 if otel_context.get_value(B3_ONLY_KEY, context) else self.w3c
        which.inject(carrier, context, setter or default_setter)

    @property
    def fields(self):
        return set(self.w3c.fields) | set(self.b3.fields)


def backend(args):
    sdkspans.setup("backend", args.spans)
    from opentelemetry import context as otel_context
    from opentelemetry import propagate
    from opentelemetry.instrumentation.flask import FlaskInstrumentor
    from opentelemetry.instrumentation.grpc import GrpcInstrumentorClient
    from opentelemetry.instrumentation.requests import RequestsInstrumentor
    propagate.set_global_textmap(PerCallPropagator())
    RequestsInstrumentor().instrument()
    GrpcInstrumentorClient().instrument()

    import grpc
    import requests
    from flask import Flask
    from requests.adapters import HTTPAdapter

    class SourceAdapter(HTTPAdapter):
        """Connections leave from the service's own address."""

        def init_poolmanager(self, *a, **kw):
            kw["source_address"] = (args.ip, 0)
            super().init_poolmanager(*a, **kw)

    session = requests.Session()
    session.mount("http://", SourceAdapter(pool_connections=4, pool_maxsize=8))
    channel = grpc.insecure_channel(args.grpc)
    lookup = channel.unary_unary("/shop.Inventory/Lookup")
    app = Flask("backend")
    FlaskInstrumentor().instrument_app(app)

    @app.route("/api/order/<int:order_id>")
    def order(order_id):
        try:
            stock = lookup(str(order_id).encode(), timeout=5).decode()
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:
                raise
            stock = "unknown"
        path = f"/fail/{order_id}" if order_id % 7 == 3 else f"/item/{order_id}"
        token = otel_context.attach(otel_context.set_value(B3_ONLY_KEY, True))
        try:
            r = session.get(f"http://{args.b3}{path}", timeout=5)
        finally:
            otel_context.detach(token)
        if r.status_code >= 500:
            return f"order {order_id}: item service failed\n", 502
        return f"order {order_id}: stock {stock}, item {r.status_code}\n"

    @app.route("/api/stock/<int:item_id>")
    def stock(item_id):
        return f"stock {item_id}: {item_id * 3}\n"

    run_flask(app, args.ip, args.port)


def b3svc(args):
    sdkspans.setup("b3svc", args.spans)
    from opentelemetry import propagate
    from opentelemetry.instrumentation.flask import FlaskInstrumentor
    from opentelemetry.propagators.b3 import B3MultiFormat

    propagate.set_global_textmap(B3MultiFormat())
    from flask import Flask, abort

    app = Flask("b3svc")
    FlaskInstrumentor().instrument_app(app)

    @app.route("/item/<int:item_id>")
    def item(item_id):
        if item_id % 11 == 4:
            abort(404)
        return f"item {item_id}\n"

    @app.route("/fail/<int:item_id>")
    def fail(item_id):
        return f"item {item_id} failed\n", 500

    run_flask(app, args.ip, args.port)


def grpcsvc(args):
    sdkspans.setup("grpcsvc", args.spans)
    from opentelemetry import propagate
    from opentelemetry.instrumentation.grpc import GrpcInstrumentorServer
    from opentelemetry.propagators.b3 import B3MultiFormat
    from opentelemetry.propagators.composite import CompositePropagator
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    propagate.set_global_textmap(
        CompositePropagator([TraceContextTextMapPropagator(), B3MultiFormat()])
    )
    GrpcInstrumentorServer().instrument()
    from concurrent import futures

    import grpc

    def lookup(request, context):
        item = int(request.decode() or "0")
        if item % 5 == 0:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no item {item}")
        return f"{item * 3}".encode()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "shop.Inventory", {"Lookup": grpc.unary_unary_rpc_method_handler(lookup)}
            ),
        )
    )
    server.add_insecure_port(f"{args.ip}:{args.port}")
    server.start()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    ready()
    server.wait_for_termination()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("service", choices=["backend", "b3svc", "grpcsvc"])
    ap.add_argument("--ip", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--spans", required=True, help="JSON-lines file the SDK writes spans to")
    ap.add_argument("--grpc", help="grpcsvc IP:PORT (backend)")
    ap.add_argument("--b3", help="b3svc IP:PORT (backend)")
    args = ap.parse_args()
    if args.service == "backend" and not (args.grpc and args.b3):
        ap.error("backend needs --grpc and --b3")
    {"backend": backend, "b3svc": b3svc, "grpcsvc": grpcsvc}[args.service](args)


if __name__ == "__main__":
    main()
