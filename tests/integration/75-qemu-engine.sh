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
ROUNDS=${QEMU_ENGINE_ROUNDS:-3}

e2e_kernel
start_registry
e2e_httpd_image "$REGISTRY"
"$LTTLE" pull "$IMAGE_REF" >"$T/pull.log" 2>&1 || fail "lttle pull: $(tail -3 "$T/pull.log")"
e2e_rootfs "$IMAGE_REF" squashfs "$T/root.squashfs"
log "kernel $KERNEL, rootfs $(du -h "$T/root.squashfs" | cut -f1) squashfs"

mkdir -p "$T/work"
if ! LTTLE_LOG=info "$DRV" --kernel "$KERNEL" --rootfs "$T/root.squashfs" \
	--rootfs-type squashfs --port 8080 --path /index.html --expect "hello from lttle" \
	--work "$T/work" --rounds "$ROUNDS" >"$T/drv.out" 2>"$T/drv.err"; then
	cat "$T/drv.out"
	tail -40 "$T/drv.err" >&2
	fail "the QEMU engine driver failed"
fi
cat "$T/drv.out"
# The death was reported with QEMU's own exit status, not a guess.
grep -q "died: qemu killed by signal 9" "$T/drv.err" ||
	fail "kill -9 was not reported as 'qemu killed by signal 9': $(grep died "$T/drv.err")"
result=$(grep '^RESULT ' "$T/drv.out") || fail "no RESULT line"
val() { sed -n "s/.* $1=\([0-9]*\).*/\1/p" <<<"$result"; }

# ---- the baseline: the same restore with bare QEMU steps -----------------
# QEMU's exec: migration with the zstd CLI, QMP by hand, same machine and
# kernel command line as the engine uses.
python3 - "$KERNEL" "$T/root.squashfs" "$T/bare" "$ROUNDS" >"$T/bare.out" 2>"$T/bare.err" <<'PY' ||
import json, os, socket, statistics, subprocess, sys, time, urllib.request
kernel, rootfs, work, rounds = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
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
fresh, shell = [], []
for r in range(rounds):
    t0 = time.monotonic()
    vm = VM(True)
    vm.cmd("migrate-incoming", uri=f"exec:zstd -dc {snap}")
    vm.wait_migration(); vm.cmd("cont")
    assert b"hello from lttle" in vm.http()
    fresh.append((time.monotonic() - t0) * 1000)
    vm.kill()
    vm = VM(True)
    time.sleep(0.3)
    t0 = time.monotonic()
    vm.cmd("migrate-incoming", uri=f"exec:zstd -dc {snap}")
    vm.wait_migration(); vm.cmd("cont")
    assert b"hello from lttle" in vm.http()
    shell.append((time.monotonic() - t0) * 1000)
    vm.kill()
print(f"BARE fresh_ms_median={statistics.median(fresh):.0f} "
      f"shell_ms_median={statistics.median(shell):.0f} "
      f"fresh={[round(x) for x in fresh]} shell={[round(x) for x in shell]}")
PY
	fail "bare QEMU baseline failed: $(tail -5 "$T/bare.err")"
cat "$T/bare.out"
bare=$(grep '^BARE ' "$T/bare.out")
bval() { sed -n "s/.* \?$1=\([0-9]*\).*/\1/p" <<<"$bare"; }

cold=$(val cold_http_ms) restore=$(val restore_http_ms_median) shellr=$(val shell_http_ms_median)
bfresh=$(bval fresh_ms_median) bshell=$(bval shell_ms_median)
echo "QEMU engine under TCG: cold boot to first HTTP ${cold} ms;" \
	"restore to first HTTP ${restore} ms (fresh QEMU), ${shellr} ms (pre-made shell);" \
	"snapshot $(val snapshot_ms) ms, $(($(val snapshot_bytes) / 1024)) KiB"
echo "bare QEMU steps, same run: restore to first HTTP ${bfresh} ms (fresh), ${bshell} ms (shell)"
# Not slower than the bare steps (a margin for this shared machine's noise),
# and restoring beats booting.
[ "$restore" -le $((bfresh * 3 / 2 + 60)) ] ||
	fail "engine restore ${restore} ms is slower than bare QEMU's ${bfresh} ms"
[ "$shellr" -le $((bshell * 3 / 2 + 60)) ] ||
	fail "engine shell restore ${shellr} ms is slower than bare QEMU's ${bshell} ms"
[ "$restore" -lt "$cold" ] || fail "restore (${restore} ms) is not faster than a cold boot (${cold} ms)"
pass "QEMU engine: deploy, cold, restore, shells, pause/resume, death, bad snapshots"
