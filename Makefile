# Makefile: the front door. Every target that needs the Debian packages runs
# scripts/deps.sh first, so a fresh Debian 12 machine needs nothing else.
PREFIX ?= /usr/local
BUILD ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
SCAN_BUILD ?= build-scan
MANIFEST ?= examples/ship-manifest.toml
FUZZ_SECONDS ?= 30

.PHONY: all deps build run test test-only fuzz-targets asan fuzz lint bench bench-quick bench-tls bench-deploy bench-bays install uninstall deb clean

all: build

deps:
	@./scripts/deps.sh

$(BUILD)/build.ninja:
	@./scripts/deps.sh
	meson setup $(BUILD) --buildtype=debugoptimized

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

run: build
	./scripts/run-example.sh $(BUILD) $(MANIFEST)

test: build fuzz-targets
	@./scripts/node-deps.sh $(BUILD)
	./scripts/test.sh $(BUILD) $(FUZZ_BUILD)

# The fuzz targets alone, for the smoke run of `make test`; without clang
# they are not built and the smoke run is reported as skipped.
FUZZ_TARGETS = $(patsubst %.c,%,$(wildcard tests/fuzz/fuzz_*.c))
fuzz-targets:
	@if command -v clang >/dev/null 2>&1; then \
	  $(MAKE) --no-print-directory $(FUZZ_BUILD)/build.ninja && ninja -C $(FUZZ_BUILD) $(FUZZ_TARGETS); \
	else echo "fuzz targets: clang not found, not built"; fi

$(ASAN_BUILD)/build.ninja:
	@./scripts/deps.sh
	meson setup $(ASAN_BUILD) --buildtype=debug -Db_sanitize=address,undefined -Db_lundef=false

asan: deps $(ASAN_BUILD)/build.ninja
	ninja -C $(ASAN_BUILD)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  ./scripts/test.sh $(ASAN_BUILD)

$(FUZZ_BUILD)/build.ninja:
	@./scripts/deps.sh
	CC=clang meson setup $(FUZZ_BUILD) --buildtype=debugoptimized -Dfuzz=true -Db_lundef=false

fuzz: deps $(FUZZ_BUILD)/build.ninja
	ninja -C $(FUZZ_BUILD)
	./scripts/fuzz.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

# cppcheck and the clang static analyzer over src/; fails on any finding.
lint: deps $(BUILD)/build.ninja
	./scripts/lint.sh $(BUILD) $(SCAN_BUILD)

bench: build
	DEPS_BENCH=1 ./scripts/deps.sh
	./bench/run.sh $(BUILD)

# Every benchmark in quick mode, about two minutes: a smoke run whose
# figures (BUILD/bench/quick.jsonl) bench/compare.py holds against the last.
bench-quick: build
	DEPS_BENCH=1 ./scripts/deps.sh
	./bench/quick.sh $(BUILD)

# TLS termination alone (bench/tls, a few minutes): against nginx and HAProxy.
bench-tls: build
	DEPS_BENCH=1 ./scripts/deps.sh
	./bench/tls/run.sh $(BUILD)

# A rolling restart under load (bench/deploy, about a minute): against nginx
# in front of supervisord's programs.
bench-deploy: build
	DEPS_BENCH=1 ./scripts/deps.sh
	./bench/deploy/run.sh $(BUILD)

# The same WSGI app as an HTTP bay (docking v3) and behind the proxy on a
# Unix socket (gunicorn): req/s and CPU per request (bench/bays, ~1 min).
bench-bays: build
	DEPS_BENCH=1 ./scripts/deps.sh
	./bench/bays/run.sh $(BUILD)

# meson install: bin/mothership, lib/<multiarch>/libdock.so.1 and libdock.pc,
# include/libdock/dock.h, the systemd unit, man pages, completions and docs
# under PREFIX (an absolute path), staged under DESTDIR when given.
install: build
	meson configure $(BUILD) -Dprefix=$(abspath $(PREFIX))
	meson install -C $(BUILD) $(if $(DESTDIR),--destdir $(abspath $(DESTDIR)))

# Removes what the last `make install` of $(BUILD) put in place (meson's
# install log), with the same PREFIX and DESTDIR.
uninstall:
	ninja -C $(BUILD) uninstall

# The Debian packages (scripts/build-deb.sh), built from a copy of the tree:
# build-deb/mothership_*.deb, libdock1_*.deb, libdock-dev_*.deb.
deb: deps
	./scripts/build-deb.sh build-deb

clean:
	rm -rf build-deb $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD) $(SCAN_BUILD)
