# shellcheck shell=bash
# Exporter section of tools/bench/run.sh (sourced): export/examples/bench_export (spans/s to
# a real rotel collector over OTLP/HTTP vs writing the OTLP/JSON file), 100 000 spans.
"$(example_bin podtrace-export bench_export)" --spans 100000 >"$work/export.txt" 2>&1 || {
  cat "$work/export.txt" >&2
  echo "bench: bench_export failed" >&2
}
while read -r line; do note "bench_export: $line"; done < <(grep -v '^\s*$' "$work/export.txt")
# lines look like "... otlp ... N spans/s" and "... file ... N spans/s"
otlp_sps=$(awk '/spans\/s/ && /otlp|rotel/ && !/file/ { for (i = 1; i < NF; i++) if ($(i+1) ~ /^spans\/s/) v = $i } END { print v + 0 }' "$work/export.txt")
file_sps=$(awk '/spans\/s/ && /file/ { for (i = 1; i < NF; i++) if ($(i+1) ~ /^spans\/s/) v = $i } END { print v + 0 }' "$work/export.txt")
row "exporter spans/s: rotel (OTLP/HTTP) vs file" "$otlp_sps vs $file_sps" "x$(ratio "$otlp_sps" "$file_sps")" "printed"
