#!/usr/bin/env bash
# Builds the lttle guest kernel (vmlinux + bzImage) from Debian's
# linux-source-6.1 with kernel/config and kernel/patches/*.diff, caching the
# result outside the clone:
#
#   ${LTTLE_CACHE:-/var/cache/lttle}/kernel/<key>/{vmlinux,bzImage,config}
#
# <key> is the sha256 of everything that shapes the kernel: the source
# package version, the config fragment, the patches, the guest ABI header
# and this script. A cached kernel is reused instantly. The build runs in a
# temp dir under the cache and is renamed into place, so a crash never
# leaves a half-built kernel under its key. Concurrent callers wait on a
# lock instead of building twice.
#
# Output: progress on stderr; the absolute path of vmlinux as the last
# line on stdout.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
src_pkg=linux-source-6.1
tarball=${LTTLE_KERNEL_TARBALL:-/usr/src/$src_pkg.tar.xz}
cache=${LTTLE_CACHE:-/var/cache/lttle}/kernel
abi=$root/src/vmm/guest_abi.h

die() { echo "kernel: $*" >&2; exit 1; }

[ -r "$tarball" ] || die "$tarball is missing (apt-get install $src_pkg, or scripts/install-deps.sh)"
version=$(dpkg-query -W -f='${Version}' "$src_pkg" 2>/dev/null) ||
	die "cannot read the version of $src_pkg (is it installed?)"

# The inputs are copied first and the build uses only the copies: the
# tree may be edited while a build runs, and the kernel under a key must
# be the one its inputs describe.
inputs=$(mktemp -d "${TMPDIR:-/tmp}/lttle-kernel-inputs.XXXXXX")
work=""
trap 'rm -rf "$inputs" ${work:+"$work"}' EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
mkdir "$inputs/patches"
cp "$here/config" "$here/build.sh" "$inputs/"
cp "$here"/patches/*.diff "$inputs/patches/"
cp "$abi" "$inputs/guest_abi.h"

cache_key() {
	{
		echo "$src_pkg $version"
		for f in config patches/*.diff guest_abi.h build.sh; do
			echo "== $f"
			cat "$f"
		done
	} | sha256sum | cut -c1-64
}
key=$(cd "$inputs" && cache_key)
out=$cache/$key

if [ -f "$out/vmlinux" ]; then
	echo "$out/vmlinux"
	exit 0
fi

mkdir -p "$cache"
exec 9>"$cache/.lock-$key"
flock 9
if [ -f "$out/vmlinux" ]; then # another caller built it while we waited
	echo "$out/vmlinux"
	exit 0
fi

# Leftovers of killed builds would pile up, 1.5 GB each. Ours: we hold
# the key's lock. Others': a tmp dir whose key lock nobody holds belongs
# to no running build.
rm -rf "$cache/tmp.$key".*
for d in "$cache"/tmp.*; do
	[ -d "$d" ] || continue
	k=${d#"$cache"/tmp.}
	k=${k%%.*}
	(flock -n 8 && rm -rf "$d") 8>"$cache/.lock-$k" 2>/dev/null || true
done
work=$(mktemp -d "$cache/tmp.$key.XXXXXX")
# The log lives beside the cache entry so it survives a failed build.
log=$cache/build-$key.log
: >"$log"
echo "kernel: building $src_pkg $version into $out (log: $log; ~4 min on 2 cores)" >&2

# The kernel's own make must not inherit the outer make's jobserver or
# variables (e.g. BUILD=...).
unset MAKEFLAGS MAKELEVEL MFLAGS MAKEOVERRIDES

tar -C "$work" -xf "$tarball"
ksrc=$work/$src_pkg
[ -d "$ksrc" ] || die "$tarball does not unpack to $src_pkg/"
for p in "$inputs"/patches/*.diff; do
	patch -d "$ksrc" -p1 --quiet --forward <"$p" >>"$log" 2>&1 ||
		die "patch kernel/patches/${p##*/} does not apply (see $log)"
done
# One source of truth for the guest ABI: the header src/vmm uses.
cp "$inputs/guest_abi.h" "$ksrc/include/linux/lttle_guest_abi.h"

kmake() { make -C "$ksrc" ARCH=x86_64 "$@" >>"$log" 2>&1; }
kmake tinyconfig || die "make tinyconfig failed (see $log)"
(cd "$ksrc" && ARCH=x86_64 scripts/kconfig/merge_config.sh -m .config "$inputs/config") >>"$log" 2>&1 ||
	die "merge_config.sh failed (see $log)"
kmake olddefconfig || die "make olddefconfig failed (see $log)"

# Every option the fragment sets must survive: olddefconfig silently drops
# options whose dependencies are missing.
missing=0
while IFS= read -r line; do
	case "$line" in
	CONFIG_*=n)
		opt=${line%%=*}
		if grep -q "^$opt=" "$ksrc/.config"; then
			echo "kernel: $opt should be off but is $(grep "^$opt=" "$ksrc/.config")" >&2
			missing=1
		fi ;;
	CONFIG_*=*)
		if ! grep -qxF "$line" "$ksrc/.config"; then
			echo "kernel: $line did not survive olddefconfig (got: $(grep "^${line%%=*}=" "$ksrc/.config" || echo unset))" >&2
			missing=1
		fi ;;
	esac
done <"$inputs/config"
[ $missing -eq 0 ] || die "kernel/config asks for options the kernel cannot have"

kmake -j"$(nproc)" vmlinux bzImage || { tail -30 "$log" >&2; die "kernel build failed (see $log)"; }

mkdir "$work/out"
cp "$ksrc/vmlinux" "$work/out/vmlinux"
cp "$ksrc/arch/x86/boot/bzImage" "$work/out/bzImage"
cp "$ksrc/.config" "$work/out/config"
mv "$log" "$work/out/build.log"
sync -f "$work/out/vmlinux"
mv -T "$work/out" "$out"
echo "kernel: done ($(du -h "$out/bzImage" | cut -f1) bzImage)" >&2
echo "$out/vmlinux"
