# Helpers for the oci integration tests; source after common.sh.
MKIMAGE=(python3 "$LTTLE_ROOT/tests/lib/mkimage.py")
OCIPROXY=(python3 "$LTTLE_ROOT/tests/lib/ociproxy.py")
need python3 zstd
[ -x "$LTTLE" ] || skip "$LTTLE is not built"

mkimage() { "${MKIMAGE[@]}" "$@"; }

# Three small layers: a tree, a file that overrides one, and a bigger blob
# so that progress and truncation have something to cut.
mk_layers() {
	mkimage layer "$T/l1.tar" --dir etc --dir app --file etc/hello=world \
		--file app/run.sh='#!/bin/sh' --symlink app/current=run.sh
	mkimage layer "$T/l2.tar" --file etc/hello=again --file app/data="$(seq 1 2000)"
	head -c 300000 /dev/urandom | base64 -w0 >"$T/big.txt"
	mkimage layer "$T/l3.tar" --add big.txt="$T/big.txt"
}

# Path of a blob in the lttle store / in an OCI layout dir.
store_blob() { echo "$LTTLE_HOME/blobs/sha256/${1#sha256:}"; }
layout_blob() { echo "$1/blobs/sha256/${2#sha256:}"; }

# JSON field of a blob in a layout: jq-less, via python.
json_get() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))
for k in sys.argv[2:]: d=d[int(k)] if isinstance(d,list) else d[k]
print(d if not isinstance(d,(dict,list)) else json.dumps(d))' "$@"; }

# start_proxy LOG ARGS...: ociproxy on a free port in front of $REGISTRY.
# Sets PROXY=127.0.0.1:PORT.
start_proxy() {
	local logf=$1 port; shift
	port=$(free_port)
	: >"$logf"
	bg_start "$T/proxy.$port.out" "${OCIPROXY[@]}" --listen "127.0.0.1:$port" \
		--upstream "$REGISTRY" --log "$logf" "$@"
	wait_port "$port" 20
	PROXY=127.0.0.1:$port
}

# The number of lines of FILE matching a regex (0 if none).
count_lines() { grep -cE "$2" "$1" || true; }
