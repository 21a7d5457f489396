# Helpers for the proxy integration tests (tests/integration/7[0-4]-*.sh).
# Source after tests/lib/common.sh.

PROXY_BIN=$LTTLE_BUILD/proxy
TESTD=$PROXY_BIN/lt-proxy-testd
BACKEND=$PROXY_BIN/proxy_backend
SNAP_OK="$T/snap.ok"
SNAP_BAD="$T/snap.bad"

proxy_tools() {
	need python3
	if [ ! -x "$TESTD" ] || [ ! -x "$BACKEND" ]; then
		make -s -C "$LTTLE_ROOT" BUILD="$LTTLE_BUILD" proxy-tools >"$T/build.log" 2>&1 ||
			fail "cannot build the proxy test tools: $(tail -5 "$T/build.log")"
	fi
	printf 'lttle-proc-snapshot v1\n' >"$SNAP_OK"
	printf 'garbage\n' >"$SNAP_BAD"
}

# proxy_start ARGS...: runs lt-proxy-testd; sets PROXY_PID, STATE, READY.
proxy_start() {
	STATE="$T/state"
	READY="$T/ready"
	rm -f "$STATE" "$READY"
	bg_start "$T/testd.log" env LTTLE_LOG=info "$TESTD" --backend "$BACKEND" \
		--ready-file "$READY" --state-file "$STATE" "$@"
	PROXY_PID=$(cat "$T/last.pid")
	local i
	for ((i = 0; i < 100; i++)); do
		[ -s "$READY" ] && [ -s "$STATE" ] && return 0
		kill -0 "$PROXY_PID" 2>/dev/null || fail "lt-proxy-testd exited: $(tail -5 "$T/testd.log")"
		sleep 0.05
	done
	fail "lt-proxy-testd not ready after 5s"
}

tcp_port() { awk -v a="$1" '$1 == "tcp" && $2 == a { print $3 }' "$READY"; }
http_port() { awk '$1 == "http" { print $2 }' "$READY"; }

# state_fresh: makes the proxy rewrite its state file and waits for a
# version computed after the call (two rewrites: one may have been under
# way already).
state_ino() { stat -c %i "$STATE" 2>/dev/null; }
state_fresh() {
	local k ino i
	for k in 1 2; do
		ino=$(state_ino)
		kill -USR1 "$PROXY_PID" 2>/dev/null || return 0
		for ((i = 0; i < 400; i++)); do
			[ "$(state_ino)" != "$ino" ] && break
			sleep 0.005
		done
	done
}

# metric NAME APP [LABELS]: value of NAME{app="APP"[,LABELS]}, fresh.
metric() {
	state_fresh
	local sel="$1{app=\"$2\"${3:+,$3}}"
	awk -v s="$sel" '$1 == s { print $2 }' "$STATE"
}

# metric_is NAME APP VALUE [LABELS] / metric_ge: for wait_until, which
# must re-read the state each time.
metric_is() { [ "$(metric "$1" "$2" "${4:-}")" = "$3" ]; }
metric_ge() { local v; v=$(metric "$1" "$2" "${4:-}"); [ -n "$v" ] && [ "$v" -ge "$3" ]; }
instance_count_is() { [ "$(instances "$1" | grep -c "${3:-.}")" = "$2" ]; }

# instances APP: "id state started_by pid" lines.
instances() {
	state_fresh
	grep "^# instance .* app=$1 " "$STATE" | sed -E 's/^# instance ([^ ]+) .*state=([^ ]+) started_by=([^ ]+) .*pid=([0-9]+).*/\1 \2 \3 \4/' || true
}

# wait_until SECONDS CMD...: polls CMD every 50 ms.
wait_until() {
	local limit=$1 i
	shift
	for ((i = 0; i < limit * 20; i++)); do
		"$@" && return 0
		sleep 0.05
	done
	return 1
}

# The test's python client: subcommands documented in the script.
PYCLIENT="$T/client.py"
cat >"$PYCLIENT" <<'PY'
import hashlib, os, socket, sys, threading, time

def http_get(port, host=None, path="/", timeout=10.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    req = "GET %s HTTP/1.1\r\n" % path
    if host is not None:
        req += "Host: %s\r\n" % host
    req += "Connection: close\r\n\r\n"
    s.sendall(req.encode())
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    s.close()
    return data.decode(errors="replace")

def echo(port, size):
    """Sends size random bytes, half-closes, checks the echo (sha256)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=20)
    payload = os.urandom(size)
    got = []
    def rd():
        while True:
            b = s.recv(1 << 16)
            if not b:
                break
            got.append(b)
    t = threading.Thread(target=rd)
    t.start()
    s.sendall(payload)
    s.shutdown(socket.SHUT_WR)
    t.join()
    s.close()
    back = b"".join(got)
    ok = hashlib.sha256(back).digest() == hashlib.sha256(payload).digest()
    print("echo %s %d" % ("ok" if ok else "MISMATCH", len(back)))
    return ok

def burst(port, n, host=None):
    """n concurrent HTTP requests; prints how many got 200."""
    res = [None] * n
    def one(i):
        try:
            r = http_get(port, host, "/%d" % i, timeout=30)
            res[i] = r.split("\r\n", 1)[0]
        except Exception as e:
            res[i] = "ERR %s" % e
    ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in ts: t.start()
    for t in ts: t.join()
    ok = sum(1 for r in res if r and " 200 " in r)
    bad = [r for r in res if not (r and " 200 " in r)]
    print("burst %d/%d ok" % (ok, n))
    for r in bad[:5]:
        print("failed: %s" % r)

def hold(port, seconds, request=None):
    """Opens a connection (optionally sends a request head), keeps it open."""
    s = socket.create_connection(("127.0.0.1", port), timeout=seconds + 5)
    if request:
        s.sendall(request.encode().decode("unicode_escape").encode())
    print("held", flush=True)
    time.sleep(seconds)
    s.close()

def probe_closed(port):
    """Connects and waits for the proxy to close: prints how and when."""
    t0 = time.time()
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        b = s.recv(100)
        how = "eof" if not b else "data"
    except ConnectionResetError:
        how = "reset"
    except socket.timeout:
        how = "timeout"
    print("%s %.3f" % (how, time.time() - t0))

def echo_session(port, rounds, gap):
    """One long echo connection: a line every gap seconds; prints result."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    print("open", flush=True)
    for i in range(rounds):
        msg = b"line %d\n" % i
        try:
            s.sendall(msg)
            got = b""
            while len(got) < len(msg):
                b = s.recv(100)
                if not b:
                    raise ConnectionError("eof")
                got += b
            if got != msg:
                raise ConnectionError("mismatch")
        except Exception as e:
            print("broken after %d: %s" % (i, e), flush=True)
            return
        time.sleep(gap)
    print("intact %d" % rounds, flush=True)

cmd = sys.argv[1]
if cmd == "get":
    host = sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] != "-" else None
    try:
        print(http_get(int(sys.argv[2]), host))
    except Exception as e:
        print("ERR %s" % e)
elif cmd == "echo":
    sys.exit(0 if echo(int(sys.argv[2]), int(sys.argv[3])) else 1)
elif cmd == "burst":
    burst(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else None)
elif cmd == "hold":
    hold(int(sys.argv[2]), float(sys.argv[3]), sys.argv[4] if len(sys.argv) > 4 else None)
elif cmd == "probe":
    probe_closed(int(sys.argv[2]))
elif cmd == "session":
    echo_session(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
elif cmd == "raw":
    s = socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=10)
    s.sendall(sys.argv[3].encode().decode("unicode_escape").encode())
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    print(data.decode(errors="replace"))
PY

client() { python3 "$PYCLIENT" "$@"; }

# Every backend process of the proxy must be gone after it exits.
assert_no_backends() {
	local left
	left=$(pgrep -f "^$BACKEND " || true)
	[ -z "$left" ] || fail "backend processes left behind: $left"
}
