#!/usr/bin/env bash
# lttle build on hostile images, end to end through the registry: a layer
# that writes through a symlink planted by a lower layer, one with '..'
# and one with a hardlink to a missing file. Pull succeeds (the blobs are
# valid), build fails with one line naming the layer and the entry, and
# nothing is left in the rootfs cache nor outside it. Then an ext4 size
# that cannot hold the content, and the air-gapped path: a docker-save
# tarball imported and built.
. "$(dirname "$0")/../lib/common.sh"
need python3 zstd e2fsck skopeo
[ -x "$LTTLE" ] || skip "$LTTLE is not built"
MKLAYER=(python3 "$LTTLE_ROOT/tests/lib/mklayer.py")
MKIMAGE=(python3 "$LTTLE_ROOT/tests/lib/mkimage.py")
OUTSIDE="$T/outside"
start_registry

# image NAME LAYER-SPEC...: builds and pushes REGISTRY/hostile/NAME:v1
image() {
	local name=$1 i=0 args=(); shift
	for spec in "$@"; do
		i=$((i + 1))
		printf '%s' "$spec" >"$T/$name.$i.json"
		"${MKLAYER[@]}" "$T/$name.$i.json" "$T/$name.$i.tar"
		args+=(--layer "$T/$name.$i.tar:gzip")
	done
	"${MKIMAGE[@]}" build "$T/$name.layout" --tag v1 "${args[@]}" >/dev/null
	"${MKIMAGE[@]}" push "$T/$name.layout" v1 "$REGISTRY/hostile/$name:v1" >/dev/null
	"$LTTLE" pull --quiet "$REGISTRY/hostile/$name:v1" >/dev/null
}

# rejected NAME WANT...: the build fails with one line holding every WANT.
rejected() {
	local name=$1; shift
	for fmt in ext4 squashfs; do
		expect_fail "$name ($fmt)" "$LTTLE" build "$REGISTRY/hostile/$name:v1" --format "$fmt" --quiet
		[ "$(wc -l <"$T/err")" -eq 1 ] || fail "$name: one error line expected: $(cat "$T/err")"
		for w in "lttle build:" "$@"; do
			assert_contains "$(cat "$T/err")" "$w" "$name ($fmt) error"
		done
		[ -z "$(ls -A "$LTTLE_HOME/rootfs" 2>/dev/null)" ] ||
			fail "$name: files left in the cache: $(ls -A "$LTTLE_HOME/rootfs")"
		[ ! -e "$OUTSIDE" ] || fail "$name: something was written outside the image"
	done
}

log "symlink planted in a lower layer"
image planted \
	'[{"path":"usr/lib/","type":"dir"},{"path":"usr/lib/libc.so","content":"libc"}]' \
	"[{\"path\":\"usr/lib\",\"type\":\"symlink\",\"target\":\"$OUTSIDE\"}]" \
	'[{"path":"usr/lib/evil.so","content":"evil"}]'
rejected planted "layer 3 (" "'usr/lib/evil.so'" "symlink 'usr/lib'"

log "'..' in a path"
image dotdot '[{"path":"etc/x","content":"x"}]' \
	'[{"type":"raw","name":"etc/../../escape","content":"x"}]'
rejected dotdot "layer 2 (" "etc/../../escape" "'..'"

log "hardlink to a missing file"
image hardlink '[{"path":"bin/sh","type":"hardlink","target":"bin/busybox"}]'
rejected hardlink "layer 1 (" "'bin/sh'" "'bin/busybox' does not exist"

log "an ext4 size that cannot hold the content"
image big '[{"path":"blob","size":30000000,"seed":9}]'
expect_fail "small --size" "$LTTLE" build "$REGISTRY/hostile/big:v1" --format ext4 --size 16M --quiet
assert_contains "$(cat "$T/err")" "but the image size is 16.8 MB" "size error"
assert_contains "$(cat "$T/err")" "needs about" "size error"
[ -z "$(ls -A "$LTTLE_HOME/rootfs")" ] || fail "files left after a failed sized build"
img=$("$LTTLE" build "$REGISTRY/hostile/big:v1" --format ext4 --size 64M --quiet)
e2fsck -fn "$img" >"$T/fsck" 2>&1 || fail "e2fsck: $(cat "$T/fsck")"

log "air-gapped: docker-save tarball -> lttle import -> lttle build"
skopeo copy --quiet "oci:$T/planted.layout:v1" "docker-archive:$T/planted.tar:offline/planted:v1" ||
	fail "skopeo docker-archive export"
image ok '[{"path":"etc/os-release","content":"ID=ok\n"},{"path":"bin/sh","type":"symlink","target":"busybox"}]'
skopeo copy --quiet "oci:$T/ok.layout:v1" "docker-archive:$T/ok.tar:offline/ok:v1"
export LTTLE_HOME="$T/home2"
"$LTTLE" import "$T/ok.tar" >/dev/null
img=$("$LTTLE" build offline/ok:v1 --format ext4 --quiet)
e2fsck -fn "$img" >"$T/fsck" 2>&1 || fail "e2fsck: $(cat "$T/fsck")"
assert_eq "ID=ok" "$(debugfs -R 'cat /etc/os-release' "$img" 2>/dev/null)" "imported content"
"$LTTLE" import "$T/planted.tar" >/dev/null
expect_fail "imported hostile image" "$LTTLE" build offline/planted:v1 --format squashfs --quiet
assert_contains "$(cat "$T/err")" "symlink 'usr/lib'" "imported hostile image error"
pass "hostile images rejected"
