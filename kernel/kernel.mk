# The guest side:
#   make kernel          the cached guest kernel (kernel/build.sh); prints
#                        the vmlinux path as its last line
#   $(BUILD)/lttle-init  the static guest init (part of `all`), which
#                        `lttle build` injects at /.lttle/init
# The init's logic (everything but main.c) is also built as
# $(BUILD)/libinit.a for the host unit tests (tests/unit/test_init_*.c).

.PHONY: kernel
kernel:
	@bash kernel/build.sh

INIT_SRCS  := $(wildcard kernel/init/*.c)
INIT_LOGIC := $(filter-out kernel/init/main.c,$(INIT_SRCS))
# The util pieces the init uses; only these are linked into the static
# binary (no libcrypto, no NSS).
INIT_UTIL  := src/util/err.c src/util/mem.c src/util/fs.c src/util/parse.c
INIT_HDRS  := kernel/init/init.h src/vmm/guest_abi.h src/util/util.h
# Own flags, not $(CFLAGS): the init is static and never sanitized.
INIT_CFLAGS := -std=gnu11 -O2 -Wall -Wextra -Werror -D_GNU_SOURCE -Isrc -Ikernel/init

all: $(BUILD)/lttle-init

$(BUILD)/lttle-init: $(INIT_SRCS) $(INIT_UTIL) $(INIT_HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(INIT_CFLAGS) -static -s -o $@ $(INIT_SRCS) $(INIT_UTIL) -ljansson -lpthread

$(BUILD)/libinit.a: $(patsubst %.c,$(BUILD)/%.o,$(INIT_LOGIC))
	rm -f $@
	$(AR) rcs $@ $^

INIT_TESTS := $(patsubst tests/unit/%.c,%,$(wildcard tests/unit/test_init_*.c))
$(foreach t,$(INIT_TESTS),$(eval UNIT_EXTRA_$(t) := -Ikernel/init $(BUILD)/libinit.a))
$(patsubst %,$(BUILD)/tests/%,$(INIT_TESTS)): $(BUILD)/libinit.a

test-prereqs:: $(BUILD)/lttle-init
