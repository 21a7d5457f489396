# lttle — build, test, bench.
#
#   make            build ./build/lttle and ./build/ignitiond (+ ./lttle link)
#   make check      install missing Debian packages, build, run every test
#   make test       run every test (no install step)
#   make unit       unit tests only
#   make asan       build + unit tests with -fsanitize=address,undefined
#   make fuzz       build libFuzzer targets (clang); see tests/fuzz/README
#   make bench      image-pipeline benchmark (tests/bench/)
#   make demo       the README demo on a built-in sample
#   make e2e        full stack on the lttle VMM (VT-x/AMD-V hosts; skips elsewhere)
#
# Module rules live beside the code in *.mk fragments included below, so
# each area owns its own build rules.

BUILD    ?= build
CC       ?= gcc
SAN      ?=
OPT      ?= -O2
PKGS     := libarchive libcurl jansson ext2fs com_err libsquashfs1 libzstd \
            libcrypto libseccomp libmicrohttpd

PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CFLAGS   += -std=gnu11 -g $(OPT) -Wall -Wextra -Werror -D_GNU_SOURCE \
            -D_FILE_OFFSET_BITS=64 -Isrc -MMD -MP $(PKG_CFLAGS) $(SAN)
LDFLAGS  += $(SAN)
LDLIBS   += $(PKG_LIBS) -lpthread -lm

# Link order: upper modules first (cmd -> proxy -> snapshot -> vmm;
# cmd -> rootfs -> oci; util under all).
MODULES  := proxy snapshot vmm rootfs oci util
LIBS     := $(foreach m,$(MODULES),$(BUILD)/lib$(m).a)

src_of    = $(wildcard src/$(1)/*.c)
objs_of   = $(patsubst %.c,$(BUILD)/%.o,$(call src_of,$(1)))

LTTLE_SRCS  := $(wildcard cmd/lttle/*.c)
IGNITE_SRCS := $(wildcard cmd/ignitiond/*.c)
UNIT_SRCS   := $(wildcard tests/unit/test_*.c)
UNIT_BINS   := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))
TESTLIB_SRCS := $(wildcard tests/lib/*.c)
TESTLIB_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(TESTLIB_SRCS))

# Extra objects or flags a unit test needs, set by fragments:
#   UNIT_EXTRA_test_foo := objs...
UNIT_EXTRA :=

.PHONY: all check test unit asan fuzz bench bench-proxy demo e2e clean deps
all: $(BUILD)/lttle $(BUILD)/ignitiond $(if $(filter build,$(BUILD)),lttle)

# Every fragment may add to `all`, unit-test extras and its own targets.
-include $(sort $(wildcard src/*/module.mk cmd/*/module.mk kernel/*.mk tests/*/module.mk))

# Both spellings of the object as dependency targets: a tree built with
# BUILD=build and BUILD=$$PWD/build must still see every header change.
$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MT $@ -MT $(abspath $@) -c -o $@ $<

define module_lib
$(BUILD)/lib$(1).a: $(call objs_of,$(1))
	@mkdir -p $$(dir $$@)
	rm -f $$@
	$$(AR) rcs $$@ $$^ $$(if $$^,,$$(BUILD)/empty.o)
endef
$(foreach m,$(MODULES),$(eval $(call module_lib,$(m))))

# An empty archive member keeps `ar` happy for modules with no code yet.
$(BUILD)/empty.o:
	@mkdir -p $(BUILD)
	echo 'typedef int lt_empty_unit;' | $(CC) -x c -c -o $@ -
$(foreach m,$(MODULES),$(if $(call src_of,$(m)),,$(eval $(BUILD)/lib$(m).a: $(BUILD)/empty.o)))

LINK_LIBS = -Wl,--start-group $(LIBS) -Wl,--end-group

$(BUILD)/lttle: $(patsubst %.c,$(BUILD)/%.o,$(LTTLE_SRCS)) $(LIBS)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(LINK_LIBS) $(LDLIBS)

$(BUILD)/ignitiond: $(patsubst %.c,$(BUILD)/%.o,$(IGNITE_SRCS)) $(LIBS)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o,$^) $(LINK_LIBS) $(LDLIBS)

# ./lttle is what the README and other tools call.
lttle: $(BUILD)/lttle
	ln -sf $(BUILD)/lttle lttle

$(BUILD)/tests/%: tests/unit/%.c $(TESTLIB_OBJS) $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/lib $(LDFLAGS) -o $@ $< $(TESTLIB_OBJS) $(UNIT_EXTRA_$*) \
		$(LINK_LIBS) $(LDLIBS) -lcmocka

unit-bins: $(UNIT_BINS)

deps:
	@bash scripts/install-deps.sh

check: deps
	$(MAKE) all unit-bins test-prereqs
	bash tests/run.sh

test: all unit-bins test-prereqs
	bash tests/run.sh

unit: unit-bins
	bash tests/run.sh --unit-only

# Fragments add their test prerequisites (guest images, init, ...) here.
test-prereqs::

asan:
	$(MAKE) BUILD=build-asan SAN="-fsanitize=address,undefined -fno-omit-frame-pointer" \
		OPT=-O1 all unit-bins
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		BUILD=build-asan bash tests/run.sh --unit-only

bench: all
	bash tests/bench/image-bench.sh

demo: all
	bash scripts/demo.sh

# Issue 7's figures side by side: wake latency by tier on the lttle VMM
# (tiny vsock guest) with density, the QEMU engine with the httpd image
# under TCG against the bare QEMU steps, and the proxy's overhead.
bench-proxy: all test-prereqs
	$(MAKE) bench-wake
	@echo "== QEMU engine (httpd image, TCG)"
	@LTTLE_BUILD=$(CURDIR)/$(BUILD) LTTLE_BIN=$(CURDIR)/$(BUILD)/lttle \
		bash tests/integration/75-qemu-engine.sh | grep -E "QEMU engine|SIDE"
	$(MAKE) bench-proxy-overhead

# Full stack on the lttle VMM; prints why it skips without VT-x/AMD-V.
e2e: all test-prereqs
	bash tests/e2e/full-stack.sh

clean:
	rm -rf build build-asan build-fuzz lttle

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
