#!/usr/bin/env bash
# lttle pull against a real docker-registry on 127.0.0.1: gzip, zstd and
# uncompressed layers, blobs verified on disk, skipping present blobs,
# multi-arch selection, pull by digest, Docker schema2 media types, errors.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/oci-test.sh"
start_registry
mk_layers

log "build and push a 3-layer image (gzip + zstd + uncompressed)"
mkimage build "$T/amd" --tag v1 --layer "$T/l1.tar:gzip" --layer "$T/l2.tar:zstd" \
	--layer "$T/l3.tar:none" --env PATH=/usr/bin --env MODE=test \
	--entrypoint '["/app/run.sh"]' --cmd '["serve"]' --workdir /app --user 1000 \
	--expose 8080/tcp --expose 53/udp >/dev/null
mkimage build "$T/arm" --tag v1 --platform linux/arm64/v8 --layer "$T/l2.tar:gzip" >/dev/null
mkimage merge "$T/multi" --tag v1 "$T/amd" "$T/arm" >/dev/null
amd_digest=$(mkimage push "$T/amd" v1 "$REGISTRY/app:v1")
index_digest=$(mkimage push "$T/multi" v1 "$REGISTRY/multi:v1")
arm_digest=$(mkimage digest "$T/arm" v1)

log "pull"
start_proxy "$T/proxy.log"
out=$("$LTTLE" pull "$PROXY/app:v1" 2>"$T/pull1.err")
assert_eq "$amd_digest" "$out" "pull prints the manifest digest"
cat "$T/pull1.err"
assert_contains "$(cat "$T/pull1.err")" "pull complete" "progress lines"
manifest=$(layout_blob "$T/amd" "$amd_digest")
for i in 0 1 2; do
	d=$(json_get "$manifest" layers $i digest)
	sz=$(json_get "$manifest" layers $i size)
	f=$(store_blob "$d")
	[ -f "$f" ] || fail "layer $i ($d) missing from the store"
	assert_eq "$sz" "$(stat -c %s "$f")" "layer $i size"
	assert_eq "${d#sha256:}" "$(sha256sum "$f" | cut -d' ' -f1)" "layer $i content digest"
	cmp -s "$f" "$(layout_blob "$T/amd" "$d")" || fail "layer $i differs from what was pushed"
done
cfg=$(json_get "$manifest" config digest)
cmp -s "$(store_blob "$cfg")" "$(layout_blob "$T/amd" "$cfg")" || fail "config differs"
cmp -s "$(store_blob "$amd_digest")" "$manifest" || fail "manifest differs"
assert_eq "$amd_digest" "$(cat "$LTTLE_HOME/refs/$PROXY/app/_tags/v1")" "ref file"
[ -z "$(ls -A "$LTTLE_HOME/tmp")" ] || fail "temp files left behind"
blob_gets=$(count_lines "$T/proxy.log" "^GET /v2/app/blobs/.* 200")
assert_eq 4 "$blob_gets" "config + 3 layer downloads"

log "second pull skips every present blob"
: >"$T/proxy.log"
"$LTTLE" pull "$PROXY/app:v1" >/dev/null 2>"$T/pull2.err"
assert_eq 3 "$(count_lines "$T/pull2.err" ': already exists$')" "layers reported as present"
assert_eq 0 "$(count_lines "$T/proxy.log" '/blobs/')" "blob requests on the second pull"
assert_eq 1 "$(count_lines "$T/proxy.log" '^GET /v2/app/manifests/v1 200')" "manifest fetched"
if "$LTTLE" pull --quiet "$PROXY/app:v1" 2>"$T/quiet.err" >/dev/null; then
	[ ! -s "$T/quiet.err" ] || fail "--quiet printed: $(cat "$T/quiet.err")"
else fail "quiet pull failed"; fi

log "inspect and images"
"$LTTLE" inspect --json "$PROXY/app:v1" >"$T/inspect.json"
assert_eq '["/app/run.sh"]' "$(json_get "$T/inspect.json" runtime entrypoint)" "entrypoint"
assert_eq '["serve"]' "$(json_get "$T/inspect.json" runtime cmd)" "cmd"
assert_eq '["PATH=/usr/bin", "MODE=test"]' "$(json_get "$T/inspect.json" runtime env)" "env"
assert_eq /app "$(json_get "$T/inspect.json" runtime workdir)" "workdir"
assert_eq 1000 "$(json_get "$T/inspect.json" runtime user)" "user"
assert_eq '[53, 8080]' "$(json_get "$T/inspect.json" runtime exposed_ports)" "ports"
assert_eq linux/amd64 "$(json_get "$T/inspect.json" platform)" "platform"
assert_eq 3 "$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["layers"]))' "$T/inspect.json")" "layer count"

log "multi-arch index: default host platform, then --platform"
host_arch=$(uname -m)
[ "$host_arch" = x86_64 ] || skip "host is not amd64 (the index holds amd64 + arm64)"
out=$("$LTTLE" pull -q "$REGISTRY/multi:v1")
assert_eq "$amd_digest" "$out" "default platform picks linux/amd64"
out=$("$LTTLE" pull -q --platform linux/arm64 "$REGISTRY/multi:v1")
assert_eq "$arm_digest" "$out" "--platform linux/arm64"
out=$("$LTTLE" pull -q --platform linux/arm64/v8 "$REGISTRY/multi:v1")
assert_eq "$arm_digest" "$out" "--platform linux/arm64/v8 (same as arm64)"
expect_fail "missing platform" "$LTTLE" pull -q --platform linux/s390x "$REGISTRY/multi:v1"
assert_contains "$(cat "$T/err")" "no image for platform linux/s390x" "platform error"
assert_contains "$(cat "$T/err")" "linux/arm64" "available platforms listed"
expect_fail "bad platform" "$LTTLE" pull -q --platform 'linux//x' "$REGISTRY/multi:v1"
assert_contains "$(cat "$T/err")" "invalid platform" "bad platform message"
# A single-platform image that does not match an explicit --platform.
expect_fail "wrong platform" "$LTTLE" pull -q --platform linux/arm64 "$REGISTRY/app:v1"
assert_contains "$(cat "$T/err")" "linux/amd64, not linux/arm64" "platform mismatch message"

log "pull by digest (manifest and index)"
out=$("$LTTLE" pull -q "$REGISTRY/app@$amd_digest")
assert_eq "$amd_digest" "$out" "pull by manifest digest"
[ -f "$LTTLE_HOME/refs/$REGISTRY/app/_digests/$amd_digest" ] || fail "digest ref not stored"
out=$("$LTTLE" pull -q --platform linux/arm64 "$REGISTRY/multi@$index_digest")
assert_eq "$arm_digest" "$out" "pull by index digest selects the platform"
bad=sha256:$(printf '0%.0s' {1..64})
expect_fail "unknown digest" "$LTTLE" pull -q "$REGISTRY/app@$bad"
assert_contains "$(cat "$T/err")" "MANIFEST_UNKNOWN" "unknown digest error"

log "Docker schema2 manifest + manifest list"
mkimage build "$T/dk" --tag v1 --docker --layer "$T/l1.tar:gzip" --layer "$T/l2.tar:none" >/dev/null
mkimage build "$T/dkarm" --tag v1 --docker --platform linux/arm64 --layer "$T/l1.tar:gzip" >/dev/null
mkimage merge "$T/dkmulti" --tag v1 "$T/dk" "$T/dkarm" >/dev/null
mkimage push "$T/dkmulti" v1 "$REGISTRY/dk:v1" >/dev/null
assert_contains "$(json_get "$(layout_blob "$T/dkmulti" "$(mkimage digest "$T/dkmulti" v1)")" mediaType)" \
	"manifest.list.v2" "a Docker manifest list was pushed"
out=$("$LTTLE" pull -q "$REGISTRY/dk:v1")
assert_eq "$(mkimage digest "$T/dk" v1)" "$out" "docker schema2 pull"
"$LTTLE" inspect --json "$REGISTRY/dk:v1" >"$T/dk.json"
assert_contains "$(cat "$T/dk.json")" "application/vnd.docker.image.rootfs.diff.tar.gzip" "docker layer type"

log "skopeo-pushed copy (zstd preserved with --preserve-digests)"
if command -v skopeo >/dev/null; then
	mkimage push --skopeo "$T/multi" v1 "$REGISTRY/viaskopeo:v1" >/dev/null
	out=$("$LTTLE" pull -q "$REGISTRY/viaskopeo:v1")
	assert_eq "$amd_digest" "$out" "skopeo-pushed index resolves to the same manifest"
fi

log "errors name the ref and what failed"
expect_fail "unknown tag" "$LTTLE" pull -q "$REGISTRY/app:nope"
assert_eq "lttle pull: $REGISTRY/app:nope: manifest nope: HTTP 404 MANIFEST_UNKNOWN: manifest unknown" \
	"$(cat "$T/err")" "404 message"
assert_eq 1 "$(wc -l <"$T/err")" "one error line"
expect_fail "bad ref" "$LTTLE" pull -q "$REGISTRY/App:v1"
assert_contains "$(cat "$T/err")" "must be lowercase" "invalid ref message"
dead=$(free_port)
expect_fail "nothing listening" "$LTTLE" pull -q "127.0.0.1:$dead/app:v1"
assert_contains "$(cat "$T/err")" "127.0.0.1:$dead/app:v1" "connection error names the ref"
pass "pull"
