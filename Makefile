# Thin task runner over CMake and the infra scripts. The README's two commands are
# `make run` and `make test`.
SHELL := /bin/bash
JOBS ?= $(shell nproc)
BUILD ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
RUN_DIR ?= .run

.PHONY: all deps build build-asan build-fuzz run stop status test test-cluster test-unit fuzz fuzz-seeds clean \
	format perf perf-short perf-edge perf-kfloor perf-ledger perf-tail chaos soak

all: build

# (targets that build the fuzz harnesses also install clang: DEPS_ARGS=--fuzz)
deps:
	@infra/bootstrap.sh $(DEPS_ARGS)

build:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@MAKEFLAGS= cmake --build $(BUILD) -j $(JOBS) -- --no-print-directory

build-asan:
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DFS_SANITIZE=ON >/dev/null
	@MAKEFLAGS= cmake --build $(ASAN_BUILD) -j $(JOBS) -- --no-print-directory

# The libFuzzer harnesses of tests/fuzz and the libraries they test, with clang, ASan+UBSan.
build-fuzz:
	@cmake -S . -B $(FUZZ_BUILD) -DCMAKE_C_COMPILER=clang -DFS_FUZZ=ON \
		-DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@MAKEFLAGS= cmake --build $(FUZZ_BUILD) -j $(JOBS) -- --no-print-directory

# Installs what is missing, builds, starts Kafka, PostgreSQL, Redis and the services under
# $(RUN_DIR), waits until they are ready and prints where things are. Harmless to run twice.
run: deps build
	@FLASHSALE_RUN_DIR=$(RUN_DIR) FLASHSALE_BUILD_DIR=$(BUILD) infra/flashsale.sh start

stop:
	@FLASHSALE_RUN_DIR=$(RUN_DIR) infra/flashsale.sh stop

status:
	@FLASHSALE_RUN_DIR=$(RUN_DIR) FLASHSALE_BUILD_DIR=$(BUILD) infra/flashsale.sh status

# Installs what is missing, builds (plain, ASan+UBSan, the fuzz harnesses), starts throw-away
# instances on their own ports and directory, runs the whole suite with ctest (each fuzz
# harness for 30 s), tears everything down.
test: DEPS_ARGS = --fuzz
test: deps build build-asan build-fuzz
	@FLASHSALE_BUILD_DIR=$(BUILD) FLASHSALE_ASAN_BUILD_DIR=$(ASAN_BUILD) \
		FLASHSALE_FUZZ_BUILD_DIR=$(FUZZ_BUILD) infra/test.sh

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

# Every fuzz harness for FUZZ_SECONDS (60) on a copy of its seeds (tests/fuzz/corpus): prints
# executions, executions per second and coverage; fails on a crash, leak, failed check or
# timeout (the input is kept in $(FUZZ_BUILD)/fuzz-artifacts). One harness: FUZZ=jwt.
fuzz: DEPS_ARGS = --fuzz
fuzz: deps build-fuzz
	@FUZZ_SECONDS=$(FUZZ_SECONDS) tests/fuzz/run.sh $(FUZZ_BUILD) $(FUZZ)

# Writes the seed corpora again (after a schema or encoder change; see tests/fuzz/make_seeds.c).
fuzz-seeds: build-fuzz
	@$(FUZZ_BUILD)/tests/fuzz/fuzz_make_seeds tests/fuzz/corpus

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)

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

# The fault matrix under a sustained sale (perf/chaos): every fault once, on a dedicated system
# (.run-chaos), each checked (audit, one decision and a settled state per acknowledged order,
# no refused order in the log); writes perf/RESULTS.md between the perf/chaos markers. Takes
# ~25 minutes. FAULTS=kill-api,flush-redis runs some (then nothing is written).
chaos: deps build
	@perf/chaos $(if $(FAULTS),--faults $(FAULTS) --no-write)

# A soak (perf/soak): one sale of RATE (200) orders/s with auto-pay for DURATION (1800) seconds
# on a dedicated system (.run-soak), sampling every process's resident memory, the projection
# lag and the latency every 10 s; fails on an upward trend, a failed audit or errors; writes
# perf/RESULTS.md between the perf/soak markers and perf/plots/soak-*.png. Not in CI. The shop's
# day lasts DAY (60) seconds, so that orders end and are forgotten within the run (0: real days).
DURATION ?= 1800
RATE ?= 200
DAY ?= 60
soak: deps build
	@perf/soak --duration $(DURATION) --rate $(RATE) --day $(DAY)

# The Kafka floor of the order path at sustained rates, nothing of flashsale running
# (perf/kfloor.sh; RATES="1000 5000" to choose): prints a table for perf/RESULTS.md.
perf-kfloor: deps build
	@perf/kfloor.sh $(RATES)

# The CPU of an order's own logic (JSON, token, Avro, decision, saga step), each piece timed
# alone and counted as the order path does it (flashsale-ledger): a lower bound per order.
perf-ledger: deps build
	@$(BUILD)/perf/flashsale-ledger

# Where the slowest orders spent their time, order by order (perf/tail): a dedicated system,
# TAIL_RATE (20, perf/run's idle step) orders/s, each order's time split at the log's own
# stamps, against the broker's collector pauses; prints tables for perf/RESULTS.md.
TAIL_RATE ?= 20
perf-tail: deps build
	@perf/tail --rate $(TAIL_RATE)
