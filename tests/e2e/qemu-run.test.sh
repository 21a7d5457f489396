#!/usr/bin/env bash
# tests/e2e/qemu-run.sh, the interface other tools use to boot an image
# from the store under QEMU: READY line once the app listens, HTTP through
# the printed address, a clean stop when killed (no QEMU left behind), and
# a non-zero exit with the serial tail when the guest dies first.
. "$(dirname "$0")/../lib/common.sh"
. "$(dirname "$0")/lib.sh"

RUN=$LTTLE_ROOT/tests/e2e/qemu-run.sh
e2e_prepare_image

# Usage errors come before any work.
expect_fail "no args" bash "$RUN"
expect_fail "bad format" bash "$RUN" "$IMAGE_REF" 8080 --format vfat
assert_contains "$(cat "$T/err")" "ext4 or squashfs" "format error"

# squashfs here (guest-ext4 covers ext4 boots).
bg_start "$T/run.out" bash "$RUN" "$IMAGE_REF" 8080 --format squashfs
run_pid=$(cat "$T/last.pid")
e2e_wait_line "$T/run.out" '^READY 127\.0\.0\.1:[0-9]+$' 120 "$run_pid" ||
	fail "no READY line: $(tail -20 "$T/run.out")"
addr=$(grep -m1 '^READY ' "$T/run.out" | cut -d' ' -f2)
assert_eq "hello from lttle" "$(curl -sf -m 20 "http://$addr/index.html")" "HTTP through $addr"
qemu_pids=$(pgrep -P "$run_pid" -f qemu-system-x86_64 || true)
[ -n "$qemu_pids" ] || fail "no QEMU child under qemu-run.sh"
kill "$run_pid"
for ((i = 0; i < 100; i++)); do kill -0 "$run_pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$run_pid" 2>/dev/null && fail "qemu-run.sh still running after SIGTERM"
for p in $qemu_pids; do
	kill -0 "$p" 2>/dev/null && fail "QEMU $p outlived qemu-run.sh"
done

# An image whose app exits at once: qemu-run.sh must fail and show why.
python3 "$LTTLE_ROOT/tests/lib/mkimage.py" build "$T/httpd-layout" --tag quits \
	--layer "$T/httpd-layer.tar:gzip" --env PATH=/bin \
	--cmd '["sh","-c","echo app-gives-up; exit 3"]' >/dev/null
python3 "$LTTLE_ROOT/tests/lib/mkimage.py" push "$T/httpd-layout" quits "$REGISTRY/e2e/quits:1" >/dev/null
"$LTTLE" pull "$REGISTRY/e2e/quits:1" >>"$T/pull.log" 2>&1 || fail "lttle pull quits"
if bash "$RUN" "$REGISTRY/e2e/quits:1" 8080 >"$T/quits.out" 2>"$T/quits.err"; then
	fail "qemu-run.sh succeeded for a guest that exits"
fi
assert_eq "" "$(cat "$T/quits.out")" "no READY for a guest that never listens"
assert_contains "$(cat "$T/quits.err")" "the guest ended before listening on 8080" "death message"
assert_contains "$(cat "$T/quits.err")" "app-gives-up" "serial tail"
assert_contains "$(cat "$T/quits.err")" "app exited with 3" "serial tail"
pass "qemu-run.sh: READY, HTTP, clean stop, guest death reported"
