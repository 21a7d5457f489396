#!/usr/bin/env bash
# Proxy, TCP mode, end to end with the process engine: listener -> acquire
# (restore) -> splice forward with half-close; idle -> paused -> resumed;
# paused -> dropped -> restored again; SIGTERM drains and leaves nothing.
. "$(dirname "$0")/../lib/common.sh"
. "$LTTLE_ROOT/src/proxy/tools/it-lib.sh"
proxy_tools

proxy_start --app "echo,mode=echo,snapshot=$SNAP_OK,restore=30,idle=400,scaledown=1500" \
	--tcp echo=127.0.0.1:0:7
P=$(tcp_port echo)
[ -n "$P" ] || fail "no port for echo"

log "first connection restores an instance; 4 MiB echoed intact both ways"
out=$(client echo "$P" 4194304) || fail "echo failed: $out"
assert_eq "echo ok 4194304" "$out" "echo through the proxy"
wait_until 2 metric_is lttle_connections_served_total echo 1 || fail "served counter"
assert_eq 1 "$(metric lttle_restores_total echo)" "restores after the first connection"
assert_eq 0 "$(metric lttle_cold_boots_total echo)" "cold boots"
assert_eq 1 "$(metric lttle_wake_seconds_count echo 'tier="restore"')" "wakes by restore"
assert_eq 4194304 "$(metric lttle_bytes_in_total echo)" "bytes in"
assert_eq 4194304 "$(metric lttle_bytes_out_total echo)" "bytes out"

log "idle -> paused; the next connection resumes it"
wait_until 5 grep -q "app=echo state=paused" "$STATE" || fail "instance never paused: $(instances echo)"
pid=$(instances echo | awk '{print $4}')
stopped() { grep -q "^State:.*T (stopped)" "/proc/$pid/status"; }
wait_until 2 stopped || fail "backend $pid is not stopped while paused"
out=$(client echo "$P" 1000) || fail "echo after pause: $out"
assert_eq "echo ok 1000" "$out" "echo after pause"
wait_until 2 metric_is lttle_resumes_total echo 1 || fail "resume not counted"
assert_contains "$(instances echo)" "resume" "started_by after resume"
assert_eq 1 "$(metric lttle_wake_seconds_count echo 'tier="resume"')" "wakes by resume"
assert_eq 1 "$(metric lttle_restores_total echo)" "no second restore for a paused instance"

log "paused -> dropped after scale-down; the next connection restores again"
wait_until 8 metric_is lttle_drops_total echo 1 || fail "never dropped: $(instances echo)"
wait_until 2 instance_count_is echo 0 || fail "instance still listed: $(instances echo)"
kill -0 "$pid" 2>/dev/null && fail "dropped backend $pid still running"
out=$(client echo "$P" 65536) || fail "echo after drop: $out"
assert_eq "echo ok 65536" "$out" "echo after drop"
wait_until 2 metric_is lttle_restores_total echo 2 || fail "second restore not counted"

log "SIGTERM drains and stops every instance"
kill -TERM "$PROXY_PID"
wait_until 10 bash -c "! kill -0 $PROXY_PID 2>/dev/null" || fail "proxy did not exit on SIGTERM"
wait "$PROXY_PID" || fail "proxy exit status $?"
assert_no_backends
grep -q "drained" "$T/testd.log" || fail "no drain message"
pass "tcp proxy: restore, pause/resume, drop/restore, drain"
