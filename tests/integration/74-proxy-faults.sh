#!/usr/bin/env bash
# Faults: a corrupt snapshot degrades the app and cold boot serves; an
# instance killed mid-connection fails only its own connection and is
# replaced; shells make the restore tier 4.
. "$(dirname "$0")/../lib/common.sh"
. "$LTTLE_ROOT/src/proxy/tools/it-lib.sh"
proxy_tools

proxy_start --app "bad,snapshot=$SNAP_BAD,boot=300" \
	--app "echo,mode=echo,snapshot=$SNAP_OK,max=2,conc=1,idle=60000" \
	--app "shelled,snapshot=$SNAP_OK,shells=1,restore=20" \
	--tcp bad=127.0.0.1:0:80 --tcp echo=127.0.0.1:0:7 --tcp shelled=127.0.0.1:0:80

log "corrupt snapshot: degraded with a reason, served by cold boot"
out=$(client get "$(tcp_port bad)")
assert_contains "$out" "200 OK" "request to the degraded app"
wait_until 2 grep -q "^# app bad degraded=1" "$STATE" || fail "not degraded"
grep "^# app bad" "$STATE" | grep -q "bad snapshot magic" || fail "reason missing: $(grep '^# app bad' "$STATE")"
assert_eq 1 "$(metric lttle_app_degraded bad)" "degraded gauge"
assert_eq 1 "$(metric lttle_cold_boots_total bad)" "cold boots"
assert_eq 0 "$(metric lttle_restores_total bad)" "restores"
assert_contains "$(instances bad)" " cold " "started_by cold"
grep -q "degraded" "$T/testd.log" || fail "degradation not logged"

log "instance killed mid-connection: only its connection fails"
E=$(tcp_port echo)
python3 "$PYCLIENT" session "$E" 40 0.05 >"$T/s1" &
S1=$!
wait_until 5 grep -q open "$T/s1" || fail "session 1"
wait_until 5 instance_count_is echo 1 || fail "first instance"
python3 "$PYCLIENT" session "$E" 40 0.05 >"$T/s2" &
S2=$!
wait_until 5 instance_count_is echo 2 running || fail "two instances: $(instances echo)"
victim=$(instances echo | head -1 | awk '{print $4}')
sleep 0.3
kill -9 "$victim"
wait "$S1" "$S2" || true
res="$(cat "$T/s1") / $(cat "$T/s2")"
assert_eq 1 "$(grep -c 'intact 40' <<<"$(cat "$T/s1" "$T/s2")")" "one session survives: $res"
assert_eq 1 "$(grep -c 'broken after' <<<"$(cat "$T/s1" "$T/s2")")" "one session broken: $res"
wait_until 3 metric_is lttle_instance_deaths_total echo 1 || fail "death not counted"
assert_eq 1 "$(metric lttle_connections_lost_total echo)" "lost connections"
out=$(client echo "$E" 100000) || fail "after the kill: $out"
assert_eq "echo ok 100000" "$out" "a new connection is served after the kill"

log "pre-made shells: the first wake restores into a shell, and one is refilled"
wait_until 5 metric_is lttle_shells_ready shelled 1 || fail "no shell ready"
out=$(client get "$(tcp_port shelled)")
assert_contains "$out" "200 OK" "served from a shell"
wait_until 2 metric_is lttle_shell_restores_total shelled 1 || fail "shell restore not counted"
assert_eq 1 "$(metric lttle_wake_seconds_count shelled 'tier="shell"')" "tier 4 wake"
wait_until 5 metric_is lttle_shells_ready shelled 1 || fail "shell not refilled"

kill -TERM "$PROXY_PID"
wait "$PROXY_PID" || fail "proxy exit status"
assert_no_backends
pass "faults: degraded fallback, instance death, shells"
