# matchlock — `make` builds everything into build/; `make test`, `make demo`, `make bench`.
# Both `test` and `demo` first install missing Debian packages (as root) via scripts/deps.sh.

BUILD    ?= build
PREFIX   ?= /usr/local
CC       ?= cc
MUSL_CC  ?= musl-gcc
CLANG    ?= clang
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo 0.1.0-dev)

WARN     := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 -Wno-format-truncation \
	    -Wvla -Walloca
HARDEN   := -D_FORTIFY_SOURCE=2 -fstack-protector-strong
CFLAGS   ?= -O2 -g
CFLAGS   += -std=gnu11 $(WARN) -Isrc -MMD -MP
HOST_CFLAGS  := $(CFLAGS) $(HARDEN) -fPIE -DMATCHLOCK_VERSION='"$(VERSION)"'
HOST_LDFLAGS := -pie -Wl,-z,relro,-z,now
HOST_LIBS    := -lssl -lcrypto -larchive -lcurl -ljansson -lsqlite3 -lm -lpthread
AGENT_CFLAGS := -std=gnu11 $(WARN) -Isrc -isystem $(BUILD)/kinc -MMD -MP -Os -g0 $(HARDEN)
SAN          := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all

COMMON_SRC := $(wildcard src/common/*.c) $(wildcard src/proto/*.c)
HOST_SRC   := $(wildcard src/host/*.c) $(wildcard src/oci/*.c) $(wildcard src/net/*.c)
# The parts of the egress engine with no loop or threads: unit-tested and fuzzed on their own.
NET_PURE_SRC := src/net/dns.c src/net/policy.c src/net/http.c src/net/addrpool.c \
	src/net/secrets.c src/net/tlshello.c
AGENT_SRC  := $(wildcard src/agent/*.c)
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
# The OCI parsers, for unit tests and fuzzers (no host code, no network).
OCI_PARSE_SRC := src/oci/ref.c src/oci/manifest.c src/oci/auth.c src/oci/unpack.c
OCI_PARSE_LIBS := -ljansson -lcrypto -larchive
FUZZ_SRC   := $(wildcard tests/fuzz/fuzz_*.c)

HOST_OBJ   := $(patsubst %.c,$(BUILD)/host/%.o,$(HOST_SRC) $(COMMON_SRC))
AGENT_OBJ  := $(patsubst %.c,$(BUILD)/agent/%.o,$(AGENT_SRC) $(COMMON_SRC))
UNITS      := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
UNITS_SAN  := $(patsubst tests/unit/%.c,$(BUILD)/tests/san/%,$(UNIT_SRC))
FUZZERS    := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRC))

.PHONY: all deps test demo bench fuzz unit install clean kernel fixtures default-image
all: $(BUILD)/matchlock $(BUILD)/initramfs.cpio kernel

deps:
	@scripts/deps.sh

$(BUILD)/host/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(HOST_CFLAGS) -c $< -o $@

# musl-gcc sees only musl's headers: give the agent the kernel's uapi headers (netlink,
# nftables) and nothing else from the host's include directory.
$(BUILD)/kinc/.stamp:
	@mkdir -p $(BUILD)/kinc
	ln -sfn /usr/include/linux $(BUILD)/kinc/linux
	ln -sfn /usr/include/asm-generic $(BUILD)/kinc/asm-generic
	ln -sfn /usr/include/$$($(CC) -print-multiarch)/asm $(BUILD)/kinc/asm
	@touch $@

$(BUILD)/agent/%.o: %.c | $(BUILD)/kinc/.stamp
	@mkdir -p $(dir $@)
	$(MUSL_CC) $(AGENT_CFLAGS) -c $< -o $@

$(BUILD)/matchlock: $(HOST_OBJ)
	$(CC) $(HOST_LDFLAGS) $^ -o $@ $(HOST_LIBS)

$(BUILD)/matchlock-agent: $(AGENT_OBJ)
	$(MUSL_CC) -static $^ -o $@

# The initramfs holds only the agent (as /init) and the mount points it uses before it
# switches to the sandbox root.
$(BUILD)/initramfs.cpio: $(BUILD)/matchlock-agent
	@rm -rf $(BUILD)/initramfs && mkdir -p $(BUILD)/initramfs/dev $(BUILD)/initramfs/lower \
		$(BUILD)/initramfs/rw $(BUILD)/initramfs/newroot
	cp $< $(BUILD)/initramfs/init
	cd $(BUILD)/initramfs && find . | LC_ALL=C sort | cpio -o -H newc --quiet --reproducible > ../initramfs.cpio.tmp
	mv $(BUILD)/initramfs.cpio.tmp $@

# Cached under $XDG_CACHE_HOME/matchlock/kernel by a hash of the config and source version.
kernel:
	@guest/kernel/build.sh $(BUILD)

# Test fixtures: a busybox root filesystem, and initramfs images that misbehave on purpose.
fixtures: $(BUILD)/rootfs-busybox/bin/busybox $(BUILD)/initramfs-hang.cpio $(BUILD)/initramfs-empty.cpio \
	$(BUILD)/initramfs-floor.cpio $(BUILD)/nft-flush $(BUILD)/link-flood

# Run as root in a sandbox by tests/integration/test_net.sh: deletes every nftables table.
$(BUILD)/nft-flush: tests/fixtures/nft_flush.c src/agent/nl.c | $(BUILD)/kinc/.stamp
	$(MUSL_CC) -static -Os -Isrc -isystem $(BUILD)/kinc $^ -o $@

# Run as root in a sandbox by tests/integration/test_link_flood.sh: floods the host through the
# agent's link.
$(BUILD)/link-flood: tests/fixtures/link_flood.c src/common/buf.c src/proto/msg.c | $(BUILD)/kinc/.stamp
	$(MUSL_CC) -static -Os $(WARN) -Isrc -isystem $(BUILD)/kinc $^ -o $@

$(BUILD)/rootfs-busybox/bin/busybox: tests/fixtures/make-busybox-rootfs.sh
	tests/fixtures/make-busybox-rootfs.sh $(BUILD)/rootfs-busybox

$(BUILD)/initramfs-hang.cpio: tests/fixtures/hang_init.c
	@rm -rf $(BUILD)/initramfs-hang && mkdir -p $(BUILD)/initramfs-hang
	$(MUSL_CC) -static -Os $< -o $(BUILD)/initramfs-hang/init
	cd $(BUILD)/initramfs-hang && find . | LC_ALL=C sort | cpio -o -H newc --quiet > ../initramfs-hang.cpio

$(BUILD)/initramfs-floor.cpio: bench/floor_init.c
	@rm -rf $(BUILD)/initramfs-floor && mkdir -p $(BUILD)/initramfs-floor
	$(MUSL_CC) -static -Os $< -o $(BUILD)/initramfs-floor/init
	cd $(BUILD)/initramfs-floor && find . | LC_ALL=C sort | cpio -o -H newc --quiet > ../initramfs-floor.cpio

$(BUILD)/initramfs-empty.cpio:
	@rm -rf $(BUILD)/initramfs-empty && mkdir -p $(BUILD)/initramfs-empty/dev
	cd $(BUILD)/initramfs-empty && find . | LC_ALL=C sort | cpio -o -H newc --quiet > ../initramfs-empty.cpio

# Unit tests: plain, and under ASan+UBSan.
$(BUILD)/tests/%: tests/unit/%.c $(COMMON_SRC) $(OCI_PARSE_SRC) $(NET_PURE_SRC)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/unit $^ -o $@ $(OCI_PARSE_LIBS)

$(BUILD)/tests/san/%: tests/unit/%.c $(COMMON_SRC) $(OCI_PARSE_SRC) $(NET_PURE_SRC)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -O1 $(SAN) -Itests/unit $^ -o $@ $(OCI_PARSE_LIBS)

$(BUILD)/fuzz/%: tests/fuzz/%.c $(COMMON_SRC) $(OCI_PARSE_SRC) $(NET_PURE_SRC)
	@mkdir -p $(dir $@)
	$(CLANG) -g -O1 -std=gnu11 -Isrc -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined $^ -o $@ $(OCI_PARSE_LIBS)

unit: $(UNITS) $(UNITS_SAN)

# The default image is built here, before any suite: test_secrets.sh needs it and runs in a
# private network namespace, where mmdebstrap cannot reach the package archive.
test: deps
	@$(MAKE) --no-print-directory all fixtures unit $(FUZZERS) default-image
	@tests/run

demo: deps
	@$(MAKE) --no-print-directory all fixtures default-image
	@scripts/demo.sh

# The Debian-based default image (mmdebstrap; built once, cached under ~/.cache/matchlock).
default-image: $(BUILD)/matchlock
	@ML=$(BUILD)/matchlock scripts/default-image.sh

bench: all fixtures
	@for b in bench/boot bench/exec bench/start bench/net bench/proxy; do $$b || exit 1; echo; done

FUZZ_SECONDS ?= 60
fuzz: $(FUZZERS)
	@for f in $(FUZZERS); do n=$$(basename $$f); mkdir -p $(BUILD)/corpus/$$n; \
		python3 tests/fuzz/make_seeds.py $$n $(BUILD)/corpus/$$n; \
		$$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 $(BUILD)/corpus/$$n || exit 1; done

install: all
	install -D -m 0755 $(BUILD)/matchlock $(DESTDIR)$(PREFIX)/bin/matchlock
	install -D -m 0644 $(BUILD)/initramfs.cpio $(DESTDIR)$(PREFIX)/lib/matchlock/initramfs.cpio
	install -D -m 0644 $$(readlink -f $(BUILD)/vmlinux) $(DESTDIR)$(PREFIX)/lib/matchlock/vmlinux

clean:
	rm -rf $(BUILD)

-include $(HOST_OBJ:.o=.d) $(AGENT_OBJ:.o=.d)
