#!/usr/bin/env bash
# make bench-wake: the lttle engine's part of bench-proxy. The tiny vsock
# echo guest (snapguest sg.mode=echo: integer start-up work and 40 MiB of
# memory filled before it listens) behind the real pool, proxy and lttle
# engine (lttle-engine-drv). For each acquire tier, WAKES (default 200)
# wakes, each measured by the client from connect() to the first byte of
# the echo: warm (an idle running instance), paused resume, restore into a
# pre-made shell, restore in a fresh VM process, cold boot (no snapshot).
# Then density: 20 instances restored from one snapshot (cached memory),
# their total PSS next to 20 x guest RAM. p50/p99 side by side; the
# targets of issue 7 are checked and reported, not enforced.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
B=$ROOT/$BUILD
WAKES=${WAKES:-200}
COLD_WAKES=${COLD_WAKES:-$WAKES}
for f in "$B/lttle" "$B/lttle-vmhost" "$B/guest/snapguest.elf" "$B/snapshot/lttle-engine-drv"; do
	[ -e "$f" ] || { echo "missing $f (make BUILD=$BUILD all test-prereqs)"; exit 1; }
done
[ -w /dev/kvm ] || { echo "skipped: no usable /dev/kvm"; exit 0; }
T=$(mktemp -d /tmp/lttle-wake.XXXXXX)
trap 'pkill -KILL -f "lttle-vmhost .*$T" 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
python3 - "$B" "$T" "$WAKES" "$COLD_WAKES" <<'PY'
import json, os, signal, socket, statistics, subprocess, sys, time
B, T, WAKES, COLD = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
G = B + "/guest/snapguest.elf"
VMHOST, DRV = B + "/lttle-vmhost", B + "/snapshot/lttle-engine-drv"
MEM = 128
CMD = "sg.mode=echo sg.work=100 sg.mem=40"
SNAP = T + "/app.snap"
CACHE = T + "/cache"

def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]

def start_drv(name, policy, extra=()):
    d = T + "/" + name
    os.makedirs(d, exist_ok=True)
    args = [DRV, "--vmhost", VMHOST, "--run-dir", d + "/run", "--kernel", G, "--mem", str(MEM),
            "--cmdline", CMD, "--cache-dir", CACHE, "--policy", policy,
            "--ready-file", d + "/ready", "--state-file", d + "/state"] + list(extra)
    if "--no-snapshot" not in extra:
        args += ["--snapshot", SNAP]
    p = subprocess.Popen(args, stdout=open(d + "/log", "w"), stderr=subprocess.STDOUT)
    for _ in range(3000):
        if os.path.exists(d + "/ready"):
            break
        if p.poll() is not None:
            sys.exit("driver %s died: %s" % (name, open(d + "/log").read()))
        time.sleep(0.02)
    port = int(open(d + "/ready").read().split()[1])
    return p, port, d

def state(d):
    for _ in range(100):
        try:
            return json.load(open(d + "/state"))
        except (ValueError, FileNotFoundError):
            time.sleep(0.005)
    return {}

def wait(d, pred, limit=30):
    end = time.time() + limit
    while time.time() < end:
        s = state(d)
        if s.get("instances") is not None and pred(s):
            return s
        time.sleep(0.003)
    sys.exit("timeout in %s: %s" % (d, state(d)))

def wake(port):
    s = socket.socket()
    t0 = time.monotonic_ns()
    s.connect(("127.0.0.1", port))
    s.sendall(b"x\n")
    b = s.recv(16)
    t1 = time.monotonic_ns()
    s.close()
    if b != b"x\n":
        raise SystemExit("bad echo %r" % b)
    return (t1 - t0) / 1e6

def stop(p):
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(20)
    except subprocess.TimeoutExpired:
        p.kill(); p.wait()

results = {}
# Deploy once: boot to first-listen, snapshot (also warms the cache).
p, port, d = start_drv("deploy", "max=1,shells=0")
wake(port)
stop(p)
print("deploy (boot to trigger + snapshot): %s ms; snapshot %.1f MiB"
      % (open(d + "/ready").read().split()[3], os.path.getsize(SNAP) / 2**20))

# warm: an idle running instance.
p, port, d = start_drv("warm", "min=1,max=1,shells=0,idle=0,scaledown=600000")
wait(d, lambda s: s["running"] == 1)
wake(port)
results["warm"] = [wake(port) for _ in range(WAKES)]
stop(p)

# paused resume: idle after 5 ms, never dropped; max 1, so every wake is a
# resume of that one paused instance.
p, port, d = start_drv("resume", "max=1,shells=0,idle=5,scaledown=600000")
wake(port)
xs = []
# The state file lags up to 20 ms: count pauses, never trust a stale "paused".
for k in range(WAKES):
    wait(d, lambda s: s["paused"] == 1 and s["pauses"] >= k + 1)
    xs.append(wake(port))
results["paused resume"] = xs
stop(p)

def from_zero(name, policy, n, counter, extra=(), need_shell=False):
    p, port, d = start_drv(name, policy, extra)
    xs = []
    for k in range(n):
        wait(d, lambda s: s["instances"] == 0 and s["drops"] >= k, 60)
        if need_shell:
            end = time.time() + 10
            while state(d).get("shells_ready", 0) < 1 and time.time() < end:
                time.sleep(0.003)
        xs.append(wake(port))
    s = wait(d, lambda s: s[counter] >= n or s["restores"] + s["cold_boots"] >= n)
    stop(p)
    return xs, s

results["restore (shell)"], s = from_zero("shell", "max=1,shells=1,idle=1,scaledown=1", WAKES,
                                          "shell_restores", need_shell=True)
if s["shell_restores"] < WAKES:
    print("note: %d of %d shell-tier wakes found a ready shell (driver log: %s)"
          % (s["shell_restores"], WAKES, open(T + "/shell/log").read()[-400:]))
results["restore (fresh process)"], s = from_zero("fresh", "max=1,shells=0,idle=1,scaledown=1",
                                                  WAKES, "restores")
assert s["restores"] >= WAKES and s["shell_restores"] == 0, s
results["cold boot"], s = from_zero("cold", "max=1,shells=0,idle=1,scaledown=1", COLD,
                                    "cold_boots", extra=("--no-snapshot",))
assert s["cold_boots"] >= COLD, s

print("\nconnection accepted -> first echo byte (ms), lttle engine, %d wakes per tier" % WAKES)
print("%-26s %9s %9s %9s" % ("tier", "p50", "p99", "max"))
for k, xs in results.items():
    print("%-26s %9.2f %9.2f %9.2f" % (k, pct(xs, 50), pct(xs, 99), max(xs)))

# Density: 20 instances restored from one snapshot with cached memory.
N = 20
procs = []
# One at a time: each restored guest spins while running, so each is paused
# once it has answered (a paused VM keeps all of its memory).
for i in range(N):
    ctl, vs = "%s/d%d.sock" % (T, i), "%s/d%d.vsock" % (T, i)
    pr = subprocess.Popen([VMHOST, "restore", SNAP, "--memory", "cached", "--cache-dir", CACHE,
                           "--vsock", vs, "--control", ctl, "--serial-log", "/dev/null"])
    procs.append((pr, ctl, vs))
    for _ in range(3000):
        if os.path.exists(ctl) and os.path.exists(vs):
            break
        time.sleep(0.01)
    v = socket.socket(socket.AF_UNIX); v.settimeout(60); v.connect(vs)
    v.sendall(b"CONNECT 8080\n")
    buf = b""
    while not buf.startswith(b"OK ") or not buf.endswith(b"\n"):
        buf += v.recv(64)
    v.sendall(b"ping\n")
    buf = b""
    while not buf.endswith(b"ping\n"):
        buf += v.recv(64)
    v.close()
    c = socket.socket(socket.AF_UNIX); c.connect(ctl); c.sendall(b'{"cmd":"pause"}\n'); c.recv(256); c.close()
pss = 0
for pr, ctl, vs in procs:
    for line in open("/proc/%d/smaps_rollup" % pr.pid):
        if line.startswith("Pss:"):
            pss += int(line.split()[1]) * 1024
for pr, ctl, vs in procs:
    pr.kill(); pr.wait()
print("\ndensity: %d instances restored (cached), each answered an echo: total PSS %.1f MiB vs "
      "%d x %d MiB = %d MiB of guest RAM (%.1f%%)" % (N, pss / 2**20, N, MEM, N * MEM,
                                                    100.0 * pss / (N * MEM << 20)))
print("\ntargets:")
def tgt(name, ok, detail):
    print("  [%s] %s: %s" % ("ok" if ok else "MISSED", name, detail))
sh, fr, co, rs = (pct(results[k], 50) for k in ("restore (shell)", "restore (fresh process)",
                                                 "cold boot", "paused resume"))
tgt("shell restore p50 < 3 ms", sh < 3, "%.2f ms" % sh)
tgt("shell restore >= 20x faster than cold boot", co >= 20 * sh, "%.1fx" % (co / sh))
tgt("fresh-process restore p50 < 10 ms", fr < 10, "%.2f ms" % fr)
tgt("paused resume p50 < 1 ms", rs < 1, "%.2f ms" % rs)
print("load average: %s" % open("/proc/loadavg").read().split()[:3])
PY
