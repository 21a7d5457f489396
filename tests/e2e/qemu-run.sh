#!/usr/bin/env bash
# qemu-run.sh REF GUESTPORT [--format ext4|squashfs] [--mem MB] [--timeout S]
#             [--append "KERNEL ARGS"]
#
# Boots an image that is in the lttle store (pulled or imported) under QEMU
# TCG (microvm) with the project's kernel (`make kernel`, cached) and the
# init `lttle build` injects, running the image's default command. GUESTPORT
# is forwarded to a free port on 127.0.0.1 through QEMU user networking.
#
# stdout: one line, `READY 127.0.0.1:<port>`, once the trigger stream shows
# the app's listen() on GUESTPORT. Then it keeps running until killed
# (SIGTERM/SIGINT stop the VM). Exits non-zero with the serial log's tail on
# stderr if the guest ends first, or does not listen within --timeout
# seconds (default 180). Uses $LTTLE_HOME like lttle itself; the lttle
# binary is $LTTLE_BIN, else $LTTLE_BUILD/lttle, else build/lttle.
# KEEP_TMP=1 keeps the serial log and trigger stream.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
lttle=${LTTLE_BIN:-${LTTLE_BUILD:-$root/build}/lttle}
usage() {
	sed -n '2,3p' "${BASH_SOURCE[0]}" | sed 's/^# //' >&2
	exit 2
}
die() { echo "qemu-run: $*" >&2; exit 1; }

[ $# -ge 2 ] || usage
ref=$1 gport=$2
shift 2
format=ext4 mem=256 timeout=180 extra=""
while [ $# -gt 0 ]; do
	case "$1" in
	--format) format=${2:?}; shift 2 ;;
	--mem) mem=${2:?}; shift 2 ;;
	--timeout) timeout=${2:?}; shift 2 ;;
	--append) extra=${2:?}; shift 2 ;;
	-h | --help) usage ;;
	*) usage ;;
	esac
done
case "$format" in ext4 | squashfs) ;; *) die "--format must be ext4 or squashfs" ;; esac
case "$gport" in '' | *[!0-9]*) die "GUESTPORT must be a number" ;; esac
[ -x "$lttle" ] || die "$lttle is not built (make)"
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 is not installed"

work=$(mktemp -d /tmp/lttle-qemu-run.XXXXXX)
qpid=""
cleanup() {
	if [ -n "$qpid" ] && kill -0 "$qpid" 2>/dev/null; then
		kill "$qpid" 2>/dev/null || true
		wait "$qpid" 2>/dev/null || true
	fi
	if [ -n "${KEEP_TMP:-}" ]; then echo "qemu-run: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

guest_died() {
	echo "qemu-run: $1; serial log tail:" >&2
	tail -40 "$work/serial.log" >&2 || true
	exit 1
}

kernel=$(make -s -C "$root" kernel | tail -1)
[ -f "$kernel" ] || die "make kernel gave no kernel"
img=$("$lttle" build "$ref" --format "$format" --quiet | tail -1) || die "lttle build $ref failed"
[ -f "$img" ] || die "lttle build printed '$img', which is not a file"
hport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

rw=ro
[ "$format" = ext4 ] && rw=rw
: >"$work/trigger.log"
# snapshot=on: the cached image is shared and never written.
qemu-system-x86_64 -accel tcg -M microvm,acpi=off -m "$mem" -nographic -nodefaults \
	-no-reboot -no-user-config -serial stdio \
	-kernel "$kernel" \
	-append "console=ttyS0 root=/dev/vda $rw rootfstype=$format init=/.lttle/init reboot=t panic=-1 ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off:10.0.2.3 $extra" \
	-drive "id=root,file=$img,format=raw,if=none,snapshot=on" -device virtio-blk-device,drive=root \
	-netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$hport-:$gport" -device virtio-net-device,netdev=n0 \
	-chardev "file,id=trig,path=$work/trigger.log" -device isa-debugcon,iobase=0x7f0,chardev=trig \
	</dev/null >"$work/serial.log" 2>&1 &
qpid=$!

deadline=$((SECONDS + timeout))
until grep -qx "listen-after $gport 0" "$work/trigger.log"; do
	kill -0 "$qpid" 2>/dev/null || guest_died "the guest ended before listening on $gport"
	[ $SECONDS -lt $deadline ] || guest_died "no listen on $gport after ${timeout}s"
	sleep 0.1
done
echo "READY 127.0.0.1:$hport"

# `wait` returns early on a trapped signal, which then exits through cleanup.
wait "$qpid" || true
qpid=""
guest_died "the guest ended"
