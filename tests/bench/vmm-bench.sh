#!/usr/bin/env bash
# make bench-vmm: the lttle VMM with the tiny test guest, beside QEMU
# (-M microvm) running the same guest (entered through its PVH note).
#   - process start -> first serial byte (median of N runs)
#   - VM-exit round trip: port writes from the guest, (t(N) - t(0)) / N
#   - pause -> resume latency through the control socket (VMM-measured
#     and client round trip); QEMU: QMP stop/cont round trip
#   - RSS overhead: process RSS minus the guest RAM mapping's RSS
# Targets: start-to-first-byte < 10 ms, VMM overhead < 5 MiB RSS.
# Where QEMU cannot run the guest with KVM (nested hosts that emulate
# guest ring 0 break its firmware), QEMU is measured with TCG and says so.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
LTTLE=${LTTLE_BIN:-$ROOT/$BUILD/lttle}
VMM=$(dirname "$LTTLE")/lttle-vmm
GUEST=$ROOT/$BUILD/guest/testguest.elf
RUNS=${RUNS:-20}
[ -x "$LTTLE" ] && [ -x "$VMM" ] && [ -f "$GUEST" ] || { echo "build first: make BUILD=$BUILD all" >&2; exit 1; }
[ -w /dev/kvm ] || { echo "skipped: no usable /dev/kvm"; exit 77; }
QEMU=$(command -v qemu-system-x86_64 || true)

python3 - "$LTTLE" "$GUEST" "$RUNS" "$QEMU" "$VMM" <<'PY'
import json, os, re, socket, statistics, subprocess, sys, tempfile, time

lttle, guest, runs, qemu, vmm = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
tmp = tempfile.mkdtemp(prefix="lttle-bench.")

def lttle_cmd(cmdline, *extra):
    """The VMM process itself (what `lttle run` execs, and ignitiond spawns)."""
    return [vmm, "--kernel", guest, "--mem", "64", "--cmdline", cmdline, *extra]

def cli_cmd(cmdline):
    return [lttle, "run", "--kernel", guest, "--mem", "64", "--cmdline", cmdline]

QEMU_ACCEL = None
def qemu_cmd(cmdline, accel, *extra):
    return [qemu, "-M", "microvm,isa-serial=on", "-accel", accel,
            *(["-cpu", "host,-arch-capabilities"] if accel == "kvm" else []),
            "-m", "64", "-nographic", "-nodefaults", "-serial", "stdio", "-no-reboot",
            "-kernel", guest, "-append", cmdline, *extra]

def first_byte(cmd):
    """Seconds from spawning cmd to its first stdout byte, and to exit."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         stdin=subprocess.DEVNULL)
    b = p.stdout.read(1)
    t1 = time.perf_counter()
    p.stdout.read()
    p.wait()
    t2 = time.perf_counter()
    return (t1 - t0 if b else None), t2 - t0

def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None

def fmt_ms(x):
    return "n/a" if x is None else "%.2f ms" % (x * 1e3)

def rss_overhead(pid, guest_bytes):
    """Total RSS minus the RSS of the guest-RAM mapping (the largest
    anonymous mapping of guest_bytes)."""
    total = guest = 0
    cur_size = 0
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) ", line)
            if m:
                cur_size = int(m.group(2), 16) - int(m.group(1), 16)
                continue
            if line.startswith("Rss:"):
                kb = int(line.split()[1])
                total += kb
                if cur_size == guest_bytes:
                    guest += kb
    return total, guest

results = {}

# ---- lttle ----------------------------------------------------------------
fb = [first_byte(lttle_cmd("lt.t=hello lt.end=exit:0")) for _ in range(runs)]
results["lttle_first_byte"] = med([f for f, _ in fb])
results["lttle_total"] = med([t for _, t in fb])
results["cli_first_byte"] = med([first_byte(cli_cmd("lt.t=hello lt.end=exit:0"))[0] for _ in range(runs)])
results["baseline"] = med([first_byte(["/bin/echo", "x"])[0] for _ in range(runs)])

N = 200000
t0 = med([first_byte(lttle_cmd("lt.t=pio lt.pio=0 lt.end=exit:0"))[1] for _ in range(5)])
tN = med([first_byte(lttle_cmd("lt.t=pio lt.pio=%d lt.end=exit:0" % N))[1] for _ in range(5)])
results["lttle_exit_rt"] = (tN - t0) / N

ctl = os.path.join(tmp, "ctl.sock")
p = subprocess.Popen(lttle_cmd("lt.t=hello lt.end=idle", "--control", ctl),
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
for _ in range(200):
    if os.path.exists(ctl):
        break
    time.sleep(0.01)
time.sleep(0.3)
s = socket.socket(socket.AF_UNIX); s.connect(ctl); f = s.makefile("rb")
def cmd(c):
    s.sendall(json.dumps({"cmd": c}).encode() + b"\n")
    return json.loads(f.readline())
pz, rz, rt = [], [], []
for _ in range(100):
    a = time.perf_counter()
    pz.append(cmd("pause")["pause_ns"] / 1e9)
    rz.append(cmd("resume")["resume_ns"] / 1e9)
    rt.append(time.perf_counter() - a)
results["lttle_pause"] = med(pz)
results["lttle_resume"] = med(rz)
results["lttle_pause_resume_rt"] = med(rt)
tot, g = rss_overhead(p.pid, 64 << 20)
results["lttle_rss_total_kib"] = tot
results["lttle_rss_guest_kib"] = g
cmd("stop")
p.wait()

# ---- QEMU -----------------------------------------------------------------
qres = {}
if qemu:
    for accel in ("kvm", "tcg"):
        f1, _ = first_byte(qemu_cmd("lt.t=hello lt.end=crash", accel))
        if f1 is not None:
            QEMU_ACCEL = accel
            break
if QEMU_ACCEL:
    fb = [first_byte(qemu_cmd("lt.t=hello lt.end=crash", QEMU_ACCEL)) for _ in range(max(3, runs // 4))]
    qres["first_byte"] = med([x for x, _ in fb])
    n = 20000
    t0 = med([first_byte(qemu_cmd("lt.t=pio lt.pio=0 lt.end=crash", QEMU_ACCEL))[1] for _ in range(3)])
    tN = med([first_byte(qemu_cmd("lt.t=pio lt.pio=%d lt.end=crash" % n, QEMU_ACCEL))[1] for _ in range(3)])
    qres["exit_rt"] = (tN - t0) / n
    qmp = os.path.join(tmp, "qmp.sock")
    p = subprocess.Popen(qemu_cmd("lt.t=hello lt.end=spin", QEMU_ACCEL, "-qmp",
                                  "unix:%s,server=on,wait=off" % qmp),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        if os.path.exists(qmp):
            break
        time.sleep(0.01)
    time.sleep(0.5)
    q = socket.socket(socket.AF_UNIX); q.connect(qmp); qf = q.makefile("rb")
    qf.readline()
    def qcmd(c):
        q.sendall(json.dumps({"execute": c}).encode())
        while True:
            r = json.loads(qf.readline())
            if "return" in r or "error" in r:
                return r
    qcmd("qmp_capabilities")
    rt = []
    for _ in range(50):
        a = time.perf_counter()
        qcmd("stop"); qcmd("cont")
        rt.append(time.perf_counter() - a)
    qres["pause_resume_rt"] = med(rt)
    tot, g = rss_overhead(p.pid, 64 << 20)
    qres["rss_total_kib"], qres["rss_guest_kib"] = tot, g
    qcmd("quit")
    p.wait()

# ---- report ---------------------------------------------------------------
ov = (results["lttle_rss_total_kib"] - results["lttle_rss_guest_kib"]) / 1024
print("lttle VMM, tiny guest (64 MiB), %d runs" % runs)
print("  start -> first serial byte  %s   (target < 10 ms; lttle-vmm process; spawning /bin/echo to its output: %s)"
      % (fmt_ms(results["lttle_first_byte"]), fmt_ms(results["baseline"])))
print("  via the CLI (lttle run)     %s   (adds the dynamically linked lttle's start + exec)"
      % fmt_ms(results["cli_first_byte"]))
print("  VM-exit round trip (PIO)    %.2f us" % (results["lttle_exit_rt"] * 1e6))
print("  pause / resume              %s / %s (VMM-measured), %s control round trip for both"
      % (fmt_ms(results["lttle_pause"]), fmt_ms(results["lttle_resume"]),
         fmt_ms(results["lttle_pause_resume_rt"])))
print("  RSS                         %.2f MiB total, %.2f MiB guest RAM, %.2f MiB VMM overhead (target < 5 MiB)"
      % (results["lttle_rss_total_kib"] / 1024, results["lttle_rss_guest_kib"] / 1024, ov))
if QEMU_ACCEL:
    note = "" if QEMU_ACCEL == "kvm" else " -- TCG: QEMU's firmware/PVH entry cannot run under this host's KVM (guest ring 0 is emulated)"
    print("QEMU microvm (%s), same guest via its PVH note%s" % (QEMU_ACCEL, note))
    print("  start -> first serial byte  %s" % fmt_ms(qres["first_byte"]))
    if QEMU_ACCEL == "kvm":
        print("  VM-exit round trip (PIO)    %.2f us" % (qres["exit_rt"] * 1e6))
    else:
        print("  VM-exit round trip (PIO)    n/a (TCG has no VM exits)")
    print("  stop / cont (QMP)           %s round trip for both" % fmt_ms(qres["pause_resume_rt"]))
    print("  RSS                         %.2f MiB total, %.2f MiB guest RAM, %.2f MiB overhead"
          % (qres["rss_total_kib"] / 1024, qres["rss_guest_kib"] / 1024,
             (qres["rss_total_kib"] - qres["rss_guest_kib"]) / 1024))
else:
    print("QEMU: not measured (%s)" % ("qemu-system-x86_64 not installed" if not qemu
                                      else "the guest produced no output under KVM or TCG"))
ok = results["lttle_first_byte"] is not None and results["lttle_first_byte"] < 0.010 and ov < 5
print("targets: %s" % ("met" if ok else "NOT met"))
PY
