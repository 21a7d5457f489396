#!/usr/bin/env bash
# Installs the Debian packages lttle needs to build and test.
# Idempotent: installs only what is missing. Needs root (or sudo).
set -euo pipefail

BUILD_PKGS=(
  build-essential pkg-config
  libarchive-dev libcurl4-openssl-dev libjansson-dev libext2fs-dev
  libsquashfs-dev libzstd-dev libssl-dev libseccomp-dev libmicrohttpd-dev
  libcmocka-dev libxxhash-dev libisal-dev
)
TEST_PKGS=(
  e2fsprogs squashfs-tools squashfs-tools-ng docker-registry skopeo umoci
  apache2-utils curl wrk busybox-static qemu-system-x86 zstd cpio
  clang libclang-rt-14-dev iproute2 python3 time
)
KERNEL_PKGS=(
  linux-source-6.1 bc bison flex libelf-dev libssl-dev xz-utils
)

want=("${BUILD_PKGS[@]}" "${TEST_PKGS[@]}" "${KERNEL_PKGS[@]}")
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The registry package starts a system service on :5000; tests run their own.
if command -v systemctl >/dev/null 2>&1; then
  $SUDO systemctl disable --now docker-registry >/dev/null 2>&1 || true
fi
echo "install-deps: done"
