# libFuzzer targets: every tests/fuzz/fuzz_<name>.c becomes build-fuzz/fuzz_<name>,
# built with clang and linked against all modules (themselves rebuilt with
# the fuzzer's instrumentation). Not part of `make check`.
#   make fuzz                       build all targets
#   make fuzz-run FUZZ=manifest SECONDS=300   run one for a while
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_NAMES := $(patsubst tests/fuzz/fuzz_%.c,%,$(FUZZ_SRCS))
FUZZ_SAN := -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer \
	-Wno-gnu-variable-sized-type-not-at-end

fuzz:
	$(MAKE) BUILD=build-fuzz CC=clang SAN="$(FUZZ_SAN)" OPT=-O1 \
		$(patsubst %,build-fuzz/fuzz_%,$(FUZZ_NAMES))

build-fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(LIBS)
	$(CC) $(CFLAGS) -fsanitize=fuzzer -o $@ $< $(LINK_LIBS) $(LDLIBS)

fuzz-run: fuzz
	@mkdir -p tests/fuzz/corpus-$(FUZZ)
	build-fuzz/fuzz_$(FUZZ) -max_total_time=$(or $(SECONDS),60) \
		tests/fuzz/corpus-$(FUZZ) $(wildcard tests/fuzz/seeds/$(FUZZ))

.PHONY: fuzz fuzz-run
