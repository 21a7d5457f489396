#!/usr/bin/env bash
# Every wait is bounded: at max with no free slot a connection waits at
# most queue-timeout, then HTTP clients get 503 with the reason and TCP
# clients a closed socket with the reason logged; a full queue refuses at
# once.
. "$(dirname "$0")/../lib/common.sh"
. "$LTTLE_ROOT/src/proxy/tools/it-lib.sh"
proxy_tools
need curl

proxy_start --app "web,snapshot=$SNAP_OK,max=1,conc=1,queue=1000,qmax=1" \
	--tcp web=127.0.0.1:0:80 --http 127.0.0.1:0 --host web.test=web
P=$(tcp_port web)
H=$(http_port)

log "one long connection takes the only slot"
: >"$T/hold.out"
python3 "$PYCLIENT" hold "$P" 15 >"$T/hold.out" &
HOLD=$!
wait_until 5 grep -q held "$T/hold.out" || fail "holder did not connect"
wait_until 5 metric_is lttle_connections_served_total web 1 || fail "slot not taken: $(instances web)"

log "HTTP: 503 with the reason after the queue timeout"
t0=$(date +%s%N)
code=$(curl -s -o "$T/body" -w '%{http_code}' --max-time 10 -H 'Host: web.test' "http://127.0.0.1:$H/")
dt=$(( ($(date +%s%N) - t0) / 1000000 ))
assert_eq 503 "$code" "status at queue timeout"
assert_contains "$(cat "$T/body")" "no instance of web within 1000 ms" "503 body gives the reason"
[ "$dt" -ge 950 ] && [ "$dt" -lt 4000 ] || fail "503 after ${dt} ms, want about 1000"

log "TCP: the socket is closed after the timeout and the reason is logged"
out=$(client probe "$P")
how=${out% *}
secs=${out#* }
[ "$how" = eof ] || [ "$how" = reset ] || fail "tcp refusal: $out"
python3 -c "import sys; s=float(sys.argv[1]); sys.exit(0 if 0.95 <= s < 4 else 1)" "$secs" ||
	fail "tcp refusal after $secs s"
grep -q "app web: refused 127.0.0.1:[0-9]*: no instance of web within 1000 ms" "$T/testd.log" ||
	fail "tcp refusal not logged: $(tail -3 "$T/testd.log")"

log "queue bound: with one waiting, the next is refused at once"
python3 "$PYCLIENT" probe "$P" >"$T/waiter.out" &
W=$!
wait_until 5 metric_is lttle_queue_length web 1 || fail "waiter not queued"
t0=$(date +%s%N)
code=$(curl -s -o "$T/body2" -w '%{http_code}' --max-time 10 -H 'Host: web.test' "http://127.0.0.1:$H/")
dt=$(( ($(date +%s%N) - t0) / 1000000 ))
assert_eq 503 "$code" "status with the queue full"
assert_contains "$(cat "$T/body2")" "queue full" "reason for a full queue"
[ "$dt" -lt 700 ] || fail "queue-full refusal took ${dt} ms (the queue timeout is 1000)"
wait "$W"

log "counters"
wait_until 2 metric_ge lttle_queue_timeouts_total web 3 ||
	fail "queue timeouts $(metric lttle_queue_timeouts_total web)"
assert_eq 1 "$(metric lttle_queue_full_total web)" "queue full counter"
assert_eq 1 "$(metric lttle_restores_total web)" "max 1: one instance only"
assert_eq 1 "$(metric lttle_instances_peak web)" "peak instances"
assert_eq 2 "$(awk '$1 == "lttle_proxy_tcp_refused_total" {print $2}' "$STATE")" "tcp refusals (probe and waiter)"
assert_eq 2 "$(awk '$1 == "lttle_proxy_http_errors_total{code=\"503\"}" {print $2}' "$STATE")" "503 replies"

log "once the holder leaves, the next request is served"
kill "$HOLD" 2>/dev/null || true
wait "$HOLD" 2>/dev/null || true
out=$(curl -sS --max-time 5 -H 'Host: web.test' "http://127.0.0.1:$H/") || fail "after release"
assert_contains "$out" "web-" "served after the slot freed"
pass "bounded queue and timeouts"
