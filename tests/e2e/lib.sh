# Guest-side e2e helpers: the project's kernel + init + a rootfs built by
# `lttle build`, booted under QEMU TCG (microvm). Source after
# tests/lib/common.sh.
#
#   e2e_kernel                  sets KERNEL (vmlinux; `make kernel`, cached)
#   e2e_httpd_image REGISTRY    builds and pushes the busybox httpd test image;
#                               sets IMAGE_REF
#   e2e_prepare_image           kernel + registry + image, pulled into the store
#   e2e_rootfs REF FORMAT OUT   `lttle build` into OUT
#   e2e_boot NAME IMG FORMAT HOSTPORT GUESTPORT [APPEND...]
#                               boots in the background; logs in
#                               $T/NAME.serial and $T/NAME.trig; sets QEMU_PID;
#                               $E2E_QEMU_EXTRA adds QEMU arguments
#   e2e_wait_line FILE REGEX SECONDS [PID]  waits for a line
#   e2e_wait_exit NAME          waits for the VM to end by itself
#   e2e_bench NAME              prints boot timings from the serial log

need qemu-system-x86_64 python3 curl

E2E_MEM=${E2E_MEM:-256}

e2e_kernel() {
	local out
	out=$(make -s -C "$LTTLE_ROOT" kernel 2>"$T/kernel-build.log") ||
		fail "make kernel failed: $(tail -5 "$T/kernel-build.log")"
	KERNEL=$(printf '%s\n' "$out" | tail -1)
	[ -f "$KERNEL" ] || fail "make kernel printed '$KERNEL', which is not a file"
}

# A static busybox httpd image made from the host's busybox-static: a
# non-root user with a supplementary group, env, a workdir the image does
# not contain (init creates it), an entrypoint script that records what
# it runs as into the served tree, then execs the cmd.
e2e_httpd_image() {
	local registry=$1 layout=$T/httpd-layout
	[ -x /bin/busybox ] || skip "busybox-static is not installed"
	python3 - "$T/httpd-layer.tar" <<'PY'
import io, sys, tarfile
out = sys.argv[1]
with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as t:
    def add(name, kind="f", data=b"", mode=0o644, uid=0, gid=0, target=""):
        ti = tarfile.TarInfo(name)
        ti.mtime, ti.uid, ti.gid, ti.mode = 1700000000, uid, gid, mode
        ti.type = {"f": tarfile.REGTYPE, "d": tarfile.DIRTYPE, "l": tarfile.SYMTYPE}[kind]
        ti.linkname = target
        ti.size = len(data) if kind == "f" else 0
        t.addfile(ti, io.BytesIO(data) if kind == "f" else None)
    for d in ("bin", "etc", "srv"):
        add(d, "d", mode=0o755)
    add("bin/busybox", data=open("/bin/busybox", "rb").read(), mode=0o755)
    for a in ("sh", "httpd", "id", "env", "pwd", "sort", "cat", "sleep", "kill", "ls"):
        add("bin/" + a, "l", target="busybox")
    add("etc/passwd", data=b"root:x:0:0:root:/root:/bin/sh\n"
        b"app:x:1000:1000:app:/home/app:/bin/sh\n")
    add("etc/group", data=b"root:x:0:\napp:x:1000:\nweb:x:2000:app\n")
    add("www", "d", mode=0o755, uid=1000, gid=1000)
    add("www/index.html", data=b"hello from lttle\n", uid=1000, gid=1000)
    # /proc/lttle (patched kernel): any user may send trigger/hold/release,
    # only root an exit code.
    add("entry.sh", mode=0o755, data=b"#!/bin/sh\n"
        b"{ echo \"id: $(id)\"; echo \"pwd: $(pwd)\"; env | sort; } > /www/info.txt\n"
        b"echo \"hostname: $(cat /proc/sys/kernel/hostname)\" >> /www/info.txt\n"
        b"cat /etc/hosts /etc/resolv.conf >> /www/info.txt\n"
        b"if [ -e /proc/lttle ] && [ \"$(id -u)\" != 0 ]; then\n"
        b"  echo \"proc: $(cat /proc/lttle)\" >> /www/info.txt\n"
        b"  echo 'trigger 7' > /proc/lttle; echo hold > /proc/lttle; echo release > /proc/lttle\n"
        b"  (echo 'exit 9' > /proc/lttle) 2>/dev/null || echo 'proc-exit: refused' >> /www/info.txt\n"
        b"fi\n"
        b"exec \"$@\"\n")
PY
	python3 "$LTTLE_ROOT/tests/lib/mkimage.py" build "$layout" --tag httpd \
		--layer "$T/httpd-layer.tar:gzip" \
		--env PATH=/bin --env "GREETING=hello from the image" \
		--entrypoint '["/entry.sh"]' --cmd '["httpd","-f","-p","8080","-h","/www"]' \
		--workdir /srv/app --user app --expose 8080/tcp >/dev/null
	IMAGE_REF=$registry/e2e/busybox-httpd:1
	python3 "$LTTLE_ROOT/tests/lib/mkimage.py" push "$layout" httpd "$IMAGE_REF" >/dev/null
}

# Kernel, a local registry holding the httpd image, and that image pulled
# into this test's store: the common start of the guest e2e tests.
e2e_prepare_image() {
	e2e_kernel
	start_registry
	e2e_httpd_image "$REGISTRY"
	"$LTTLE" pull "$IMAGE_REF" >"$T/pull.log" 2>&1 || fail "lttle pull: $(tail -3 "$T/pull.log")"
}

e2e_rootfs() {
	local ref=$1 format=$2 out=$3
	"$LTTLE" build "$ref" --format "$format" -o "$out" >"$T/build-$format.log" 2>&1 ||
		fail "lttle build --format $format: $(tail -3 "$T/build-$format.log")"
	[ -s "$out" ] || fail "lttle build wrote no $out"
}

# Kernel command line: console on the serial port, the rootfs on vda,
# our init, a reset (triple fault) to end the VM, static addressing for
# QEMU user networking.
e2e_append() {
	local format=$1
	local rw=ro
	[ "$format" = ext4 ] && rw=rw
	echo "console=ttyS0 root=/dev/vda $rw rootfstype=$format init=/.lttle/init" \
		"reboot=t panic=-1 ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off:10.0.2.3"
}

e2e_boot() {
	local name=$1 img=$2 format=$3 hostport=$4 guestport=$5
	shift 5
	local serial=$T/$name.serial trig=$T/$name.trig
	: >"$trig"
	bg_start "$serial" qemu-system-x86_64 -accel tcg -M microvm,acpi=off \
		-m "$E2E_MEM" -nographic -nodefaults -no-reboot -no-user-config -serial stdio \
		-kernel "$KERNEL" -append "$(e2e_append "$format") $*" \
		-drive "id=root,file=$img,format=raw,if=none,snapshot=on" \
		-device virtio-blk-device,drive=root \
		-netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$hostport-:$guestport" \
		-device virtio-net-device,netdev=n0 \
		-chardev "file,id=trig,path=$trig" -device isa-debugcon,iobase=0x7f0,chardev=trig \
		${E2E_QEMU_EXTRA:-}
	QEMU_PID=$(cat "$T/last.pid")
}

# e2e_wait_exit NAME: the VM of case NAME must end by itself within 90 s.
e2e_wait_exit() {
	local name=$1 i
	for ((i = 0; i < 900; i++)); do
		kill -0 "$QEMU_PID" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$QEMU_PID" 2>/dev/null; then
		e2e_dump "$name"
		fail "$name: the VM did not end by itself"
	fi
	wait "$QEMU_PID" 2>/dev/null || true
}

# e2e_wait_line FILE REGEX SECONDS [PID]: fails early when PID dies.
e2e_wait_line() {
	local file=$1 re=$2 limit=$3 pid=${4:-} i
	for ((i = 0; i < limit * 10; i++)); do
		grep -qE "$re" "$file" 2>/dev/null && return 0
		if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
			grep -qE "$re" "$file" 2>/dev/null && return 0
			return 1
		fi
		sleep 0.1
	done
	return 1
}

# The trigger stream must hold these lines in this order (others may be
# interleaved).
e2e_assert_order() {
	local file=$1; shift
	python3 - "$file" "$@" <<'PY' || fail "trigger stream $1 lacks, in order: ${*:2}: $(tr '\n' '|' <"$1")"
import sys
lines = open(sys.argv[1], errors="replace").read().splitlines()
i = 0
for want in sys.argv[2:]:
    while i < len(lines) and lines[i] != want:
        i += 1
    if i == len(lines):
        sys.exit(1)
    i += 1
PY
}

e2e_dump() {
	local name=$1
	echo "--- $name serial (tail)" >&2
	tail -40 "$T/$name.serial" >&2 || true
	echo "--- $name trigger stream" >&2
	cat "$T/$name.trig" >&2 || true
}

# Boot timings from the console timestamps: kernel start -> init,
# init -> app exec, exec -> first listen (the kernel hook prints
# "lttle: listen-after", the seccomp hook "lttle-init: listen-after").
e2e_bench() {
	local name=$1
	python3 - "$T/$name.serial" "$name" <<'PY'
import re, sys
ts = {}
for line in open(sys.argv[1], errors="replace"):
    m = re.match(r"\[\s*(\d+\.\d+)\] (.*)", line)
    if not m:
        continue
    t, text = float(m.group(1)), m.group(2)
    if "Run /.lttle/init as init process" in text:
        ts.setdefault("init", t)
    elif "lttle-init: exec " in text:
        ts.setdefault("exec", t)
    elif "listen-after" in text:
        ts.setdefault("listen", t)
if len(ts) == 3:
    print(f"bench {sys.argv[2]}: kernel->init {ts['init']:.3f}s, init->exec "
          f"{ts['exec'] - ts['init']:.3f}s, exec->listen {ts['listen'] - ts['exec']:.3f}s "
          f"(guest clock, QEMU TCG)")
else:
    print(f"bench {sys.argv[2]}: timestamps missing ({sorted(ts)})")
PY
}
