#!/usr/bin/env bash
# lttle run's command line and its refusal of bad input: usage errors,
# missing and hostile kernels (bad magic, truncated ELF, segments outside
# RAM or the file, old bzImage), each with one error line naming the file;
# and the seccomp filter being on by default (and off with --no-seccomp).
. "$(dirname "$0")/../lib/common.sh"
[ -c /dev/kvm ] && [ -w /dev/kvm ] || skip "no usable /dev/kvm"
G=$LTTLE_BUILD/guest/testguest.elf
[ -f "$G" ] || fail "$G missing (make test-prereqs)"

one_line() { # one_line WHAT NEEDLE: stderr of the last expect_fail
	[ "$(wc -l <"$T/err")" -eq 1 ] || fail "$1: expected one error line, got: $(cat "$T/err")"
	assert_contains "$(cat "$T/err")" "$2" "$1"
}

"$LTTLE" run --help >"$T/help"
assert_contains "$(cat "$T/help")" "--kernel FILE" "help text"

expect_fail "no kernel" "$LTTLE" run
one_line "no kernel" "lttle run: --kernel is required"
set +e; "$LTTLE" run >/dev/null 2>&1; rc=$?; set -e
assert_eq 2 "$rc" "usage error exit code"
expect_fail "bad --mem" "$LTTLE" run --kernel "$G" --mem lots
one_line "bad --mem" "--mem takes MiB"
expect_fail "bad --cpus" "$LTTLE" run --kernel "$G" --cpus 65
one_line "bad --cpus" "--cpus takes 1..64"
expect_fail "bad template" "$LTTLE" run --kernel "$G" --cpu-template fancy
one_line "bad template" "unknown CPU template 'fancy'"
expect_fail "overlay without rootfs" "$LTTLE" run --kernel "$G" --overlay
one_line "overlay without rootfs" "--overlay and --ro need --rootfs"

expect_fail "missing kernel" "$LTTLE" run --kernel "$T/nope"
one_line "missing kernel" "$T/nope"
head -c 4096 /dev/urandom >"$T/garbage"
expect_fail "garbage kernel" "$LTTLE" run --kernel "$T/garbage"
one_line "garbage kernel" "$T/garbage: not a vmlinux ELF or a bzImage"
head -c 100 "$G" >"$T/trunc.elf"
expect_fail "truncated ELF" "$LTTLE" run --kernel "$T/trunc.elf"
one_line "truncated ELF" "program headers beyond the end of the file"

# Patch the first program header: p_paddr far outside RAM, then p_offset
# beyond the file, then an entry point outside every segment.
patch_elf() { # patch_elf OUT FIELD VALUE
	python3 - "$G" "$1" "$2" "$3" <<'PY'
import struct, sys
src, out, field, val = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4], 0)
d = bytearray(open(src, "rb").read())
phoff = struct.unpack_from("<Q", d, 32)[0]
off = {"paddr": phoff + 24, "offset": phoff + 8, "entry": 24}[field]
struct.pack_into("<Q", d, off, val)
open(out, "wb").write(d)
PY
}
patch_elf "$T/far.elf" paddr 0x7ff000000000
expect_fail "segment outside RAM" "$LTTLE" run --kernel "$T/far.elf"
one_line "segment outside RAM" "is outside guest RAM"
patch_elf "$T/off.elf" offset 0x10000000
expect_fail "segment beyond the file" "$LTTLE" run --kernel "$T/off.elf"
one_line "segment beyond the file" "data beyond the end of the file"
patch_elf "$T/entry.elf" entry 0x4000000
expect_fail "entry outside segments" "$LTTLE" run --kernel "$T/entry.elf"
one_line "entry outside segments" "entry point 0x4000000 is not inside a loaded segment"
python3 - "$T/old.bz" <<'PY'
import struct, sys
d = bytearray(8192)
d[0x1f1] = 4
struct.pack_into("<H", d, 0x1fe, 0xAA55)
d[0x202:0x206] = b"HdrS"
struct.pack_into("<H", d, 0x206, 0x0204)
open(sys.argv[1], "wb").write(d)
PY
expect_fail "old bzImage" "$LTTLE" run --kernel "$T/old.bz"
one_line "old bzImage" "boot protocol 2.04 too old"

log "seccomp is on by default"
for mode in default off; do
	extra=()
	[ $mode = off ] && extra=(--no-seccomp)
	"$LTTLE" run --kernel "$G" --mem 64 --control "$T/c.$mode" "${extra[@]}" \
		--cmdline "lt.end=idle" >"$T/vm.$mode" 2>&1 &
	pid=$!
	_BG_PIDS+=($pid)
	for i in $(seq 100); do [ -S "$T/c.$mode" ] && break; sleep 0.05; done
	sleep 0.3
	sc=$(awk '/^Seccomp:/{print $2}' /proc/$pid/status)
	case $(readlink /proc/$pid/exe) in */lttle-vmm) ;; *) fail "lttle run did not exec the lean lttle-vmm" ;; esac
	if [ $mode = default ]; then assert_eq 2 "$sc" "seccomp mode (filter)"; else assert_eq 0 "$sc" "seccomp off"; fi
	python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b"{\"cmd\":\"status\"}\n{\"cmd\":\"stop\"}\n"); print(s.makefile().readline())' "$T/c.$mode" >"$T/st.$mode"
	set +e; wait $pid; rc=$?; set -e
	assert_eq 0 "$rc" "VM ($mode seccomp) stopped through the control socket"
	assert_contains "$(cat "$T/st.$mode")" '"state":"running"' "status under seccomp ($mode)"
done
log "--rootfs REF: resolved through lttle build (image store)"
if [ -x /bin/busybox ]; then
	python3 "$LTTLE_ROOT/tests/lib/sample-image.py" "$T/sample" >/dev/null
	"$LTTLE" import "$T/sample" --tag localhost/vmm-sample:1 --quiet >/dev/null
	out=$(timeout 60 "$LTTLE" run --kernel "$G" --mem 64 --rootfs localhost/vmm-sample:1 \
		--cmdline "lt.t=hello,blk lt.end=exit:0")
	assert_contains "$out" "root=/dev/vda rw init=/.lttle/init" "cmdline for a built image"
	assert_contains "$out" "blk id: lttle-rootfs" "built image attached"
	expect_fail "unknown ref" "$LTTLE" run --kernel "$G" --rootfs localhost/nope:1
	one_line "unknown ref" "'localhost/nope:1' is not an image file"
else
	log "(busybox-static missing: REF resolution not exercised)"
fi

log "in-process VM (LTTLE_VMM_INPROC=1) behaves the same"
set +e
out=$(LTTLE_VMM_INPROC=1 timeout 30 "$LTTLE" run --kernel "$G" --mem 64 --cmdline "lt.t=hello lt.end=exit:6")
rc=$?
set -e
assert_eq 6 "$rc" "in-process exit code"
assert_contains "$out" "hello from lttle guest" "in-process serial"
pass "vmm cli"
