#!/usr/bin/env bash
# Deploy stage of the README demo (called by scripts/demo.sh with the
# pushed sample image's reference): ignitiond + `lttle deploy`, a request
# through the proxy (restore), wait for scale to zero, a request again
# (restore from zero), with timings and the engine used.
#   scripts/demo-deploy.sh REF
set -euo pipefail
REF=${1:?usage: demo-deploy.sh REF}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${LTTLE_BUILD:-$ROOT/build}
LTTLE=${LTTLE_BIN:-$BUILD/lttle}
DAEMON=$BUILD/ignitiond
WORK=$(mktemp -d /tmp/lttle-demo-deploy.XXXXXX)
export LTTLE_SOCKET=$WORK/ignitiond.sock
DPID=
cleanup() {
	if [ -n "$DPID" ]; then
		kill -TERM "$DPID" 2>/dev/null || true
		wait "$DPID" 2>/dev/null || true
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT
ms() { echo $((($(date +%s%N) - $1) / 1000000)); }
step() { printf '\n\033[1m--> %s\033[0m\n' "$*"; }

step "Guest kernel (\$LTTLE_KERNEL, else make kernel: cached after the first build)"
KERNEL=${LTTLE_KERNEL:-$(make -s -C "$ROOT" kernel | tail -1)}
echo "$KERNEL"

step "Starting ignitiond (state $WORK/state)"
# The daemon keeps its own store: it pulls the image itself.
"$DAEMON" --state "$WORK/state" --socket "$LTTLE_SOCKET" 2>"$WORK/ignitiond.log" &
DPID=$!
for _ in $(seq 50); do [ -S "$LTTLE_SOCKET" ] && break; sleep 0.1; done
"$LTTLE" apps >/dev/null

step "lttle deploy $REF --idle-timeout 1s --scale-down 1s"
t=$(date +%s%N)
ADDR=$("$LTTLE" deploy "$REF" --name hello --port 127.0.0.1:0:8080 --kernel "$KERNEL" \
	--engine "${LTTLE_ENGINE:-auto}" --idle-timeout 1s --scale-down 1s | tail -1)
echo "deploy: $(ms "$t") ms -> $ADDR"

step "curl http://$ADDR/ (the first connection restores the snapshot)"
t=$(date +%s%N)
curl -sf -m 30 "http://$ADDR/"
echo "first request: $(ms "$t") ms"
"$LTTLE" ps

step "Waiting for scale to zero (lttle ps --json empty)"
t=$(date +%s%N)
while [ "$("$LTTLE" ps --json | tr -d ' \n')" != "[]" ]; do sleep 0.1; done
echo "scaled to zero after $(ms "$t") ms"

step "curl again (restored from zero)"
t=$(date +%s%N)
curl -sf -m 30 "http://$ADDR/"
echo "request from zero: $(ms "$t") ms"
"$LTTLE" apps
"$LTTLE" apps --json | python3 -c '
import json, sys
a = json.load(sys.stdin)[0]
print("engine %s: %d restores, %d resumes, %d cold boots"
      % (a["engine"], a["restores"], a["resumes"], a["cold_boots"]))'
