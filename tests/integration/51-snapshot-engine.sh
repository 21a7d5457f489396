#!/usr/bin/env bash
# The lttle engine on real VMs: the tiny vsock echo guest (snapguest
# sg.mode=echo) does an app's start-up work (integer work, 40 MiB of memory
# filled) before it listens. Restore into a pre-made shell by hand
# (lttle vmm-shell + "restore FILE"), then the pool and proxy driving the
# engine (lttle-engine-drv): deploy-like boot to first-listen and snapshot,
# a connection restores and the echo answers, idle -> paused -> a
# connection resumes, scale-down to zero -> a connection restores again,
# 200 connections at max 3 all succeed, a killed VM process is replaced.
. "$(dirname "$0")/../lib/common.sh"
[ -c /dev/kvm ] && [ -w /dev/kvm ] || skip "no usable /dev/kvm"
G=$LTTLE_BUILD/guest/snapguest.elf
VMHOST=$LTTLE_BUILD/lttle-vmhost
DRV=$LTTLE_BUILD/snapshot/lttle-engine-drv
for f in "$G" "$VMHOST" "$DRV"; do [ -x "$f" ] || [ -f "$f" ] || fail "$f missing (make test-prereqs)"; done
need python3
ECHO_CMD="sg.mode=echo sg.work=100 sg.mem=40"

log "boot to first-listen and capture (lttle run)"
"$LTTLE" run --kernel "$G" --mem 128 --cmdline "$ECHO_CMD" --vsock "$T/boot.vsock" \
	--snapshot-on first-listen --snapshot-out "$T/echo.snap" --serial-log "$T/boot.serial" \
	>"$T/boot.out" 2>&1 || fail "capture: $(cat "$T/boot.out")"
grep -q '^startup done' "$T/boot.serial" || fail "no start-up work"
! grep -q 'serving' "$T/boot.serial" || fail "ran past listen"

log "restore into a shell by hand"
"$LTTLE" vmm-shell --control "$T/sh.sock" --like "$T/echo.snap" --vsock "$T/sh.vsock" \
	--cache-dir "$T/cache" --serial-log "$T/sh.serial" >"$T/sh.out" 2>&1 &
SH=$!
_BG_PIDS+=($SH)
python3 - "$T" "$SH" <<'PY' || fail "shell restore failed: $(cat "$T/sh.out")"
import json, os, socket, sys, time
T, SH = sys.argv[1], int(sys.argv[2])
for _ in range(400):
    if os.path.exists(T + "/sh.sock"):
        break
    time.sleep(0.02)
c = socket.socket(socket.AF_UNIX); c.connect(T + "/sh.sock"); f = c.makefile("rb")
c.sendall(b'{"cmd":"status"}\n'); st = json.loads(f.readline())
assert st["ok"] and st["state"] == "shell" and st["mem_mib"] == 128, st
c.sendall(("restore %s/echo.snap\n" % T).encode()); r = json.loads(f.readline())
assert r["ok"] and r["mem"] == "cached", r
c.sendall(b'{"cmd":"restore","path":"/nonexistent"}\n'); r = json.loads(f.readline())
assert not r["ok"], r       # a restored VM is no shell any more
for i in range(3):
    v = socket.socket(socket.AF_UNIX); v.connect(T + "/sh.vsock"); vf = v.makefile("rb")
    v.sendall(b"CONNECT 8080\n"); ok = vf.readline()
    assert ok.startswith(b"OK "), ok
    v.sendall(b"ping %d\n" % i); assert vf.readline() == b"ping %d\n" % i
    v.close()
# An idle guest waits in the VMM (LT_GUEST_IDLE_PORT) instead of spinning:
# over a second the whole process uses a fraction of one core.
def cpu_ticks():
    st = open("/proc/%d/stat" % SH).read().rsplit(")", 1)[1].split()
    return int(st[11]) + int(st[12])
hz = os.sysconf("SC_CLK_TCK")
time.sleep(0.3)
c0, t0 = cpu_ticks(), time.monotonic()
time.sleep(1.0)
used = (cpu_ticks() - c0) / hz / (time.monotonic() - t0)
assert used < 0.3, "idle guest used %.0f%% of a core" % (used * 100)
v = socket.socket(socket.AF_UNIX); v.connect(T + "/sh.vsock"); vf = v.makefile("rb")
v.sendall(b"CONNECT 8080\n"); assert vf.readline().startswith(b"OK ")
v.sendall(b"after idle\n"); assert vf.readline() == b"after idle\n"
v.close()
c.sendall(b'{"cmd":"stop"}\n'); assert json.loads(f.readline())["ok"]
PY
wait "$SH" || true
grep -q 'echo: restored, serving' "$T/sh.serial" || fail "shell guest did not resume: $(cat "$T/sh.serial")"

log "a damaged snapshot sent to a shell is refused and the shell ends"
head -c 100000 "$T/echo.snap" >"$T/bad.snap"
"$LTTLE" vmm-shell --control "$T/sh2.sock" --like "$T/echo.snap" --vsock "$T/sh2.vsock" \
	--serial-log "$T/sh2.serial" >"$T/sh2.out" 2>&1 &
SH2=$!
_BG_PIDS+=($SH2)
python3 - "$T" <<'PY' || fail "bad restore into shell"
import json, os, socket, sys, time
T = sys.argv[1]
for _ in range(400):
    if os.path.exists(T + "/sh2.sock"): break
    time.sleep(0.02)
c = socket.socket(socket.AF_UNIX); c.connect(T + "/sh2.sock"); f = c.makefile("rb")
c.sendall(('{"cmd":"restore","path":"%s/bad.snap"}\n' % T).encode()); r = json.loads(f.readline())
assert not r["ok"] and "bad.snap" in r["error"], r
PY
for _ in $(seq 100); do kill -0 "$SH2" 2>/dev/null || break; sleep 0.05; done
! kill -0 "$SH2" 2>/dev/null || fail "the shell kept running after a failed restore"
[ ! -s "$T/sh2.serial" ] || fail "a guest ran from a damaged snapshot"

log "engine: deploy, wake by restore, pause/resume, scale to zero, burst"
"$DRV" --vmhost "$VMHOST" --run-dir "$T/run" --kernel "$G" --mem 128 --cmdline "$ECHO_CMD" \
	--snapshot "$T/app.snap" --cache-dir "$T/cache" \
	--policy "max=3,conc=4,shells=1,idle=400,scaledown=1200,queue=20000" \
	--ready-file "$T/ready" --state-file "$T/state" >"$T/drv.log" 2>&1 &
D=$!
_BG_PIDS+=($D)
python3 - "$T" "$D" <<'PY' || fail "engine checks failed: $(tail -5 "$T/drv.log")"
import concurrent.futures as cf, json, os, signal, socket, sys, time
T, drv = sys.argv[1], int(sys.argv[2])

def wait(pred, what, limit=60):
    end = time.time() + limit
    while time.time() < end:
        try:
            if pred():
                return
        except (FileNotFoundError, ValueError, KeyError):
            pass
        time.sleep(0.02)
    sys.exit("timeout: " + what + " state=" + open(T + "/state").read())

def st():
    return json.load(open(T + "/state"))

wait(lambda: os.path.exists(T + "/ready"), "deploy", 120)
port = int(open(T + "/ready").read().split()[1])
assert os.path.getsize(T + "/app.snap") > 0

def echo(msg, timeout=30):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    t0 = time.monotonic()
    s.sendall(msg)
    buf = b""
    while not buf.endswith(b"\n"):
        d = s.recv(4096)
        if not d:
            break
        buf += d
    s.close()
    assert buf == msg, (msg, buf)
    return (time.monotonic() - t0) * 1000

wait(lambda: st()["instances"] == 0, "serving", 5)
ms = echo(b"first\n")
wait(lambda: st()["restores"] == 1, "restore counted", 5)   # the state file lags 20 ms
s = st(); assert s["cold_boots"] == 0, s
print("restore wake %.1f ms (shell restores %d)" % (ms, s["shell_restores"]))
echo(b"warm\n")
wait(lambda: st()["paused"] == 1, "idle pause")
r0 = st()["resumes"]
ms = echo(b"after pause\n")
wait(lambda: st()["resumes"] == r0 + 1, "resume counted", 5)
print("resume wake %.1f ms" % ms)
wait(lambda: st()["instances"] == 0 and st()["drops"] >= 1, "scale to zero")
n0 = st()["restores"]
ms = echo(b"from zero\n")
wait(lambda: st()["restores"] == n0 + 1, "restore counted", 5)
print("restore-from-zero wake %.1f ms" % ms)

# A burst at max 3: none fail.
with cf.ThreadPoolExecutor(24) as ex:
    res = list(ex.map(lambda i: echo(b"burst %d\n" % i, 60), range(200)))
s = st()
assert s["refused"] == 0, s
print("200 connections: max %.0f ms, restores %d, instances now %d" % (max(res), s["restores"], s["instances"]))

# kill -9 of a VM process: the pool replaces it, requests succeed.
pids = [int(p) for p in os.popen("pgrep -f 'lttle-vmhost (restore|vmm-shell).*%s/run'" % T).read().split()]
assert pids, "no VM processes"
for p in pids:
    os.kill(p, signal.SIGKILL)
time.sleep(0.3)
for i in range(5):
    echo(b"after kill %d\n" % i)
print("after kill: deaths %d" % st()["deaths"])
PY
kill -TERM "$D"
for _ in $(seq 100); do kill -0 "$D" 2>/dev/null || break; sleep 0.05; done
! kill -0 "$D" 2>/dev/null || fail "driver did not drain on SIGTERM"
left=$(pgrep -f "lttle-vmhost .*$T/run" || true)
[ -z "$left" ] || fail "VM processes left after shutdown: $left"
pass "lttle engine: shell restore, wake by restore, resume, scale to zero, burst, VM death"
