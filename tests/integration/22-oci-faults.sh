#!/usr/bin/env bash
# Hostile and flaky registries: corrupted and truncated blobs in the
# registry's storage, cut connections (resumed with Range), 5xx/429 with
# retries, oversized bodies, a lying Content-Type, a manifest that does not
# match the digest asked for. A failed pull leaves nothing under a final
# name and no temp files.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/oci-test.sh"
mk_layers
# The big layer first, so it is the first layer fetched.
mkimage build "$T/img" --tag v1 --layer "$T/l3.tar:none" --layer "$T/l1.tar:gzip" >/dev/null
digest=$(mkimage digest "$T/img" v1)
manifest=$(layout_blob "$T/img" "$digest")
big=$(json_get "$manifest" layers 0 digest)
big_size=$(json_get "$manifest" layers 0 size)
small=$(json_get "$manifest" layers 1 digest)

start_registry
regdata="$T/registry.${REGISTRY##*:}/data/docker/registry/v2"
mkimage push "$T/img" v1 "$REGISTRY/app:v1" >/dev/null
regblob() { echo "$regdata/blobs/sha256/${1:7:2}/${1#sha256:}/data"; }

# clean_store: nothing half-stored after a failure.
assert_clean() {
	[ ! -e "$(store_blob "$big")" ] || fail "$1: the bad blob is in the store"
	[ -z "$(ls -A "$LTTLE_HOME/tmp" 2>/dev/null)" ] || fail "$1: temp files left: $(ls "$LTTLE_HOME/tmp")"
	[ -z "$(find "$LTTLE_HOME/refs" -type f 2>/dev/null)" ] || fail "$1: a ref was recorded"
}
pristine() { rm -rf "$LTTLE_HOME"; mkdir -p "$LTTLE_HOME"; }

log "digest mismatch: a corrupted blob in the registry's storage"
cp "$(regblob "$big")" "$T/big.orig"
python3 - "$(regblob "$big")" <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[len(b) // 2] ^= 0xff
open(p, "wb").write(b)
PY
expect_fail "corrupt blob" "$LTTLE" pull -q "$REGISTRY/app:v1"
assert_contains "$(cat "$T/err")" "layer $big: digest mismatch: expected $big, got sha256:" "mismatch message"
assert_clean "corrupt blob"

log "truncated blob in the registry's storage"
head -c $((big_size / 2)) "$T/big.orig" >"$(regblob "$big")"
expect_fail "truncated blob" "$LTTLE" pull -q "$REGISTRY/app:v1"
assert_contains "$(cat "$T/err")" "layer $big: truncated: got $((big_size / 2)) of $big_size bytes" "truncation message"
assert_clean "truncated blob"
cp "$T/big.orig" "$(regblob "$big")"

log "connections cut mid-body are retried and resumed with Range"
pristine
start_proxy "$T/cut.log" --truncate-first 2 --blob-match "$big"
out=$("$LTTLE" pull -q "$PROXY/app:v1")
assert_eq "$digest" "$out" "pull after cut connections"
assert_eq 1 "$(count_lines "$T/cut.log" "^GET /v2/app/blobs/$big 200-truncated")" "first response cut"
assert_eq 1 "$(count_lines "$T/cut.log" "^GET /v2/app/blobs/$big 206-truncated")" "resumed response cut again"
assert_eq 1 "$(count_lines "$T/cut.log" "^GET /v2/app/blobs/$big 206 ")" "resumed to the end with a Range request"
cmp -s "$(store_blob "$big")" "$T/big.orig" || fail "resumed blob differs"

log "a connection cut every time fails after bounded retries"
pristine
start_proxy "$T/cutall.log" --truncate-first 1000 --blob-match "$big"
expect_fail "always cut" "$LTTLE" pull -q "$PROXY/app:v1"
assert_contains "$(cat "$T/err")" "layer $big: truncated transfer" "cut message"
assert_eq 5 "$(count_lines "$T/cutall.log" "/blobs/$big ")" "1 try + 4 retries"
assert_clean "always cut"

log "5xx and 429 are retried with backoff; Retry-After is honoured"
pristine
start_proxy "$T/5xx.log" --fail-first 3 --fail-status 503
out=$("$LTTLE" pull -q "$PROXY/app:v1")
assert_eq "$digest" "$out" "pull through three 503s"
assert_eq 3 "$(count_lines "$T/5xx.log" ' 503 ')" "503 answers"
pristine
start_proxy "$T/429.log" --fail-first 1 --fail-status 429 --retry-after 2 --fail-match /manifests/
t0=$(date +%s%N)
out=$("$LTTLE" pull -q "$PROXY/app:v1")
elapsed_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
assert_eq "$digest" "$out" "pull through a 429"
[ "$elapsed_ms" -ge 1900 ] || fail "Retry-After: 2 not honoured (${elapsed_ms} ms)"
pristine
start_proxy "$T/500.log" --fail-first 1000 --fail-status 500 --fail-match /manifests/
expect_fail "persistent 500" "$LTTLE" pull -q "$PROXY/app:v1"
assert_eq "lttle pull: $PROXY/app:v1: manifest v1: HTTP 500 UNAVAILABLE: try again" "$(cat "$T/err")" "500 message"
assert_eq 5 "$(count_lines "$T/500.log" '/manifests/v1 500')" "1 try + 4 retries"

log "bodies larger than the descriptor are refused"
pristine
start_proxy "$T/extra.log" --extra-bytes 100 --blob-match "$big"
expect_fail "Content-Length too big" "$LTTLE" pull -q "$PROXY/app:v1"
assert_contains "$(cat "$T/err")" "server announces $((big_size + 100)) bytes for a blob of $big_size bytes" "oversize announce"
assert_clean "oversize announce"
start_proxy "$T/chunk.log" --extra-bytes 100 --chunked --blob-match "$big"
expect_fail "chunked body too big" "$LTTLE" pull -q "$PROXY/app:v1"
assert_contains "$(cat "$T/err")" "body exceeds the descriptor size of $big_size bytes" "oversize body"
assert_clean "oversize body"
start_proxy "$T/chunkok.log" --chunked
out=$("$LTTLE" pull -q "$PROXY/app:v1")
assert_eq "$digest" "$out" "chunked bodies of the right size are fine"
assert_contains "$(cat "$T/chunkok.log")" "200-chunked" "chunked responses were sent"

log "Content-Type must match the manifest's mediaType"
pristine
start_proxy "$T/ct.log" --content-type application/vnd.docker.distribution.manifest.v2+json
expect_fail "lying Content-Type" "$LTTLE" pull -q "$PROXY/app:v1"
assert_contains "$(cat "$T/err")" "Content-Type 'application/vnd.docker.distribution.manifest.v2+json' does not match mediaType 'application/vnd.oci.image.manifest.v1+json'" "content type message"
start_proxy "$T/ct2.log" --content-type text/html
expect_fail "unsupported Content-Type" "$LTTLE" pull -q "$PROXY/app:v1"
assert_contains "$(cat "$T/err")" "does not match" "text/html content type"

log "pull by digest: the manifest must hash to the digest asked for"
pristine
mfile=$(regblob "$digest")
python3 - "$mfile" "$small" <<'PY'
import sys
p, d = sys.argv[1], sys.argv[2]
s = open(p).read()
flip = d[:-1] + ("0" if d[-1] != "0" else "1")
open(p, "w").write(s.replace(d, flip))
PY
expect_fail "manifest digest mismatch" "$LTTLE" pull -q "$REGISTRY/app@$digest"
assert_contains "$(cat "$T/err")" "digest mismatch: requested $digest, got sha256:" "manifest mismatch"
[ ! -e "$(store_blob "$digest")" ] || fail "bad manifest stored"
assert_clean "manifest mismatch"
pass "faults"
