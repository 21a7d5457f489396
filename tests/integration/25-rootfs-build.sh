#!/usr/bin/env bash
# lttle pull + lttle build end to end: a 3-layer image (gzip, zstd, plain)
# with whiteouts, an opaque dir, hardlinks (within and across layers),
# symlinks, xattrs, devices and a sparse file is pushed to a real registry,
# pulled, and built into ext4 and squashfs; both are checked with e2fsck /
# debugfs and sqfs2tar / unsquashfs against the expected tree. Then the
# cache (second build instant and reported cached, --no-cache, keys), the
# runtime config beside and inside the image, -o, and CLI errors.
. "$(dirname "$0")/../lib/common.sh"
need python3 zstd e2fsck debugfs sqfs2tar unsquashfs
[ -x "$LTTLE" ] || skip "$LTTLE is not built"
MKLAYER=(python3 "$LTTLE_ROOT/tests/lib/mklayer.py")
MKIMAGE=(python3 "$LTTLE_ROOT/tests/lib/mkimage.py")

log "layers"
cat >"$T/l1.json" <<'EOF'
[
 {"path": "./", "type": "dir", "mode": 493, "mtime": 1690000000},
 {"path": "./etc/", "type": "dir"},
 {"path": "./etc/os-release", "content": "ID=lttle\n"},
 {"path": "./etc/old.conf", "content": "old"},
 {"path": "./bin/", "type": "dir"},
 {"path": "./bin/busybox", "content": "BUSYBOX-1", "mode": 493},
 {"path": "./bin/sh", "type": "symlink", "target": "busybox"},
 {"path": "./bin/ls", "type": "hardlink", "target": "./bin/busybox"},
 {"path": "./bin/ping", "content": "PING", "mode": 493,
  "xattrs": {"security.capability": "hex:0100000200200000000000000000000000000000"}},
 {"path": "./dev/null", "type": "char", "major": 1, "minor": 3, "mode": 438},
 {"path": "./var/cache/app/a", "content": "cached-a"},
 {"path": "./var/cache/app/b", "content": "cached-b"},
 {"path": "./data/sparse", "type": "sparse", "size": 8388608, "data": [[0, "S"], [8388000, "E"]]}
]
EOF
cat >"$T/l2.json" <<'EOF'
[
 {"path": "etc/.wh.old.conf", "type": "file"},
 {"path": "var/cache/app/.wh..wh..opq", "type": "file"},
 {"path": "var/cache/app/fresh", "content": "fresh"},
 {"path": "bin/busybox", "content": "BUSYBOX-2", "mode": 493},
 {"path": "usr/bin/ls2", "type": "hardlink", "target": "bin/ls"}
]
EOF
cat >"$T/l3.json" <<'EOF'
[
 {"path": "app/", "type": "dir", "uid": 1000, "gid": 1000},
 {"path": "app/run", "content": "#!/bin/sh\nexec app\n", "mode": 493, "uid": 1000, "gid": 1000}
]
EOF
for i in 1 2 3; do "${MKLAYER[@]}" "$T/l$i.json" "$T/l$i.tar"; done

log "image -> registry -> lttle pull"
"${MKIMAGE[@]}" build "$T/layout" --tag v1 --layer "$T/l1.tar:gzip" --layer "$T/l2.tar:zstd" \
	--layer "$T/l3.tar:none" --env PATH=/usr/bin:/bin --env MODE=test \
	--entrypoint '["/app/run"]' --cmd '["serve"]' --workdir /app --user 1000 \
	--expose 8080/tcp >/dev/null
start_registry
REF="$REGISTRY/rootfs/test:v1"
digest=$("${MKIMAGE[@]}" push "$T/layout" v1 "$REF")
"$LTTLE" pull --quiet "$REF" >/dev/null

mkdir -p "$T/libexec"
printf '#!/bin/sh\necho fake init\n' >"$T/libexec/lttle-init"
chmod 755 "$T/libexec/lttle-init"
export LTTLE_LIBEXEC="$T/libexec"
init_sha=$(sha256sum "$T/libexec/lttle-init" | cut -c1-16)
init_len=$(stat -c %s "$T/libexec/lttle-init")

T0=1700000000
expected() {
	cat <<EOF
/ d 0755 0:0 1690000000
/.lttle d 0755 0:0 $T0
/.lttle/config.json f 0644 0:0 $T0 $1 sha256:$2
/.lttle/init f 0755 0:0 $T0 $init_len sha256:$init_sha
/app d 0755 1000:1000 $T0
/app/run f 0755 1000:1000 $T0 19 sha256:$(printf '#!/bin/sh\nexec app\n' | sha256sum | cut -c1-16)
/bin d 0755 0:0 $T0
/bin/busybox f 0755 0:0 $T0 9 sha256:$(printf BUSYBOX-2 | sha256sum | cut -c1-16)
/bin/ls f 0755 0:0 $T0 9 sha256:$(printf BUSYBOX-1 | sha256sum | cut -c1-16) nlink=2
/bin/ping f 0755 0:0 $T0 4 sha256:$(printf PING | sha256sum | cut -c1-16) x:security.capability=0100000200200000000000000000000000000000
/bin/sh l 0777 0:0 $T0 -> busybox
/data d 0755 0:0 $T0
/data/sparse f 0644 0:0 $T0 8388608 sha256:$(python3 -c 'import hashlib;b=bytearray(8388608);b[0:1]=b"S";b[8388000:8388001]=b"E";print(hashlib.sha256(b).hexdigest()[:16])')
/dev d 0755 0:0 $T0
/dev/null c 0666 0:0 $T0 1,3
/etc d 0755 0:0 $T0
/etc/os-release f 0644 0:0 $T0 9 sha256:$(printf 'ID=lttle\n' | sha256sum | cut -c1-16)
/usr d 0755 0:0 $T0
/usr/bin d 0755 0:0 $T0
/usr/bin/ls2 f 0755 0:0 $T0 9 sha256:$(printf BUSYBOX-1 | sha256sum | cut -c1-16) link=/bin/ls
/var d 0755 0:0 $T0
/var/cache d 0755 0:0 $T0
/var/cache/app d 0755 0:0 $T0
/var/cache/app/fresh f 0644 0:0 $T0 5 sha256:$(printf fresh | sha256sum | cut -c1-16)
EOF
}
json_field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$@"; }

for fmt in ext4 squashfs; do
	log "build --format $fmt"
	"$LTTLE" build "$REF" --format "$fmt" --json >"$T/$fmt.json" 2>"$T/$fmt.err" ||
		fail "build $fmt: $(cat "$T/$fmt.err")"
	img=$(json_field "$T/$fmt.json" path)
	assert_eq "False" "$(json_field "$T/$fmt.json" cached)" "$fmt: first build is not cached"
	assert_eq "$fmt" "$(json_field "$T/$fmt.json" format)" "$fmt: format"
	assert_eq "$(stat -c %s "$img")" "$(json_field "$T/$fmt.json" size)" "$fmt: size"
	assert_eq "sha256:$(sha256sum "$img" | cut -d' ' -f1)" "$(json_field "$T/$fmt.json" digest)" \
		"$fmt: digest"
	case "$img" in "$LTTLE_HOME/rootfs/${digest#sha256:}-"*".$fmt") ;;
		*) fail "$fmt: unexpected cache path $img" ;; esac
	assert_contains "$(cat "$T/$fmt.err")" "layer 3/3" "$fmt: per-layer progress"

	cfg="${img%.$fmt}.json"
	[ -f "$cfg" ] || fail "$fmt: runtime config $cfg missing"
	python3 - "$cfg" "$REF" "$digest" <<'EOF' || fail "$fmt: runtime config content"
import json, sys
c = json.load(open(sys.argv[1]))
assert c["env"] == ["PATH=/usr/bin:/bin", "MODE=test"], c
assert c["entrypoint"] == ["/app/run"] and c["cmd"] == ["serve"], c
assert c["workdir"] == "/app" and c["user"] == "1000", c
assert c["exposed_ports"] == [8080], c
assert c["digest"] == sys.argv[3], c
EOF
	cfg_len=$(stat -c %s "$cfg")
	cfg_sha=$(sha256sum "$cfg" | cut -c1-16)
	if [ "$fmt" = ext4 ]; then
		e2fsck -fn "$img" >"$T/fsck.out" 2>&1 || fail "e2fsck: $(cat "$T/fsck.out")"
		"${MKLAYER[@]}" ls-ext4 "$img" >"$T/got.$fmt"
		debugfs -R 'stat /data/sparse' "$img" 2>/dev/null | grep -q 'Blockcount: 16$' ||
			fail "ext4: the sparse file is not sparse"
	else
		unsquashfs -lln "$img" >"$T/unsq.out" 2>&1 || fail "unsquashfs: $(cat "$T/unsq.out")"
		assert_contains "$(cat "$T/unsq.out")" "squashfs-root/bin/ping" "unsquashfs listing"
		"${MKLAYER[@]}" ls-sqfs "$img" >"$T/got.$fmt"
	fi
	expected "$cfg_len" "$cfg_sha" >"$T/want.$fmt"
	diff -u "$T/want.$fmt" "$T/got.$fmt" || fail "$fmt: image tree differs from the expected one"
	printf '#!/bin/sh\nexec app\n' | cmp -s - <(
		if [ "$fmt" = ext4 ]; then debugfs -R 'cat /app/run' "$img" 2>/dev/null
		else rdsquashfs -c /app/run "$img"; fi) || fail "$fmt: /app/run content"

	log "$fmt: cached rebuild"
	t0=$(date +%s%N)
	"$LTTLE" build "$REF" --format "$fmt" --json >"$T/$fmt.2.json" 2>"$T/$fmt.2.err"
	t1=$(date +%s%N)
	assert_eq "True" "$(json_field "$T/$fmt.2.json" cached)" "$fmt: second build is cached"
	assert_eq "$img" "$(json_field "$T/$fmt.2.json" path)" "$fmt: same cache path"
	assert_eq "$(json_field "$T/$fmt.json" digest)" "$(json_field "$T/$fmt.2.json" digest)" \
		"$fmt: cached digest"
	[ $(((t1 - t0) / 1000000)) -lt 1000 ] || fail "$fmt: cached build took $(((t1 - t0) / 1000000)) ms"
	out=$("$LTTLE" build "$REF" --format "$fmt" 2>/dev/null | tail -1)
	assert_eq "$img" "$out" "$fmt: last stdout line is the path"

	log "$fmt: --no-cache and -o"
	"$LTTLE" build "$REF" --format "$fmt" --no-cache --json -o "$T/out.$fmt" >"$T/$fmt.3.json" 2>/dev/null
	assert_eq "False" "$(json_field "$T/$fmt.3.json" cached)" "$fmt: --no-cache rebuilds"
	assert_eq "$T/out.$fmt" "$(json_field "$T/$fmt.3.json" path)" "$fmt: -o path reported"
	cmp -s "$img" "$T/out.$fmt" || fail "$fmt: -o copy differs from the cached image"
	assert_eq "$(json_field "$T/$fmt.json" digest)" "$(json_field "$T/$fmt.3.json" digest)" \
		"$fmt: rebuild is byte-identical"
done

log "cache keys: --size and the guest init"
a=$("$LTTLE" build "$REF" --format ext4 --size 64M --quiet)
assert_eq $((64 << 20)) "$(stat -c %s "$a")" "--size"
[ "$a" != "$(json_field "$T/ext4.json" path)" ] || fail "--size must change the cache key"
printf '#!/bin/sh\necho other init\n' >"$T/libexec/lttle-init"
b=$("$LTTLE" build "$REF" --format ext4 --quiet)
[ "$b" != "$(json_field "$T/ext4.json" path)" ] || fail "a new init must change the cache key"
debugfs -R 'cat /.lttle/init' "$b" 2>/dev/null | grep -q "other init" || fail "new init not injected"

log "no guest init: a warning, and no /.lttle/init"
export LTTLE_LIBEXEC="$T/nothing"
if "$LTTLE" build "$REF" --format squashfs --no-cache >"$T/noinit.out" 2>"$T/noinit.err"; then
	if grep -q "warning: the guest init" "$T/noinit.err"; then
		img=$(tail -1 "$T/noinit.out")
		rdsquashfs -l /.lttle "$img" >"$T/lttle.ls"
		grep -q config.json "$T/lttle.ls" || fail "config.json missing without init"
		! grep -q init "$T/lttle.ls" || fail "init injected although none was found"
	else
		log "(an installed lttle-init was found; skipping the no-init check)"
	fi
else
	fail "build without init failed: $(cat "$T/noinit.err")"
fi

log "errors"
expect_fail "unknown image" "$LTTLE" build "$REGISTRY/nope:v1"
[ "$(wc -l <"$T/err")" -eq 1 ] || fail "one error line expected: $(cat "$T/err")"
assert_contains "$(cat "$T/err")" "lttle build:" "error prefix"
if "$LTTLE" build "$REF" --format squashfs --size 1G >/dev/null 2>"$T/err"; then
	fail "--size with squashfs accepted"
else
	assert_eq 2 "$?" "usage error exit code"
fi
if "$LTTLE" build "$REF" --bogus >/dev/null 2>"$T/err"; then fail "--bogus accepted"; fi
[ "$(wc -l <"$T/err")" -eq 1 ] || fail "one usage line expected: $(cat "$T/err")"
assert_contains "$(cat "$T/err")" "unknown option '--bogus'" "usage error"
expect_fail "bad format" "$LTTLE" build "$REF" --format xfs
assert_contains "$(cat "$T/err")" "xfs" "bad format message"
pass "rootfs build"
