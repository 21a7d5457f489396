#!/usr/bin/env bash
# The image CLI surface: --help and usage errors for every image command,
# images (table and JSON), inspect, rmi with garbage collection, and two
# concurrent pulls into one store.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/oci-test.sh"
mk_layers
mkimage build "$T/a" --tag v1 --layer "$T/l1.tar:gzip" --layer "$T/l3.tar:none" \
	--entrypoint '["/bin/app"]' --workdir /srv --expose 8080/tcp >/dev/null
mkimage build "$T/b" --tag v1 --layer "$T/l1.tar:gzip" --layer "$T/l2.tar:zstd" >/dev/null
da=$(mkimage digest "$T/a" v1)
db=$(mkimage digest "$T/b" v1)
blobs() { find "$LTTLE_HOME/blobs/sha256" -type f | wc -l; }

log "--help and usage errors"
for c in pull import export images rmi inspect; do
	"$LTTLE" "$c" --help >"$T/help" || fail "$c --help failed"
	assert_contains "$(head -1 "$T/help")" "usage: lttle $c" "$c --help"
	set +e
	"$LTTLE" "$c" --bogus >/dev/null 2>"$T/err"
	rc=$?
	set -e
	assert_eq 2 "$rc" "$c --bogus exit code"
	assert_contains "$(tail -1 "$T/err")" "lttle $c: invalid option (see 'lttle $c --help')" "$c usage line"
done
set +e; "$LTTLE" pull >/dev/null 2>&1; rc=$?; set -e
assert_eq 2 "$rc" "pull without a ref"
set +e; "$LTTLE" export onlyone >/dev/null 2>&1; rc=$?; set -e
assert_eq 2 "$rc" "export with one argument"

log "empty store"
assert_eq "[]" "$("$LTTLE" images --json | tr -d ' \n')" "empty JSON list"
assert_eq "REF DIGEST SIZE CREATED" "$("$LTTLE" images | tr -s ' ')" "empty table"

log "images, inspect"
"$LTTLE" import -q --tag example.com/app:v1 "$T/a" >/dev/null
"$LTTLE" import -q --tag example.com/other:v1 "$T/b" >/dev/null
"$LTTLE" import -q --tag example.com/app:latest "$T/a" >/dev/null
"$LTTLE" images --json >"$T/images.json"
python3 - "$T/images.json" "$da" "$db" <<'PY'
import json, sys, time
v = json.load(open(sys.argv[1]))
refs = [x["ref"] for x in v]
assert refs == ["example.com/app:latest", "example.com/app:v1", "example.com/other:v1"], refs
assert v[0]["digest"] == v[1]["digest"] == sys.argv[2], v
assert v[2]["digest"] == sys.argv[3], v
assert all(isinstance(x["size"], int) and x["size"] > 1000 for x in v), v
assert all(abs(x["created"] - time.time()) < 120 for x in v), v
assert set(v[0]) == {"ref", "digest", "size", "created"}, v[0]
PY
table=$("$LTTLE" images)
assert_contains "$table" "example.com/app:v1" "table ref"
assert_contains "$table" "${da:7:12}" "table short digest"
assert_contains "$table" "just now" "table created"
"$LTTLE" inspect example.com/app:v1 >"$T/inspect.txt"
assert_contains "$(cat "$T/inspect.txt")" "Digest:     $da" "inspect digest"
assert_contains "$(cat "$T/inspect.txt")" 'Entrypoint: ["/bin/app"]' "inspect entrypoint"
assert_contains "$(cat "$T/inspect.txt")" "WorkingDir: /srv" "inspect workdir"
assert_contains "$(cat "$T/inspect.txt")" "Ports:      [8080]" "inspect ports"
assert_contains "$(cat "$T/inspect.txt")" "tar+gzip" "inspect layer type"
"$LTTLE" inspect --json "${db:7:12}" >"$T/b.json"
assert_eq "example.com/other:v1" "$(json_get "$T/b.json" ref)" "inspect by digest prefix"
expect_fail "inspect missing" "$LTTLE" inspect example.com/none:1
assert_eq "lttle inspect: no image 'example.com/none:1' in the store (see 'lttle images')" "$(cat "$T/err")" "missing image message"

log "rmi with garbage collection"
before=$(blobs)
"$LTTLE" rmi example.com/app:latest >"$T/rmi.out"
assert_contains "$(cat "$T/rmi.out")" "Removed example.com/app:latest" "rmi output"
assert_contains "$(cat "$T/rmi.out")" "Freed 0 B" "still referenced: nothing freed"
assert_eq "$before" "$(blobs)" "blob count after removing an alias"
"$LTTLE" rmi --json example.com/app:v1 >"$T/rmi.json"
freed=$(json_get "$T/rmi.json" freed)
[ "$freed" -gt 400000 ] || fail "freed $freed bytes, expected the big layer"
assert_eq "example.com/app:v1" "$(json_get "$T/rmi.json" removed 0 ref)" "rmi --json ref"
assert_eq "$da" "$(json_get "$T/rmi.json" removed 0 digest)" "rmi --json digest"
[ ! -e "$(store_blob "$da")" ] || fail "manifest of the removed image kept"
shared=$(json_get "$(layout_blob "$T/a" "$da")" layers 0 digest)
[ -e "$(store_blob "$shared")" ] || fail "a layer still used by example.com/other:v1 was deleted"
expect_fail "rmi missing" "$LTTLE" rmi example.com/app:v1
assert_contains "$(cat "$T/err")" "no image 'example.com/app:v1'" "rmi missing message"
"$LTTLE" rmi "${db:7:12}" >/dev/null
assert_eq 0 "$(blobs)" "empty store after removing everything"
[ -z "$(find "$LTTLE_HOME/refs" -mindepth 1)" ] || fail "ref directories left: $(find "$LTTLE_HOME/refs")"

log "concurrent pulls into one store"
start_registry
mkimage push "$T/a" v1 "$REGISTRY/app:v1" >/dev/null
"$LTTLE" pull -q "$REGISTRY/app:v1" >"$T/p1" 2>"$T/e1" &
p1=$!
"$LTTLE" pull -q "$REGISTRY/app:v1" >"$T/p2" 2>"$T/e2" &
p2=$!
wait $p1 || fail "first concurrent pull: $(cat "$T/e1")"
wait $p2 || fail "second concurrent pull: $(cat "$T/e2")"
assert_eq "$da" "$(cat "$T/p1")" "first pull digest"
assert_eq "$da" "$(cat "$T/p2")" "second pull digest"
[ -z "$(ls -A "$LTTLE_HOME/tmp")" ] || fail "temp files left by concurrent pulls"
"$LTTLE" inspect "$REGISTRY/app:v1" >/dev/null
pass "cli"
