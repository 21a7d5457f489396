#!/usr/bin/env bash
# Guest memory: the guest writes a pattern, reads it back and reports an
# FNV-1a checksum; the test computes the expected value on its own. A guest
# bigger than the 3 GiB below the MMIO hole gets RAM above 4 GiB, in e820.
. "$(dirname "$0")/../lib/common.sh"
[ -c /dev/kvm ] && [ -w /dev/kvm ] || skip "no usable /dev/kvm"
G=$LTTLE_BUILD/guest/testguest.elf
[ -f "$G" ] || fail "$G missing (make test-prereqs)"

fnv() { # fnv MIB SEED
	python3 - "$1" "$2" <<'PY'
import sys
mib, seed = int(sys.argv[1]), int(sys.argv[2], 0)
M = (1 << 64) - 1
h = 0xcbf29ce484222325
for i in range((mib << 20) // 8):
    v = ((i * 0x9E3779B97F4A7C15) & M) ^ seed
    h = ((h ^ (v & 0xffffffff)) * 0x100000001b3) & M
print("%016x" % h)
PY
}

log "8 MiB pattern in a 64 MiB guest"
out=$(timeout 60 "$LTTLE" run --kernel "$G" --mem 64 --cmdline "lt.t=mem lt.mem=8")
assert_contains "$out" "memsum $(fnv 8 0x1234)" "low memory checksum"
case $out in *highmem*) fail "a 64 MiB guest has no RAM above 4 GiB" ;; esac

log "3200 MiB guest: 3 GiB below the hole, 128 MiB above 4 GiB"
out=$(timeout 60 "$LTTLE" run --kernel "$G" --mem 3200 --cmdline "lt.t=hello,mem lt.mem=2")
assert_contains "$out" "e820 entries 4 ram $(( (3200 << 10) - (0x100000 - 0x9fc00) / 1024 )) KiB" "e820 with the split"
assert_contains "$out" "memsum $(fnv 2 0x1234)" "low memory checksum"
assert_contains "$out" "highmem 128 MiB sum $(fnv 1 0x5678)" "memory above 4 GiB"
log "initrd placed in RAM and announced in the zero page"
head -c 300000 /dev/urandom >"$T/initrd"
want=$(python3 -c 'import sys
h=0xcbf29ce484222325
for b in open(sys.argv[1],"rb").read(): h=((h^b)*0x100000001b3)&((1<<64)-1)
print("%016x"%h)' "$T/initrd")
out=$(timeout 60 "$LTTLE" run --kernel "$G" --mem 64 --initrd "$T/initrd" --cmdline "lt.t=hello")
assert_contains "$out" "initrd 300000 bytes at" "initrd size"
assert_contains "$out" "fnv $want" "initrd content"
addr=$(printf '%s\n' "$out" | sed -n 's/.*bytes at \([0-9a-f]*\).*/\1/p')
[ $((16#$addr % 4096)) -eq 0 ] && [ $((16#$addr + 300000)) -le $((64 << 20)) ] || fail "initrd at 0x$addr"
truncate -s 8M "$T/big"
expect_fail "initrd too big" "$LTTLE" run --kernel "$G" --mem 8 --initrd "$T/big"
assert_contains "$(cat "$T/err")" "does not fit in guest RAM" "initrd size check"
pass "vmm memory"
