# Shared helpers for integration tests. Source it first:
#   . "$(dirname "$0")/../lib/common.sh"
# Every test gets $T (a temp dir removed on exit), its own $LTTLE_HOME,
# and cleanup of every process it started with bg_start.
set -euo pipefail

LTTLE_ROOT=${LTTLE_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
LTTLE_BUILD=${LTTLE_BUILD:-$LTTLE_ROOT/build}
LTTLE=${LTTLE_BIN:-$LTTLE_BUILD/lttle}
T=$(mktemp -d /tmp/lttle-it.XXXXXX)
export LTTLE_HOME="$T/home"
mkdir -p "$LTTLE_HOME"
_BG_PIDS=()

_cleanup() {
	local rc=$?
	for pid in "${_BG_PIDS[@]:-}"; do
		[ -n "$pid" ] && kill "$pid" 2>/dev/null || true
	done
	for pid in "${_BG_PIDS[@]:-}"; do
		[ -n "$pid" ] && wait "$pid" 2>/dev/null || true
	done
	if [ -n "${KEEP_TMP:-}" ]; then
		echo "kept $T (exit $rc)" >&2
	else
		rm -rf "$T"
	fi
}
trap _cleanup EXIT

log() { echo "-- $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "skipped: $*"; exit 77; }
pass() { echo "ok: $*"; }

# assert_eq EXPECTED ACTUAL WHAT
assert_eq() {
	[ "$1" = "$2" ] || fail "$3: expected '$1', got '$2'"
}
# assert_contains HAYSTACK NEEDLE WHAT
assert_contains() {
	case "$1" in *"$2"*) ;; *) fail "$3: '$2' not found in: $1" ;; esac
}
# expect_fail WHAT CMD...: the command must exit non-zero; stderr kept in $T/err
expect_fail() {
	local what=$1; shift
	if "$@" >"$T/out" 2>"$T/err"; then
		fail "$what: expected failure, got success"
	fi
}

need() {
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || skip "$c is not installed"
	done
}

# A free TCP port on 127.0.0.1.
free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# bg_start LOGFILE CMD...: runs CMD in the background, killed on exit.
bg_start() {
	local logf=$1; shift
	"$@" >"$logf" 2>&1 &
	_BG_PIDS+=($!)
	echo $! >"$T/last.pid"
}

# wait_port PORT [SECONDS]
wait_port() {
	local port=$1 limit=${2:-20} i
	for ((i = 0; i < limit * 10; i++)); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	fail "nothing listens on 127.0.0.1:$port after ${limit}s"
}

# start_registry [htpasswd-file]: a real docker-registry on 127.0.0.1.
# Sets REGISTRY=127.0.0.1:PORT.
start_registry() {
	need docker-registry
	local port dir auth=""
	port=$(free_port)
	dir="$T/registry.$port"
	mkdir -p "$dir/data"
	if [ -n "${1:-}" ]; then
		auth="auth:
  htpasswd:
    realm: lttle-test
    path: $1"
	fi
	cat >"$dir/config.yml" <<YML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
$auth
YML
	bg_start "$dir/log" docker-registry serve "$dir/config.yml"
	wait_port "$port" 20
	REGISTRY=127.0.0.1:$port
	export REGISTRY
}
