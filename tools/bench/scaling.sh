# shellcheck shell=bash
# Scaling section of tools/bench/run.sh (sourced): the wrk capture replicated 2x and 4x
# (format/examples/bench_replicate: shifted timestamps, new connection and trace ids), each
# analyzed on 1 core (taskset -c 0, 1 rayon thread) and on 2 cores (2 rayon threads): the
# CLI's writer thread runs beside the analysis whatever the rayon pool, so only pinning
# shows what a second core adds. Wall time, CPU time and peak RSS of every run.
# The outputs (2.1 GB of JSON at 4x) go to a tmpfs when there is one: on a disk, the
# kernel's writeback threads (not pinned by taskset) wrote them on the other core, which
# gave the "1 core" run part of a second core (4x data: x1.50 on disk, x1.66 on tmpfs,
# 2026-12-06). The copies into the page cache are the process's own syscalls either way.
# Uses $work/wrk.parquet from the traffic section.
replicate="$(example_bin podtrace-format bench_replicate)"
scale_out="$work"
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
  scale_out="$(mktemp -d /dev/shm/podtrace-bench-scale.XXXXXX)"
fi
declare -A scale_s scale_rss
for k in 1 2 4; do
  if [ "$k" = 1 ]; then
    cap="$work/wrk.parquet"
  else
    cap="$work/wrk-x$k.parquet"
    "$replicate" "$work/wrk.parquet" "$cap" "$k" >/dev/null
  fi
  for t in 1 2; do
    cores=0
    [ "$t" = 2 ] && cores=0,1
    taskset -c "$cores" env RAYON_NUM_THREADS=$t /usr/bin/time -v -o "$work/scale-$k-$t.time" "$bin" analyze --json --out "$scale_out/out-$k-$t" "$cap" >"$work/scale-$k-$t.json"
    scale_s[$k-$t]=$(elapsed "$work/scale-$k-$t.time")
    scale_rss[$k-$t]=$(peak_rss_mb "$work/scale-$k-$t.time")
    spans=$(json_spans "$work/scale-$k-$t.json")
    rm -rf "$scale_out/out-$k-$t" # outputs are large; the disk (or memory) is shared
    note "analyze ${k}x ($(stat -c %s "$cap") B, $spans spans), $t core(s): ${scale_s[$k-$t]} s wall, $(cpu_s "$work/scale-$k-$t.time") s CPU, $(rate "$spans" "${scale_s[$k-$t]}") spans/s, peak RSS ${scale_rss[$k-$t]} MiB"
  done
  [ "$k" != 1 ] && rm -f "$cap"
done
row "analyze time 2x / 1x data (2 threads)" "${scale_s[2-2]} s vs ${scale_s[1-2]} s" "x$(ratio "${scale_s[2-2]}" "${scale_s[1-2]}")" "≈ x2 (linear)"
row "analyze time 4x / 1x data (2 threads)" "${scale_s[4-2]} s vs ${scale_s[1-2]} s" "x$(ratio "${scale_s[4-2]}" "${scale_s[1-2]}")" "≈ x4 (linear)"
row "speed-up 2 cores vs 1 (4x data, CLI)" "${scale_s[4-1]} s vs ${scale_s[4-2]} s" "x$(ratio "${scale_s[4-1]}" "${scale_s[4-2]}")" "≥ x1.7"
row "peak RSS 4x / 1x data (2 threads)" "${scale_rss[4-2]} MiB vs ${scale_rss[1-2]} MiB" "x$(ratio "${scale_rss[4-2]}" "${scale_rss[1-2]}")" "≈ x1 (bounded by the window)"
if [ "$scale_out" != "$work" ]; then rm -rf "$scale_out"; fi
