# vigil — build, test, bench. (Plugin targets; the lead merges the rest.)
CARGO ?= cargo
export CARGO_TARGET_DIR ?= $(CURDIR)/target
PLUGIN_DIR := $(CARGO_TARGET_DIR)/plugins
# package:stem — real plugins go to $(PLUGIN_DIR), test-only ones to $(PLUGIN_DIR)/test.
PLUGINS := prometheus http exec file sim
TEST_PLUGINS := noop hostile

.PHONY: plugins test-plugins bench-plugins

## Build every plugin once (release, wasm32-wasip2) into $(PLUGIN_DIR).
plugins:
	$(CARGO) build --release --target wasm32-wasip2 $(addprefix -p plugin-,$(PLUGINS) $(TEST_PLUGINS))
	mkdir -p $(PLUGIN_DIR)/test
	for p in $(PLUGINS); do cp $(CARGO_TARGET_DIR)/wasm32-wasip2/release/plugin_$$p.wasm $(PLUGIN_DIR)/$$p.wasm; done
	for p in $(TEST_PLUGINS); do cp $(CARGO_TARGET_DIR)/wasm32-wasip2/release/plugin_$$p.wasm $(PLUGIN_DIR)/test/$$p.wasm; done

## Plugin tests: host, sandbox (hostile plugins), e2e (real Prometheus), CLI; plus the plugins' own unit tests.
test-plugins: plugins
	VIGIL_PLUGIN_DIR=$(PLUGIN_DIR) $(CARGO) test -p vigil --test plugin_sandbox --test plugin_host --test plugin_e2e --test plugin_cli
	$(CARGO) test $(addprefix -p plugin-,$(PLUGINS))

## Plugin benchmarks (call overhead, instantiation, cold start with/without cache).
bench-plugins: plugins
	VIGIL_PLUGIN_DIR=$(PLUGIN_DIR) $(CARGO) bench -p vigil --bench plugin
