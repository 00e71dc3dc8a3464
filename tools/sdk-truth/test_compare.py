"""Unit tests of compare.py: a podtrace output built to be the SDK's trees passes, and each
kind of deviation is reported as its mismatch kind (run by tests/it/sdk_truth.rs, no root)."""

import json
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import compare  # noqa: E402

IP = {"driver": "127.0.15.1", "frontend": "127.0.15.2", "backend": "127.0.15.3",
      "b3svc": "127.0.15.4", "grpcsvc": "127.0.15.5"}
PORT = {"frontend": 18502, "backend": 18503, "b3svc": 18504, "grpcsvc": 18505}
T0 = 1_800_000_000_000_000_000


def sdk_span(service, kind, trace, span, parent, start, end, attrs, status="UNSET",
             remote=False, name="GET"):
    return {"service": service, "trace_id": trace, "span_id": span, "parent_span_id": parent,
            "parent_remote": remote, "name": name, "kind": kind, "start_ns": T0 + start,
            "end_ns": T0 + end, "status": status, "status_description": "", "attributes": attrs}


def sdk_trace(n, context_less):
    """One request's SDK spans: frontend SERVER -> CLIENT -> backend SERVER -> gRPC CLIENT ->
    grpcsvc SERVER (NOT_FOUND for odd n), offsets in ms * n apart."""
    t = f"{n:032x}"
    base = n * 100_000_000
    ms = 1_000_000
    fs, fc, bs, bc, gs = (f"{n:04x}{k:012x}" for k in range(1, 6))
    nf = n % 2 == 1
    return [
        sdk_span("frontend", "SERVER", t, fs, "" if context_less else f"{n:016x}",
                 base, base + 10 * ms,
                 {"http.request.method": "GET", "url.path": f"/shop/{n}",
                  "http.response.status_code": 200}, remote=not context_less),
        sdk_span("frontend", "CLIENT", t, fc, fs, base + 1 * ms, base + 9 * ms,
                 {"http.request.method": "GET", "url.full": f"http://x/api/order/{n}",
                  "http.response.status_code": 200}),
        sdk_span("backend", "SERVER", t, bs, fc, base + 2 * ms, base + 8 * ms,
                 {"http.method": "GET", "http.target": f"/api/order/{n}",
                  "http.route": "/api/order/<int:order_id>", "http.status_code": 200},
                 remote=True, name="GET /api/order/<int:order_id>"),
        sdk_span("backend", "CLIENT", t, bc, bs, base + 3 * ms, base + 7 * ms,
                 {"rpc.system": "grpc", "rpc.service": "shop.Inventory", "rpc.method": "Lookup",
                  "rpc.grpc.status_code": 5 if nf else 0},
                 status="ERROR" if nf else "UNSET", name="/shop.Inventory/Lookup"),
        sdk_span("grpcsvc", "SERVER", t, gs, bc, base + 4 * ms, base + 6 * ms,
                 {"rpc.system": "grpc", "rpc.service": "shop.Inventory", "rpc.method": "Lookup",
                  "rpc.grpc.status_code": 5 if nf else 0},
                 remote=True, name="/shop.Inventory/Lookup"),
    ]


def ideal_podtrace(sdk):
    """podtrace spans equal to the SDK's trees: CLIENT spans with the SDK ids, SERVER spans
    with ids of their own under the wire parent, CLIENT spans under their service's SERVER."""
    server_id = {s["span_id"]: "f" + s["span_id"][1:] for s in sdk if s["kind"] == "SERVER"}
    out = []
    for s in sdk:
        a = s["attributes"]
        if s["kind"] == "SERVER":
            sid, parent = server_id[s["span_id"]], s["parent_span_id"]
            local = s["service"]
        else:
            sid, parent = s["span_id"], server_id[s["parent_span_id"]]
            local = s["service"]
        attrs = []
        if compare.is_grpc(a):
            attrs += [{"key": "rpc.system", "value": "grpc"},
                      {"key": "rpc.service", "value": a["rpc.service"]},
                      {"key": "rpc.method", "value": a["rpc.method"]},
                      {"key": "rpc.grpc.status_code", "value": a["rpc.grpc.status_code"]}]
        else:
            attrs += [{"key": "http.request.method", "value": "GET"},
                      {"key": "url.path", "value": compare.sdk_path(s)},
                      {"key": "http.response.status_code",
                       "value": compare.first(a, "http.response.status_code",
                                              "http.status_code")}]
            if "http.route" in a:
                attrs.append({"key": "http.route", "value": "/api/order/{id}"})
        if s["kind"] == "SERVER":
            attrs += [{"key": "server.address", "value": IP[local]},
                      {"key": "server.port", "value": PORT[local]}]
        else:
            attrs += [{"key": "client.address", "value": IP[local]}]
        out.append({"trace_id": s["trace_id"], "span_id": sid, "parent_span_id": parent,
                    "name": s["name"], "kind": s["kind"].lower(),
                    "start_time_unix_nano": s["start_ns"], "end_time_unix_nano": s["end_ns"],
                    "attributes": attrs, "status": {"code": s["status"].lower()},
                    "resource": {"service_name": IP[local]}})
    return out


class CompareTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        d = self.dir.name
        os.makedirs(os.path.join(d, "sdk"))
        os.makedirs(os.path.join(d, "analysis"))
        with open(os.path.join(d, "scenario.json"), "w") as f:
            json.dump({"ip": IP, "port": PORT}, f)
        self.sdk = sdk_trace(1, True) + sdk_trace(2, False) + sdk_trace(3, False)
        self.pt = ideal_podtrace(self.sdk)

    def tearDown(self):
        self.dir.cleanup()

    def run_compare(self):
        d = self.dir.name
        by_service = {}
        for s in self.sdk:
            by_service.setdefault(s["service"], []).append(s)
        for svc, spans in by_service.items():
            with open(os.path.join(d, "sdk", f"{svc}.jsonl"), "w") as f:
                for s in spans:
                    f.write(json.dumps(s) + "\n")
        with open(os.path.join(d, "analysis", "spans.json"), "w") as f:
            json.dump(self.pt, f)
        with open(os.path.join(d, "analysis", "summary.json"), "w") as f:
            json.dump({"orphans": 0, "linking": {"ambiguous_parents": 2}}, f)
        c = compare.Compare(d)
        ok = c.run()
        return ok, c

    def pt_span(self, kind, service, n):
        trace = f"{n:032x}"
        for p in self.pt:
            if p["trace_id"] != trace or p["kind"] != kind.lower():
                continue
            attrs = {a["key"]: a["value"] for a in p["attributes"]}
            if service in (self.ip_service(attrs.get("client.address")),
                           self.port_service(attrs.get("server.port"))):
                return p
        raise AssertionError(f"no {kind} span of {service} in trace {n}")

    @staticmethod
    def ip_service(ip):
        return {v: k for k, v in IP.items()}.get(ip)

    @staticmethod
    def port_service(port):
        return {v: k for k, v in PORT.items()}.get(port)

    def test_ideal_output_is_exact(self):
        ok, c = self.run_compare()
        self.assertTrue(ok, c.report(20))
        f = c.figures
        self.assertEqual((f["sdk_traces"], f["traces_exact"], f["trees_exact"]), (3, 3, 3))
        self.assertEqual((f["spans_matched"], f["sdk_spans"]), (15, 15))
        self.assertEqual(c.podtrace_counters, {"orphans": 0, "linking.ambiguous_parents": 2})

    def test_driver_client_span_may_parent_a_context_less_root(self):
        root = self.pt_span("SERVER", "frontend", 1)
        root["parent_span_id"] = "d" * 16
        self.pt.append({"trace_id": root["trace_id"], "span_id": "d" * 16, "kind": "client",
                        "name": "GET /shop/1", "start_time_unix_nano": root["start_time_unix_nano"],
                        "end_time_unix_nano": root["end_time_unix_nano"],
                        "attributes": [{"key": "client.address", "value": IP["driver"]}],
                        "status": {"code": "unset"}, "resource": {"service_name": IP["driver"]}})
        ok, c = self.run_compare()
        self.assertTrue(ok, c.report(20))

    def test_missing_client_span(self):
        p = self.pt_span("CLIENT", "backend", 2)
        self.pt.remove(p)
        ok, c = self.run_compare()
        self.assertFalse(ok)
        self.assertEqual(c.counts["client_missing"], 1)
        self.assertEqual(c.figures["traces_exact"], 2)

    def test_client_under_another_requests_server(self):
        p = self.pt_span("CLIENT", "frontend", 2)
        p["parent_span_id"] = self.pt_span("SERVER", "frontend", 3)["span_id"]
        ok, c = self.run_compare()
        self.assertFalse(ok)
        self.assertEqual(c.counts["client_wrong_parent"], 1)
        self.assertEqual(c.figures["spans_wrong_parent"], 1)

    def test_root_in_a_trace_of_its_own_is_a_split(self):
        root = self.pt_span("SERVER", "frontend", 1)
        root["trace_id"] = "e" * 32
        ok, c = self.run_compare()
        self.assertFalse(ok)
        self.assertEqual(c.counts["trace_split"], 1)
        self.assertEqual(c.counts["server_wrong_trace"], 1)
        # its child now points at a span that is not in its trace
        self.assertEqual(c.counts["client_wrong_parent"], 1)

    def test_callee_server_not_under_the_client(self):
        s = self.pt_span("SERVER", "grpcsvc", 2)
        s["parent_span_id"] = "1" * 16
        ok, c = self.run_compare()
        self.assertFalse(ok)
        self.assertEqual(c.counts["server_wrong_parent"], 1)

    def test_status_and_attributes(self):
        self.pt_span("SERVER", "grpcsvc", 1)["status"] = {"code": "error", "message": "gRPC 5"}
        b = self.pt_span("SERVER", "backend", 2)
        b["attributes"] = [a for a in b["attributes"] if a["key"] != "http.route"]
        ok, c = self.run_compare()
        self.assertFalse(ok)
        self.assertEqual(c.counts["status_mismatch"], 1)
        self.assertEqual(c.counts["attribute_mismatch"], 1)
        self.assertEqual(c.figures["traces_exact"], 1)
        self.assertEqual(c.figures["trees_exact"], 3)

    def test_extra_span_of_a_service_in_the_trace(self):
        extra = dict(self.pt_span("CLIENT", "backend", 3))
        extra["span_id"] = "9" * 16
        self.pt.append(extra)
        ok, c = self.run_compare()
        self.assertFalse(ok)
        self.assertEqual(c.counts["trace_extra_span"], 1)

    def test_command_line_writes_json_and_exit_status(self):
        self.run_compare()
        out = os.path.join(self.dir.name, "c.json")
        p = subprocess.run([sys.executable, os.path.join(HERE, "compare.py"), self.dir.name,
                            "--json", out], capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("traces exact: 3 (100.0 %)", p.stdout)
        with open(out) as f:
            self.assertEqual(json.load(f)["figures"]["traces_exact"], 3)
        os.unlink(os.path.join(self.dir.name, "analysis", "spans.json"))
        p = subprocess.run([sys.executable, os.path.join(HERE, "compare.py"), self.dir.name],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 2)
        self.assertIn("spans.json", p.stderr)


if __name__ == "__main__":
    unittest.main()
