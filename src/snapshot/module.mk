# snapshot: file format, memory codec and restore strategies (src/snapshot).
#   make bench-snapshot-codec     codec benchmark (tests/bench/snapshot-codec-bench.c)

SNAP_CODEC_BENCH := $(BUILD)/bench/snapshot-codec-bench

$(SNAP_CODEC_BENCH): tests/bench/snapshot-codec-bench.c $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LINK_LIBS) $(LDLIBS)

bench-snapshot-codec: $(SNAP_CODEC_BENCH)
	$(SNAP_CODEC_BENCH) $(SNAP_BENCH_ARGS)

.PHONY: bench-snapshot-codec

# lttle-vmhost: the lean static VM-host process (restore, vmm-shell) that
# `lttle restore` execs and the lttle engine starts; see its main.
VMHOST_SRCS := src/snapshot/bin/lttle-vmhost.c cmd/lttle/cmd_restore.c cmd/lttle/cmd_vmm.c \
	cmd/lttle/vmproc.c
VMHOST_LIBS := -ljansson -lzstd -lseccomp -lpthread
VMHOST_STATIC := $(if $(SAN),,-static)

$(BUILD)/lttle-vmhost: $(VMHOST_SRCS) cmd/lttle/vmproc.h $(BUILD)/libsnapshot.a $(BUILD)/libvmm.a \
		$(BUILD)/libutil.a
	$(CC) $(CFLAGS) -Icmd/lttle -DLTTLE_VMHOST_BINARY $(VMHOST_STATIC) -o $@ $(VMHOST_SRCS) \
		$(BUILD)/libsnapshot.a $(BUILD)/libvmm.a $(BUILD)/libutil.a $(VMHOST_LIBS)

all: $(BUILD)/lttle-vmhost
test-prereqs:: $(BUILD)/lttle-vmhost

# lttle-engine-drv: pool + proxy + the lttle engine on real VMs, for the
# engine integration test and the wake benchmark (tests/bench/wake-bench.sh).
LE_DRV := $(BUILD)/snapshot/lttle-engine-drv
$(LE_DRV): tests/integration/lttle_engine_drv.c $(BUILD)/libproxy.a $(BUILD)/libutil.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libproxy.a $(BUILD)/libutil.a $(LDLIBS)

test-prereqs:: $(LE_DRV) $(BUILD)/guest/snapguest.elf

# make bench-snapshot: capture/restore of a real VM (tests/bench/snapshot-bench.sh).
bench-snapshot: $(BUILD)/lttle $(BUILD)/lttle-vmhost $(BUILD)/guest/snapguest.elf
	BUILD=$(BUILD) bash tests/bench/snapshot-bench.sh
.PHONY: bench-snapshot

# make bench-wake: the lttle engine's wake tiers and density
# (tests/bench/wake-bench.sh; WAKES=N, COLD_WAKES=N).
bench-wake: $(BUILD)/lttle $(BUILD)/lttle-vmhost $(BUILD)/guest/snapguest.elf $(LE_DRV)
	BUILD=$(BUILD) bash tests/bench/wake-bench.sh
.PHONY: bench-wake
