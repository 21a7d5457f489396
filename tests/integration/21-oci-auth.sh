#!/usr/bin/env bash
# Registry authentication: Basic (htpasswd registry, credentials from the
# docker config), the Bearer token flow (python token server + proxy in
# front of a real registry, with and without credentials), and blob
# redirects to another host that must never see the Authorization header.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/../lib/oci-test.sh"
need htpasswd
mk_layers
mkimage build "$T/img" --tag v1 --layer "$T/l1.tar:gzip" --layer "$T/l3.tar:zstd" >/dev/null
digest=$(mkimage digest "$T/img" v1)

# docker_config DIR HOST USER PASS: writes DIR/config.json
docker_config() {
	mkdir -p "$1"
	printf '{"auths":{"%s":{"auth":"%s"}}}\n' "$2" "$(printf '%s:%s' "$3" "$4" | base64 -w0)" \
		>"$1/config.json"
}
refs_count() { find "$LTTLE_HOME/refs" -type f 2>/dev/null | wc -l; }

log "Basic auth (htpasswd)"
htpasswd -Bbn alice 's3cret:x' >"$T/htpasswd"
start_registry "$T/htpasswd"
mkimage push "$T/img" v1 "$REGISTRY/private:v1" --user alice --password 's3cret:x' >/dev/null
export HOME="$T/home-empty" DOCKER_CONFIG="$T/nocfg"
mkdir -p "$HOME" "$DOCKER_CONFIG"
expect_fail "pull without credentials" "$LTTLE" pull -q "$REGISTRY/private:v1"
assert_contains "$(cat "$T/err")" "lttle pull: $REGISTRY/private:v1:" "error names the ref"
assert_contains "$(cat "$T/err")" "no credentials for $REGISTRY in the docker config" "hint"
assert_eq 1 "$(wc -l <"$T/err")" "one error line"
assert_eq 0 "$(refs_count)" "nothing recorded"

docker_config "$T/badcfg" "$REGISTRY" alice wrong
DOCKER_CONFIG="$T/badcfg" expect_fail "wrong password" "$LTTLE" pull -q "$REGISTRY/private:v1"
assert_contains "$(cat "$T/err")" "HTTP 401" "rejected credentials"
assert_contains "$(cat "$T/err")" "credentials for $REGISTRY were rejected" "rejected hint"

docker_config "$T/cfg" "$REGISTRY" alice 's3cret:x'
out=$(DOCKER_CONFIG="$T/cfg" "$LTTLE" pull -q "$REGISTRY/private:v1")
assert_eq "$digest" "$out" "pull with \$DOCKER_CONFIG credentials"
"$LTTLE" rmi "$REGISTRY/private:v1" >/dev/null
# ~/.docker/config.json when DOCKER_CONFIG is unset, with an http:// key.
unset DOCKER_CONFIG
docker_config "$HOME/.docker" "http://$REGISTRY/v2/" alice 's3cret:x'
out=$("$LTTLE" pull -q "$REGISTRY/private:v1")
assert_eq "$digest" "$out" "pull with ~/.docker/config.json credentials"
"$LTTLE" rmi "$REGISTRY/private:v1" >/dev/null
rm -rf "$HOME/.docker"
export DOCKER_CONFIG="$T/nocfg"

log "Bearer token flow with credentials (token server demands Basic)"
start_registry
mkimage push "$T/img" v1 "$REGISTRY/app:v1" >/dev/null
tport=$(free_port)
start_proxy "$T/bearer.log" --bearer --token-listen "127.0.0.1:$tport" \
	--token-user bob --token-pass tokpw --token-field access_token
expect_fail "token without credentials" "$LTTLE" pull -q "$PROXY/app:v1"
assert_contains "$(cat "$T/err")" "token request to http://127.0.0.1:$tport/token" "token error"
assert_contains "$(cat "$T/err")" "HTTP 401" "token server refused"
assert_eq 0 "$(refs_count)" "nothing recorded"
docker_config "$T/tokcfg" "$PROXY" bob tokpw
out=$(DOCKER_CONFIG="$T/tokcfg" "$LTTLE" pull -q "$PROXY/app:v1")
assert_eq "$digest" "$out" "pull through Bearer auth"
# The token server saw Basic credentials and the scope; the registry saw
# only Bearer tokens.
grep -q "^GET /token?service=lttle-test&scope=repository%3Aapp%3Apull 200 auth=Basic" \
	"$T/bearer.log" || fail "token request with Basic auth not seen: $(cat "$T/bearer.log")"
assert_eq 0 "$(count_lines "$T/bearer.log" '^GET /v2/.* 200 auth=(Basic|-)')" \
	"registry requests without a Bearer token that succeeded"
[ "$(count_lines "$T/bearer.log" '^GET /v2/app/blobs/.* 200 auth=Bearer')" -ge 3 ] ||
	fail "blob downloads did not carry the token"

log "anonymous Bearer flow (token field 'token') + blob redirect to another host"
"$LTTLE" rmi "$PROXY/app:v1" >/dev/null
bport=$(free_port)
start_proxy "$T/anon.log" --bearer --redirect-blobs "127.0.0.2:$bport"
out=$("$LTTLE" pull -q "$PROXY/app:v1")
assert_eq "$digest" "$out" "anonymous token + redirected blobs"
[ "$(count_lines "$T/anon.log" '^GET /v2/app/blobs/.* 307 auth=Bearer')" -ge 2 ] ||
	fail "blob requests were not redirected: $(cat "$T/anon.log")"
[ "$(count_lines "$T/anon.log" '^GET /blob/app/sha256:[0-9a-f]+\?sig=x 200 auth=-$')" -ge 2 ] ||
	fail "redirect target not used without auth: $(cat "$T/anon.log")"
assert_eq 0 "$(count_lines "$T/anon.log" '^GET /blob/.* auth=Bearer')" "Authorization leaked"
for d in $(json_get "$(layout_blob "$T/img" "$digest")" layers | grep -o 'sha256:[0-9a-f]*'); do
	cmp -s "$(store_blob "$d")" "$(layout_blob "$T/img" "$d")" || fail "layer $d differs"
done
log "HTTPS registry (self-signed, loopback) with Basic auth over TLS"
need openssl
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
	-addext subjectAltName=IP:127.0.0.1,DNS:localhost \
	-keyout "$T/tls.key" -out "$T/tls.crt" 2>/dev/null
tlsport=$(free_port)
mkdir -p "$T/tlsreg/data"
cat >"$T/tlsreg/config.yml" <<YML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $T/tlsreg/data
http:
  addr: 127.0.0.1:$tlsport
  tls:
    certificate: $T/tls.crt
    key: $T/tls.key
auth:
  htpasswd:
    realm: lttle-tls
    path: $T/htpasswd
YML
bg_start "$T/tlsreg/log" docker-registry serve "$T/tlsreg/config.yml"
wait_port "$tlsport" 20
# Upload through a plain-HTTP twin registry sharing the same storage (the
# test uploader speaks HTTP only).
mkdir -p "$T/twin"
cat >"$T/twin/config.yml" <<YML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $T/tlsreg/data
http:
  addr: 127.0.0.1:$(free_port)
YML
twinport=$(sed -n 's/.*addr: 127.0.0.1:\([0-9]*\)/\1/p' "$T/twin/config.yml")
bg_start "$T/twin/log" docker-registry serve "$T/twin/config.yml"
wait_port "$twinport" 20
mkimage push "$T/img" v1 "127.0.0.1:$twinport/secure:v1" >/dev/null
docker_config "$T/tlscfg" "127.0.0.1:$tlsport" alice 's3cret:x'
out=$(DOCKER_CONFIG="$T/tlscfg" "$LTTLE" pull -q "127.0.0.1:$tlsport/secure:v1")
assert_eq "$digest" "$out" "pull over HTTPS with Basic auth"
DOCKER_CONFIG="$T/nocfg" expect_fail "HTTPS without credentials" "$LTTLE" pull -q "127.0.0.1:$tlsport/secure:v1"
assert_contains "$(cat "$T/err")" "https://127.0.0.1:$tlsport" "HTTPS was used (no downgrade after an HTTP answer)"
pass "auth"
