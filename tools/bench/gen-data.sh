#!/usr/bin/env bash
# `make bench-data`: a large capture of real HTTP/1 traffic for the analyzer's scaling
# figures. Records wrk (traceparent + B3 headers) against nginx-light on loopback with
# tcpdump, imports it (`podtrace import --view server`), then replicates it with
# format/examples/bench_replicate (copies shifted in time, new connection and trace ids)
# until it holds PODTRACE_BENCH_GIB GiB of HTTP payload (default 1), and analyzes that with
# GNU time: wall time, spans/s and peak RSS are printed (RSS must stay bounded by the
# analysis window, not grow with the capture).
# Output: ${PODTRACE_BENCH_DATA:-target/bench-data}/{wrk.pcap,wrk.parquet,wrk-1gib.parquet}.
# Needs root, nginx, wrk, tcpdump.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
bin="${PODTRACE_BIN:-$root/target/release/podtrace}"
secs="${PODTRACE_BENCH_SECONDS:-4}"
conns="${PODTRACE_BENCH_CONNS:-32}"
gib="${PODTRACE_BENCH_GIB:-1}"
data="${PODTRACE_BENCH_DATA:-$root/target/bench-data}"
skip=""
work="$(mktemp -d /tmp/podtrace-bench-data.XXXXXX)"
# shellcheck source=tools/bench/lib.sh
. "$root/tools/bench/lib.sh"
trap bench_cleanup EXIT
[ "$(id -u)" = 0 ] || { echo "bench-data: needs root (tcpdump)" >&2; exit 1; }
mkdir -p "$data"

section "wrk ${secs}s → nginx-light, tcpdump -s0"
nginx_start "$work/nginx"
tcpdump_start "$data/wrk.pcap" "$NGINX_PORT"
wrk_run "$work/wrk.txt" "$NGINX_PORT"
tcpdump_stop
nginx_stop
note "wrk: $(wrk_requests "$work/wrk.txt") requests; tcpdump: $TCPDUMP_CAPTURED packets, $TCPDUMP_DROPPED dropped"
"$bin" import --view server -o "$data/wrk.parquet" "$data/wrk.pcap" >/dev/null

replicate="$(example_bin podtrace-format bench_replicate)"
# one copy's HTTP payload bytes → number of copies for the requested size
one=$("$replicate" "$data/wrk.parquet" "$work/one.parquet" 1 | sed -n 's/.* rows, \([0-9]*\) payload bytes.*/\1/p')
rm -f "$work/one.parquet"
copies=$(awk -v g="$gib" -v b="$one" 'BEGIN { n = int(g * 1073741824 / b + 0.999); print (n < 1 ? 1 : n) }')
section "replicating $copies copies ($one payload bytes each) → $data/wrk-${gib}gib.parquet"
"$replicate" "$data/wrk.parquet" "$data/wrk-${gib}gib.parquet" "$copies"

section "podtrace analyze on it"
timed "$work/analyze.time" "$bin" analyze --json --out "$work/out" "$data/wrk-${gib}gib.parquet" >"$work/analyze.json"
s=$(elapsed "$work/analyze.time")
spans=$(json_spans "$work/analyze.json")
note "analyze: $spans spans in $s s wall ($(cpu_s "$work/analyze.time") s CPU) = $(rate "$spans" "$s") spans/s; peak RSS $(peak_rss_mb "$work/analyze.time") MiB"
