#!/usr/bin/env bash
# virtio-net on a TAP device, inside a network namespace this test makes
# (needs CAP_NET_ADMIN + CAP_SYS_ADMIN). The guest broadcasts an ethertype
# 0x88b5 frame; the host side (AF_PACKET on the TAP) answers with one the
# guest prints. No IP traffic at all.
. "$(dirname "$0")/../lib/common.sh"
[ -c /dev/kvm ] && [ -w /dev/kvm ] || skip "no usable /dev/kvm"
G=$LTTLE_BUILD/guest/testguest.elf
[ -f "$G" ] || fail "$G missing (make test-prereqs)"
need unshare ip
unshare -n true 2>/dev/null || skip "cannot create a network namespace here"
[ -c /dev/net/tun ] || skip "no /dev/net/tun"

cat >"$T/inns.sh" <<'SH'
L=$1 G=$2 T=$3
ip link set lo up
"$L" run --kernel "$G" --mem 64 --tap lttap0 --cmdline "lt.t=net lt.end=exit:0" >"$T/vm.out" 2>&1 &
vm=$!
for i in $(seq 200); do [ -e /sys/class/net/lttap0 ] && break; sleep 0.05; done
ip link set lttap0 up || exit 3
python3 - <<'PY' || exit 4
import socket
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x88b5))
s.bind(("lttap0", 0))
s.settimeout(20)
while True:
    f = s.recv(2000)
    if f[12:14] == b"\x88\xb5" and b"lttle-net-ping" in f:
        assert f[0:6] == b"\xff" * 6, "not a broadcast"
        s.send(f[6:12] + b"\x02\x00\x00\x00\x00\x01\x88\xb5" + b"lttle-net-pong" + b"\0" * 32)
        break
PY
wait $vm
SH
set +e
timeout 60 unshare -n bash "$T/inns.sh" "$LTTLE" "$G" "$T"
rc=$?
set -e
out=$(cat "$T/vm.out" 2>/dev/null || true)
assert_eq 0 "$rc" "VM in the namespace (output: $out)"
assert_contains "$out" "net mac 0000061e" "MAC from the config space"
assert_contains "$out" "net rx: lttle-net-pong" "frame from the host reached the guest"
pass "vmm virtio-net"
