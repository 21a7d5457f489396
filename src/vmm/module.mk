# src/vmm: libvmm.a is built by the top Makefile from src/vmm/*.c.
#
# lttle-vmm: the lean static VMM process `lttle run` execs (beside the lttle
# binary). Static, and linking only what a VM needs, it starts in a few ms
# and keeps its RSS overhead small.
VMM_BIN_LIBS := -ljansson -lseccomp -lpthread
# Sanitizer builds (make asan) cannot be static.
VMM_BIN_STATIC := $(if $(SAN),,-static)

$(BUILD)/lttle-vmm: src/vmm/bin/lttle-vmm.c $(BUILD)/libvmm.a $(BUILD)/libutil.a
	$(CC) $(CFLAGS) $(VMM_BIN_STATIC) -o $@ src/vmm/bin/lttle-vmm.c \
		$(BUILD)/libvmm.a $(BUILD)/libutil.a $(VMM_BIN_LIBS)

all: $(BUILD)/lttle-vmm
test-prereqs:: $(BUILD)/lttle-vmm

# Benchmarks and the full-Linux boot test (VT-x/AMD-V hosts only).
bench-vmm: $(BUILD)/lttle $(BUILD)/lttle-vmm $(BUILD)/guest/testguest.elf
	BUILD=$(BUILD) bash tests/bench/vmm-bench.sh

# Exit status 77 is a printed skip (no VT-x/AMD-V), not a failure.
e2e-vmm: $(BUILD)/lttle $(BUILD)/lttle-vmm
	@LTTLE_BUILD=$(CURDIR)/$(BUILD) LTTLE_BIN=$(CURDIR)/$(BUILD)/lttle \
		bash tests/integration/39-vmm-linux.sh; rc=$$?; [ $$rc -eq 77 ] || exit $$rc

.PHONY: bench-vmm e2e-vmm
