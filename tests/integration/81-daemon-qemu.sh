#!/usr/bin/env bash
# ignitiond with the QEMU engine and a real Linux app: the sample static
# busybox httpd image, the project's kernel and init, under TCG (KVM where
# usable). Through the real daemon on its unix socket and the proxy on
# loopback:
#   1. lttle deploy, then curl through the proxy port;
#   2. wait until `lttle ps --json` is empty (scaled to zero), curl again:
#      served by a restore (the restore counter grows);
#   3. 50 parallel requests at --max 2 --concurrency 4: all succeed;
#   4. kill -9 of one QEMU process under load: later requests succeed;
#   5. kill -9 and restart of ignitiond: the app serves again, no orphan;
#   6. SIGTERM: exit 0 and no VM process left.
. "$(dirname "$0")/../lib/common.sh"
need curl python3 docker-registry qemu-system-x86_64
[ -x /bin/busybox ] || skip "busybox-static is not installed"
DAEMON=$LTTLE_BUILD/ignitiond
[ -x "$DAEMON" ] || skip "$DAEMON is not built"
[ -x "$LTTLE_BUILD/lttle-init" ] || skip "the guest init is not built (make all)"

KERNEL=$(make -s -C "$LTTLE_ROOT" kernel 2>"$T/kernel.log" | tail -1) ||
	fail "make kernel: $(tail -3 "$T/kernel.log")"
[ -f "$KERNEL" ] || fail "make kernel printed '$KERNEL'"

STATE=$T/state
export LTTLE_SOCKET=$T/ignitiond.sock
api() { curl -s --unix-socket "$LTTLE_SOCKET" "http://localhost$1" "${@:2}"; }
jq_() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
# QEMU processes started for this state dir (their command lines name it).
vm_pids() { pgrep -f "qemu-system-x86_64.*$STATE/" || true; }

start_daemon() {
	bg_start "$T/daemon.log" "$DAEMON" --state "$STATE" --socket "$LTTLE_SOCKET" \
		--drain-timeout 3s
	DPID=$(cat "$T/last.pid")
	for _ in $(seq 50); do
		[ -S "$LTTLE_SOCKET" ] && api /v1/health >/dev/null && return 0
		sleep 0.1
	done
	cat "$T/daemon.log" >&2
	fail "ignitiond did not come up"
}
dump() {
	echo "--- daemon log (tail)" >&2
	tail -40 "$T/daemon.log" >&2 || true
	"$LTTLE" logs app 2>/dev/null | tail -20 >&2 || true
}
trap 'rc=$?; [ $rc = 0 ] || dump; _cleanup' EXIT

python3 "$LTTLE_ROOT/tests/lib/sample-image.py" "$T/sample" >/dev/null
start_registry
REF=$REGISTRY/demo/hello:1
python3 "$LTTLE_ROOT/tests/lib/mkimage.py" push "$T/sample" sample "$REF" >/dev/null
start_daemon

log "1. deploy, then curl through the proxy"
t0=$(date +%s%N)
"$LTTLE" deploy "$REF" --name app --port 127.0.0.1:0:8080 --kernel "$KERNEL" \
	--cmdline loglevel=6 --max 2 --concurrency 4 --idle-timeout 1s --scale-down 1s --queue-timeout 60s \
	>"$T/deploy.out" 2>"$T/deploy.err" || fail "deploy: $(tail -5 "$T/deploy.err")"
t1=$(date +%s%N)
cat "$T/deploy.err"
ADDR=$(tail -1 "$T/deploy.out")
case $ADDR in 127.0.0.1:[0-9]*) ;; *) fail "deploy's last line is '$ADDR'" ;; esac
assert_contains "$(cat "$T/deploy.err")" "engine: qemu" "deploy names the engine"
[ "$("$LTTLE" apps --json | jq_ 'd[0]["engine"]')" = qemu ] || fail "app engine is not qemu"
c0=$(date +%s%N)
body=$(curl -sf -m 30 "http://$ADDR/") || fail "no HTTP answer through the proxy"
c1=$(date +%s%N)
assert_contains "$body" "hello from lttle" "page through the proxy"
echo "deploy $(((t1 - t0) / 1000000)) ms; first request (restore) $(((c1 - c0) / 1000000)) ms"
"$LTTLE" logs app >"$T/logs.txt" || fail "lttle logs app"
grep -q "virtio_blk" "$T/logs.txt" || fail "the deploy boot's console is not in lttle logs: $(head -5 "$T/logs.txt")"
id=$("$LTTLE" ps app --json | jq_ 'd[0]["id"]')
"$LTTLE" logs -f "$id" >"$T/follow.txt" 2>&1 &
FP=$!
sleep 0.5
"$LTTLE" stop "$id" >/dev/null || fail "lttle stop $id"
for _ in $(seq 50); do kill -0 $FP 2>/dev/null || break; sleep 0.1; done
kill -0 $FP 2>/dev/null && fail "lttle logs -f $id still runs after the instance stopped"
wait $FP || fail "lttle logs -f $id: $(cat "$T/follow.txt")"
pass "deploy + first request; logs, logs -f ends with its instance"

log "2. scale to zero, then a restore serves"
for _ in $(seq 100); do
	[ "$("$LTTLE" ps --json | jq_ 'len(d)')" = 0 ] && break
	sleep 0.1
done
[ "$("$LTTLE" ps --json | jq_ 'len(d)')" = 0 ] || fail "not scaled to zero: $("$LTTLE" ps)"
before=$("$LTTLE" apps --json | jq_ 'd[0]["restores"]')
c0=$(date +%s%N)
curl -sf -m 30 "http://$ADDR/" | grep -q "hello from lttle" || fail "no answer after scale to zero"
c1=$(date +%s%N)
after=$("$LTTLE" apps --json | jq_ 'd[0]["restores"]')
[ "$after" -gt "$before" ] || fail "restore counter did not grow ($before -> $after)"
assert_eq 0 "$("$LTTLE" apps --json | jq_ 'd[0]["cold_boots"]')" "cold boots"
echo "request from zero (restore) $(((c1 - c0) / 1000000)) ms; restores $before -> $after"
pass "scale to zero and back by restore"

log "3. 50 parallel requests at --max 2 --concurrency 4"
seq 50 | xargs -P 50 -I{} curl -s -o /dev/null -w '%{http_code}\n' -m 90 "http://$ADDR/?{}" >"$T/codes"
assert_eq 50 "$(grep -c '^200$' "$T/codes")" "burst ($(sort "$T/codes" | uniq -c | tr '\n' ' '))"
peak=$(api /v1/apps/app | jq_ 'd["peak_instances"]')
[ "$peak" -le 2 ] || fail "peak instances $peak above --max 2"
pass "burst of 50 (peak $peak instances)"

log "4. kill -9 of a QEMU process under load"
pid=0
for _ in $(seq 100); do
	curl -s -o /dev/null -m 30 "http://$ADDR/" || true
	pid=$("$LTTLE" ps --json | jq_ 'next((i["pid"] for i in d if i["state"]=="running" and i["pid"]>0), 0)')
	[ "$pid" != 0 ] && break
	sleep 0.05
done
[ "$pid" != 0 ] || fail "no running instance with a pid"
(for i in $(seq 20); do curl -s -o /dev/null -w '%{http_code}\n' -m 30 "http://$ADDR/?k$i"; done) >"$T/kcodes" &
LOADP=$!
sleep 0.2
kill -9 "$pid"
wait $LOADP || true
echo "during the kill: $(sort "$T/kcodes" | uniq -c | tr '\n' ' ')"
for i in $(seq 5); do
	curl -sf -m 30 "http://$ADDR/?after$i" | grep -q "hello from lttle" ||
		fail "request $i after killing QEMU $pid failed"
done
[ "$("$LTTLE" apps --json | jq_ 'd[0]["deaths"]')" -ge 1 ] || fail "the VM's death was not counted"
pass "QEMU $pid killed under load; later requests succeed"

log "5. kill -9 and restart of ignitiond"
curl -sf -m 30 "http://$ADDR/" >/dev/null
before_vms=$(vm_pids | tr '\n' ' ')
[ -n "$before_vms" ] || fail "no QEMU process before the crash"
kill -9 "$DPID"
wait "$DPID" 2>/dev/null || true
start_daemon
sleep 0.2
for p in $before_vms; do
	if [ -e "/proc/$p" ] && [ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" != Z ]; then
		fail "orphaned QEMU $p survived the restart"
	fi
done
assert_eq app "$("$LTTLE" apps --json | jq_ '" ".join(a["name"] for a in d)')" "apps after restart"
curl -sf -m 30 "http://$ADDR/" | grep -q "hello from lttle" || fail "no answer after the restart"
pass "ignitiond restarted: app reloaded and serving, orphans gone"

log "6. SIGTERM leaves no VM process"
curl -sf -m 30 "http://$ADDR/" >/dev/null
[ -n "$(vm_pids)" ] || fail "no QEMU process before SIGTERM"
kill -TERM "$DPID"
rc=0
wait "$DPID" || rc=$?
assert_eq 0 "$rc" "exit status after SIGTERM"
left=$(vm_pids | while read -r p; do [ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" = Z ] || echo "$p"; done)
[ -z "$left" ] || fail "QEMU processes left after SIGTERM: $left"
pass "ignitiond with the QEMU engine"
