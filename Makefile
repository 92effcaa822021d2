# vigil — the two commands a newcomer needs are `make demo` and `make test`.
CARGO ?= cargo
VIGIL := target/debug/vigil

.PHONY: all build demo test bench fmt lint clean

all: build

build:
	$(CARGO) build --bin vigil

## Run the main job on the embedded default bundle (runbooks/).
demo: build
	@bash scripts/demo.sh $(VIGIL)

## The whole test suite: unit, property, data-driven and end-to-end tests.
test:
	$(CARGO) build --bin vigil
	$(CARGO) test --workspace

## Every benchmark, each figure next to its target.
bench:
	$(CARGO) bench --bench executor --bench journal --bench validate --bench alerts

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) clippy --workspace --all-targets

clean:
	$(CARGO) clean
	rm -rf .vigil
