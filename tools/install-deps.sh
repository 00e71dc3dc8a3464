#!/usr/bin/env bash
# Installs what podtrace's build, tests and demo need on a fresh Debian 12 machine that has
# only Rust: Debian packages (when missing, as root) and the Python test peers in .venv.
# Idempotent and quiet when everything is there already.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(clang llvm libbpf-dev bpftool tcpdump tshark graphviz wrk nginx-light
              python3-venv openssl iproute2 curl nodejs npm chromium redis-server
              postgresql-15)

# the byte-exact recorder test (recorder/tests/it/ebpf_bytes_exact.rs) runs a Java 17 peer
# from source (`java Peer.java` needs the JDK's compiler)
APT_PACKAGES+=(openjdk-17-jdk-headless)

# MySQL spans (analyzer mysql golden fixture, tests/it/analyze_mysql.rs): a throw-away
# MariaDB server per test (mariadb-install-db + mariadbd; a system service is not used)
APT_PACKAGES+=(mariadb-server)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node/npm may come from elsewhere (e.g. preinstalled): only ask apt when absent.
command -v node >/dev/null && missing=("${missing[@]/nodejs}")
command -v npm >/dev/null && missing=("${missing[@]/npm}")
read -r -a missing <<<"${missing[*]}"
if ((${#missing[@]})); then
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: missing Debian packages: ${missing[*]} (run as root, or install them)" >&2
    exit 1
  fi
  echo "install-deps: apt-get install ${missing[*]}"
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

VENV=.venv
REQ=tools/requirements-test.txt
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
if ! cmp -s "$REQ" "$VENV/.installed-requirements" 2>/dev/null; then
  echo "install-deps: pip install -r $REQ into $VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQ"
  cp "$REQ" "$VENV/.installed-requirements"
fi

for dir in tools/receivers tools/sdk-truth; do
  # (re)install when package.json changed since the last install
  if [ -f "$dir/package.json" ] && ! cmp -s "$dir/package.json" "$dir/node_modules/.installed-package.json" 2>/dev/null; then
    echo "install-deps: npm install in $dir"
    (cd "$dir" && npm install --silent --no-audit --no-fund && cp package.json node_modules/.installed-package.json)
  fi
done
