# podtrace — every set-up step a fresh Debian 12 machine with Rust needs is in here.
#   make demo   records real loopback traffic, analyzes it, writes traces + graph locally
#   make test   unit, golden, end-to-end tests (root for the eBPF ones)
SHELL := /bin/bash
CARGO ?= cargo
export PODTRACE_VENV := $(CURDIR)/.venv
export PATH := $(CURDIR)/.venv/bin:$(PATH)

.PHONY: all deps build release test lint fmt fuzz demo fixtures bench bench-recorder bench-export bench-data clean

all: build

deps:
	@tools/install-deps.sh

build: deps
	$(CARGO) build --workspace --all-targets

release: deps
	$(CARGO) build --release -p podtrace

# The cluster tests (tests/it/cluster.rs) run the podtrace-cluster binary beside podtrace:
# `cargo test --workspace` builds it because its package has integration tests of its own
# (cluster/tests/); a separate `cargo build -p podtrace-cluster` would resolve the
# dependencies' features for that package alone and compile DataFusion a second time.
test: deps
	$(CARGO) test --workspace --no-fail-fast
	tools/fuzz.sh 10

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

# Every fuzz target for FUZZ_SECONDS each (make test runs 10 s each).
FUZZ_SECONDS ?= 60
fuzz: deps
	tools/fuzz.sh $(FUZZ_SECONDS)

demo: deps release
	@tools/demo.sh

fixtures: deps
	@tools/fixtures/record.sh
	@tools/fixtures/h2/record.sh all
	@tools/fixtures/record_redis.sh
	@tools/fixtures/record_mysql.sh
	@tools/fixtures/record_postgres.sh

bench-data: deps release
	@tools/bench/gen-data.sh

bench: deps release
	@tools/bench/run.sh

bench-recorder: deps
	$(CARGO) run --release -p podtrace-recorder --example bench_recorder

bench-export: deps
	$(CARGO) run --release -p podtrace-export --example bench_export

clean:
	$(CARGO) clean
	rm -rf podtrace-out
