#!/usr/bin/env python3
"""Compares podtrace's spans (OUTDIR/analysis/spans.json) with the spans the services'
own OpenTelemetry SDKs wrote (OUTDIR/sdk/*.jsonl), by the criteria of issue 15:

  1. every SDK CLIENT span appears in podtrace with the same trace id and span id (and
     from the same service);
  2. the callee's SERVER span has that CLIENT span as its parent;
  3. every CLIENT span hangs under its own service's SERVER span (podtrace's parent of the
     CLIENT span is the podtrace counterpart of the SDK CLIENT span's SDK parent);
     a SERVER span whose SDK parent is remote and not an SDK span (the driver's made-up
     span) has that id as parent in podtrace; an SDK root SERVER span has no parent in
     podtrace or the driver's (uninstrumented) CLIENT span;
  4. each SDK trace is exactly one podtrace trace: same trace id, every SDK span's
     counterpart in it, and no other spans of the SDK services in it;
  5. status (ERROR / not) and method, route, status-code (HTTP and gRPC) attributes agree.

podtrace SERVER spans are matched to SDK SERVER spans by the wire parent id when the SDK
span has a remote parent, else by service + method + path (or gRPC method) + time.
Services are told apart by address (OUTDIR/scenario.json): a SERVER span by its server
port/address, a CLIENT span by its client (source) address.

Prints the figures and the first mismatches; `--json FILE` writes them machine-readably.
Exit status 0 when every criterion holds for every SDK trace, 1 otherwise, 2 on bad input.

Usage: compare.py OUTDIR [--json FILE] [--show N]
"""

import argparse
import glob
import json
import os
import re
import sys
from collections import Counter, defaultdict

ERROR_KINDS = [
    "client_missing",  # no podtrace CLIENT span with the SDK CLIENT span's span id
    "client_wrong_trace",  # found with that span id, but in another trace
    "client_wrong_service",  # found, but podtrace puts it in another service
    "client_wrong_parent",  # podtrace parent is not the counterpart of the SDK parent
    "server_missing",  # no podtrace SERVER span for an SDK SERVER span
    "server_wrong_parent",  # podtrace SERVER span's parent is not the SDK's
    "server_wrong_trace",  # podtrace SERVER span in another trace than the SDK's
    "trace_split",  # the SDK trace's counterparts are in more than one podtrace trace
    "trace_extra_span",  # a span of an SDK service in the trace that the SDK does not have
    "status_mismatch",
    "attribute_mismatch",
]


def fail(msg):
    print(f"compare.py: {msg}", file=sys.stderr)
    sys.exit(2)


def load_jsonl(path):
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                fail(f"{path}:{n}: {e}")
    return out


def load_sdk(outdir):
    files = sorted(glob.glob(os.path.join(outdir, "sdk", "*.jsonl")))
    if not files:
        fail(f"no SDK span files in {outdir}/sdk")
    spans = []
    for f in files:
        for r in load_jsonl(f):
            r["start_ns"], r["end_ns"] = int(r["start_ns"]), int(r["end_ns"])
            spans.append(r)
    return spans


def load_podtrace(outdir):
    path = os.path.join(outdir, "analysis", "spans.json")
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        fail(f"{path}: {e}")
    if not isinstance(raw, list):
        fail(f"{path}: not a JSON array")
    spans = []
    for s in raw:
        attrs = {a["key"]: a["value"] for a in s.get("attributes") or []}
        spans.append({
            "trace_id": s.get("trace_id", ""),
            "span_id": s.get("span_id", ""),
            "parent_span_id": s.get("parent_span_id", "") or "",
            "name": s.get("name", ""),
            "kind": (s.get("kind") or "").upper(),
            "start_ns": int(s.get("start_time_unix_nano", 0)),
            "end_ns": int(s.get("end_time_unix_nano", 0)),
            "status": ((s.get("status") or {}).get("code") or "unset").upper(),
            "status_message": (s.get("status") or {}).get("message", ""),
            "attributes": attrs,
            "resource": (s.get("resource") or {}).get("service_name", ""),
        })
    return spans


def load_summary(outdir):
    try:
        with open(os.path.join(outdir, "analysis", "summary.json"), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return {}


def flatten(d, prefix=""):
    """{"a": {"b": 1}} -> {"a.b": 1} (numbers only)."""
    out = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}{k}."))
    elif isinstance(d, (int, float)) and not isinstance(d, bool):
        out[prefix[:-1]] = d
    return out


# --- what a span is about ------------------------------------------------------------------

def first(attrs, *keys):
    for k in keys:
        if k in attrs and attrs[k] not in (None, ""):
            return attrs[k]
    return None


def sdk_path(s):
    a = s["attributes"]
    p = first(a, "url.path", "http.target")
    if p is None:
        url = first(a, "url.full", "http.url")
        if url:
            p = re.sub(r"^[a-z]+://[^/]+", "", url)
    return p.split("?")[0] if p else None


def is_grpc(attrs):
    return attrs.get("rpc.system") == "grpc" or "rpc.service" in attrs


def sdk_key(s):
    """What the request was: ('rpc', 'pkg.Svc/Method') or ('http', 'GET', '/path')."""
    a = s["attributes"]
    if is_grpc(a):
        return ("rpc", f"{a.get('rpc.service')}/{a.get('rpc.method')}")
    return ("http", first(a, "http.request.method", "http.method"), sdk_path(s))


def pt_key(p):
    a = p["attributes"]
    if is_grpc(a):
        return ("rpc", f"{a.get('rpc.service')}/{a.get('rpc.method')}")
    path = a.get("url.path")
    return ("http", a.get("http.request.method"), path.split("?")[0] if path else None)


def norm_route(r):
    """'/item/<int:item_id>' and '/item/{id}' -> '/item/{}'."""
    if r is None:
        return None
    return re.sub(r"<[^>]*>|\{[^}]*\}|:[A-Za-z_]\w*", "{}", str(r))


def status_is_error(code):
    return str(code).upper() == "ERROR"


# --- the comparison ---------------------------------------------------------------------------

class Compare:
    def __init__(self, outdir):
        self.outdir = outdir
        try:
            with open(os.path.join(outdir, "scenario.json"), encoding="utf-8") as f:
                sc = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            fail(f"scenario.json: {e}")
        self.ip_service = {ip: name for name, ip in sc["ip"].items()}
        self.port_service = {int(port): name for name, port in sc["port"].items()}
        self.sdk = load_sdk(outdir)
        self.pt = load_podtrace(outdir)
        self.summary = load_summary(outdir)
        self.driver = []
        dpath = os.path.join(outdir, "driver.jsonl")
        if os.path.exists(dpath):
            self.driver = load_jsonl(dpath)
        for p in self.pt:
            p["service"] = self.pt_service(p)
        self.sdk_by_id = {(s["trace_id"], s["span_id"]): s for s in self.sdk}
        self.pt_by_id = {(p["trace_id"], p["span_id"]): p for p in self.pt}
        self.pt_by_span_id = defaultdict(list)
        for p in self.pt:
            self.pt_by_span_id[p["span_id"]].append(p)
        self.pt_servers_by_parent = defaultdict(list)
        for p in self.pt:
            if p["kind"] == "SERVER" and p["parent_span_id"]:
                self.pt_servers_by_parent[p["parent_span_id"]].append(p)
        self.mismatches = []
        self.counts = Counter()
        self.server_match = {}  # SDK (trace, span) -> podtrace span
        self.client_match = {}

    def pt_service(self, p):
        a = p["attributes"]
        if p["kind"] == "SERVER":
            port = a.get("server.port")
            if isinstance(port, int) and port in self.port_service:
                return self.port_service[port]
            return self.ip_service.get(a.get("server.address"), p["resource"])
        ip = a.get("client.address")
        if ip in self.ip_service:
            return self.ip_service[ip]
        return self.ip_service.get(p["resource"], p["resource"])

    def describe_pt(self, p):
        if p is None:
            return "nothing"
        parent = self.pt_by_id.get((p["trace_id"], p["parent_span_id"]))
        if not p["parent_span_id"]:
            par = "root"
        elif parent is None:
            par = f"parent {p['parent_span_id']} (not in its trace)"
        else:
            par = (f"parent {p['parent_span_id']} = {parent['service']} {parent['kind']} "
                   f"{parent['name']!r}")
        return (f"{p['service']} {p['kind']} {p['name']!r} trace {p['trace_id']} span "
                f"{p['span_id']} {par}, status {p['status']}")

    def describe_sdk(self, s):
        par = s["parent_span_id"] or "root"
        return (f"{s['service']} {s['kind']} {s['name']!r} {sdk_key(s)} trace {s['trace_id']} "
                f"span {s['span_id']} parent {par}, status {s['status']}")

    def bad(self, kind, sdk_span, detail, pt=None):
        self.counts[kind] += 1
        self.mismatches.append({
            "kind": kind,
            "trace_id": sdk_span["trace_id"],
            "sdk": self.describe_sdk(sdk_span),
            "podtrace": self.describe_pt(pt) if pt is not None else detail,
            "detail": detail,
        })
        return False

    def nearest_pt(self, s, kind, service=None):
        """The podtrace span of `kind` (and service) for the same request closest in time."""
        key = sdk_key(s)
        best, best_d = None, None
        for p in self.pt:
            if p["kind"] != kind or pt_key(p) != key:
                continue
            if service and p["service"] != service:
                continue
            d = abs(p["start_ns"] - s["start_ns"])
            if d > 200_000_000 and p["start_ns"] > s["end_ns"] + 50_000_000:
                continue
            if best_d is None or d < best_d:
                best, best_d = p, d
        return best

    def match_server(self, s):
        """podtrace's counterpart of an SDK SERVER span."""
        cands = []
        if s["parent_span_id"]:
            cands = [p for p in self.pt_servers_by_parent.get(s["parent_span_id"], [])
                     if p["service"] == s["service"]]
        if len(cands) == 1:
            return cands[0]
        return self.nearest_pt(s, "SERVER", s["service"])

    def check_attrs(self, s, p):
        ok = True
        sa, pa = s["attributes"], p["attributes"]
        pairs = []
        if is_grpc(sa):
            for k in ("rpc.service", "rpc.method", "rpc.grpc.status_code"):
                if k in sa:
                    pairs.append((k, sa[k], pa.get(k)))
        else:
            m = first(sa, "http.request.method", "http.method")
            if m is not None:
                pairs.append(("http.request.method", m, pa.get("http.request.method")))
            c = first(sa, "http.response.status_code", "http.status_code")
            if c is not None:
                pairs.append(("http.response.status_code", c, pa.get("http.response.status_code")))
            r = sa.get("http.route")
            if r is not None:
                pairs.append(("http.route", norm_route(r), norm_route(pa.get("http.route"))))
        for k, want, got in pairs:
            if str(want) != str(got):
                ok = self.bad("attribute_mismatch", s, f"{k}: SDK {want!r}, podtrace {got!r}", p)
        if status_is_error(s["status"]) != status_is_error(p["status"]):
            ok = self.bad("status_mismatch", s,
                          f"status: SDK {s['status']}, podtrace {p['status']} "
                          f"{p['status_message']!r}", p)
        return ok

    def run(self):
        traces = defaultdict(list)
        for s in self.sdk:
            traces[s["trace_id"]].append(s)
        # counterparts first (criterion 3 needs the parents' counterparts)
        for s in self.sdk:
            if s["kind"] == "SERVER":
                p = self.match_server(s)
                if p is not None:
                    self.server_match[(s["trace_id"], s["span_id"])] = p
            elif s["kind"] == "CLIENT":
                ps = [p for p in self.pt_by_span_id.get(s["span_id"], []) if p["kind"] == "CLIENT"]
                if ps:
                    same = [p for p in ps if p["trace_id"] == s["trace_id"]]
                    self.client_match[(s["trace_id"], s["span_id"])] = (same or ps)[0]
        driver_spans = {d["span_id"] for d in self.driver if d.get("span_id")}
        mine = {(p["trace_id"], p["span_id"]) for p in
                list(self.client_match.values()) + list(self.server_match.values())}
        pt_by_trace = defaultdict(list)
        for p in self.pt:
            pt_by_trace[p["trace_id"]].append(p)
        per_trace = {}
        matched = 0
        wrong_parent = 0
        for tid, spans in sorted(traces.items()):
            ok = True
            pt_traces = Counter()
            for s in spans:
                sid = (s["trace_id"], s["span_id"])
                if s["kind"] == "CLIENT":
                    p = self.client_match.get(sid)
                    if p is None:
                        near = self.nearest_pt(s, "CLIENT", s["service"])
                        ok = self.bad("client_missing", s,
                                      "no podtrace CLIENT span with this span id"
                                      + (f"; nearest same request: {self.describe_pt(near)}"
                                         if near else ""))
                        continue
                    matched += 1
                    pt_traces[p["trace_id"]] += 1
                    if p["trace_id"] != s["trace_id"]:
                        ok = self.bad("client_wrong_trace", s, "span id found in another trace", p)
                    if p["service"] != s["service"]:
                        ok = self.bad("client_wrong_service", s,
                                      f"podtrace service {p['service']}", p)
                    # criterion 3: under the counterpart of its SDK parent
                    want = self.server_match.get((s["trace_id"], s["parent_span_id"]))
                    if want is None or p["parent_span_id"] != want["span_id"] \
                            or p["trace_id"] != want["trace_id"]:
                        wrong_parent += 1
                        ok = self.bad("client_wrong_parent", s,
                                      "podtrace parent should be "
                                      + (self.describe_pt(want) if want else
                                         "the (unmatched) SERVER span of its SDK parent"), p)
                    if not self.check_attrs(s, p):
                        ok = False
                elif s["kind"] == "SERVER":
                    p = self.server_match.get(sid)
                    if p is None:
                        ok = self.bad("server_missing", s, "no podtrace SERVER span for it")
                        continue
                    matched += 1
                    pt_traces[p["trace_id"]] += 1
                    if p["trace_id"] != s["trace_id"]:
                        ok = self.bad("server_wrong_trace", s, "in another trace", p)
                    par = s["parent_span_id"]
                    if par and (s["trace_id"], par) in self.sdk_by_id:
                        good = p["parent_span_id"] == par  # criterion 2
                    elif par:
                        good = p["parent_span_id"] == par  # the driver's made-up span
                    else:
                        parent = self.pt_by_id.get((p["trace_id"], p["parent_span_id"]))
                        good = not p["parent_span_id"] or (
                            parent is not None and parent["service"] == "driver"
                            and parent["kind"] == "CLIENT")
                    if not good:
                        wrong_parent += 1
                        ok = self.bad("server_wrong_parent", s,
                                      f"podtrace parent should be {par or 'none/the driver'}", p)
                    if not self.check_attrs(s, p):
                        ok = False
            root = min(spans, key=lambda s: (s["start_ns"], s["kind"] != "SERVER"))
            if len(pt_traces) > 1:
                ok = self.bad("trace_split", root,
                              f"SDK trace {tid} is {len(pt_traces)} podtrace traces: "
                              + ", ".join(f"{t} ({n} spans)" for t, n in pt_traces.most_common()))
            # no other spans of the SDK services in the trace
            extra = [p for p in pt_by_trace.get(tid, []) if p["service"] != "driver"
                     and (p["trace_id"], p["span_id"]) not in mine]
            for p in extra[:3]:
                ok = self.bad("trace_extra_span", root, "span the SDK trace does not have", p)
            per_trace[tid] = ok
        kinds = defaultdict(set)
        for m in self.mismatches:
            kinds[m["trace_id"]].add(m["kind"])
        trees_exact = sum(1 for tid in traces
                          if not kinds[tid] - {"status_mismatch", "attribute_mismatch"})
        self.figures = {
            "sdk_traces": len(traces),
            "traces_exact": sum(per_trace.values()),
            "traces_exact_pct": round(100.0 * sum(per_trace.values()) / max(1, len(traces)), 1),
            "trees_exact": trees_exact,
            "trees_exact_pct": round(100.0 * trees_exact / max(1, len(traces)), 1),
            "sdk_spans": len(self.sdk),
            "sdk_client_spans": sum(1 for s in self.sdk if s["kind"] == "CLIENT"),
            "sdk_server_spans": sum(1 for s in self.sdk if s["kind"] == "SERVER"),
            "spans_matched": matched,
            "spans_wrong_parent": wrong_parent,
            "traces_split": self.counts["trace_split"],
            "status_mismatches": self.counts["status_mismatch"],
            "attribute_mismatches": self.counts["attribute_mismatch"],
            "podtrace_spans": len(self.pt),
            "podtrace_traces": len({p["trace_id"] for p in self.pt}),
            "driver_requests": len(self.driver),
            "driver_requests_with_context": len(driver_spans),
        }
        self.coverage = self.scenario_coverage()
        flat = flatten(self.summary)
        self.podtrace_counters = {k: v for k, v in flat.items()
                                  if re.search(r"orphan|ambiguous|duplicate|evict|late|truncat"
                                               r"|gap|lost|drop", k, re.I)}
        self.per_trace = per_trace
        return all(per_trace.values()) and len(traces) > 0

    def scenario_coverage(self):
        """What the SDK spans show the scenario exercised (each should be > 0)."""
        def code(s):
            return first(s["attributes"], "http.response.status_code", "http.status_code")

        servers = [s for s in self.sdk if s["kind"] == "SERVER"]
        return {
            "context_less_entries": sum(1 for s in servers if not s["parent_span_id"]),
            "w3c_entries": sum(1 for s in servers if s["service"] == "frontend"
                               and s["parent_span_id"]),
            "grpc_not_found": sum(1 for s in servers
                                  if s["attributes"].get("rpc.grpc.status_code") == 5),
            "http_5xx_servers": sum(1 for s in servers if (code(s) or 0) >= 500),
            "http_4xx_servers": sum(1 for s in servers if 400 <= (code(s) or 0) < 500),
            "b3_only_servers": sum(1 for s in servers if s["service"] == "b3svc"),
            "services": len({s["service"] for s in self.sdk}),
        }

    def report(self, show):
        f = self.figures
        lines = [
            f"SDK traces: {f['sdk_traces']}   traces exact: {f['traces_exact']} "
            f"({f['traces_exact_pct']} %)   trees exact (ids and parents only): "
            f"{f['trees_exact']} ({f['trees_exact_pct']} %)",
            f"SDK spans matched: {f['spans_matched']}/{f['sdk_spans']} "
            f"(CLIENT {f['sdk_client_spans']}, SERVER {f['sdk_server_spans']})",
            f"spans with wrong parent: {f['spans_wrong_parent']}   traces split: "
            f"{f['traces_split']}   status mismatches: {f['status_mismatches']}   "
            f"attribute mismatches: {f['attribute_mismatches']}",
            f"podtrace: {f['podtrace_spans']} spans in {f['podtrace_traces']} traces; counters: "
            + (", ".join(f"{k}={v}" for k, v in sorted(self.podtrace_counters.items()))
               or "(none)"),
            "scenario: " + ", ".join(f"{k}={v}" for k, v in self.coverage.items()),
            "mismatches by kind: " + (", ".join(f"{k}={self.counts[k]}" for k in ERROR_KINDS
                                                if self.counts[k]) or "none"),
        ]
        if self.mismatches:
            lines.append(f"first {min(show, len(self.mismatches))} of "
                         f"{len(self.mismatches)} mismatches:")
            seen = Counter()
            shown = 0
            # first the first of each kind, then the rest in order
            ordered = []
            for m in self.mismatches:
                if seen[m["kind"]] == 0:
                    ordered.append(m)
                seen[m["kind"]] += 1
            ordered += [m for m in self.mismatches if m not in ordered]
            for m in ordered:
                if shown >= show:
                    break
                shown += 1
                lines.append(f"- {m['kind']}: {m['detail']}")
                lines.append(f"    SDK:      {m['sdk']}")
                lines.append(f"    podtrace: {m['podtrace']}")
        return "\n".join(lines)

    def as_json(self):
        return {
            "figures": self.figures,
            "mismatch_counts": {k: self.counts[k] for k in ERROR_KINDS},
            "podtrace_counters": self.podtrace_counters,
            "coverage": self.coverage,
            "summary": self.summary,
            "traces": self.per_trace,
            "mismatches": self.mismatches,
        }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n", 1)[1])
    ap.add_argument("outdir")
    ap.add_argument("--json", help="write figures and every mismatch as JSON to this file")
    ap.add_argument("--show", type=int, default=12, help="mismatches to print (default 12)")
    args = ap.parse_args()
    c = Compare(args.outdir)
    ok = c.run()
    print(c.report(args.show))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(c.as_json(), f, indent=1)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
