#!/usr/bin/env bash
# ignitiond with the lttle engine (our VMM, one lttle-vmhost per VM, vsock
# ingress) on this machine's KVM. The guest is the tiny vsock echo guest
# (tests/guest snapguest, sg.mode=echo) doing an app's start-up work (100
# ms of integer work, 40 MiB of memory filled) before it listens; the
# deployed image only provides the (unused) rootfs. Through the real
# daemon and proxy on loopback:
#   1. deploy: the snapshot is taken at the guest's first listen;
#   2. connect: an instance is restored and the echo answers;
#   3. idle until paused, then connect: resumed, answers;
#   4. scale-down to zero, then connect: restored again, answers;
#   5. 200 connections at --max 3: none fails;
#   6. kill -9 of ignitiond and restart: serves again, no orphaned VM host;
#      SIGTERM: exit 0, no VM host left.
. "$(dirname "$0")/../lib/common.sh"
need curl python3 docker-registry
[ -c /dev/kvm ] && [ -w /dev/kvm ] || skip "no usable /dev/kvm"
DAEMON=$LTTLE_BUILD/ignitiond
G=$LTTLE_BUILD/guest/snapguest.elf
for f in "$DAEMON" "$LTTLE_BUILD/lttle-vmhost" "$G"; do
	[ -e "$f" ] || skip "$f is not built (make all test-prereqs)"
done

STATE=$T/state
export LTTLE_SOCKET=$T/ignitiond.sock
api() { curl -s --unix-socket "$LTTLE_SOCKET" "http://localhost$1" "${@:2}"; }
jq_() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
vmhosts() { pgrep -f "lttle-vmhost.*$STATE/" || true; }
alive() { [ -e "/proc/$1" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
# echo N [PARALLEL]: N connections (PARALLEL at a time), each must echo.
echo_conns() {
	python3 - "$ADDR" "$1" "${2:-1}" <<'PY'
import socket, sys, threading, time
host, port = sys.argv[1].rsplit(":", 1)
n, par = int(sys.argv[2]), int(sys.argv[3])
fails, lat = [], []
lock = threading.Lock()
def one(i):
    t = time.time()
    try:
        s = socket.create_connection((host, int(port)), timeout=30)
        s.settimeout(30)
        msg = b"hello %d\n" % i
        s.sendall(msg)
        got = b""
        while not got.endswith(b"\n"):
            b = s.recv(100)
            if not b:
                break
            got += b
        s.close()
        ok = got == msg
    except OSError as e:
        ok, got = False, str(e).encode()
    with lock:
        lat.append((time.time() - t) * 1000)
        if not ok:
            fails.append((i, got))
sem = threading.Semaphore(par)
def run(i):
    with sem:
        one(i)
ts = [threading.Thread(target=run, args=(i,)) for i in range(n)]
[t.start() for t in ts]
[t.join() for t in ts]
lat.sort()
print("%d connections: %d failed; p50 %.1f ms, max %.1f ms" % (n, len(fails), lat[len(lat) // 2], lat[-1]))
if fails:
    print("failures:", fails[:5])
    sys.exit(1)
PY
}
start_daemon() {
	bg_start "$T/daemon.log" "$DAEMON" --state "$STATE" --socket "$LTTLE_SOCKET" --drain-timeout 2s
	DPID=$(cat "$T/last.pid")
	for _ in $(seq 50); do
		[ -S "$LTTLE_SOCKET" ] && api /v1/health >/dev/null && return 0
		sleep 0.1
	done
	cat "$T/daemon.log" >&2
	fail "ignitiond did not come up"
}
trap 'rc=$?; [ $rc = 0 ] || tail -30 "$T/daemon.log" >&2; _cleanup' EXIT
wait_state() { # wait_state JQ-EXPR WHAT
	for _ in $(seq 100); do
		[ "$("$LTTLE" ps --json | jq_ "$1")" = True ] && return 0
		sleep 0.05
	done
	fail "$2: $("$LTTLE" ps)"
}

python3 "$LTTLE_ROOT/tests/lib/sample-image.py" "$T/sample" >/dev/null
start_registry
REF=$REGISTRY/demo/hello:1
python3 "$LTTLE_ROOT/tests/lib/mkimage.py" push "$T/sample" sample "$REF" >/dev/null
start_daemon

log "1. deploy (snapshot at the guest's first listen)"
"$LTTLE" deploy "$REF" --name echo --engine lttle --kernel "$G" --mem 128 \
	--cmdline "sg.mode=echo sg.work=100 sg.mem=40" --port 127.0.0.1:0:8080 \
	--max 3 --idle-timeout 1s --scale-down 2s --queue-timeout 30s \
	>"$T/deploy.out" 2>"$T/deploy.err" || fail "deploy: $(tail -5 "$T/deploy.err")"
grep -E "trigger fired|deployed" "$T/deploy.err"
ADDR=$(tail -1 "$T/deploy.out")
case $ADDR in 127.0.0.1:[0-9]*) ;; *) fail "deploy's last line is '$ADDR'" ;; esac
assert_eq lttle "$("$LTTLE" apps --json | jq_ 'd[0]["engine"]')" "engine"
pass "deployed on the lttle engine"

log "2. connect: restored, the echo answers"
echo_conns 1
wait_state 'len(d)==1 and d[0]["started_by"]=="restore"' "no restored instance"
pass "restore"

log "3. idle until paused, then connect: resumed"
wait_state 'len(d)==1 and d[0]["state"]=="paused"' "not paused after idle"
echo_conns 1
assert_eq 1 "$("$LTTLE" apps --json | jq_ 'd[0]["resumes"]')" "resumes"
pass "pause and resume"

log "4. scale-down to zero, then connect: restored again"
wait_state 'len(d)==0' "not scaled to zero"
echo_conns 1
[ "$("$LTTLE" apps --json | jq_ 'd[0]["restores"]')" -ge 2 ] || fail "no second restore"
pass "scale to zero and restore"

log "5. 200 connections at --max 3"
echo_conns 200 50
peak=$(api /v1/apps/echo | jq_ 'd["peak_instances"]')
[ "$peak" -le 3 ] || fail "peak instances $peak above --max 3"
assert_eq 0 "$("$LTTLE" apps --json | jq_ 'd[0]["cold_boots"]')" "cold boots"
pass "200 connections, peak $peak instances"

log "6. kill -9 of ignitiond and restart; SIGTERM"
echo_conns 1
before=$(vmhosts | tr '\n' ' ')
[ -n "$before" ] || fail "no VM host before the crash"
kill -9 "$DPID"
wait "$DPID" 2>/dev/null || true
start_daemon
for p in $before; do alive "$p" && fail "orphaned VM host $p survived the restart"; done
echo_conns 3
left_before_term=$(vmhosts | tr '\n' ' ')
kill -TERM "$DPID"
rc=0
wait "$DPID" || rc=$?
assert_eq 0 "$rc" "exit status after SIGTERM"
for p in $left_before_term $(vmhosts); do alive "$p" && fail "VM host $p left after SIGTERM"; done
pass "ignitiond with the lttle engine"
