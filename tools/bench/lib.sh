# shellcheck shell=bash
# Helpers for tools/bench/run.sh: peers (nginx, tcpdump, wrk), timing with peak RSS
# (GNU time -v), arithmetic, and the result table. Sourced, not run.

ROWS=()        # "metric|measured|ratio|goal"
NOTES=()       # absolute numbers, printed and written to results.md
PIDS=()        # background processes started here, stopped on exit
CGROUPS=()     # cgroups created here, removed on exit
NGINX_PORT=""
TCPDUMP_PID=""
TCPDUMP_CAPTURED=0
TCPDUMP_DROPPED=0

# example_bin PKG NAME: path of a release example, built first unless
# PODTRACE_BENCH_PREBUILT=1 and it exists (the shared target dir's lock can stall builds).
example_bin() {
  local path="$root/target/release/examples/$2"
  if [ "${PODTRACE_BENCH_PREBUILT:-0}" != 1 ] || [ ! -x "$path" ]; then
    cargo build --release -q -p "$1" --example "$2" >&2
  fi
  echo "$path"
}

section() { echo; echo "== $*"; }
note() { echo "   $*"; NOTES+=("$*"); }
row() { ROWS+=("$1|$2|$3|$4"); }
want() { [[ "$skip" != *" $1 "* ]]; }

bench_cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  for p in "${CGROUPS[@]}"; do
    # move leftovers to the root cgroup so the directory can go
    if [ -f "$p/cgroup.procs" ]; then
      while read -r q; do echo "$q" >"$(dirname "$p")/cgroup.procs" 2>/dev/null || true; done <"$p/cgroup.procs"
    fi
    rmdir "$p" 2>/dev/null || true
  done
  [ -n "${work:-}" ] && [ -z "${PODTRACE_BENCH_KEEP:-}" ] && rm -rf "$work"
  # the scaling section's outputs on a tmpfs (scaling.sh): memory, never kept
  [ -n "${scale_out:-}" ] && [ "$scale_out" != "${work:-}" ] && rm -rf "$scale_out"
  [ -n "${PODTRACE_BENCH_KEEP:-}" ] && echo "kept $work"
  return 0
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_port() { # PORT: until something accepts on 127.0.0.1:PORT (5 s)
  local i
  for i in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "bench: nothing listens on port $1" >&2
  return 1
}

# nginx_start DIR [CGROUP]: nginx-light with its own config (daemon off, one worker) on a free
# loopback port; with CGROUP, the master is moved into that cgroup v2 directory before exec
# so the worker starts inside it. Sets NGINX_PORT, NGINX_PID.
nginx_start() {
  local dir="$1" cg="${2:-}"
  mkdir -p "$dir/tmp"
  NGINX_PORT=$(free_port)
  cat >"$dir/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $dir/tmp;
  proxy_temp_path $dir/tmp;
  fastcgi_temp_path $dir/tmp;
  uwsgi_temp_path $dir/tmp;
  scgi_temp_path $dir/tmp;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / { default_type text/plain; return 200 "ok\n"; }
  }
}
CONF
  if [ -n "$cg" ]; then
    sh -c 'echo $$ >"$1/cgroup.procs" && exec nginx -c "$2" -p "$3"' sh "$cg" "$dir/nginx.conf" "$dir" &
  else
    nginx -c "$dir/nginx.conf" -p "$dir" &
  fi
  NGINX_PID=$!
  PIDS+=("$NGINX_PID")
  wait_port "$NGINX_PORT"
}

nginx_stop() {
  kill -QUIT "$NGINX_PID" 2>/dev/null || true
  wait "$NGINX_PID" 2>/dev/null || true
}

# tcpdump_start FILE PORT [plain|zstd]: tcpdump -i lo of PORT's TCP into FILE, in the
# background until tcpdump_stop. By default the bench's reference capture: full packets
# (-s0), immediate mode, 256 MiB buffer. `plain` is the command line a user would run
# instead of the recorder (tcpdump -i lo -w FILE); `zstd` the same into zstd -1 (a
# compressed pcap, what a capture kept for hours needs; FILE is zstd's output).
tcpdump_start() {
  local err="$1.err" opts=(--immediate-mode -U -B 262144 -Z root -s 0)
  case "${3:-}" in
    plain) tcpdump -i lo -w "$1" "tcp port $2" 2>"$err" & ;;
    # tcpdump itself in the background ($! and the cleanup's kill reach it); zstd ends at EOF
    zstd) tcpdump -i lo -w >(zstd -1 -q -f -o "$1") "tcp port $2" 2>"$err" & ;;
    *) tcpdump -i lo "${opts[@]}" -w "$1" "tcp port $2" 2>"$err" & ;;
  esac
  TCPDUMP_PID=$!
  PIDS+=("$TCPDUMP_PID")
  TCPDUMP_ERR="$err"
  local i
  for i in $(seq 100); do grep -q "listening on" "$err" 2>/dev/null && break; sleep 0.05; done
  grep -q "listening on" "$err" || { cat "$err" >&2; return 1; }
}

tcpdump_stop() {
  sleep 0.3
  kill -INT "$TCPDUMP_PID" 2>/dev/null || true
  wait "$TCPDUMP_PID" 2>/dev/null || true
  TCPDUMP_CAPTURED=$(sed -n 's/^\([0-9]*\) packets captured.*/\1/p' "$TCPDUMP_ERR")
  TCPDUMP_DROPPED=$(sed -n 's/^\([0-9]*\) packets dropped by kernel.*/\1/p' "$TCPDUMP_ERR")
}

# wrk_run OUT PORT: wrk with the trace-header script, 2 threads, latency distribution.
wrk_run() {
  wrk -t2 -c"$conns" -d"${secs}s" --latency -s "$root/tools/bench/wrk-trace.lua" \
    "http://127.0.0.1:$2/" >"$1" 2>&1
}
wrk_requests() { sed -n 's/^ *\([0-9]*\) requests in.*/\1/p' "$1"; }
wrk_rps() { awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$1"; }
wrk_p99_us() { # the 99% latency line, in µs
  awk '$1 == "99%" { v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[a-z]+$/, "", v);
       m = (u == "us") ? 1 : (u == "ms") ? 1000 : (u == "s") ? 1000000 : 1; printf "%.0f", v * m }' "$1"
}

# timed FILE CMD...: run CMD under GNU time -v (wall clock, peak RSS) into FILE.
timed() { local f="$1"; shift; /usr/bin/time -v -o "$f" "$@"; }
elapsed() { # wall-clock seconds from a GNU time -v file
  awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0;
       for (i = 1; i <= n; i++) s = s * 60 + p[i]; printf "%.3f", s }' "$1"
}
cpu_s() { awk -F': ' '/User time/ { u = $2 } /System time/ { s = $2 } END { printf "%.3f", u + s }' "$1"; }
peak_rss_mb() { awk -F': ' '/Maximum resident set size/ { printf "%.0f", $2 / 1024 }' "$1"; }

# prev_figure LABEL: the first number of the measured column of row LABEL in the previous
# results file ($prev_results, read before this run replaces it); empty when there is none.
prev_figure() {
  [ -f "${prev_results:-}" ] || return 0
  awk -F'|' -v l="$1" '{ x = $2; gsub(/^ +| +$/, "", x) } x == l { split($3, a, " "); print a[1]; exit }' "$prev_results"
}
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }'; }
# ratio A B [DECIMALS]: A / B (2 decimals by default), n/a when B is not positive
ratio() { awk -v a="$1" -v b="$2" -v d="${3:-2}" 'BEGIN { if (b > 0) printf "%." d "f", a / b; else printf "n/a" }'; }
json_spans() { python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(d.get("stats", {}).get("spans", 0))' "$1"; }

print_table() {
  echo
  printf '%-50s | %-30s | %-10s | %s\n' "figure" "measured" "ratio" "goal"
  printf '%s\n' "---------------------------------------------------+--------------------------------+------------+----------------"
  local r
  for r in "${ROWS[@]}"; do
    IFS='|' read -r a b c d <<<"$r"
    printf '%-50s | %-30s | %-10s | %s\n' "$a" "$b" "$c" "$d"
  done
  echo "(total $1 s)"
}

write_results() {
  local out="$1" r n kept=""
  mkdir -p "$(dirname "$out")"
  # Sections written by hand or by other scripts (every "## " section but the absolute
  # numbers written below) are kept from the previous file, after the new figures.
  if [ -f "$out" ]; then
    kept=$(awk '/^## / { keep = ($0 != "## Absolute numbers") } keep' "$out")
  fi
  {
    echo "# podtrace benchmarks (\`make bench\`)"
    echo
    echo "Run: $(date -u '+%Y-%m-%d %H:%M UTC'), ${2:-$SECONDS} s total (tools/bench/run.sh)."
    echo "Machine: $(uname -srm), $(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)),"
    echo "$(awk '/MemTotal/ { printf "%.1f GiB RAM", $2 / 1048576 }' /proc/meminfo), load average at the end $(cut -d' ' -f1-3 /proc/loadavg)."
    echo "Every ratio compares two measurements taken side by side in this run; absolute numbers"
    echo "move a lot on this shared machine."
    echo
    echo "| figure | measured | ratio | goal |"
    echo "|---|---|---|---|"
    for r in "${ROWS[@]}"; do
      IFS='|' read -r a b c d <<<"$r"
      echo "| $a | $b | $c | $d |"
    done
    echo
    echo "## Absolute numbers"
    echo
    for n in "${NOTES[@]}"; do echo "- $n"; done
    if [ -n "$kept" ]; then
      echo
      echo "$kept"
    fi
  } >"$out.tmp"
  mv "$out.tmp" "$out"
  echo "wrote $out"
}
