#!/usr/bin/env bash
# The QEMU engine with a real guest under TCG: the static busybox httpd
# image from the guest-side e2e, pulled and built into squashfs by lttle,
# booted with the project's kernel and init. Through the real pool and loop
# (tests/integration/qemu_engine_drv.c):
#   deploy (boot -> first-listen trigger -> snapshot -> stop), cold boot to
#   HTTP, restores to HTTP in fresh QEMUs and into pre-made shells, pause
#   with a connection waiting then resume, kill -9 of QEMU (death reported,
#   instance replaced), a corrupt and a mismatched snapshot (app degraded,
#   cold boot serves), and nothing left running or on disk.
# Then the same restore done by hand with bare QEMU steps (the baseline the
# engine must not be slower than); both sets of numbers are printed.
. "$(dirname "$0")/../lib/common.sh"
. "$LTTLE_ROOT/tests/e2e/lib.sh"

DRV=$LTTLE_BUILD/it/qemu-engine-drv
for f in "$DRV" "$LTTLE_BUILD/lttle-init"; do
	[ -x "$f" ] && continue
	make -s -C "$LTTLE_ROOT" BUILD="$LTTLE_BUILD" "$f" >"$T/make.log" 2>&1 ||
		fail "$f is missing and does not build: $(tail -3 "$T/make.log")"
done
ROUNDS=${QEMU_ENGINE_ROUNDS:-5}

e2e_kernel
start_registry
e2e_httpd_image "$REGISTRY"
"$LTTLE" pull "$IMAGE_REF" >"$T/pull.log" 2>&1 || fail "lttle pull: $(tail -3 "$T/pull.log")"
e2e_rootfs "$IMAGE_REF" squashfs "$T/root.squashfs"
log "kernel $KERNEL, rootfs $(du -h "$T/root.squashfs" | cut -f1) squashfs"

mkdir -p "$T/work"
if ! LTTLE_LOG=info "$DRV" --kernel "$KERNEL" --rootfs "$T/root.squashfs" \
	--rootfs-type squashfs --port 8080 --path /index.html --expect "hello from lttle" \
	--work "$T/work" --rounds 2 >"$T/drv.out" 2>"$T/drv.err"; then
	cat "$T/drv.out"
	tail -40 "$T/drv.err" >&2
	fail "the QEMU engine driver failed"
fi
cat "$T/drv.out"
# The death was reported with QEMU's own exit status, not a guess.
grep -q "died: qemu killed by signal 9" "$T/drv.err" ||
	fail "kill -9 was not reported as 'qemu killed by signal 9': $(grep died "$T/drv.err")"
result=$(grep '^RESULT ' "$T/drv.out") || fail "no RESULT line"

# A daemon killed with its VMs running: the next engine on the same run
# directory kills what was left and removes it.
mkdir -p "$T/orphan"
orph=$("$DRV" --kernel "$KERNEL" --rootfs "$T/root.squashfs" --rootfs-type squashfs \
	--work "$T/orphan" --leave-orphan 2>"$T/orphan.err") || fail "orphan: $(tail -3 "$T/orphan.err")"
pid=$(sed -n 's/^ORPHAN \([0-9]*\)$/\1/p' <<<"$orph")
[ -n "$pid" ] || fail "orphan: no pid in: $orph"
_BG_PIDS+=("$pid")
kill -0 "$pid" 2>/dev/null || fail "orphan: QEMU $pid is not running after its parent died"
"$DRV" --kernel "$KERNEL" --rootfs "$T/root.squashfs" --rootfs-type squashfs \
	--work "$T/orphan" --check-orphan "$pid" 2>"$T/orphan2.err" ||
	fail "orphan cleanup: $(tail -3 "$T/orphan2.err")"
val() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<"$result"; }

# A guest that dies while booting (a rootfs of zeros: the kernel panics):
# the boot fails with the panic as its reason, nothing is left behind.
head -c 4M /dev/zero >"$T/zero.img"
"$DRV" --kernel "$KERNEL" --rootfs "$T/zero.img" --rootfs-type squashfs --work "$T/doomed" \
	--expect-boot-fail >"$T/doomed.out" 2>"$T/doomed.err" ||
	fail "failed boot: $(tail -3 "$T/doomed.err")"
grep -q "instance start failed: .*Kernel panic" "$T/doomed.err" ||
	fail "the failed boot's reason lacks the panic: $(grep 'start failed' "$T/doomed.err")"
cat "$T/doomed.out"

# A guest flooding its console (the app writes 1.3 MB before listening):
# serial.log rotates at 1 MiB, so the disk holds at most two of them.
flood="sh -c 'busybox yes 0123456789012345678901234567890123456789012345678901234567890123 | busybox head -c 1300000; exec httpd -f -p 8080 -h /www'"
"$DRV" --kernel "$KERNEL" --rootfs "$T/root.squashfs" --rootfs-type squashfs --work "$T/chatty" \
	--cmdline "\"lttle.cmd=$flood\"" --console-check 1300000 >"$T/chatty.out" 2>"$T/chatty.err" ||
	fail "console flood: $(tail -3 "$T/chatty.err")"
cat "$T/chatty.out"

# ---- side by side with bare QEMU steps -----------------------------------
# The baseline: the same restore by hand, with QEMU's exec: migration and
# the zstd CLI, QMP driven directly, the same machine and kernel command
# line. Rounds alternate engine (the driver's --bench on the snapshot made
# above) and bare, so both see the same load on this shared machine.
python3 - "$KERNEL" "$T/root.squashfs" "$T/bare" "$ROUNDS" "$DRV" "$T/work/app.qsnap" \
	>"$T/bare.out" 2>"$T/bare.err" <<'PY' ||
import json, os, re, socket, statistics, subprocess, sys, time, urllib.request
kernel, rootfs, work, rounds, drv, qsnap = sys.argv[1:7]
rounds = int(rounds)
os.makedirs(work, exist_ok=True)
append = ("console=ttyS0 reboot=t panic=-1 quiet root=/dev/vda ro init=/.lttle/init "
          "rootfstype=squashfs ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off:10.0.2.3 "
          "lttle.ports=8080")
def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
class VM:
    def __init__(self, incoming):
        self.port = free_port()
        q, qc = socket.socketpair(); t, tc = socket.socketpair()
        args = ["qemu-system-x86_64", "-M", "microvm,acpi=off", "-accel", "tcg",
                "-nodefaults", "-no-user-config", "-no-reboot", "-display", "none",
                "-m", "256M", "-smp", "1", "-kernel", kernel, "-append", append,
                "-drive", f"if=none,id=root,file={rootfs},format=raw,readonly=on",
                "-device", "virtio-blk-device,drive=root",
                "-netdev", f"user,id=n0,restrict=off,hostfwd=tcp:127.0.0.1:{self.port}-:8080",
                "-device", "virtio-net-device,netdev=n0",
                "-chardev", f"socket,id=trig,fd={tc.fileno()}",
                "-device", "isa-debugcon,iobase=0x7f0,chardev=trig",
                "-chardev", f"socket,id=qmp,fd={qc.fileno()}",
                "-mon", "chardev=qmp,mode=control", "-serial", f"file:{work}/serial.log"]
        if incoming:
            args += ["-S", "-incoming", "defer"]
        self.p = subprocess.Popen(args, pass_fds=(qc.fileno(), tc.fileno()))
        qc.close(); tc.close()
        self.q, self.t, self.f, self.id = q, t, q.makefile("rb"), 0
        self.f.readline()
        self.cmd("qmp_capabilities")
        self.cmd("migrate-set-capabilities",
                 capabilities=[{"capability": "events", "state": True}])
    def cmd(self, c, **a):
        self.id += 1
        self.q.sendall(json.dumps({"execute": c, "arguments": a, "id": self.id}).encode() + b"\n")
        while True:
            m = json.loads(self.f.readline())
            if m.get("id") == self.id:
                if "error" in m:
                    raise SystemExit(f"{c}: {m['error']}")
                return m
    def wait_migration(self):
        while True:
            m = json.loads(self.f.readline())
            if m.get("event") == "MIGRATION" and m["data"]["status"] in ("completed", "failed"):
                if m["data"]["status"] != "completed":
                    raise SystemExit("migration failed")
                return
    def http(self):
        while True:
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{self.port}/index.html",
                                              timeout=10).read()
            except OSError:
                time.sleep(0.005)
    def kill(self):
        self.p.kill(); self.p.wait()
    def restore(self, snap):
        self.cmd("migrate-incoming", uri=f"exec:zstd -dc {snap}")
        self.wait_migration(); self.cmd("cont")
        assert b"hello from lttle" in self.http()
snap = f"{work}/snap.zst"
vm = VM(False)
buf = b""
while b"listen-after 8080 0" not in buf:
    d = vm.t.recv(4096)
    if not d:
        raise SystemExit("guest never listened")
    buf += d
vm.cmd("stop")
vm.cmd("migrate-set-parameters", **{"max-bandwidth": 1 << 40})
vm.cmd("migrate", uri=f"exec:zstd -q -T0 -3 -f -o {snap}")
vm.wait_migration()
vm.kill()
time.sleep(0.5)  # exec: gives no way to wait for zstd itself
res = {k: [] for k in ("bare_fresh", "bare_shell", "eng_fresh", "eng_shell")}
for r in range(rounds):
    bench_work = f"{work}/eng{r}"
    os.makedirs(bench_work)
    out = subprocess.run([drv, "--kernel", kernel, "--rootfs", rootfs, "--rootfs-type",
                          "squashfs", "--path", "/index.html", "--expect", "hello from lttle",
                          "--work", bench_work, "--bench", qsnap],
                         capture_output=True, text=True)
    m = re.search(r"BENCH fresh_ms=(\d+) shell_ms=(\d+)", out.stdout)
    if out.returncode or not m:
        raise SystemExit(f"driver --bench failed: {out.stderr[-500:]}")
    res["eng_fresh"].append(int(m.group(1))); res["eng_shell"].append(int(m.group(2)))
    t0 = time.monotonic()
    vm = VM(True)
    vm.restore(snap)
    res["bare_fresh"].append((time.monotonic() - t0) * 1000)
    vm.kill()
    vm = VM(True)
    time.sleep(0.3)
    t0 = time.monotonic()
    vm.restore(snap)
    res["bare_shell"].append((time.monotonic() - t0) * 1000)
    vm.kill()
print("SIDE " + " ".join(f"{k}={statistics.median(v):.0f}" for k, v in res.items()) + " " +
      " ".join(f"{k}_all={[round(x) for x in v]}" for k, v in res.items()))
PY
	fail "side-by-side run failed: $(tail -5 "$T/bare.err")"
cat "$T/bare.out"
side=$(grep '^SIDE ' "$T/bare.out")
sval() { sed -n "s/.* $1=\([0-9]*\) .*/\1/p" <<<" $side "; }

cold=$(val cold_http_ms)
ef=$(sval eng_fresh) es=$(sval eng_shell) bf=$(sval bare_fresh) bs=$(sval bare_shell)
echo "QEMU engine under TCG: cold boot to first HTTP ${cold} ms; snapshot $(val snapshot_ms) ms," \
	"$(($(val snapshot_bytes) / 1024)) KiB"
echo "restore to first HTTP, medians of $ROUNDS alternating rounds:" \
	"engine ${ef} ms fresh / ${es} ms shell; bare QEMU steps ${bf} ms fresh / ${bs} ms shell"
# Not slower than the bare steps (a margin for this shared machine's noise),
# and restoring beats booting.
[ "$ef" -le $((bf * 5 / 4 + 40)) ] || fail "engine restore ${ef} ms is slower than bare QEMU's ${bf} ms"
[ "$es" -le $((bs * 5 / 4 + 40)) ] || fail "engine shell restore ${es} ms is slower than bare QEMU's ${bs} ms"
[ "$ef" -lt "$cold" ] || fail "restore (${ef} ms) is not faster than a cold boot (${cold} ms)"
pass "QEMU engine: deploy, cold, restore, shells, pause/resume, death, bad snapshots"
