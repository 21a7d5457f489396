# tests/guest: tiny freestanding guests, entered like vmlinux (64-bit boot
# protocol, RSI = zero page). Simple integer instructions only.
GUEST_CFLAGS := -std=gnu11 -O2 -g -ffreestanding -nostdlib -fno-pic -fno-pie -mno-sse \
	-mno-mmx -mno-red-zone -mgeneral-regs-only -fno-stack-protector \
	-fno-asynchronous-unwind-tables -fcf-protection=none \
	-mno-avx -Wall -Wextra -Werror -Isrc
GUEST_SRCS := tests/guest/start.S tests/guest/rt.c tests/guest/vio.c tests/guest/main.c

$(BUILD)/guest/testguest.elf: $(GUEST_SRCS) tests/guest/rt.h tests/guest/vio.h tests/guest/guest.ld
	@mkdir -p $(dir $@)
	$(CC) $(GUEST_CFLAGS) -static -Wl,-T,tests/guest/guest.ld -Wl,--build-id=none \
		-Wl,-z,noexecstack -Wl,--no-warn-rwx-segments -o $@ $(GUEST_SRCS)

guest: $(BUILD)/guest/testguest.elf
test-prereqs:: $(BUILD)/guest/testguest.elf
all: $(BUILD)/guest/testguest.elf
.PHONY: guest

# ---- snapshot tests (src/snapshot owner): snapguest, the guest of the
# snapshot/restore tests, the lttle engine tests and bench-snapshot.
SNAPGUEST_SRCS := tests/guest/start.S tests/guest/rt.c tests/guest/vio.c tests/guest/snapguest.c

$(BUILD)/guest/snapguest.elf: $(SNAPGUEST_SRCS) tests/guest/rt.h tests/guest/vio.h tests/guest/guest.ld \
		src/vmm/guest_abi.h
	@mkdir -p $(dir $@)
	$(CC) $(GUEST_CFLAGS) -static -Wl,-T,tests/guest/guest.ld -Wl,--build-id=none \
		-Wl,-z,noexecstack -Wl,--no-warn-rwx-segments -o $@ $(SNAPGUEST_SRCS)

test-prereqs:: $(BUILD)/guest/snapguest.elf
all: $(BUILD)/guest/snapguest.elf
# ---- end snapshot tests
