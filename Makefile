# matchlock — `make` builds everything into build/; `make check` is the quick developer loop (no
# root, no kernel); `make test`, `make demo`, `make bench`. Both `test` and `demo` first install
# missing Debian packages (as root) via scripts/deps.sh.

BUILD    ?= build
PREFIX   ?= /usr/local
CC       ?= cc
MUSL_CC  ?= musl-gcc
ARM64_MUSL_CC ?= aarch64-linux-musl-gcc
CLANG    ?= clang
CLANG_FORMAT ?= clang-format
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo 0.1.0-dev)

WARN     := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2 \
	    -Wvla -Walloca
# CI builds with warnings as errors (.ci/run sets CI=true; `make WERROR=1` does it by hand).
WERROR   ?= $(if $(filter true,$(CI)),1,0)
ifeq ($(WERROR),1)
WARN     += -Werror
endif
HARDEN   := -D_FORTIFY_SOURCE=2 -fstack-protector-strong
CFLAGS   ?= -O2 -g
CFLAGS   += -std=gnu11 $(WARN) -Isrc -MMD -MP
HOST_CFLAGS  := $(CFLAGS) $(HARDEN) -fPIE -DMATCHLOCK_VERSION='"$(VERSION)"'
HOST_LDFLAGS := -pie -Wl,-z,relro,-z,now
HOST_LIBS    := -lseccomp -lext2fs -lcom_err -lssl -lcrypto -lnghttp2 -larchive -lcurl -ljansson -lsqlite3 -lz -lbrotlidec -lbrotlienc -lzstd -lm -lpthread
AGENT_CFLAGS := -std=gnu11 $(WARN) -Isrc -isystem $(BUILD)/kinc -MMD -MP -Os -g0 $(HARDEN)
SAN          := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
FUZZ_CFLAGS  := -g -O1 -std=gnu11 $(WARN) -Isrc -MMD -MP -fno-sanitize-recover=undefined

# The modules, lowest first: common <- proto <- net, oci, fs <- host; the agent uses common and
# proto only (`make check-layers` checks the #include lines). Everything below host goes into one
# static library, built once per instrumentation: the host binary, the unit tests, the fuzzers
# and bench/proxy link it, and the linker takes only the objects each of them uses.
LIB_SRC    := $(wildcard src/common/*.c src/proto/*.c src/net/*.c src/oci/*.c src/fs/*.c)
HOST_SRC   := $(wildcard src/host/*.c)
AGENT_SRC  := $(wildcard src/agent/*.c)
AGENT_LIB_SRC := $(wildcard src/common/*.c src/proto/*.c)
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
FUZZ_SRC   := $(wildcard tests/fuzz/fuzz_*.c)

LIB        := $(BUILD)/libmatchlock.a
LIB_SAN    := $(BUILD)/san/libmatchlock.a
LIB_FUZZ   := $(BUILD)/fuzz/libmatchlock.a
AGENT_LIB  := $(BUILD)/agent/libmatchlock-common.a
LIB_OBJ      := $(patsubst %.c,$(BUILD)/host/%.o,$(LIB_SRC))
LIB_SAN_OBJ  := $(patsubst %.c,$(BUILD)/san/%.o,$(LIB_SRC))
LIB_FUZZ_OBJ := $(patsubst %.c,$(BUILD)/fuzz/%.o,$(LIB_SRC))
HOST_OBJ   := $(patsubst %.c,$(BUILD)/host/%.o,$(HOST_SRC))
AGENT_OBJ  := $(patsubst %.c,$(BUILD)/agent/%.o,$(AGENT_SRC))
AGENT_LIB_OBJ := $(patsubst %.c,$(BUILD)/agent/%.o,$(AGENT_LIB_SRC))
ARM64_AGENT_OBJ := $(patsubst %.c,$(BUILD)/arm64/agent/%.o,$(AGENT_SRC) $(AGENT_LIB_SRC))
UNIT_OBJ     := $(patsubst %.c,$(BUILD)/host/%.o,$(UNIT_SRC))
UNIT_SAN_OBJ := $(patsubst %.c,$(BUILD)/san/%.o,$(UNIT_SRC))
FUZZ_OBJ     := $(patsubst %.c,$(BUILD)/fuzz/%.o,$(FUZZ_SRC))
UNITS      := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
UNITS_SAN  := $(patsubst tests/unit/%.c,$(BUILD)/tests/san/%,$(UNIT_SRC))
FUZZERS    := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRC))
# Libraries the unit tests and fuzzers may need; --as-needed drops those a binary does not use.
LIB_LIBS   := -Wl,--as-needed $(HOST_LIBS)

.PHONY: all deps test check check-layers format-check demo bench fuzz unit install clean kernel \
	fixtures default-image client-image guest-arm64 fuzz-merge
all: $(BUILD)/matchlock $(BUILD)/initramfs.cpio $(LIB) kernel

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

$(BUILD)/san/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -O1 $(SAN) -Itests/unit -c $< -o $@

$(BUILD)/fuzz/%.o: %.c
	@mkdir -p $(dir $@)
	$(CLANG) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link,address,undefined -c $< -o $@

$(LIB): $(LIB_OBJ)
$(LIB_SAN): $(LIB_SAN_OBJ)
$(LIB_FUZZ): $(LIB_FUZZ_OBJ)
$(AGENT_LIB): $(AGENT_LIB_OBJ)
$(LIB) $(LIB_SAN) $(LIB_FUZZ) $(AGENT_LIB):
	@mkdir -p $(dir $@)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/matchlock: $(HOST_OBJ) $(LIB)
	$(CC) $(HOST_LDFLAGS) $^ -o $@ $(HOST_LIBS)

$(BUILD)/matchlock-agent: $(AGENT_OBJ) $(AGENT_LIB)
	$(MUSL_CC) -static $^ -o $@

# The initramfs holds only the agent (as /init) and the mount points it uses before it
# switches to the sandbox root. $< is the agent, $@ the archive; one recipe for every guest.
define make-initramfs
	@rm -rf $@.d && mkdir -p $@.d/dev $@.d/lower $@.d/rw $@.d/newroot
	cp $< $@.d/init
	cd $@.d && find . | LC_ALL=C sort | cpio -o -H newc --quiet --reproducible > $(abspath $@).tmp
	mv $@.tmp $@
endef
$(BUILD)/initramfs.cpio: $(BUILD)/matchlock-agent
	$(make-initramfs)

# The arm64 guest (`--platform linux/arm64`): the same agent cross-built against Debian's musl
# for arm64 (musl-dev:arm64, gcc-aarch64-linux-gnu), its initramfs and the arm64 kernel, all
# under build/arm64/ where the host looks for them.
guest-arm64: $(BUILD)/arm64/initramfs.cpio $(BUILD)/arm64/rootfs-busybox/bin/busybox
	@guest/kernel/build.sh $(BUILD)/arm64 arm64

$(BUILD)/arm64/rootfs-busybox/bin/busybox: tests/fixtures/make-busybox-rootfs.sh
	tests/fixtures/make-busybox-rootfs.sh $(BUILD)/arm64/rootfs-busybox arm64

$(BUILD)/arm64/kinc/.stamp:
	@mkdir -p $(BUILD)/arm64/kinc
	ln -sfn /usr/include/linux $(BUILD)/arm64/kinc/linux
	ln -sfn /usr/include/asm-generic $(BUILD)/arm64/kinc/asm-generic
	ln -sfn /usr/aarch64-linux-gnu/include/asm $(BUILD)/arm64/kinc/asm
	@touch $@

$(BUILD)/arm64/agent/%.o: %.c | $(BUILD)/arm64/kinc/.stamp
	@mkdir -p $(dir $@)
	$(ARM64_MUSL_CC) $(subst $(BUILD)/kinc,$(BUILD)/arm64/kinc,$(AGENT_CFLAGS)) -c $< -o $@

$(BUILD)/arm64/matchlock-agent: $(ARM64_AGENT_OBJ)
	$(ARM64_MUSL_CC) -static $^ -o $@

$(BUILD)/arm64/initramfs.cpio: $(BUILD)/arm64/matchlock-agent
	$(make-initramfs)

# Cached under $XDG_CACHE_HOME/matchlock/kernel by a hash of the config and source version.
kernel:
	@guest/kernel/build.sh $(BUILD)

# Test fixtures: a busybox root filesystem, and initramfs images that misbehave on purpose.
fixtures: $(BUILD)/rootfs-busybox/bin/busybox $(BUILD)/initramfs-hang.cpio $(BUILD)/initramfs-empty.cpio \
	$(BUILD)/initramfs-floor.cpio $(BUILD)/nft-flush $(BUILD)/link-flood $(BUILD)/fs-mount-host \
	$(BUILD)/ext4-from-tar $(BUILD)/escape-probe

# Run as root on the host by tests/integration/test_fs_share.sh: serves a folder through the file
# server on a host FUSE mount, no VM needed.
$(BUILD)/fs-mount-host: $(BUILD)/host/tests/fixtures/fs_mount_host.o $(LIB)
	$(CC) $(HOST_LDFLAGS) $^ -o $@

# The image layer writer on its own (tests/integration/test_rootless.sh, bench/image).
$(BUILD)/ext4-from-tar: $(BUILD)/host/tests/fixtures/ext4_from_tar.o $(LIB)
	$(CC) $(HOST_LDFLAGS) $^ -o $@ $(LIB_LIBS)

# Run as root in a sandbox by tests/integration/test_net.sh: deletes every nftables table.
$(BUILD)/nft-flush: tests/fixtures/nft_flush.c src/agent/nl.c | $(BUILD)/kinc/.stamp
	$(MUSL_CC) -static -Os -Isrc -isystem $(BUILD)/kinc $^ -o $@

# Run as root in a sandbox by tests/integration/test_link_flood.sh: floods the host through the
# agent's link, or the FUSE relay's file-service link.
$(BUILD)/link-flood: tests/fixtures/link_flood.c src/common/buf.c src/proto/msg.c | $(BUILD)/kinc/.stamp
	$(MUSL_CC) -static -Os $(WARN) -Isrc -isystem $(BUILD)/kinc $^ -o $@

# Run as root in a sandbox by the escape suite (tests/escape/): forged link frames, every way
# out of the network, thousands of connections, a scan of the guest's memory.
$(BUILD)/escape-probe: tests/escape/probe.c src/common/buf.c src/proto/msg.c | $(BUILD)/kinc/.stamp
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

# Unit tests, plain and under ASan+UBSan (their objects are built by the pattern rules above with
# -Itests/unit added below), and the libFuzzer harnesses; each links its library.
$(UNIT_OBJ): HOST_CFLAGS += -Itests/unit
$(BUILD)/tests/%: $(BUILD)/host/tests/unit/%.o $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $^ -o $@ $(LIB_LIBS)

$(BUILD)/tests/san/%: $(BUILD)/san/tests/unit/%.o $(LIB_SAN)
	@mkdir -p $(dir $@)
	$(CC) $(SAN) $^ -o $@ $(LIB_LIBS)

$(BUILD)/fuzz/%: $(BUILD)/fuzz/tests/fuzz/%.o $(LIB_FUZZ)
	$(CLANG) -fsanitize=fuzzer,address,undefined $^ -o $@ $(LIB_LIBS)

# The OCI runtime's config.json parser lives in src/host; its harness links that one object.
$(BUILD)/fuzz/fuzz_oci_config: $(BUILD)/fuzz/tests/fuzz/fuzz_oci_config.o \
		$(BUILD)/fuzz/src/host/runtime_config.o $(LIB_FUZZ)
	$(CLANG) -fsanitize=fuzzer,address,undefined $^ -o $@ $(LIB_LIBS)

unit: $(UNITS) $(UNITS_SAN)
# Keep the test objects (make would delete them as intermediates and rebuild them every time).
.SECONDARY: $(UNIT_SAN_OBJ) $(FUZZ_OBJ)

# The developer loop: the unit tests (plain and under ASan+UBSan) and a short fuzz regression
# pass; no root, no kernel, no packages installed. Ends with "N passed, N failed, N skipped".
CHECK_FUZZ_SECONDS ?= 3
check: unit $(FUZZERS)
	@FUZZ_SECONDS=$(CHECK_FUZZ_SECONDS) tests/run --check

# Fails on an #include that points up the module layers (see LIB_SRC above), naming the line.
check-layers:
	@scripts/check-layers.sh

# The tree as .clang-format wants it (clang-format 14, dry run): fails on any difference and
# shows the first ones.
FORMAT_SRC = $(wildcard src/*/*.[ch] tests/*/*.[ch] bench/*.c)
format-check:
	@mkdir -p $(BUILD)
	@$(CLANG_FORMAT) --dry-run --Werror $(FORMAT_SRC) 2>$(BUILD)/format-check.log || \
		{ head -n 40 $(BUILD)/format-check.log; \
		  echo "make format-check: $$(grep -c 'error:' $(BUILD)/format-check.log) differences in" \
		       "$$(grep 'error:' $(BUILD)/format-check.log | cut -d: -f1 | sort -u | wc -l) files;" \
		       "$(CLANG_FORMAT) -i FILE fixes one"; exit 1; }

# The default image is built here, before any suite: test_secrets.sh needs it and runs in a
# private network namespace, where mmdebstrap cannot reach the package archive. tests/run runs
# what `make check` runs, then the integration and SDK suites (as the unprivileged matchlock-test
# when started as root, which gets these images and the kernel from root's cache by hard link).
test: deps check-layers format-check
	@$(MAKE) --no-print-directory all fixtures guest-arm64 unit $(FUZZERS) default-image client-image
	@tests/run

demo: deps
	@$(MAKE) --no-print-directory all fixtures default-image
	@scripts/demo.sh

# The Debian-based default image (mmdebstrap; built once, cached under ~/.cache/matchlock).
default-image: $(BUILD)/matchlock
	@ML=$(BUILD)/matchlock scripts/default-image.sh

# The same plus the clients test_h2.sh drives (gRPC, httpx with HTTP/2, requests, websockets).
client-image: $(BUILD)/matchlock
	@ML=$(BUILD)/matchlock scripts/default-image.sh clients

bench:
	@scripts/deps.sh bench
	@$(MAKE) --no-print-directory all fixtures default-image
	@for b in bench/boot bench/exec bench/start bench/memory bench/net bench/proxy bench/proxy_body bench/fs bench/image bench/sdk_clients bench/oci; do $$b || exit 1; echo; done

# Each harness for FUZZ_SECONDS on its seeds plus the corpus kept in tests/fuzz/corpus/NAME;
# prints execution counts and findings (tests/fuzz/campaign). fuzz-merge also minimises what the
# run found into the kept corpus (commit it). FUZZ=NAME... picks harnesses; FUZZ_JOBS=N runs
# N at once.
FUZZ_SECONDS ?= 30
FUZZ_JOBS ?= 1
fuzz: $(FUZZERS)
	@FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_JOBS=$(FUZZ_JOBS) tests/fuzz/campaign $(FUZZ)
fuzz-merge: $(FUZZERS)
	@FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_JOBS=$(FUZZ_JOBS) tests/fuzz/campaign --merge $(FUZZ)

install: all
	install -D -m 0755 $(BUILD)/matchlock $(DESTDIR)$(PREFIX)/bin/matchlock
	install -D -m 0644 $(BUILD)/initramfs.cpio $(DESTDIR)$(PREFIX)/lib/matchlock/initramfs.cpio
	install -D -m 0644 $$(readlink -f $(BUILD)/vmlinux) $(DESTDIR)$(PREFIX)/lib/matchlock/vmlinux

clean:
	rm -rf $(BUILD)

-include $(HOST_OBJ:.o=.d) $(LIB_OBJ:.o=.d) $(LIB_SAN_OBJ:.o=.d) $(LIB_FUZZ_OBJ:.o=.d) \
	$(AGENT_OBJ:.o=.d) $(AGENT_LIB_OBJ:.o=.d) $(ARM64_AGENT_OBJ:.o=.d) $(UNIT_OBJ:.o=.d) $(UNIT_SAN_OBJ:.o=.d) $(FUZZ_OBJ:.o=.d) \
	$(BUILD)/host/tests/fixtures/fs_mount_host.d $(BUILD)/host/tests/fixtures/ext4_from_tar.d
