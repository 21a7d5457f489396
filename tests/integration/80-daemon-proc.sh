#!/usr/bin/env bash
# ignitiond + the lifecycle CLI with the process test engine (--engine proc:
# "VMs" are host processes), so the daemon's own logic is tested fast and
# without KVM or QEMU: the API over the unix socket, deploy (pull, rootfs,
# boot to trigger, snapshot, serve), restore on connection, scale to zero
# and back, a burst at --max 2 --concurrency 4, a redeploy under traffic, a
# VM killed under load, kill -9 of the daemon and its recovery, bad input,
# events, metrics, rm, and SIGTERM leaving no process behind.
. "$(dirname "$0")/../lib/common.sh"
need curl python3 docker-registry
DAEMON=$LTTLE_BUILD/ignitiond-test
[ -x "$DAEMON" ] || skip "$DAEMON is not built (make test-prereqs)"
[ -x "$LTTLE_BUILD/proxy/proxy_backend" ] || skip "proxy_backend is not built"

STATE=$T/state
export LTTLE_SOCKET=$T/ignitiond.sock
api() { curl -s --unix-socket "$LTTLE_SOCKET" "http://localhost$1" "${@:2}"; }
jq_() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

HTTP_PORT=$(free_port)
start_daemon() {
	bg_start "$T/daemon.log" "$DAEMON" --state "$STATE" --socket "$LTTLE_SOCKET" \
		--drain-timeout 2s --http-listen "127.0.0.1:$HTTP_PORT"
	DPID=$(cat "$T/last.pid")
	for _ in $(seq 50); do
		[ -S "$LTTLE_SOCKET" ] && api /v1/health >/dev/null && return 0
		sleep 0.1
	done
	cat "$T/daemon.log" >&2
	fail "ignitiond did not come up"
}

log "no daemon: one clear line"
expect_fail "ps without a daemon" "$LTTLE" ps --socket "$T/nothing.sock"
[ "$(wc -l <"$T/err")" = 1 ] || fail "want one line, got: $(cat "$T/err")"
assert_contains "$(cat "$T/err")" "start one with: ignitiond" "no-daemon message"

log "deploy --help states the defaults"
help=$("$LTTLE" deploy --help)
for want in "default 0: scale to zero" "default 30s" "default 5m" "default 10s" \
	"default first-listen" "default 256" "default auto"; do
	assert_contains "$help" "$want" "deploy --help"
done

python3 "$LTTLE_ROOT/tests/lib/sample-image.py" "$T/sample" >/dev/null
start_registry
REF=$REGISTRY/demo/hello:1
python3 "$LTTLE_ROOT/tests/lib/mkimage.py" push "$T/sample" sample "$REF" >/dev/null
start_daemon
[ "$(stat -c %a "$LTTLE_SOCKET")" = 660 ] || fail "socket mode is $(stat -c %a "$LTTLE_SOCKET")"

log "bad input is refused with a message"
expect_fail "bad trigger" "$LTTLE" deploy "$REF" --engine proc --trigger sometime
assert_contains "$(cat "$T/err")" "bad trigger" "trigger error"
expect_fail "bad name" "$LTTLE" deploy "$REF" --engine proc --name ../../etc
assert_contains "$(cat "$T/err")" "not a valid app name" "name error"
expect_fail "bad port" "$LTTLE" deploy "$REF" --engine proc --port 127.0.0.1:99999:80
assert_contains "$(cat "$T/err")" "port" "port error"
expect_fail "bad duration" "$LTTLE" deploy "$REF" --engine proc --idle-timeout 5parsecs
assert_contains "$(cat "$T/err")" "duration" "duration error"
code=$(api /v1/apps -o "$T/body" -w '%{http_code}' -XPOST -d '{"ref": "x", ')
assert_eq 400 "$code" "malformed JSON status"
assert_contains "$(cat "$T/body")" "malformed JSON" "malformed JSON message"
head -c 70000 /dev/zero | tr '\0' 'a' >"$T/big"
code=$(api /v1/apps -o "$T/body" -w '%{http_code}' -XPOST --data-binary @"$T/big")
assert_eq 413 "$code" "oversized body status"
code=$(api /v1/apps/..%2f..%2fetc -o /dev/null -w '%{http_code}')
[ "$code" = 400 ] || [ "$code" = 404 ] || fail "path traversal name: HTTP $code"
expect_fail "unknown app" "$LTTLE" info nope
assert_contains "$(cat "$T/err")" "no app or instance 'nope'" "unknown app message"

log "deploy"
DEP=(--engine proc --idle-timeout 300ms --scale-down 300ms -e PROC_RESTORE_MS=50)
"$LTTLE" deploy "$REF" --name web --port 127.0.0.1:0:8080 "${DEP[@]}" >"$T/deploy.out" \
	2>"$T/deploy.err" || fail "deploy: $(cat "$T/deploy.err")"
ADDR=$(tail -1 "$T/deploy.out")
case $ADDR in 127.0.0.1:[0-9]*) ;; *) fail "deploy's last line is '$ADDR'" ;; esac
assert_contains "$(cat "$T/deploy.err")" "engine: proc" "deploy says the engine"
[ -s "$STATE/apps/web/gen-1.snap" ] || fail "no snapshot after deploy"
out=$(curl -s -m 10 "http://$ADDR/")
[ -n "$out" ] || fail "no answer through the proxy"
[ "$("$LTTLE" apps --json | jq_ 'd[0]["restores"]')" -ge 1 ] || fail "no restore counted"
"$LTTLE" ps --json | jq_ 'd[0]["started_by"]' | grep -qx restore || fail "instance not started by restore"
pass "deploy and first connection (restore)"

log "scale to zero and back"
for _ in $(seq 50); do
	[ "$("$LTTLE" ps --json | jq_ 'len(d)')" = 0 ] && break
	sleep 0.1
done
[ "$("$LTTLE" ps --json | jq_ 'len(d)')" = 0 ] || fail "instances left after scale-down: $("$LTTLE" ps)"
before=$("$LTTLE" apps --json | jq_ 'd[0]["restores"]')
curl -sf -m 10 "http://$ADDR/" >/dev/null || fail "no answer after scale to zero"
after=$("$LTTLE" apps --json | jq_ 'd[0]["restores"]')
[ "$after" -gt "$before" ] || fail "restores did not grow ($before -> $after)"
pass "scale to zero and restore again"

log "events and metrics"
api /v1/events -N -m 4 >"$T/events" 2>/dev/null &
EVP=$!
sleep 0.3
curl -sf -m 10 "http://$ADDR/" >/dev/null
wait $EVP || true
grep -q '^event: instance' "$T/events" || fail "no instance event: $(head -c 400 "$T/events")"
grep -q '"state":"running"' "$T/events" || fail "no running state in events"
api /metrics >"$T/metrics"
grep -q 'lttle_restores_total{app="web"}\|app="web"' "$T/metrics" || fail "metrics lack app web"

log "shared HTTP port routes by Host"
"$LTTLE" deploy "$REF" --name hosted --port 127.0.0.1:0:8080 --host Hosted.Test "${DEP[@]}" \
	>/dev/null 2>"$T/h.err" || fail "deploy hosted: $(cat "$T/h.err")"
assert_eq 200 "$(curl -s -o /dev/null -w '%{http_code}' -m 10 -H 'Host: hosted.test' \
	"http://127.0.0.1:$HTTP_PORT/")" "routed by Host"
assert_eq 404 "$(curl -s -o /dev/null -w '%{http_code}' -m 10 -H 'Host: other.test' \
	"http://127.0.0.1:$HTTP_PORT/")" "unknown Host"
"$LTTLE" rm hosted >/dev/null || fail "rm hosted"
assert_eq 404 "$(curl -s -o /dev/null -w '%{http_code}' -m 10 -H 'Host: hosted.test' \
	"http://127.0.0.1:$HTTP_PORT/")" "route gone after rm"
pass "Host routing"

log "burst: 50 parallel requests at --max 2 --concurrency 4"
"$LTTLE" deploy "$REF" --name burst --port 127.0.0.1:0:8080 "${DEP[@]}" --max 2 --concurrency 4 \
	--queue-timeout 20s -e PROC_MODE=http >"$T/b.out" 2>"$T/b.err" || fail "deploy burst: $(cat "$T/b.err")"
BADDR=$(tail -1 "$T/b.out")
seq 50 | xargs -P 50 -I{} curl -s -o /dev/null -w '%{http_code}\n' -m 30 "http://$BADDR/x?{}" >"$T/codes"
assert_eq 50 "$(grep -c '^200$' "$T/codes")" "burst successes ($(sort "$T/codes" | uniq -c | tr '\n' ' '))"
peak=$(api /v1/apps/burst | jq_ 'd["peak_instances"]')
[ "$peak" -le 2 ] || fail "peak instances $peak above --max 2"
pass "burst of 50 at max 2"

log "redeploy under traffic drops nothing"
(for i in $(seq 60); do curl -s -o /dev/null -w '%{http_code}\n' -m 10 "http://$ADDR/r$i"; sleep 0.02; done) >"$T/rcodes" &
LOADP=$!
sleep 0.3
"$LTTLE" deploy "$REF" --name web --port 127.0.0.1:0:8080 "${DEP[@]}" >"$T/d2.out" 2>"$T/d2.err" ||
	fail "redeploy: $(cat "$T/d2.err")"
wait $LOADP || true
assert_eq "$ADDR" "$(tail -1 "$T/d2.out")" "redeploy keeps the port"
assert_eq 60 "$(grep -c '^200$' "$T/rcodes")" "requests during redeploy ($(sort "$T/rcodes" | uniq -c | tr '\n' ' '))"
assert_eq 2 "$("$LTTLE" apps --json | jq_ '[a for a in d if a["name"]=="web"][0]["generation"]')" "generation"
pass "redeploy under traffic"

log "an instance killed under load"
"$LTTLE" scale web --min 1 >/dev/null
for _ in $(seq 50); do
	pid=$("$LTTLE" ps web --json | jq_ '[i["pid"] for i in d if i["state"]=="running"][0] if any(i["state"]=="running" for i in d) else 0')
	[ "$pid" != 0 ] && break
	sleep 0.1
done
[ "$pid" != 0 ] || fail "no running instance to kill"
(for i in $(seq 40); do curl -s -o /dev/null -w '%{http_code}\n' -m 10 "http://$ADDR/k$i"; done) >"$T/kcodes" &
LOADP=$!
sleep 0.1
kill -9 "$pid"
wait $LOADP || true
for i in $(seq 10); do curl -sf -m 10 "http://$ADDR/after$i" >/dev/null || fail "request $i after the kill failed"; done
echo "during the kill: $(sort "$T/kcodes" | uniq -c | tr '\n' ' ')"
deaths=$("$LTTLE" apps --json | jq_ '[a for a in d if a["name"]=="web"][0]["deaths"]')
[ "$deaths" -ge 1 ] || fail "the death was not counted"
pass "instance killed under load; later requests succeed"

log "kill -9 of ignitiond, restart"
live=$("$LTTLE" ps --json | jq_ '" ".join(str(i["pid"]) for i in d)')
[ -n "$live" ] || fail "no live instance before the crash"
ls "$STATE/instances" | grep -q web- || fail "no instance record on disk"
restores_before=$("$LTTLE" apps --json | jq_ '[a for a in d if a["name"]=="web"][0]["restores"]')
sleep 2.5 # counters reach the disk every 2 s
kill -9 "$DPID"
wait "$DPID" 2>/dev/null || true
expect_fail "ps while down" "$LTTLE" ps
start_daemon
for p in $live; do
	if kill -0 "$p" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" != Z ]; then
		fail "orphaned VM process $p survived the restart"
	fi
done
grep -q "killing orphaned VM process" "$T/daemon.log" || fail "no orphan cleanup logged"
names=$("$LTTLE" apps --json | jq_ '" ".join(sorted(a["name"] for a in d))')
assert_eq "burst web" "$names" "apps after restart"
restores_after=$("$LTTLE" apps --json | jq_ '[a for a in d if a["name"]=="web"][0]["restores"]')
[ "$restores_after" -ge "$restores_before" ] ||
	fail "counters restarted from zero ($restores_before -> $restores_after)"
curl -sf -m 10 "http://$ADDR/" >/dev/null || fail "web does not serve after the restart"
curl -sf -m 10 "http://$BADDR/" >/dev/null || fail "burst does not serve after the restart"
pass "kill -9 and restart: apps reloaded, orphans killed"

log "lifecycle commands"
"$LTTLE" scale web --min 0 --max 3 >/dev/null || fail "scale"
assert_eq 3 "$("$LTTLE" info web --json | jq_ 'd["policy"]["max"]')" "max after scale"
expect_fail "scale min > max" "$LTTLE" scale web --min 5 --max 2
assert_contains "$(cat "$T/err")" "exceeds" "scale error"
curl -sf -m 10 "http://$ADDR/" >/dev/null
id=$("$LTTLE" ps web --json | jq_ 'd[0]["id"]')
"$LTTLE" stop "$id" >/dev/null || fail "stop $id"
"$LTTLE" rm burst >/dev/null || fail "rm burst"
! curl -s -m 3 "http://$BADDR/" >/dev/null || fail "burst's port still answers after rm"
[ ! -e "$STATE/apps/burst" ] || fail "burst's state is still on disk"
assert_eq "web" "$("$LTTLE" apps --json | jq_ '" ".join(a["name"] for a in d)')" "apps after rm"

log "a corrupt snapshot: degraded with a reason, cold boot serves"
"$LTTLE" stop web >/dev/null
for _ in $(seq 50); do
	[ "$("$LTTLE" ps web --json | jq_ 'len(d)')" = 0 ] && break
	sleep 0.1
done
snap=$("$LTTLE" info web --json | jq_ 'd["snapshot"]')
[ -f "$snap" ] || fail "no snapshot file '$snap'"
echo "garbage" >"$snap"
curl -sf -m 10 "http://$ADDR/" >/dev/null || fail "no answer with a corrupt snapshot"
info=$("$LTTLE" apps --json | jq_ '[a for a in d if a["name"]=="web"][0]')
assert_contains "$info" "'state': 'degraded'" "app state"
assert_contains "$info" "unusable" "degraded reason"
[ "$("$LTTLE" apps --json | jq_ 'd[0]["cold_boots"]')" -ge 1 ] || fail "no cold boot after degrading"
pass "corrupt snapshot: degraded, cold boot"

log "one daemon per state dir; TCP API only with a token"
expect_fail "second daemon on the same state" "$DAEMON" --state "$STATE" --socket "$T/other.sock"
assert_contains "$(cat "$T/err")" "another ignitiond" "state lock message"
TP=$(free_port)
expect_fail "TCP without a token" "$DAEMON" --state "$T/s2" --listen-tcp "127.0.0.1:$TP"
assert_contains "$(cat "$T/err")" "needs --token" "TCP without token"
bg_start "$T/d2.log" "$DAEMON" --state "$T/s2" --socket "$T/d2.sock" --listen-tcp "127.0.0.1:$TP" \
	--token sekrit
D2=$(cat "$T/last.pid")
wait_port "$TP" 10
assert_eq 401 "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$TP/v1/health")" "no token"
assert_eq 401 "$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer nope' \
	"http://127.0.0.1:$TP/v1/health")" "wrong token"
assert_eq 200 "$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer sekrit' \
	"http://127.0.0.1:$TP/v1/health")" "right token"
kill -TERM "$D2"
wait "$D2" || fail "second daemon did not exit cleanly"

log "SIGTERM drains and leaves no VM process"
curl -sf -m 10 "http://$ADDR/" >/dev/null
live=$("$LTTLE" ps --json | jq_ '" ".join(str(i["pid"]) for i in d)')
kill -TERM "$DPID"
rc=0
wait "$DPID" || rc=$?
assert_eq 0 "$rc" "ignitiond exit status after SIGTERM"
for p in $live; do
	kill -0 "$p" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$p/stat")" != Z ] &&
		fail "VM process $p left after SIGTERM"
done
[ ! -e "$LTTLE_SOCKET" ] || fail "socket left behind"
pass "ignitiond with the process engine"
