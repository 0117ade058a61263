# luka - build, run and test.  `make run` and `make test` set everything up.

PKGS     := rdkafka lua5.4 jansson libuv sqlite3 hiredis libcurl libpq
# The Debian package that brings each pkg-config module, for the error that
# names what is missing (scripts/setup installs them all).
DEB_rdkafka := librdkafka-dev
DEB_lua5.4  := liblua5.4-dev
DEB_jansson := libjansson-dev
DEB_libuv   := libuv1-dev
DEB_sqlite3 := libsqlite3-dev
DEB_hiredis := libhiredis-dev
DEB_libcurl := libcurl4-openssl-dev
DEB_libpq   := libpq-dev
VERSION  := 0.1.0
CC       ?= cc
OPT      ?= -O2 -g
WARN     := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Werror
CFLAGS   := -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) -DLUKA_VERSION='"$(VERSION)"' \
            -Isrc $(shell pkg-config --cflags $(PKGS) 2>/dev/null) $(EXTRA_CFLAGS)
LDLIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm -lpthread
LDFLAGS  := -Wl,-E $(EXTRA_LDFLAGS)

# src/ is in layers, a folder each (README.md, "Design"); `make lint`
# checks that includes only go down.
SRC      := $(wildcard src/*/*.c)
HDR      := $(wildcard src/*/*.h)
LUA      := $(wildcard lua/luka/*.lua)
BUILD    ?= build
OBJ      := $(SRC:src/%.c=$(BUILD)/%.o) $(BUILD)/embed.o $(BUILD)/status_page.o
BIN      ?= luka

.PHONY: all setup setup-test pkgcheck lint run test asan test-asan bench bench-io clean fresh-check

all: $(BIN)

$(BIN): $(OBJ)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(OBJ) $(LDLIBS)

$(BUILD)/%.o: src/%.c $(HDR) | $(BUILD) pkgcheck
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

# The Lua half of luka is compiled into the binary, so one file is the
# whole program.
$(BUILD)/embed.c: $(LUA) scripts/embed | $(BUILD)
	scripts/embed $(LUA) > $@

$(BUILD)/embed.o: $(BUILD)/embed.c
	$(CC) $(CFLAGS) -c -o $@ $<

# So is the status page (GET / on --http): one HTML file, CSS and
# JavaScript inline.
$(BUILD)/status_page.c: src/ops/status.html scripts/embed-page | $(BUILD)
	scripts/embed-page src/ops/status.html status_page > $@

$(BUILD)/status_page.o: $(BUILD)/status_page.c
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD):
	mkdir -p $@

# A missing library would otherwise show up as "lua.h: No such file".
pkgcheck:
	@$(foreach m,$(PKGS),pkg-config --exists $(m) || { echo "make: pkg-config has no module \
	    '$(m)': install it with 'apt-get install $(DEB_$(m))', or run scripts/setup" >&2; \
	    exit 1; };)

setup:
	scripts/setup run

setup-test:
	scripts/setup test

lint:
	scripts/lint src

run: setup
	$(MAKE) $(BIN)
	./$(BIN) run config/orders.lua --embedded-broker

test: setup-test
	$(MAKE) $(BIN)
	scripts/test

asan: setup-test
	$(MAKE) BUILD=build/asan BIN=luka-asan CC=clang OPT='-O1 -g -fno-omit-frame-pointer' \
	    EXTRA_CFLAGS='-fsanitize=address,undefined -fno-sanitize-recover=undefined' \
	    EXTRA_LDFLAGS='-fsanitize=address,undefined'

test-asan: asan
	LUKA=./luka-asan TEST_NO_CHAOS=1 scripts/test

bench: setup-test
	$(MAKE) $(BIN)
	scripts/bench

bench-io: setup-test
	$(MAKE) $(BIN)
	scripts/bench-io

clean:
	rm -rf build $(BIN) luka-asan

# The set-up proved on a fresh Debian bookworm root (scripts/fresh-check):
# minutes and about a gigabyte of packages, so not part of `make test`.
fresh-check:
	scripts/fresh-check

# Reliability checks (README.md, "Reliability").  `make fuzz` builds a libFuzzer
# harness per spec/fuzz/*.c against luka's objects, replays the crashes kept in
# spec/fuzz/regressions/HARNESS/, then fuzzes each for FUZZ_SECONDS; a new crash
# is saved there.  `make chaos` runs the long chaos specs, `make valgrind`
# a consume-and-publish run under memcheck that must end with no leak.
FUZZ_SECONDS ?= 60
FUZZERS      := json_roundtrip json_oracle app_options meta_headers traceparent redis_url iso_time
FUZZ_BUILD   := build/fuzz
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_OBJ     := $(filter-out $(FUZZ_BUILD)/cmd/main.o,$(SRC:src/%.c=$(FUZZ_BUILD)/%.o)) \
                $(FUZZ_BUILD)/embed.o $(FUZZ_BUILD)/status_page.o

.PHONY: fuzz fuzz-objects chaos valgrind

fuzz-objects: setup-test
	$(MAKE) BUILD=$(FUZZ_BUILD) CC=clang OPT='-O1 -g -fno-omit-frame-pointer' \
	    EXTRA_CFLAGS='-fsanitize=fuzzer-no-link $(FUZZ_SAN)' $(FUZZ_OBJ)

$(FUZZERS:%=$(FUZZ_BUILD)/%): $(FUZZ_BUILD)/%: spec/fuzz/%.c $(wildcard spec/fuzz/*.h) fuzz-objects
	clang $(CFLAGS) -fsanitize=fuzzer $(FUZZ_SAN) -o $@ $< $(FUZZ_OBJ) $(LDLIBS)

fuzz: $(FUZZERS:%=$(FUZZ_BUILD)/%)
	@failed=""; for h in $(FUZZERS); do \
	    mkdir -p $(FUZZ_BUILD)/corpus/$$h spec/fuzz/regressions/$$h || exit 1; \
	    for kept in $$(find spec/fuzz/regressions/$$h -type f ! -name '.*' | sort); do \
	        $(FUZZ_BUILD)/$$h $$kept >$(FUZZ_BUILD)/$$h.replay 2>&1 && continue; \
	        echo "fuzz: $$h: $$kept still fails:"; grep -m3 -E 'ERROR|$$h:' $(FUZZ_BUILD)/$$h.replay; \
	        failed="$$failed $$kept"; \
	    done; \
	    echo "fuzz: $$h for $(FUZZ_SECONDS) s"; \
	    $(FUZZ_BUILD)/$$h -max_total_time=$(FUZZ_SECONDS) -timeout=30 -print_final_stats=1 \
	        -artifact_prefix=spec/fuzz/regressions/$$h/ \
	        $$([ -f spec/fuzz/dict/$$h.dict ] && echo -dict=spec/fuzz/dict/$$h.dict) \
	        $(FUZZ_BUILD)/corpus/$$h spec/fuzz/corpus/$$h || failed="$$failed $$h"; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: failed:$$failed"; exit 1; fi

chaos: setup-test
	$(MAKE) $(BIN)
	scripts/chaos

valgrind: setup-test
	$(MAKE) $(BIN)
	scripts/chaos memcheck
