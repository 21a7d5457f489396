#!/usr/bin/env bash
# Guest side end to end, squashfs root (read-only): the init stacks an
# overlay on it and pivots, so the entrypoint can still write.
#   - patched-kernel hook, tmpfs overlay (the default);
#   - seccomp fallback, tmpfs overlay;
#   - exit path with the overlay upper on a second virtio-blk disk
#     (lttle.overlay=/dev/vdb), whose content is checked after the VM.
# Same image and checks as guest-ext4.test.sh (see cases.sh).
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cases.sh"
need mkfs.ext4 debugfs

e2e_prepare_image
e2e_rootfs "$IMAGE_REF" squashfs "$T/root.sqfs"

e2e_case_httpd kernel "$T/root.sqfs" squashfs

e2e_case_httpd seccomp "$T/root.sqfs" squashfs lttle.hook=seccomp lttle.env=EXTRA=from-cmdline

# A persistent overlay: the upper layer on a second virtio-blk disk. The
# app writes, exits, init syncs before the reset, the write is on the disk.
mkfs.ext4 -q "$T/overlay.ext4" 32M >/dev/null
E2E_QEMU_EXTRA="-drive id=ovl,file=$T/overlay.ext4,format=raw,if=none -device virtio-blk-device,drive=ovl"
e2e_case_exit exit "$T/root.sqfs" squashfs lttle.overlay=/dev/vdb
unset E2E_QEMU_EXTRA
saved=$(debugfs -R "cat /upper/www/note.txt" "$T/overlay.ext4" 2>/dev/null)
assert_eq "persisted" "$saved" "the overlay disk holds the app's write"
pass "squashfs guest: tmpfs and disk overlays, kernel and seccomp hooks, exit path"
