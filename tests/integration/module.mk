# tests/integration: helper programs the integration scripts run.
#   $(BUILD)/it/qemu-engine-drv   drives the QEMU engine through the real
#                                 pool and loop (75-qemu-engine.sh)
QEMU_ENGINE_DRV := $(BUILD)/it/qemu-engine-drv

$(QEMU_ENGINE_DRV): tests/integration/qemu_engine_drv.c $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LINK_LIBS) $(LDLIBS)

test-prereqs:: $(QEMU_ENGINE_DRV)
