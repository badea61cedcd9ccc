# Thin task runner over CMake and the infra scripts. The README's two commands are
# `make run` and `make test`.
SHELL := /bin/bash
JOBS ?= $(shell nproc)
BUILD ?= build
ASAN_BUILD ?= build-asan
RUN_DIR ?= .run

.PHONY: all deps build build-asan run stop status test test-cluster test-unit clean format perf perf-short perf-edge

all: build

deps:
	@infra/bootstrap.sh

build:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@MAKEFLAGS= cmake --build $(BUILD) -j $(JOBS) -- --no-print-directory

build-asan:
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DFS_SANITIZE=ON >/dev/null
	@MAKEFLAGS= cmake --build $(ASAN_BUILD) -j $(JOBS) -- --no-print-directory

# Installs what is missing, builds, starts Kafka, PostgreSQL, Redis and the services under
# $(RUN_DIR), waits until they are ready and prints where things are. Harmless to run twice.
run: deps build
	@FLASHSALE_RUN_DIR=$(RUN_DIR) FLASHSALE_BUILD_DIR=$(BUILD) infra/flashsale.sh start

stop:
	@FLASHSALE_RUN_DIR=$(RUN_DIR) infra/flashsale.sh stop

status:
	@FLASHSALE_RUN_DIR=$(RUN_DIR) FLASHSALE_BUILD_DIR=$(BUILD) infra/flashsale.sh status

# Installs what is missing, builds (plain and ASan+UBSan), starts throw-away instances on
# their own ports and directory, runs the whole suite with ctest, tears everything down.
test: deps build build-asan
	@FLASHSALE_BUILD_DIR=$(BUILD) FLASHSALE_ASAN_BUILD_DIR=$(ASAN_BUILD) infra/test.sh

# Three brokers, one SIGKILLed mid-sale (tests/integration/test_cluster.py; a cluster of its
# own, ~3 min). Not part of `make test`: see docs/architecture.md, "Three brokers".
test-cluster: deps build build-asan
	@FLASHSALE_BUILD_DIR=$(BUILD) FLASHSALE_ASAN_BUILD_DIR=$(ASAN_BUILD) CTEST_ARGS="-L cluster" infra/test.sh

# Unit tests only (no broker, no databases).
test-unit: build build-asan
	@ctest --test-dir $(BUILD) -L unit --output-on-failure -j $(JOBS)
	@ctest --test-dir $(ASAN_BUILD) -L unit --output-on-failure -j $(JOBS)

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)

# Every benchmark scenario, flashsale next to the baselines, on a dedicated system; writes
# perf/RESULTS.md (between the perf/run markers) and perf/plots/*.png. perf-short: a few
# seconds per step, for a quick look.
perf: deps build
	@perf/run

perf-short: deps build
	@perf/run --short

# The edge's cost (idle and sustained, direct against through nginx) and the flash burst
# through it; writes perf/RESULTS.md between the perf/edge markers.
perf-edge: deps build
	@perf/edge
