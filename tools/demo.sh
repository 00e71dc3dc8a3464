#!/usr/bin/env bash
# `make demo`: podtrace end to end on this machine, in under two minutes.
#
# As root: starts a fake cluster (tools/fakenode/demo_cluster.py: an API server plus five
# "pods" — real processes in kubelet-shaped cgroups on loopback pod IPs — loadgen → frontend →
# backend/inventory → db, with W3C, B3 multi, B3 single and Splunk trace headers), records
# every pod of the demo with `podtrace record -n demo -l <selector>` for 10 s, then runs
# `podtrace inspect` and `podtrace analyze` and prints where the outputs are and a short
# trace summary. Everything it started (processes, cgroups, temp files) is removed on exit.
# Without root: explains why and runs `podtrace import` + `podtrace analyze` on the
# recorded fixture fixtures/chain/chain.pcap instead.
#
# Environment: PODTRACE_BIN (default target/release/podtrace), PODTRACE_DEMO_OUT (default
# ./podtrace-out), PODTRACE_DEMO_DURATION (default 10s), PODTRACE_DEMO_NET (pod IPs, default
# 127.0.1), PODTRACE_VENV (Python venv, default .venv; system python3 otherwise).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${PODTRACE_BIN:-$ROOT/target/release/podtrace}
OUT=${PODTRACE_DEMO_OUT:-$PWD/podtrace-out}
DURATION=${PODTRACE_DEMO_DURATION:-10s}
NET=${PODTRACE_DEMO_NET:-127.0.1}
PY=python3
if [[ -x ${PODTRACE_VENV:-$ROOT/.venv}/bin/python ]]; then
    PY=${PODTRACE_VENV:-$ROOT/.venv}/bin/python
fi

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { echo "demo: $*" >&2; exit 1; }

[[ -x $BIN ]] || die "no podtrace binary at $BIN (run: make release, or set PODTRACE_BIN)"
mkdir -p "$OUT"

# Prints a short summary of spans.json: traces, spans per service, errors, one trace as a tree.
summarize() {
    "$PY" - "$1" <<'PYEOF'
import collections, json, sys
spans = json.load(open(sys.argv[1]))
if not spans:
    print("no spans"); sys.exit(0)
by_trace = collections.defaultdict(list)
for s in spans:
    by_trace[s["trace_id"]].append(s)
svc = collections.Counter((s["resource"]["service_name"], s["kind"]) for s in spans)
errors = [s for s in spans if s.get("status", {}).get("code") == "error"]
print(f"{len(spans)} spans in {len(by_trace)} traces; {len(errors)} spans with status ERROR")
for (name, kind), n in sorted(svc.items()):
    print(f"  {name:<12} {kind:<6} {n:>5} spans")
def attr(s, k):
    return next((a["value"] for a in s.get("attributes", []) if a["key"] == k), "")
def show(trace):
    ids = {s["span_id"] for s in trace}
    kids = collections.defaultdict(list)
    for s in trace:
        p = s.get("parent_span_id")
        kids[p if p in ids else None].append(s)
    t0 = min(s["start_time_unix_nano"] for s in trace)
    def walk(s, depth):
        ms = (s["end_time_unix_nano"] - s["start_time_unix_nano"]) / 1e6
        off = (s["start_time_unix_nano"] - t0) / 1e6
        print(f"  {'  ' * depth}{s['resource']['service_name']:<10} {s['kind']:<6} {s['name']:<12} "
              f"{str(attr(s, 'http.response.status_code')):<4} +{off:7.2f} ms {ms:7.2f} ms  "
              f"{attr(s, 'podtrace.context.family')}")
        for k in sorted(kids[s["span_id"]], key=lambda x: x["start_time_unix_nano"]):
            walk(k, depth + 1)
    for r in sorted(kids[None], key=lambda x: x["start_time_unix_nano"]):
        walk(r, 0)
full = [t for t in by_trace.values() if len(t) == max(len(x) for x in by_trace.values())]
failed = [t for t in full if any(s.get("status", {}).get("code") == "error" for s in t)]
pick = (failed or full)[0]
print(f"\ntrace {pick[0]['trace_id']} ({'with an error' if failed else 'complete'}): "
      "service, kind, name, status, offset, duration, propagation family")
show(pick)
PYEOF
}

outputs() {
    say "outputs in $OUT"
    for f in traces.otlp.json spans.json graph.dot graph.svg summary.json report.html demo.parquet; do
        [[ -e $OUT/$f ]] && printf '  %-18s %s\n' "$f" "$OUT/$f"
    done
    return 0
}

if [[ $(id -u) -ne 0 ]]; then
    say "not root: recording needs root (eBPF probes, cgroups); showing import + analyze on a recorded pcap"
    CAP=$OUT/chain.parquet
    "$BIN" import "$ROOT/fixtures/chain/chain.pcap" -o "$CAP" \
        --k8s-objects "$ROOT/fixtures/chain/k8s-objects.json"
    "$BIN" inspect "$CAP"
    say "podtrace analyze $CAP --out $OUT"
    "$BIN" analyze "$CAP" --out "$OUT" --graph-svg "$OUT/graph.svg"
    outputs
    say "trace summary"
    summarize "$OUT/spans.json"
    echo
    echo "Run as root (sudo make demo) to record a live fake cluster instead."
    exit 0
fi

TMP=$(mktemp -d /tmp/podtrace-demo.XXXXXX)
CLUSTER_PID=
RECORD_PID=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $RECORD_PID ]] && kill -0 "$RECORD_PID" 2>/dev/null; then
        kill -INT "$RECORD_PID" 2>/dev/null || true
        wait "$RECORD_PID" 2>/dev/null || true
    fi
    if [[ -n $CLUSTER_PID ]] && kill -0 "$CLUSTER_PID" 2>/dev/null; then
        kill -TERM "$CLUSTER_PID" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$CLUSTER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$CLUSTER_PID" 2>/dev/null || true
        wait "$CLUSTER_PID" 2>/dev/null || true
    fi
    # demo_cluster.py removes its pods' cgroups; if it was killed, do it here (bottom-up).
    if [[ -s $TMP/cluster.json ]]; then
        "$PY" - "$TMP/cluster.json" <<'PYEOF' || true
import json, os, signal, sys
info = json.loads(open(sys.argv[1]).readline())
for pod in info["pods"].values():
    for d in pod["cgroup_dirs"].values():
        for cg in (d, os.path.dirname(d)):
            if not os.path.isdir(cg):
                continue
            try:
                for pid in open(os.path.join(cg, "cgroup.procs")).read().split():
                    os.kill(int(pid), signal.SIGKILL)
                os.rmdir(cg)
            except OSError as e:
                print(f"demo: could not remove {cg}: {e}", file=sys.stderr)
PYEOF
    fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "starting the demo cluster (API server + 5 pods on $NET.0/24)"
"$PY" "$ROOT/tools/fakenode/demo_cluster.py" --dir "$TMP/api" --net "$NET" --rps 20 \
    --load-log "$TMP/load.jsonl" --load-wait "$TMP/go" >"$TMP/cluster.json" 2>"$TMP/cluster.log" &
CLUSTER_PID=$!
for _ in $(seq 300); do
    [[ -s $TMP/cluster.json ]] && break
    kill -0 "$CLUSTER_PID" 2>/dev/null || { cat "$TMP/cluster.log" >&2; die "the demo cluster did not start"; }
    sleep 0.1
done
[[ -s $TMP/cluster.json ]] || die "the demo cluster was not ready after 30 s"
KUBECONFIG=$("$PY" -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["kubeconfig"])' "$TMP/cluster.json")
SELECTOR=$("$PY" -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["selector"])' "$TMP/cluster.json")
export KUBECONFIG
echo "pods: loadgen-0 → frontend-0 → {backend-0 → db-0, inventory-0 → db-0}; kubeconfig $KUBECONFIG"

CAP=$OUT/demo.parquet
rm -f "$CAP"
say "podtrace record -n demo -l $SELECTOR -o $CAP --duration $DURATION"
# The load generator waits for $TMP/go: traffic starts once the probes run (record's debug
# progress lines begin then), so every keep-alive connection is recorded from its first
# request (see docs/demo.md).
RUST_LOG=warn,podtrace::cmd::record=debug "$BIN" record -n demo -l "$SELECTOR" -o "$CAP" --duration "$DURATION" \
    2>"$TMP/record.err" &
RECORD_PID=$!
for _ in $(seq 300); do
    grep -q "events/s" "$TMP/record.err" 2>/dev/null && break
    kill -0 "$RECORD_PID" 2>/dev/null || break
    sleep 0.1
done
grep -v DEBUG "$TMP/record.err" >&2 || true
touch "$TMP/go"
RC=0
wait "$RECORD_PID" || RC=$?
RECORD_PID=
grep -v -e DEBUG -e "^podtrace: recording" "$TMP/record.err" >&2 || true
[[ $RC -eq 0 ]] || die "podtrace record failed (exit $RC)"

say "podtrace inspect $CAP"
"$BIN" inspect "$CAP"

say "podtrace analyze $CAP --out $OUT --graph-svg $OUT/graph.svg"
"$BIN" analyze "$CAP" --out "$OUT" --graph-svg "$OUT/graph.svg"

outputs
say "trace summary"
summarize "$OUT/spans.json"
echo
echo "the load generator made $(wc -l <"$TMP/load.jsonl") requests while the cluster ran (log: one JSON line per request)"
echo "read docs/demo.md for what these outputs mean"
