#!/usr/bin/env bash
# 200 concurrent connections against max 3 instances: all succeed, never
# more than 3 instances, through both the TCP listener and the Host router.
. "$(dirname "$0")/../lib/common.sh"
. "$LTTLE_ROOT/src/proxy/tools/it-lib.sh"
proxy_tools

proxy_start --app "web,snapshot=$SNAP_OK,max=3,conc=4,restore=50,queue=20000" \
	--app "one,snapshot=$SNAP_OK,max=3,conc=1,restore=20,queue=20000" \
	--tcp web=127.0.0.1:0:80 --http 127.0.0.1:0 --host one.test=one
P=$(tcp_port web)
H=$(http_port)

log "200 at once on the TCP port (max 3, concurrency 4)"
out=$(client burst "$P" 200)
assert_eq "burst 200/200 ok" "$(head -1 <<<"$out")" "burst on tcp: $out"
wait_until 2 metric_is lttle_connections_served_total web 200 || fail "served counter"
peak=$(metric lttle_instances_peak web)
[ "$peak" -le 3 ] && [ "$peak" -ge 1 ] || fail "peak instances $peak"
[ "$(metric lttle_restores_total web)" -le 3 ] || fail "restores $(metric lttle_restores_total web)"
assert_eq 0 "$(metric lttle_connections_refused_total web)" "refusals"

log "200 at once through the Host router (max 3, concurrency 1)"
out=$(client burst "$H" 200 one.test)
assert_eq "burst 200/200 ok" "$(head -1 <<<"$out")" "burst via router: $out"
wait_until 2 metric_is lttle_connections_served_total one 200 || fail "served counter"
assert_eq 3 "$(metric lttle_instances_peak one)" "peak instances (concurrency 1)"
queued=$(metric lttle_wake_seconds_count one 'tier="queue"')
[ "$queued" -gt 0 ] || fail "no connection waited in the queue"
pass "200 connections, max 3"
