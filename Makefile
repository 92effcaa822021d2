# vigil — the two commands a newcomer needs are `make demo` and `make test`.
CARGO ?= cargo
VIGIL := target/debug/vigil
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
PLUGIN_DIR := $(TARGET_DIR)/plugins
# Real plugins go to $(PLUGIN_DIR), test-only ones (sandbox tests, benchmarks) to $(PLUGIN_DIR)/test.
PLUGINS := prometheus http exec file sim supervisor haproxy
TEST_PLUGINS := noop hostile

.PHONY: plugins all build demo test bench nab fmt lint clean

all: build

build:
	$(CARGO) build --bin vigil

## Run the main job on the embedded default bundle (runbooks/): the closed loop, narrated.
demo: build plugins
	@$(VIGIL) demo

## Build every plugin once (release, wasm32-wasip2) into $(PLUGIN_DIR).
plugins:
	$(CARGO) build --release --target wasm32-wasip2 $(addprefix -p plugin-,$(PLUGINS) $(TEST_PLUGINS))
	mkdir -p $(PLUGIN_DIR)/test
	for p in $(PLUGINS); do cp $(TARGET_DIR)/wasm32-wasip2/release/plugin_$$p.wasm $(PLUGIN_DIR)/$$p.wasm; done
	for p in $(TEST_PLUGINS); do cp $(TARGET_DIR)/wasm32-wasip2/release/plugin_$$p.wasm $(PLUGIN_DIR)/test/$$p.wasm; done

## The whole test suite: unit, property, data-driven and end-to-end tests.
test: plugins
	$(CARGO) build --bin vigil
	VIGIL_PLUGIN_DIR=$(abspath $(PLUGIN_DIR)) $(CARGO) test --workspace

## Every benchmark, each figure next to its target.
bench: plugins
	VIGIL_PLUGIN_DIR=$(abspath $(PLUGIN_DIR)) $(CARGO) bench --bench executor --bench journal --bench validate --bench policy --bench detect --bench plugin --bench alerts --bench ingest_vs_alertmanager
	@python3 scripts/bench_report.py

## Anomaly detection quality on NAB data (NAB_DATA, or the workplace copy by default: scripts/nab.sh), beside the published detectors.
nab:
	@bash scripts/nab.sh

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) clippy --workspace --all-targets

clean:
	$(CARGO) clean
	rm -rf .vigil
