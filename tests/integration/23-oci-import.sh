#!/usr/bin/env bash
# lttle import of OCI layouts (directory, tar, gzipped tar, multi-arch) and
# of tarballs made by `skopeo copy ... oci-archive:` and `docker-archive:`;
# tampered archives are refused; lttle export round-trips through skopeo.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/oci-test.sh"
need skopeo
mk_layers
mkimage build "$T/amd" --tag v1 --layer "$T/l1.tar:gzip" --layer "$T/l2.tar:zstd" \
	--layer "$T/l3.tar:none" --cmd '["/app/run.sh"]' >/dev/null
mkimage build "$T/arm" --tag v1 --platform linux/arm64 --layer "$T/l2.tar:gzip" >/dev/null
mkimage merge "$T/multi" --tag v1 "$T/amd" "$T/arm" >/dev/null
mkimage build "$T/gz" --tag v1 --layer "$T/l1.tar:gzip" --layer "$T/l2.tar:none" \
	--env A=1 --expose 80/tcp >/dev/null
amd=$(mkimage digest "$T/amd" v1)
arm=$(mkimage digest "$T/arm" v1)
refs() { find "$LTTLE_HOME/refs" -type f 2>/dev/null | sed "s|$LTTLE_HOME/refs/||" | sort; }
pristine() { rm -rf "$LTTLE_HOME"; mkdir -p "$LTTLE_HOME"; }
same_blobs() { # LAYOUT_DIR MANIFEST_DIGEST: every blob of it is in the store, identical
	local m; m=$(layout_blob "$1" "$2")
	cmp -s "$m" "$(store_blob "$2")" || fail "manifest $2 differs"
	for d in $(grep -o 'sha256:[0-9a-f]\{64\}' "$m"); do
		cmp -s "$(layout_blob "$1" "$d")" "$(store_blob "$d")" || fail "blob $d differs"
	done
}

log "OCI layout directory"
out=$("$LTTLE" import "$T/amd" 2>"$T/imp.err")
assert_eq "$amd" "$out" "imported digest"
assert_contains "$(cat "$T/imp.err")" "Loaded localhost/amd:v1" "name from the ref.name tag + dir name"
same_blobs "$T/amd" "$amd"
assert_eq "localhost/amd/_tags/v1" "$(refs)" "refs"
# Again: nothing changes, blobs already present.
out=$("$LTTLE" import -q "$T/amd")
assert_eq "$amd" "$out" "re-import"

log "multi-arch layout: default host platform and --platform, --tag"
pristine
out=$("$LTTLE" import -q "$T/multi")
assert_eq "$amd" "$out" "host platform from the nested index"
out=$("$LTTLE" import -q --platform linux/arm64 --tag example.com/multi:arm "$T/multi")
assert_eq "$arm" "$out" "--platform linux/arm64"
same_blobs "$T/multi" "$arm"
assert_eq "$arm" "$(cat "$LTTLE_HOME/refs/example.com/multi/_tags/arm")" "--tag ref"
expect_fail "missing platform" "$LTTLE" import -q --platform linux/riscv64 "$T/multi"
assert_contains "$(cat "$T/err")" "no image for platform linux/riscv64" "platform error"

log "layout as tar and as gzipped tar"
pristine
tar -C "$T/multi" -cf "$T/multi.tar" .
gzip -c "$T/multi.tar" >"$T/multi.tar.gz"
assert_eq "$amd" "$("$LTTLE" import -q "$T/multi.tar")" "tar (./-prefixed names)"
assert_eq "$amd" "$("$LTTLE" import -q "$T/multi.tar.gz" --tag gz:1)" "gzipped tar"
assert_contains "$(refs)" "localhost/multi/_tags/v1" "tar named after the file"
[ -z "$(ls -A "$LTTLE_HOME/tmp")" ] || fail "temp files left"
# Unreferenced archive members (the arm64 image) did not enter the store.
[ ! -e "$(store_blob "$arm")" ] || fail "the unselected platform was stored"

log "skopeo oci-archive"
pristine
skopeo copy -q "oci:$T/amd:v1" "oci-archive:$T/oa.tar:myorg/app:v2"
want=$(tar -xOf "$T/oa.tar" index.json | python3 -c 'import json,sys; print(json.load(sys.stdin)["manifests"][0]["digest"])')
out=$("$LTTLE" import -q "$T/oa.tar")
assert_eq "$want" "$out" "oci-archive digest"
assert_eq "docker.io/myorg/app/_tags/v2" "$(refs)" "name from org.opencontainers.image.ref.name"
mkdir -p "$T/oa" && tar -C "$T/oa" -xf "$T/oa.tar"
same_blobs "$T/oa" "$want"

log "skopeo docker-archive (uncompressed layers, symlinks, computed digests)"
pristine
skopeo copy -q "oci:$T/gz:v1" "docker-archive:$T/da.tar:foo/bar:v1"
nlinks=$(tar -tvf "$T/da.tar" | grep -c '^l' || true)
log "($nlinks symlinked members in the docker archive)"
out=$("$LTTLE" import -q "$T/da.tar")
assert_eq "docker.io/foo/bar/_tags/v1" "$(refs)" "name from RepoTags"
"$LTTLE" inspect --json foo/bar:v1 >"$T/da.json"
assert_eq "$out" "$(json_get "$T/da.json" digest)" "inspect digest"
diff_ids=$(json_get "$(layout_blob "$T/gz" "$(json_get "$(layout_blob "$T/gz" "$(mkimage digest "$T/gz" v1)")" config digest)")" rootfs diff_ids)
layers=$(python3 -c 'import json,sys; print(json.dumps([l["digest"] for l in json.load(open(sys.argv[1]))["layers"]]))' "$T/da.json")
assert_eq "$diff_ids" "$layers" "layers stored uncompressed under their diff_ids"
assert_contains "$(cat "$T/da.json")" '"media_type": "application/vnd.oci.image.layer.v1.tar"' "uncompressed media type"
assert_eq '["A=1"]' "$(json_get "$T/da.json" runtime env)" "config kept"
assert_eq "$out" "$("$LTTLE" import -q --tag other/name:2 "$T/da.tar")" "same digest on re-import"
assert_contains "$(refs)" "docker.io/other/name/_tags/2" "--tag"

log "newer docker save layout (oci-layout + index.json + manifest.json over blobs/sha256)"
pristine
gzd=$(mkimage digest "$T/gz" v1)
python3 - "$T/gz" "$gzd" "$T/newsave" <<'PY'
import json, os, shutil, sys
src, digest, out = sys.argv[1:]
shutil.copytree(src, out)
man = json.load(open(f"{out}/blobs/sha256/{digest[7:]}"))
idx = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
       "manifests": [{"mediaType": man["mediaType"], "digest": digest,
                      "size": os.path.getsize(f"{out}/blobs/sha256/{digest[7:]}"),
                      "annotations": {"io.containerd.image.name": "docker.io/library/newsave:7",
                                      "org.opencontainers.image.ref.name": "7"}}]}
json.dump(idx, open(f"{out}/index.json", "w"))
b = lambda d: "blobs/sha256/" + d["digest"][7:]
json.dump([{"Config": b(man["config"]), "RepoTags": ["newsave:7"],
            "Layers": [b(l) for l in man["layers"]]}], open(f"{out}/manifest.json", "w"))
PY
tar -C "$T/newsave" -cf "$T/newsave.tar" .
assert_eq "$gzd" "$("$LTTLE" import -q "$T/newsave.tar")" "index.json is preferred"
assert_eq "docker.io/library/newsave/_tags/7" "$(refs)" "name from io.containerd.image.name"
# Without index.json: the docker path, config checked against its file
# name, a gzip layer checked against its diff_id after decompression.
pristine
rm "$T/newsave/index.json" "$T/newsave/oci-layout"
tar -C "$T/newsave" -cf "$T/oldpath.tar" .
out=$("$LTTLE" import -q "$T/oldpath.tar")
"$LTTLE" inspect --json newsave:7 >"$T/ns.json"
assert_contains "$(cat "$T/ns.json")" "application/vnd.oci.image.layer.v1.tar+gzip" "gzip layer detected"
cfgd=$(json_get "$(layout_blob "$T/gz" "$gzd")" config digest)
mv "$T/newsave/blobs/sha256/${cfgd#sha256:}" "$T/newsave/blobs/sha256/$(printf 'e%.0s' {1..64})"
sed -i "s/${cfgd#sha256:}/$(printf 'e%.0s' {1..64})/" "$T/newsave/manifest.json"
tar -C "$T/newsave" -cf "$T/badcfg.tar" .
expect_fail "config under a wrong digest name" "$LTTLE" import "$T/badcfg.tar"
assert_contains "$(cat "$T/err")" "digest mismatch" "config name check"

log "tampered archives are refused, nothing stored"
pristine
cp -r "$T/amd" "$T/bad"
victim=$(json_get "$(layout_blob "$T/bad" "$amd")" layers 2 digest)
printf 'X' | dd of="$(layout_blob "$T/bad" "$victim")" bs=1 seek=100 conv=notrunc 2>/dev/null
expect_fail "corrupt layout blob" "$LTTLE" import "$T/bad"
assert_contains "$(cat "$T/err")" "digest mismatch: expected $victim" "layout mismatch"
[ ! -e "$(store_blob "$victim")" ] || fail "corrupt blob stored"
assert_eq "" "$(refs)" "no ref after a failed import"
tar -C "$T/bad" -cf "$T/bad.tar" .
expect_fail "corrupt layout tar" "$LTTLE" import "$T/bad.tar"
assert_contains "$(cat "$T/err")" "blobs/sha256/${victim#sha256:}: digest mismatch" "tar mismatch"
[ -z "$(ls -A "$LTTLE_HOME/tmp")" ] || fail "temp files left after a failed import"
# A docker-archive whose layer no longer matches the config's diff_id.
mkdir -p "$T/dabad" && tar -C "$T/dabad" -xf "$T/da.tar"
first=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["Layers"][0])' "$T/dabad/manifest.json")
real=$(readlink -f "$T/dabad/$first")
printf 'junk' >>"$real"
tar -C "$T/dabad" -cf "$T/dabad.tar" .
expect_fail "tampered docker layer" "$LTTLE" import "$T/dabad.tar"
assert_contains "$(cat "$T/err")" "diff_id mismatch" "diff_id check"
assert_eq "" "$(refs)" "no ref after a failed docker import"
# Hostile member names and link loops.
python3 - "$T/evil.tar" "$T/loop.tar" <<'PY'
import io, sys, tarfile
def add(t, name, data=b"", link=None):
    ti = tarfile.TarInfo(name)
    if link is not None:
        ti.type, ti.linkname = tarfile.SYMTYPE, link
    else:
        ti.size = len(data)
    t.addfile(ti, io.BytesIO(data) if link is None else None)
with tarfile.open(sys.argv[1], "w") as t:
    add(t, "index.json", b"{}")
    add(t, "../../etc/evil", b"x")
with tarfile.open(sys.argv[2], "w") as t:
    add(t, "manifest.json", b'[{"Config":"c.json","Layers":["a/layer.tar"]}]')
    add(t, "c.json", b'{"rootfs":{"diff_ids":["sha256:' + b"0" * 64 + b'"]}}')
    add(t, "a/layer.tar", link="../b/layer.tar")
    add(t, "b/layer.tar", link="../a/layer.tar")
PY
expect_fail "path escape" "$LTTLE" import "$T/evil.tar"
assert_contains "$(cat "$T/err")" "leaves the archive" "escape message"
expect_fail "link loop" "$LTTLE" import "$T/loop.tar"
assert_contains "$(cat "$T/err")" "too many levels of links" "loop message"
expect_fail "not an archive" "$LTTLE" import /etc/hostname
assert_contains "$(cat "$T/err")" "/etc/hostname" "names the file"
mkdir -p "$T/empty"
expect_fail "empty dir" "$LTTLE" import "$T/empty"
assert_contains "$(cat "$T/err")" "neither an OCI image layout" "empty dir message"
expect_fail "missing file" "$LTTLE" import "$T/nope.tar"

log "export round trip: skopeo reads it, lttle re-imports it"
pristine
"$LTTLE" import -q --tag registry.example/team/app:v3 "$T/amd" >/dev/null
"$LTTLE" export registry.example/team/app:v3 "$T/export.tar"
assert_contains "$(tar -tf "$T/export.tar")" "oci-layout" "oci-layout in the export"
skopeo copy -q "oci-archive:$T/export.tar" "dir:$T/skdir"
cmp -s "$T/skdir/manifest.json" "$(store_blob "$amd")" || fail "skopeo saw a different manifest"
for d in $(grep -o 'sha256:[0-9a-f]\{64\}' "$T/skdir/manifest.json"); do
	cmp -s "$T/skdir/${d#sha256:}" "$(store_blob "$d")" || fail "skopeo blob $d differs"
done
skopeo inspect --raw "oci-archive:$T/export.tar" >/dev/null || fail "skopeo inspect failed"
mv "$LTTLE_HOME" "$T/home.old" && mkdir -p "$LTTLE_HOME"
assert_eq "$amd" "$("$LTTLE" import -q "$T/export.tar")" "re-import digest"
assert_eq "registry.example/team/app/_tags/v3" "$(refs)" "name survives the round trip"
# Export to stdout, by digest prefix.
"$LTTLE" export "${amd:7:12}" - >"$T/stdout.tar"
assert_contains "$(tar -tf "$T/stdout.tar")" "blobs/sha256/${amd#sha256:}" "stdout export"
expect_fail "export of a missing image" "$LTTLE" export nothere:1 "$T/x.tar"
[ ! -e "$T/x.tar" ] || fail "a file was written for a failed export"
pass "import/export"
