# Thin wrapper around CMake. `make run` and `make test` are all you need.

# Debian packages the build and the tests need (one list; see `make deps`).
DEPS := build-essential cmake wabt clang-19 lld-19 llvm-19 libclang-rt-19-dev libcmocka-dev libarchive-dev libssl-dev \
        postgresql-client libpq-dev python3 python3-psycopg2 nodejs npm pkg-config openssl \
        postgresql-15
# (postgresql-15: the server test_dump_cli loads a dump into, the way out.)
# `make bench`: native PostgreSQL 15 to compare with, and what building
# PostgreSQL 18 from Debian's source package needs (bench/native-pg18.sh).
BENCH_DEPS := dpkg-dev bison flex procps
BENCH_ARGS ?=
# Optional: the libFuzzer target (tests/fuzz; `make deps-fuzz`).
FUZZ_DEPS := clang-19 libclang-rt-19-dev

BUILD_DIR  ?= build
BUILD_TYPE ?= RelWithDebInfo
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
RUN_TOOL   ?= pglite-proxy
# pglite-proxy on a persistent database under the working directory; any
# PostgreSQL client connects through /tmp/.s.PGSQL.5432 (see docs/server.md).
RUN_ARGS   ?= --root data/proxy
CMAKE_ARGS ?=

.PHONY: all deps deps-fuzz configure build test run bench install clean distclean

all: build

deps:
	@tools/build/install-deps.sh $(DEPS)

deps-fuzz:
	@tools/build/install-deps.sh $(FUZZ_DEPS)

$(BUILD_DIR)/CMakeCache.txt:
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_ARGS)

configure: deps $(BUILD_DIR)/CMakeCache.txt

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

test: build
	ctest --test-dir $(BUILD_DIR) --output-on-failure -j $(JOBS)

run: build
	@if [ ! -x $(BUILD_DIR)/tools/$(RUN_TOOL) ]; then \
	  echo "$(BUILD_DIR)/tools/$(RUN_TOOL) was not built (is tools/$(RUN_TOOL).c there?)" >&2; exit 1; fi
	@echo "Starting $(RUN_TOOL) $(RUN_ARGS); connect with the psql command below, Ctrl-C stops it."
	$(BUILD_DIR)/tools/$(RUN_TOOL) $(RUN_ARGS)

# The speed suite against native PostgreSQL 15 and 18 and PGlite, side by
# side (bench/bench.py; results in bench/results/). BENCH_ARGS="--reps 5".
# Then many sessions (bench/sessions.py: pgbench -c 1/4/8, reconnects, idle
# sessions' RSS) against native PostgreSQL. SESSIONS_ARGS="--seconds 30".
bench: build
	@tools/build/install-deps.sh $(BENCH_DEPS)
	BUILD_DIR=$(abspath $(BUILD_DIR)) python3 bench/bench.py $(BENCH_ARGS)
	BUILD_DIR=$(abspath $(BUILD_DIR)) python3 bench/sessions.py $(SESSIONS_ARGS)

# Install libpglite (header, shared and static library, pglite.pc, CMake
# package, runtime tree) under PREFIX. The prefix is configured first: the
# static library looks for the runtime tree there (the shared one finds it
# beside itself wherever the prefix is moved).
PREFIX ?= /usr/local
install: configure
	cmake -S . -B $(BUILD_DIR) -DCMAKE_INSTALL_PREFIX=$(abspath $(PREFIX)) >/dev/null
	cmake --build $(BUILD_DIR) -j $(JOBS)
	cmake --install $(BUILD_DIR) --prefix $(abspath $(PREFIX))

clean:
	@if [ -f $(BUILD_DIR)/CMakeCache.txt ]; then cmake --build $(BUILD_DIR) --target clean; fi

# Also forgets the configuration and the fetched runtime (the compiled-module
# cache in ~/.cache/pglite is kept).
distclean:
	rm -rf $(BUILD_DIR)
