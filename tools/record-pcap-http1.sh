#!/usr/bin/env bash
# Re-records fixtures/pcap/http1-curl.pcap: real curl <-> python HTTP/1.1 traffic on
# loopback, captured by tcpdump (Ethernet link type on lo). Needs root, tcpdump, curl,
# python3. tcpdump needs --immediate-mode here: without it packets still in the kernel
# ring when it is stopped are lost (a short capture comes out empty).
# Usage: tools/record-pcap-http1.sh [OUTPUT]  (default: fixtures/pcap/http1-curl.pcap)
#
# What is in it (the import tests rely on this):
#   connection 1 (keep-alive): GET /hello with traceparent + X-Request-ID headers,
#                              POST /echo with a 1000-byte body and X-Test-Id,
#                              GET /status/404
#   connection 2:              GET /size/2000
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/fixtures/pcap/http1-curl.pcap}"
work="$(mktemp -d)"
server_pid="" dump_pid=""
cleanup() {
  [ -n "$dump_pid" ] && kill -INT "$dump_pid" 2>/dev/null || true
  [ -n "$server_pid" ] && kill -TERM "$server_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

python3 -u "$root/tools/gen-traffic/http1_server.py" 0 >"$work/server.out" &
server_pid=$!
for _ in $(seq 100); do grep -q "listening on" "$work/server.out" 2>/dev/null && break; sleep 0.05; done
port="$(sed -n 's/.*127.0.0.1:\([0-9]*\).*/\1/p' "$work/server.out")"
[ -n "$port" ] || { echo "server did not start" >&2; exit 1; }

tcpdump -i lo --immediate-mode -U -B 65536 -Z root -s 0 -w "$work/x.pcap" "tcp port $port" 2>"$work/tcpdump.err" &
dump_pid=$!
for _ in $(seq 100); do grep -q "listening on" "$work/tcpdump.err" 2>/dev/null && break; sleep 0.05; done
grep -q "listening on" "$work/tcpdump.err" || { cat "$work/tcpdump.err" >&2; exit 1; }

head -c 1000 /dev/zero | tr '\0' 'p' >"$work/body"
base="http://127.0.0.1:$port"
curl -sS --http1.1 --max-time 10 -o /dev/null \
  -H "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" \
  -H "X-Request-ID: fixture-1" "$base/hello" \
  --next -o /dev/null -X POST -H "Content-Type: application/octet-stream" \
  -H "X-Test-Id: 42" --data-binary "@$work/body" "$base/echo" \
  --next -o /dev/null "$base/status/404"
curl -sS --http1.1 --max-time 10 -o /dev/null "$base/size/2000"
sleep 0.3
kill -INT "$dump_pid"; wait "$dump_pid" || true; dump_pid=""
if grep -Eq "^[1-9][0-9]* packets dropped by kernel" "$work/tcpdump.err"; then
  cat "$work/tcpdump.err" >&2
  echo "tcpdump dropped packets: the sample would have holes; try again" >&2
  exit 1
fi
mkdir -p "$(dirname "$out")"
cp "$work/x.pcap" "$out"
echo "wrote $out ($(stat -c %s "$out") bytes)"
