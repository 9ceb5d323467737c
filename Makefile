# The one entry point: `make demo`, `make test`, `make bench`, `make lint`.
SHELL := /bin/bash
CARGO ?= cargo
BUILD := build
BERTH := $(or $(CARGO_TARGET_DIR),target)/release/berth
DEMO_PORT ?= 8000

.PHONY: all build demo test lint unit bench base-busybox demo-stop clean

all: build

build:
	$(CARGO) build --release --bin berth

$(BUILD)/busybox-rootfs.tar: scripts/busybox-rootfs.sh
	@mkdir -p $(BUILD)
	scripts/busybox-rootfs.sh $@

# The small base image the demo and the benchmarks run.
base-busybox: build $(BUILD)/busybox-rootfs.tar
	$(BERTH) import $(BUILD)/busybox-rootfs.tar base:latest

demo: base-busybox
	@scripts/demo.sh $(BERTH) $(DEMO_PORT)

demo-stop:
	-$(BERTH) rm -f web

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit:
	$(CARGO) test --workspace --lib

# Real containers: run as root.
test: lint
	$(CARGO) test --workspace -- --test-threads=4

bench: build $(BUILD)/busybox-rootfs.tar
	bench/run.sh $(BERTH) $(BUILD)/busybox-rootfs.tar
	bench/network.sh $(BERTH) $(BUILD)/busybox-rootfs.tar

clean:
	rm -rf $(BUILD)
	$(CARGO) clean
