#!/usr/bin/env bash
# virtio-blk from the guest: read a sector of a raw image, get-id, write +
# read back; the copy-on-write overlay keeps the shared base untouched and
# persists across runs; a read-only disk fails writes with IOERR; an
# out-of-range read fails cleanly.
. "$(dirname "$0")/../lib/common.sh"
[ -c /dev/kvm ] && [ -w /dev/kvm ] || skip "no usable /dev/kvm"
G=$LTTLE_BUILD/guest/testguest.elf
[ -f "$G" ] || fail "$G missing (make test-prereqs)"

mkimg() {
	python3 - "$1" <<'PY'
import sys
d = bytearray(4 << 20)
d[0:32] = b"LTTLE-DISK-SECTOR-ZERO-MARKER!!!"
d[512:512 + 16] = b"ORIGINAL-SECTOR1"
open(sys.argv[1], "wb").write(d)
PY
}
run() { timeout 30 "$LTTLE" run --kernel "$G" --mem 64 "$@"; }

log "raw image: read, get-id, write, read back"
mkimg "$T/raw.img"
out=$(run --rootfs "$T/raw.img" --cmdline "lt.t=blkw")
assert_contains "$out" "blk sector0: LTTLE-DISK-SECTOR-ZERO-MARKER!!!" "sector 0 from the image"
assert_contains "$out" "blk id: lttle-rootfs" "get-id"
assert_contains "$out" "blk write status 0" "write ok"
assert_contains "$out" "blk sector1: written by the lttle guest" "read back"
got=$(dd if="$T/raw.img" bs=512 skip=1 count=1 2>/dev/null | tr -d '\0')
assert_eq "written by the lttle guest" "$got" "write reached the raw image"

log "the same without ioeventfd/irqfd (notifications in the exit path)"
mkimg "$T/raw2.img"
out=$(run --rootfs "$T/raw2.img" --no-ioeventfd --cmdline "lt.t=blkw")
assert_contains "$out" "blk sector1: written by the lttle guest" "read back (in-exit path)"

log "overlay: base untouched, writes persist in the overlay"
mkimg "$T/base.img"
sum=$(sha256sum <"$T/base.img")
out=$(run --rootfs "$T/base.img" --overlay="$T/ovl" --cmdline "lt.t=blkw")
assert_contains "$out" "blk sector1: written by the lttle guest" "read back through the overlay"
assert_eq "$sum" "$(sha256sum <"$T/base.img")" "base image unchanged"
head -c 8 "$T/ovl" | grep -q LTOVRLY1 || fail "overlay header missing"
alloc=$(du -k "$T/ovl" | cut -f1)
[ "$alloc" -lt 64 ] || fail "overlay not sparse: ${alloc} KiB allocated"
# A second VM on the same overlay sees the guest's write; the base still
# shows the original sector to a VM without the overlay.
out=$(run --rootfs "$T/base.img" --overlay="$T/ovl" --disk "$T/base.img" --cmdline "lt.t=blk")
assert_contains "$out" "blk sector0: LTTLE-DISK-SECTOR-ZERO-MARKER!!!" "unwritten sector from the base"
out2=$(run --rootfs "$T/base.img" --overlay="$T/ovl" --cmdline "lt.t=blkw")
assert_contains "$out2" "blk sector1: written by the lttle guest" "overlay reused"
assert_eq "$sum" "$(sha256sum <"$T/base.img")" "base image still unchanged"
# Two overlays over one base stay independent.
out=$(run --rootfs "$T/base.img" --overlay="$T/ovl2" --cmdline "lt.t=blk")
assert_contains "$out" "blk sector0: LTTLE-DISK" "second overlay reads the base"
# An overlay refuses a base that changed under it.
printf 'X' | dd of="$T/base.img" bs=1 seek=100 conv=notrunc 2>/dev/null
touch -d '2001-01-01' "$T/base.img"
expect_fail "overlay over a modified base" run --rootfs "$T/base.img" --overlay="$T/ovl" --cmdline "lt.t=blk"
assert_contains "$(cat "$T/err")" "base image modified since the overlay was made" "overlay base check"
# A temporary overlay (--overlay without a file) is removed afterwards.
mkimg "$T/base2.img"
out=$(run --rootfs "$T/base2.img" --overlay --cmdline "lt.t=blkw")
assert_contains "$out" "blk write status 0" "temporary overlay write"
[ -z "$(ls -A "$LTTLE_HOME/instances" 2>/dev/null)" ] || fail "temporary overlay left behind"
cmp -s "$T/base2.img" <(python3 -c 'import sys
d=bytearray(4<<20); d[0:32]=b"LTTLE-DISK-SECTOR-ZERO-MARKER!!!"; d[512:528]=b"ORIGINAL-SECTOR1"; sys.stdout.buffer.write(d)') \
	|| fail "temporary overlay wrote to the base"

log "read-only disk: writes fail with IOERR, the device keeps working"
mkimg "$T/ro.img"
out=$(run --rootfs "$T/ro.img" --ro --cmdline "lt.t=blkw")
assert_contains "$out" "blk write status 1" "write to a read-only disk"
case $out in *GUEST\ FAIL*) fail "guest failed: $out" ;; esac
pass "vmm virtio-blk"
