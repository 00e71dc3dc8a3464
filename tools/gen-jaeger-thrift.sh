#!/bin/sh
# Regenerates export/src/jaeger/gen.rs from export/thrift/jaeger.thrift.
# Needs Debian `thrift-compiler` 0.17 (`apt-get install thrift-compiler`), whose output builds
# against the `thrift = "=0.17.0"` crate. Run from anywhere: `sh tools/gen-jaeger-thrift.sh`.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
thrift --version
thrift --gen rs -out "$out" "$root/export/thrift/jaeger.thrift"
{
  echo "//! Rust types generated from \`export/thrift/jaeger.thrift\` by the Apache Thrift compiler."
  echo "//!"
  echo "//! Do not edit: regenerate with \`sh tools/gen-jaeger-thrift.sh\`, which runs"
  echo "//! \`thrift --gen rs -out <tmp> export/thrift/jaeger.thrift\` (thrift-compiler 0.17)."
  echo
  cat "$out/jaeger.rs"
} > "$root/export/src/jaeger/gen.rs"
echo "wrote $root/export/src/jaeger/gen.rs"
