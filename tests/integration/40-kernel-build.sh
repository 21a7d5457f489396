#!/usr/bin/env bash
# `make kernel`: the cached guest kernel and the build script's contract.
#   - the last line is the absolute path of an x86-64 ELF vmlinux, next to a
#     bzImage and the final config, which holds every option kernel/config
#     asks for; a second call reuses the cache at once;
#   - the cache key follows the inputs (config fragment, patches, ABI
#     header), checked on a copy of kernel/ with a cache in $T;
#   - the patch applies to the installed linux-source;
#   - a broken patch and a missing source tarball fail with a clear error.
# (The first run on a machine builds the kernel: ~4 min on 2 cores.)
. "$(dirname "$0")/../lib/common.sh"
need make patch tar xz readelf

tarball=/usr/src/linux-source-6.1.tar.xz
[ -r "$tarball" ] || skip "linux-source-6.1 is not installed"

out=$(make -s -C "$LTTLE_ROOT" kernel 2>"$T/build.err") || fail "make kernel: $(tail -5 "$T/build.err")"
vmlinux=$(printf '%s\n' "$out" | tail -1)
case "$vmlinux" in /*/vmlinux) ;; *) fail "last line is not an absolute vmlinux path: '$vmlinux'" ;; esac
dir=$(dirname "$vmlinux")
readelf -h "$vmlinux" | grep -q 'Class:.*ELF64' || fail "$vmlinux is not ELF64"
readelf -h "$vmlinux" | grep -q 'Machine:.*X86-64' || fail "$vmlinux is not x86-64"
[ -s "$dir/bzImage" ] || fail "no bzImage beside vmlinux"
dd if="$dir/bzImage" bs=1 skip=514 count=4 2>/dev/null | grep -q HdrS || fail "bzImage has no boot header"
while IFS= read -r line; do
	case "$line" in
	CONFIG_*=n) ! grep -q "^${line%%=*}=" "$dir/config" || fail "$line not honoured" ;;
	CONFIG_*=*) grep -qxF "$line" "$dir/config" || fail "$line missing from the built config" ;;
	esac
done <"$LTTLE_ROOT/kernel/config"
log "kernel $vmlinux ($(stat -c %s "$vmlinux") bytes; bzImage $(stat -c %s "$dir/bzImage") bytes)"

t0=$(date +%s%N)
again=$(make -s -C "$LTTLE_ROOT" kernel 2>/dev/null | tail -1)
ms=$((($(date +%s%N) - t0) / 1000000))
assert_eq "$vmlinux" "$again" "second make kernel"
[ "$ms" -lt 3000 ] || fail "cached make kernel took ${ms}ms"

# Cache keys, on a copy of the inputs with a throwaway cache and a fake
# tarball (the build announces its target dir, then fails to unpack).
key_of() { # TREE: prints the cache dir the build would use
	local tree=$1
	echo "not xz" >"$T/fake.tar.xz"
	LTTLE_CACHE="$T/cache" LTTLE_KERNEL_TARBALL="$T/fake.tar.xz" \
		bash "$tree/kernel/build.sh" >/dev/null 2>"$T/key.err" && fail "fake build succeeded"
	sed -n 's/^kernel: building .* into \([^ ]*\) (log.*/\1/p' "$T/key.err" | head -1
}
mk_tree() {
	mkdir -p "$1/src/vmm"
	cp -r "$LTTLE_ROOT/kernel" "$1/"
	cp "$LTTLE_ROOT/src/vmm/guest_abi.h" "$1/src/vmm/"
}
mk_tree "$T/a"
mk_tree "$T/b"
ka=$(key_of "$T/a")
[ -n "$ka" ] || fail "no cache dir announced: $(cat "$T/key.err")"
assert_eq "$ka" "$(key_of "$T/b")" "same inputs, same key"
assert_eq "$T/cache/kernel/$(basename "$dir")" "$ka" "the copy's key matches the real cache entry"
echo "CONFIG_DUMMY_OPTION_FOR_KEY=y" >>"$T/b/kernel/config"
kb=$(key_of "$T/b")
[ "$ka" != "$kb" ] || fail "config change kept the key"
mk_tree "$T/c"
echo "/* changed */" >>"$T/c/src/vmm/guest_abi.h"
[ "$(key_of "$T/c")" != "$ka" ] || fail "ABI header change kept the key"
mk_tree "$T/d"
sed -i 's/^+static bool lttle_hook = true;$/+static bool lttle_hook = false;/' \
	"$T/d/kernel/patches/0001-lttle-guest-hook.diff"
[ "$(key_of "$T/d")" != "$ka" ] || fail "patch change kept the key"
# Nothing half-built is left under a key.
[ ! -e "$ka" ] || fail "a failed build left $ka"

# Missing tarball: a clear error naming it.
if LTTLE_CACHE="$T/cache" LTTLE_KERNEL_TARBALL="$T/none.tar.xz" \
	bash "$T/a/kernel/build.sh" >/dev/null 2>"$T/err"; then
	fail "build without a tarball succeeded"
fi
assert_contains "$(cat "$T/err")" "$T/none.tar.xz is missing" "missing tarball"

# The patch applies to the installed source, and a broken one is refused
# with its name (on a small tree: only the files the patch touches).
files=$(sed -n 's|^+++ b/||p' "$LTTLE_ROOT"/kernel/patches/*.diff)
members=()
for f in $files; do
	members+=("linux-source-6.1/$f")
done
tar -C "$T" -xJf "$tarball" --wildcards "${members[@]}" 2>/dev/null || true
for p in "$LTTLE_ROOT"/kernel/patches/*.diff; do
	patch -d "$T/linux-source-6.1" -p1 --dry-run --quiet <"$p" >"$T/patch.out" 2>&1 ||
		fail "$(basename "$p") does not apply: $(head -5 "$T/patch.out")"
done
pass "make kernel: cached path, config, cache keys, patch applies, clear errors"
