#!/usr/bin/env bash
# Full Linux on the lttle VMM (make e2e-vmm): the project kernel (make
# kernel, cached) with a busybox root, as an initramfs and as an ext4
# rootfs on virtio-blk, 2 vCPUs; checks for a shell prompt on the serial
# console, then that `poweroff -f` (halt with interrupts off) ends the VM
# by itself with 0. Needs VT-x/AMD-V: elsewhere the guest kernel would run
# emulated (this is skipped, never passed).
. "$(dirname "$0")/../lib/common.sh"
grep -qwE 'vmx|svm' /proc/cpuinfo || skip "no hardware virtualization"
[ -c /dev/kvm ] && [ -w /dev/kvm ] || skip "no usable /dev/kvm"
[ -x /bin/busybox ] || skip "busybox-static is not installed"
need python3 cpio

out=$(make -s -C "$LTTLE_ROOT" kernel 2>"$T/kernel.log") || fail "make kernel: $(tail -5 "$T/kernel.log")"
KERNEL=$(printf '%s\n' "$out" | tail -1)
[ -f "$KERNEL" ] || fail "make kernel printed '$KERNEL', not a file"

mkroot() { # mkroot DIR MODE(shell|poweroff)
	local d=$1
	mkdir -p "$d/bin" "$d/proc" "$d/sys" "$d/dev"
	cp /bin/busybox "$d/bin/busybox"
	for a in sh mount echo poweroff cat; do ln -sf busybox "$d/bin/$a"; done
	if [ "$2" = shell ]; then
		printf '#!/bin/sh\nmount -t proc proc /proc\necho LTTLE-E2E-UP cpus=$(grep -c ^processor /proc/cpuinfo)\nexec /bin/sh\n' >"$d/init"
	else
		printf '#!/bin/sh\nmount -t proc proc /proc\necho LTTLE-E2E-POWEROFF\npoweroff -f\n' >"$d/init"
	fi
	chmod +x "$d/init"
}

wait_for() { # wait_for FILE REGEX SECONDS
	local i
	for ((i = 0; i < $3 * 10; i++)); do
		grep -qE "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	fail "no '$2' on the console after $3 s: $(tail -20 "$1")"
}

log "initramfs busybox: shell prompt"
mkroot "$T/ir" shell
(cd "$T/ir" && find . | cpio -o -H newc 2>/dev/null | gzip) >"$T/initrd.gz"
"$LTTLE" run --kernel "$KERNEL" --initrd "$T/initrd.gz" --mem 256 --cpus 2 --control "$T/c1" \
	--serial-log "$T/s1" --cmdline "console=ttyS0 reboot=k panic=1 pci=off rdinit=/init" &
pid=$!
_BG_PIDS+=($pid)
wait_for "$T/s1" 'LTTLE-E2E-UP cpus=2' 60
wait_for "$T/s1" '[/~] # ' 30
python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b"{\"cmd\":\"stop\"}\n"); s.recv(100)' "$T/c1"
set +e; wait $pid; rc=$?; set -e
assert_eq 0 "$rc" "stop through the control socket"

log "ext4 busybox rootfs on virtio-blk: shell prompt, overlay keeps the base"
need mkfs.ext4
mkroot "$T/root" shell
truncate -s 64M "$T/root.ext4"
mkfs.ext4 -q -d "$T/root" "$T/root.ext4"
sum=$(sha256sum <"$T/root.ext4")
"$LTTLE" run --kernel "$KERNEL" --rootfs "$T/root.ext4" --overlay --mem 256 --control "$T/c2" \
	--serial-log "$T/s2" --cmdline "console=ttyS0 reboot=k panic=1 pci=off init=/init" &
pid=$!
_BG_PIDS+=($pid)
wait_for "$T/s2" 'LTTLE-E2E-UP' 60
wait_for "$T/s2" '[/~] # ' 30
python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b"{\"cmd\":\"stop\"}\n"); s.recv(100)' "$T/c2"
set +e; wait $pid; rc=$?; set -e
assert_eq 0 "$rc" "ext4 run stopped"
assert_eq "$sum" "$(sha256sum <"$T/root.ext4")" "base rootfs untouched (overlay)"

log "poweroff -f ends the VM by itself"
mkroot "$T/po" poweroff
(cd "$T/po" && find . | cpio -o -H newc 2>/dev/null | gzip) >"$T/po.gz"
set +e
timeout 120 "$LTTLE" run --kernel "$KERNEL" --initrd "$T/po.gz" --mem 256 \
	--serial-log "$T/s3" --cmdline "console=ttyS0 reboot=k panic=1 pci=off rdinit=/init"
rc=$?
set -e
assert_eq 0 "$rc" "VM ended by the guest's poweroff"
grep -q LTTLE-E2E-POWEROFF "$T/s3" || fail "guest did not reach poweroff: $(tail -5 "$T/s3")"
pass "Linux boots on the lttle VMM"
