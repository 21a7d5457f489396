#!/usr/bin/env bash
# Shared HTTP port routing by Host: two apps, unknown host 404, bad heads
# 400/431, absolute-form and ports normalised, bodies and keep-alive pass.
. "$(dirname "$0")/../lib/common.sh"
. "$LTTLE_ROOT/src/proxy/tools/it-lib.sh"
proxy_tools
need curl

proxy_start --app "alpha,snapshot=$SNAP_OK" --app "beta,snapshot=$SNAP_OK" \
	--http 127.0.0.1:0 --host alpha.test=alpha --host beta.test=beta
H=$(http_port)

log "each Host reaches its own app"
a=$(curl -sS --max-time 5 -H 'Host: alpha.test' "http://127.0.0.1:$H/") || fail "curl alpha"
b=$(curl -sS --max-time 5 -H 'Host: beta.test' "http://127.0.0.1:$H/x?y=1") || fail "curl beta"
assert_contains "$a" "alpha-" "alpha answered by an alpha instance"
assert_contains "$b" "beta-" "beta answered by a beta instance"
c=$(curl -sS --max-time 5 -H 'Host: ALPHA.test:8080' "http://127.0.0.1:$H/") || fail "curl case"
assert_contains "$c" "alpha-" "Host is case-insensitive and its port ignored"
d=$(client raw "$H" 'GET http://beta.test/abs HTTP/1.1\r\nHost: alpha.test\r\nConnection: close\r\n\r\n')
assert_contains "$d" "beta-" "absolute-form target wins over Host"

log "a POST body and keep-alive requests pass through"
p=$(curl -sS --max-time 5 -H 'Host: alpha.test' --data-binary "$(head -c 20000 /dev/zero | tr '\0' x)" \
	"http://127.0.0.1:$H/post") || fail "POST through router"
assert_contains "$p" "alpha-" "POST answered"
k=$(curl -sS --max-time 5 -H 'Host: beta.test' "http://127.0.0.1:$H/1" "http://127.0.0.1:$H/2")
assert_eq 2 "$(grep -c beta- <<<"$k")" "two keep-alive requests on one connection"

log "unknown host 404, missing Host 400, huge head 431"
code=$(curl -s -o "$T/body" -w '%{http_code}' --max-time 5 -H 'Host: nobody.test' "http://127.0.0.1:$H/")
assert_eq 404 "$code" "unknown host"
assert_contains "$(cat "$T/body")" "nobody.test" "404 names the host"
r=$(client raw "$H" 'GET / HTTP/1.0\r\nUser-Agent: t\r\n\r\n')
assert_contains "$r" "HTTP/1.1 400" "missing Host"
assert_contains "$r" "missing Host" "400 says why"
big=$(head -c 9000 /dev/zero | tr '\0' a)
r=$(client raw "$H" "GET / HTTP/1.1\\r\\nHost: alpha.test\\r\\nX: $big\\r\\n\\r\\n")
assert_contains "$r" "HTTP/1.1 431" "oversized head"
grep -q "no app serves host 'nobody.test'" "$T/testd.log" || fail "404 not logged"
state_fresh
assert_eq 1 "$(awk '$1 == "lttle_proxy_http_errors_total{code=\"404\"}" {print $2}' "$STATE")" "404 counter"
assert_eq 1 "$(awk '$1 == "lttle_proxy_http_errors_total{code=\"400\"}" {print $2}' "$STATE")" "400 counter"
assert_eq 1 "$(awk '$1 == "lttle_proxy_http_errors_total{code=\"431\"}" {print $2}' "$STATE")" "431 counter"

log "metrics count per app"
# alpha: plain, case/port, POST; beta: path, absolute-form, one keep-alive
wait_until 2 metric_is lttle_connections_served_total alpha 3 ||
	fail "alpha served $(metric lttle_connections_served_total alpha)"
assert_eq 3 "$(metric lttle_connections_served_total beta)" "beta served"
assert_eq 1 "$(metric lttle_restores_total alpha)" "alpha restores"
pass "http router"
