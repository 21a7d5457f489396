# snapshot: file format, memory codec and restore strategies (src/snapshot).
#   make bench-snapshot-codec     codec benchmark (tests/bench/snapshot-codec-bench.c)

SNAP_CODEC_BENCH := $(BUILD)/bench/snapshot-codec-bench

$(SNAP_CODEC_BENCH): tests/bench/snapshot-codec-bench.c $(LIBS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(LINK_LIBS) $(LDLIBS)

bench-snapshot-codec: $(SNAP_CODEC_BENCH)
	$(SNAP_CODEC_BENCH) $(SNAP_BENCH_ARGS)

.PHONY: bench-snapshot-codec
