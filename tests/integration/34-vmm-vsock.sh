#!/usr/bin/env bash
# virtio-vsock with the Firecracker-style host side: the host connects to
# the VM's unix socket and says "CONNECT 1234", gets "OK <port>", and the
# guest echoes (upper-cased) what it receives, across several packets; a
# half-close reaches the guest. Then the guest connects to host port 5000,
# which lands on "<uds>_5000".
. "$(dirname "$0")/../lib/common.sh"
[ -c /dev/kvm ] && [ -w /dev/kvm ] || skip "no usable /dev/kvm"
G=$LTTLE_BUILD/guest/testguest.elf
[ -f "$G" ] || fail "$G missing (make test-prereqs)"

UDS=$T/v.sock
"$LTTLE" run --kernel "$G" --mem 64 --vsock "$UDS" --events-log "$T/ev" \
	--cmdline "lt.t=vsock lt.end=exit:0" >"$T/vm.out" 2>&1 &
VM=$!
_BG_PIDS+=($VM)
python3 - "$UDS" "$T/ev" <<'PY' || fail "vsock host side failed: $(cat "$T/vm.out")"
import os, socket, sys, time
uds, ev = sys.argv[1], sys.argv[2]
l = socket.socket(socket.AF_UNIX)
try:
    os.unlink(uds + "_5000")
except FileNotFoundError:
    pass
l.bind(uds + "_5000")
l.listen(1)
t = time.time() + 20
while not (os.path.exists(ev) and "ready" in open(ev).read()):
    if time.time() > t:
        sys.exit("guest never got ready")
    time.sleep(0.02)
# A client with a bad request is refused; the device stays up.
b = socket.socket(socket.AF_UNIX); b.connect(uds)
b.sendall(b"HELLO 1\n")
assert b.makefile("rb").readline().startswith(b"ERR"), "bad request accepted"
s = socket.socket(socket.AF_UNIX)
s.connect(uds)
s.sendall(b"CONNECT 1234\n")
f = s.makefile("rb")
ok = f.readline()
assert ok.startswith(b"OK ") and int(ok[3:]) >= 1024, ok
s.sendall(b"hello vsock\n")
assert f.readline() == b"HELLO VSOCK\n"
big = bytes(ord("a") + i % 26 for i in range(20000)) + b"\n"
s.sendall(big)
assert f.readline() == big.upper(), "big echo differs"
s.shutdown(socket.SHUT_WR)
assert f.read() == b"", "no EOF after the guest closed"
s.close()
l.settimeout(20)
c, _ = l.accept()
assert c.makefile("rb").readline() == b"hello from the guest over vsock\n"
print("ok")
PY
set +e
wait $VM
rc=$?
set -e
assert_eq 0 "$rc" "guest exit code"
out=$(cat "$T/vm.out")
assert_contains "$out" "vsock accepted" "guest accepted the host connection"
assert_contains "$out" "vsock echo closed" "guest saw the half-close"
assert_contains "$out" "vsock connect done" "guest-initiated connection"
pass "vmm virtio-vsock"
