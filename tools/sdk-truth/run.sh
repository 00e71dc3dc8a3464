#!/usr/bin/env bash
# The SDK-truth scenario of issue 15 (see scenario.py and README.md):
#   tools/sdk-truth/run.sh record OUTDIR    podtrace record of the services' cgroups
#   tools/sdk-truth/run.sh pcap OUTDIR      tcpdump -i lo, then podtrace import
#   tools/sdk-truth/run.sh analyze OUTDIR   re-analyze OUTDIR/capture.parquet + compare only
# OUTDIR keeps the capture, the SDK span files (sdk/), analysis/ and compare.{txt,json}.
# The podtrace binary: SDK_TRUTH_PODTRACE, else target/release, else target/debug.
# Extra arguments go to scenario.py (e.g. --requests 80, --analyze-arg=--window=60).
# Needs root; exit 0 = podtrace's traces equal the SDK's, 1 = mismatches, 2 = setup failure.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ $# -lt 2 ]; then
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
exec python3 "$here/scenario.py" "$@"
