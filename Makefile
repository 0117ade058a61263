# luka - build, run and test.  `make run` and `make test` set everything up.

PKGS     := rdkafka lua5.4 jansson libuv sqlite3 hiredis
VERSION  := 0.1.0
CC       ?= cc
OPT      ?= -O2 -g
WARN     := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Werror
CFLAGS   := -std=c11 -D_GNU_SOURCE $(OPT) $(WARN) -DLUKA_VERSION='"$(VERSION)"' \
            -Isrc $(shell pkg-config --cflags $(PKGS) 2>/dev/null) $(EXTRA_CFLAGS)
LDLIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm -lpthread
LDFLAGS  := -Wl,-E $(EXTRA_LDFLAGS)

SRC      := $(wildcard src/*.c)
LUA      := $(wildcard lua/luka/*.lua)
BUILD    ?= build
OBJ      := $(SRC:src/%.c=$(BUILD)/%.o) $(BUILD)/embed.o
BIN      ?= luka

.PHONY: all setup run test asan test-asan bench clean

all: $(BIN)

$(BIN): $(OBJ)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(OBJ) $(LDLIBS)

$(BUILD)/%.o: src/%.c src/*.h | $(BUILD)
	$(CC) $(CFLAGS) -c -o $@ $<

# The Lua half of luka is compiled into the binary, so one file is the
# whole program.
$(BUILD)/embed.c: $(LUA) scripts/embed | $(BUILD)
	scripts/embed $(LUA) > $@

$(BUILD)/embed.o: $(BUILD)/embed.c
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD):
	mkdir -p $@

setup:
	scripts/setup

run: setup
	$(MAKE) $(BIN)
	./$(BIN) run config/orders.lua --embedded-broker

test: setup
	$(MAKE) $(BIN)
	scripts/test

asan: setup
	$(MAKE) BUILD=build/asan BIN=luka-asan CC=clang OPT='-O1 -g -fno-omit-frame-pointer' \
	    EXTRA_CFLAGS='-fsanitize=address,undefined -fno-sanitize-recover=undefined' \
	    EXTRA_LDFLAGS='-fsanitize=address,undefined'

test-asan: asan
	LUKA=./luka-asan scripts/test

bench: setup
	$(MAKE) $(BIN)
	scripts/bench

clean:
	rm -rf build $(BIN) luka-asan
