#!/usr/bin/env bash
# boot-bench.sh [--runs N] [--compare VMLINUZ]...
#
# Kernel boot benchmark under QEMU TCG (microvm, 256 MiB): boots the
# project kernel (vmlinux through PVH and bzImage) and any --compare
# kernels (e.g. Debian's cloud kernel: apt-get download
# linux-image-6.1.0-*-cloud-amd64; dpkg-deb -x) with the same tiny
# initramfs, whose /init reboots at once. Prints, per kernel, the median
# over N runs of the guest's time to init (printk timestamp of "Run /init")
# and the host wall time from QEMU start to exit, plus the kernel's size.
# An initramfs is the common ground: a distro kernel has virtio-mmio and
# virtio-blk as modules, so it cannot mount our rootfs without one.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
runs=5
compare=()
while [ $# -gt 0 ]; do
	case "$1" in
	--runs) runs=${2:?}; shift 2 ;;
	--compare) compare+=("${2:?}"); shift 2 ;;
	*) sed -n '2,2p' "$0" >&2; exit 2 ;;
	esac
done
command -v qemu-system-x86_64 >/dev/null || { echo "boot-bench: no qemu-system-x86_64" >&2; exit 1; }
[ -x /bin/busybox ] || { echo "boot-bench: no /bin/busybox (busybox-static)" >&2; exit 1; }

work=$(mktemp -d /tmp/lttle-boot-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
vmlinux=$(make -s -C "$root" kernel | tail -1)

mkdir -p "$work/initrd/bin"
cp /bin/busybox "$work/initrd/bin/"
printf '#!/bin/busybox sh\n/bin/busybox reboot -f\n' >"$work/initrd/init"
chmod 0755 "$work/initrd/init"
(cd "$work/initrd" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/initrd.gz"

one_boot() { # KERNEL -> "TO_INIT_S WALL_S"
	local k=$1 t0 t1 init
	t0=$(date +%s%N)
	timeout 120 qemu-system-x86_64 -accel tcg -M microvm,acpi=off -m 256 -nographic \
		-nodefaults -no-reboot -no-user-config -serial stdio -kernel "$k" \
		-initrd "$work/initrd.gz" -append "console=ttyS0 reboot=t panic=-1 rdinit=/init" \
		</dev/null >"$work/serial.log" 2>&1 || true
	t1=$(date +%s%N)
	init=$(sed -n 's/^\[ *\([0-9.]*\)\] Run \/init as init process.*/\1/p' "$work/serial.log" | head -1)
	echo "${init:-nan} $(((t1 - t0) / 1000000))"
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR ? a[int((NR + 1) / 2)] : "nan")}'; }

bench() { # NAME KERNEL
	local name=$1 k=$2 i inits=() walls=()
	for ((i = 0; i < runs; i++)); do
		read -r a b < <(one_boot "$k")
		inits+=("$a")
		walls+=("$b")
	done
	printf '%-28s %9s %10s %12s\n' "$name" \
		"$(printf '%s\n' "${inits[@]}" | median)" \
		"$(printf '%s\n' "${walls[@]}" | median)" \
		"$(($(stat -c %s "$k") / 1024)) KiB"
}

printf '%-28s %9s %10s %12s\n' kernel "to-init/s" "wall/ms" size
bench "lttle vmlinux (PVH)" "$vmlinux"
bench "lttle bzImage" "$(dirname "$vmlinux")/bzImage"
for k in "${compare[@]}"; do
	bench "$(basename "$k")" "$k"
done
