#!/usr/bin/env bash
# `make bench`: podtrace against tshark, pcap and its own limits. Every figure is a ratio of
# two measurements taken side by side in this run (the machines are shared and noisy);
# absolute numbers are printed too but nothing is asserted. Writes bench/results.md.
#
# Sections (each can be skipped with PODTRACE_BENCH_SKIP="recorder scaling export ..."):
#   traffic   wrk (traceparent + B3 on every request, tools/bench/wrk-trace.lua) against
#             nginx-light on loopback, captured by tcpdump -s0, imported with
#             `podtrace import --view server`
#   analyzer  tshark extracting method/uri/status/trace headers vs `podtrace analyze` → OTLP JSON
#   size      bytes per request: Parquet capture vs pcap vs `zstd -1` pcap
#   recorder  wrk against nginx with and without `podtrace record --cgroup` (throughput, p99);
#             bench_recorder --quick (ns per untargeted syscall, events/s)
#   stages    analyzer/examples/bench_stages: spans/s of each stage on 1 vs 2 cores and
#             instructions per span (callgrind), beside the previous results (tools/bench/stages.sh)
#   tls       tools/bench/tls.sh: ns per OpenSSL call (tools/bench/tls_bench.c) without a
#             recorder, under `record --tls off` and under `record` (uprobes on)
#   scaling   analyze 1x/2x/4x of the capture (tools/bench/gen-data.sh), 1 core vs 2 cores,
#             peak RSS of each (GNU time / getrusage)
#   export    export/examples/bench_export (spans/s to rotel vs file)
# Needs root (tcpdump, cgroups, eBPF), nginx, wrk, tcpdump, tshark, zstd.
# Env: PODTRACE_BENCH_SECONDS (wrk duration, default 4), PODTRACE_BENCH_CONNS (default 32).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
bin="${PODTRACE_BIN:-$root/target/release/podtrace}"
secs="${PODTRACE_BENCH_SECONDS:-4}"
conns="${PODTRACE_BENCH_CONNS:-32}"
skip=" ${PODTRACE_BENCH_SKIP:-} "
work="$(mktemp -d /tmp/podtrace-bench.XXXXXX)"
# The figures of the last run, for "vs before" (read before this run replaces the file).
prev_results="${PODTRACE_BENCH_PREVIOUS:-$root/bench/results.md}"
[ -f "$prev_results" ] && cp "$prev_results" "$work/previous-results.md" && prev_results="$work/previous-results.md"
# shellcheck source=tools/bench/lib.sh
. "$root/tools/bench/lib.sh"
trap bench_cleanup EXIT

for tool in nginx wrk tcpdump tshark zstd; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing (make deps)" >&2; exit 1; }
done
[ -x "$bin" ] || { echo "bench: $bin missing (make release)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "bench: needs root (tcpdump, cgroups, eBPF)" >&2; exit 1; }
start_all=$(date +%s)

# ---- traffic: wrk → nginx on loopback, captured by tcpdump ----------------------------
section "traffic: wrk ${secs}s, $conns connections → nginx-light, tcpdump -s0"
nginx_start "$work/nginx"
traffic_port=$NGINX_PORT
tcpdump_start "$work/wrk.pcap" "$NGINX_PORT"
wrk_run "$work/wrk-plain.txt" "$NGINX_PORT"
tcpdump_stop
wrk_reqs=$(wrk_requests "$work/wrk-plain.txt")
wrk_rps=$(wrk_rps "$work/wrk-plain.txt")
wrk_p99=$(wrk_p99_us "$work/wrk-plain.txt")
note "wrk: $wrk_reqs requests, $wrk_rps req/s, p99 ${wrk_p99} µs; tcpdump: $TCPDUMP_CAPTURED packets, $TCPDUMP_DROPPED dropped"
pcap_bytes=$(stat -c %s "$work/wrk.pcap")

timed "$work/import.time" "$bin" import --view server -o "$work/wrk.parquet" "$work/wrk.pcap" >/dev/null
note "import: $(elapsed "$work/import.time") s"
parquet_bytes=$(stat -c %s "$work/wrk.parquet")

# ---- analyzer vs tshark ---------------------------------------------------------------
if want analyzer; then
  section "analyzer vs tshark on the same capture"
  # custom header fields come from a private config dir (several -o uat: entries do not add up)
  mkdir -p "$work/wireshark"
  printf '"%s","%s"\n' traceparent "W3C trace context" x-b3-traceid "B3 trace id" \
    x-b3-spanid "B3 span id" >"$work/wireshark/custom_http_header_fields"
  WIRESHARK_CONFIG_DIR="$work/wireshark" timed "$work/tshark.time" tshark -r "$work/wrk.pcap" \
    -d "tcp.port==$traffic_port,http" -Y http \
    -T fields -e frame.time_epoch -e tcp.stream -e http.request.method -e http.request.uri \
    -e http.response.code -e http.header.traceparent -e http.header.x-b3-traceid \
    -e http.header.x-b3-spanid >"$work/tshark.tsv" 2>/dev/null
  tshark_reqs=$(awk -F'\t' '$3 != ""' "$work/tshark.tsv" | wc -l)
  tshark_resps=$(awk -F'\t' '$5 != ""' "$work/tshark.tsv" | wc -l)
  tshark_s=$(elapsed "$work/tshark.time")
  timed "$work/analyze.time" "$bin" analyze --json --out "$work/out" "$work/wrk.parquet" >"$work/analyze.json"
  pt_s=$(elapsed "$work/analyze.time")
  pt_spans=$(json_spans "$work/analyze.json")
  pt_otlp=$(grep -o '"spanId"' "$work/out/traces.otlp.json" | wc -l)
  rm -rf "$work/out"
  tshark_rps=$(rate "$tshark_reqs" "$tshark_s")
  pt_rps=$(rate "$pt_spans" "$pt_s")
  note "tshark: $tshark_reqs requests / $tshark_resps responses in $tshark_s s ($tshark_rps req/s, peak RSS $(peak_rss_mb "$work/tshark.time") MiB)"
  note "podtrace analyze: $pt_spans spans ($pt_otlp in traces.otlp.json) in $pt_s s ($pt_rps req/s, peak RSS $(peak_rss_mb "$work/analyze.time") MiB)"
  # the goal's own definition: traces.otlp.json and the report written (no spans.json dump)
  timed "$work/analyze-lean.time" "$bin" analyze --json --spans-json false --out "$work/out" "$work/wrk.parquet" >"$work/analyze-lean.json"
  rm -rf "$work/out"
  lean_rps=$(rate "$(json_spans "$work/analyze-lean.json")" "$(elapsed "$work/analyze-lean.time")")
  note "podtrace analyze --spans-json false: $(json_spans "$work/analyze-lean.json") spans in $(elapsed "$work/analyze-lean.time") s ($lean_rps req/s, peak RSS $(peak_rss_mb "$work/analyze-lean.time") MiB)"
  prev_cli=$(prev_figure "podtrace analyze (CLI, all outputs) vs tshark")
  prev_lean=$(prev_figure "podtrace analyze (CLI, traces.otlp.json + report) vs tshark")
  row "podtrace analyze (CLI, all outputs) vs tshark" "$pt_rps vs $tshark_rps" "x$(ratio "$pt_rps" "$tshark_rps")" "printed"
  row "podtrace analyze (CLI) vs before (req/s)" "$pt_rps vs ${prev_cli:-none}" "x$(ratio "$pt_rps" "${prev_cli:-0}")" "higher"
  row "podtrace analyze (CLI, traces.otlp.json + report) vs tshark" "$lean_rps vs $tshark_rps" "x$(ratio "$lean_rps" "$tshark_rps")" "≥ 500 k req/s"
  row "podtrace analyze (CLI, traces.otlp.json + report) vs before (req/s)" "$lean_rps vs ${prev_lean:-none}" "x$(ratio "$lean_rps" "${prev_lean:-0}")" "higher"
  core=$("$(example_bin podtrace-analyzer bench_capture)" "$work/wrk.parquet")
  core_rps=$(sed -n 's/.*spans_per_s=\([0-9]*\).*/\1/p' <<<"$core")
  note "analyzer core (read + analyze, no output files; analyzer/examples/bench_capture): $core"
  prev_core=$(prev_figure "analyzer core vs tshark (requests/s)")
  row "analyzer core vs tshark (requests/s)" "$core_rps vs $tshark_rps" "x$(ratio "$core_rps" "$tshark_rps")" "≥ 1 M req/s"
  row "analyzer core vs before (req/s)" "$core_rps vs ${prev_core:-none}" "x$(ratio "$core_rps" "${prev_core:-0}")" "higher"
  row "requests seen (wrk / tshark / podtrace spans)" "$wrk_reqs / $tshark_reqs / $pt_spans" "" "equal"
fi

# ---- analyzer stages ------------------------------------------------------------------
if want stages; then
  section "analyzer stages: 1 vs 2 cores, instructions per span"
  . "$root/tools/bench/stages.sh"
fi

# ---- capture size ---------------------------------------------------------------------
if want size; then
  section "capture size"
  zstd -q -1 -T1 -o "$work/wrk.pcap.zst" "$work/wrk.pcap"
  zst_bytes=$(stat -c %s "$work/wrk.pcap.zst")
  per_req() { awk -v b="$1" -v n="$wrk_reqs" 'BEGIN { printf "%.1f", (n > 0 ? b / n : 0) }'; }
  note "pcap $pcap_bytes B, pcap.zst $zst_bytes B, parquet $parquet_bytes B for $wrk_reqs requests"
  row "bytes/request: parquet vs pcap" "$(per_req "$parquet_bytes") vs $(per_req "$pcap_bytes")" "1/$(ratio "$pcap_bytes" "$parquet_bytes")" "≥ 1/6"
  row "bytes/request: parquet vs zstd -1 pcap" "$(per_req "$parquet_bytes") vs $(per_req "$zst_bytes")" "x$(ratio "$parquet_bytes" "$zst_bytes")" "< x1"
fi

# ---- recorder overhead ----------------------------------------------------------------
if want recorder; then
  section "recorder overhead: wrk against nginx with and without podtrace record"
  . "$root/tools/bench/recorder.sh"
fi

# ---- TLS uprobes ----------------------------------------------------------------------
if want tls; then
  section "TLS: ns per SSL_write/SSL_read with and without the uprobes"
  . "$root/tools/bench/tls.sh"
fi

# ---- scaling --------------------------------------------------------------------------
if want scaling; then
  section "scaling: analyze 1x/2x/4x, 1 vs 2 threads"
  . "$root/tools/bench/scaling.sh"
fi

# ---- exporter -------------------------------------------------------------------------
if want export; then
  section "exporter: spans/s to rotel (OTLP) vs file"
  . "$root/tools/bench/export.sh"
fi

total=$(( $(date +%s) - start_all ))
print_table "$total"
write_results "${PODTRACE_BENCH_RESULTS:-$root/bench/results.md}" "$total"
