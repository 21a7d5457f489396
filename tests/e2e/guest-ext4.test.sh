#!/usr/bin/env bash
# Guest side end to end, ext4 root: a real OCI image (static busybox httpd,
# non-root user, env, workdir) pushed to a local registry, pulled and built
# by lttle, booted under QEMU TCG with the project kernel and init.
#   - patched-kernel capture hook, then the seccomp fallback
#     (lttle.hook=seccomp): HTTP served through user networking, the
#     trigger stream shows ready -> bind/listen before/after 8080, the
#     image config took effect, lttle.env= is applied;
#   - SIGTERM to init reaches the app, its exit code is reported, the VM
#     ends by itself.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/cases.sh"

e2e_prepare_image
e2e_rootfs "$IMAGE_REF" ext4 "$T/root.ext4"

e2e_case_httpd kernel "$T/root.ext4" ext4
e2e_case_httpd seccomp "$T/root.ext4" ext4 lttle.hook=seccomp lttle.env=EXTRA=from-cmdline
e2e_case_exit exit "$T/root.ext4" ext4
e2e_case_fatal fatal "$T/root.ext4" ext4
echo "kernel: $(du -h "$KERNEL" | cut -f1) vmlinux, $(du -h "$(dirname "$KERNEL")/bzImage" | cut -f1) bzImage"
pass "ext4 guest: kernel hook, seccomp hook, exit path, init failure"
