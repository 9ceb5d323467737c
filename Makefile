# The one entry point: `make demo`, `make test`, `make bench`, `make lint`.
SHELL := /bin/bash
CARGO ?= cargo
BUILD := build
BERTH := $(or $(CARGO_TARGET_DIR),target)/release/berth
DEMO_PORT ?= 8000

.PHONY: all build deps-demo deps-test demo test lint unit bench base-busybox base-python pybase-tar demo-stop clean crds crds-check cluster cluster-down \
	control-plane control-plane-up control-plane-down control-plane-smoke control-plane-mod

all: build

build:
	$(CARGO) build --release --bin berth

$(BUILD)/busybox-rootfs.tar: scripts/busybox-rootfs.sh
	@mkdir -p $(BUILD)
	scripts/busybox-rootfs.sh $@

# The small base image the demo and the benchmarks run.
base-busybox: build $(BUILD)/busybox-rootfs.tar
	$(BERTH) import $(BUILD)/busybox-rootfs.tar base:latest

# Debian bookworm with Python 3, venv, Flask and gunicorn: the base of examples/microblog.
# mmdebstrap from Debian's mirror, about 2 minutes the first time, then cached under
# ~/.cache/berth by the script's digest (a changed script makes a new one).
PYBASE_TAR := $(HOME)/.cache/berth/pybase-$(shell sha256sum scripts/base-python.sh | cut -c1-12).tar
export BERTH_PYBASE_TAR := $(PYBASE_TAR)

$(PYBASE_TAR): scripts/base-python.sh
	@mkdir -p $(dir $@)
	scripts/base-python.sh $@

pybase-tar: $(PYBASE_TAR)

# Imported once; remove the image (berth rmi pybase:latest) to import it again.
base-python: build $(PYBASE_TAR)
	@$(BERTH) inspect pybase:latest >/dev/null 2>&1 || $(BERTH) import $(PYBASE_TAR) pybase:latest

# What make demo and make test need from Debian, installed when missing (as root).
deps-demo:
	@scripts/install-deps.sh demo

deps-test:
	@scripts/install-deps.sh test

demo: deps-demo base-python
	@scripts/demo.sh $(BERTH) $(DEMO_PORT)

demo-stop:
	-$(BERTH) stop microblog

lint: crds-check
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# The CRD manifests are generated from crds/; they must not drift from the types.
crds:
	$(CARGO) run -q -p berth-crds --bin crdgen manifests/crds

crds-check: crds
	git diff --exit-code -- manifests/crds || { echo "manifests/crds drifted from crds/: run make crds and commit"; exit 1; }

unit:
	$(CARGO) test --workspace --lib

# Real containers and a real control plane (built from the Go module proxy the first
# time, then cached under ~/.cache/berth): run as root.
test: deps-test lint control-plane pybase-tar
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace -- --test-threads=4

bench: build control-plane $(BUILD)/busybox-rootfs.tar $(PYBASE_TAR)
	bench/run.sh $(BERTH) $(BUILD)/busybox-rootfs.tar
	bench/build.sh $(BERTH) $(PYBASE_TAR)
	bench/network.sh $(BERTH) $(BUILD)/busybox-rootfs.tar
	bench/registry.sh $(BERTH)
	$(CARGO) build --release --workspace --bins
	BERTH_BIN=$(dir $(BERTH)) bench/cluster.sh

clean:
	rm -rf $(BUILD)
	$(CARGO) clean

# A real Kubernetes control plane (etcd, kube-apiserver, kubectl) built from the Go module
# proxy into ~/.cache/berth/control-plane (about 10 minutes cold, then cached); see
# docs/control-plane.md.
CONTROL_PLANE_DIR ?= $(BUILD)/control-plane

control-plane:
	e2e/scripts/build-control-plane.sh

control-plane-up: control-plane
	e2e/scripts/control-plane.sh up $(CONTROL_PLANE_DIR)

control-plane-down:
	e2e/scripts/control-plane.sh down $(CONTROL_PLANE_DIR)

control-plane-smoke: control-plane
	e2e/scripts/control-plane-smoke.sh

# After changing e2e/controlplane/versions.env; commit the regenerated go.mod/go.sum.
control-plane-mod:
	e2e/scripts/gen-control-plane-mod.sh

# A local cluster: the control plane above, three hosts (network namespaces on one bridge)
# each running berth-agent, and berth-controller. Ends by printing `export` lines.
CLUSTER_DIR ?= $(abspath $(BUILD))/cluster

cluster: control-plane
	$(CARGO) build --workspace --bins
	@e2e/scripts/cluster.sh up $(CLUSTER_DIR)

cluster-down:
	e2e/scripts/cluster.sh down $(CLUSTER_DIR)
