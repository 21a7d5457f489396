#!/usr/bin/env bash
# Pause/resume through the control socket keeps the guest's progress: a
# counting guest stops printing while paused and continues from exactly
# where it was. Also: status, the event stream, hostile control input
# (bad JSON, unknown commands, overlong lines) and stop.
. "$(dirname "$0")/../lib/common.sh"
[ -c /dev/kvm ] && [ -w /dev/kvm ] || skip "no usable /dev/kvm"
G=$LTTLE_BUILD/guest/testguest.elf
[ -f "$G" ] || fail "$G missing (make test-prereqs)"

CTL=$T/ctl.sock
"$LTTLE" run --kernel "$G" --mem 64 --control "$CTL" --serial-log "$T/serial" \
	--cmdline "lt.t=count lt.count=4000000000 lt.every=2000 lt.spin=2000" \
	>"$T/run.out" 2>&1 &
VM=$!
_BG_PIDS+=($VM)

python3 - "$CTL" "$T/serial" <<'PY' || fail "control-channel checks failed"
import json, os, re, socket, sys, time
ctl, serial = sys.argv[1], sys.argv[2]

def counts():
    try:
        return [int(x) for x in re.findall(r"^count (\d+)\n", open(serial).read(), re.M)]
    except FileNotFoundError:
        return []

def wait(pred, what, limit=20):
    t = time.time() + limit
    while time.time() < t:
        if pred():
            return
        time.sleep(0.02)
    sys.exit("timeout waiting for " + what)

class Conn:
    def __init__(self):
        self.s = socket.socket(socket.AF_UNIX)
        self.s.connect(ctl)
        self.f = self.s.makefile("rb")
    def send(self, raw):
        self.s.sendall(raw)
    def cmd(self, c):
        self.send(json.dumps({"cmd": c}).encode() + b"\n")
        return json.loads(self.f.readline())
    def line(self):
        return json.loads(self.f.readline())

wait(lambda: os.path.exists(ctl), "control socket")
wait(lambda: len(counts()) >= 3, "the guest to count")
ev = Conn()
assert ev.cmd("events") == {"ok": True, "subscribed": True}
c = Conn()
st = c.cmd("status")
assert st["ok"] and st["state"] == "running" and st["vcpus"] == 1, st

# Latency: median of repeated cycles (the machine may be busy).
lat = []
for _ in range(21):
    r = c.cmd("pause"); assert r["ok"], r
    lat.append(r["pause_ns"])
    assert c.cmd("resume")["ok"]
lat.sort()
print("pause median %.3f ms, max %.3f ms" % (lat[10] / 1e6, lat[-1] / 1e6))
assert lat[10] < 5e6, lat

# resume returns before the vCPU threads leave their park: a pause that
# follows at once must still find every vCPU parked, and the guest must
# never hang or lose its place.
for _ in range(300):
    assert c.cmd("resume")["ok"]
    assert c.cmd("pause")["ok"]
    assert c.cmd("status")["state"] == "paused"
assert c.cmd("resume")["ok"]
before = len(counts())
wait(lambda: len(counts()) > before + 2, "progress after 300 back-to-back cycles")

r = c.cmd("pause")
assert r["ok"], r
time.sleep(0.05)                      # output already in flight drains
frozen = counts()
time.sleep(0.5)
assert counts() == frozen, "guest made progress while paused"
assert c.cmd("status")["state"] == "paused"
assert c.cmd("pause")["ok"]           # idempotent

r = c.cmd("resume")
assert r["ok"], r
print("resume took %.3f ms" % (r["resume_ns"] / 1e6))
wait(lambda: len(counts()) > len(frozen) + 2, "progress after resume")
after = counts()
# Continues exactly where it was: consecutive multiples of 2000.
assert after[:len(frozen)] == frozen
assert all(b - a == 2000 for a, b in zip(after, after[1:])), after[len(frozen)-2:len(frozen)+3]

# Hostile input: answered with errors, channel and VM stay up.
c.send(b"{not json\n")
r = c.line(); assert r["ok"] is False and "bad JSON" in r["error"], r
c.send(b'{"cmd": 5}\n')
r = c.line(); assert r["ok"] is False, r
c.send(b'{"cmd": "reboot-the-world"}\n')
r = c.line(); assert r == {"ok": False, "error": "unknown command"}, r
c.send(b'[1,2,3]\n')
r = c.line(); assert r["ok"] is False, r
bad = Conn()
bad.send(b"x" * 4096)
r = bad.line(); assert r["error"] == "line too long", r
assert bad.f.readline() == b"", "overlong client not disconnected"
assert Conn().cmd("status")["state"] == "running"

names = []
while len(names) < 44:
    names.append(ev.line()["event"])
assert names == ["paused", "resumed"] * 22, names
r = c.cmd("stop")
assert r == {"ok": True}, r
while True:
    e = ev.line()
    if e["event"] == "stopped":
        assert e["reason"] == "stopped", e
        break
print("ok")
PY
set +e
wait $VM
rc=$?
set -e
assert_eq 0 "$rc" "exit code after a control stop"
pass "vmm pause/resume and control channel"
