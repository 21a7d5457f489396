#!/usr/bin/env bash
# lttle run with the tiny test guest on real KVM: serial console, zero page
# (HdrS, e820, cmdline), guest-device events in order with payloads, and
# every way a guest can end (exit code, halt, reset, poweroff, triple fault)
# plus one that must not end it (idle with interrupts on).
. "$(dirname "$0")/../lib/common.sh"
[ -c /dev/kvm ] && [ -w /dev/kvm ] || skip "no usable /dev/kvm"
G=$LTTLE_BUILD/guest/testguest.elf
[ -f "$G" ] || fail "$G missing (make test-prereqs)"

run_guest() { # run_guest CMDLINE [extra lttle args...]; sets RC, OUT, EV
	local cl=$1; shift
	rm -f "$T/ev.log"
	set +e
	timeout 30 "$LTTLE" run --kernel "$G" --mem 64 --cmdline "$cl" \
		--events-log "$T/ev.log" "$@" >"$T/out" 2>"$T/err"
	RC=$?
	set -e
	OUT=$(cat "$T/out")
	EV=$(cat "$T/ev.log" 2>/dev/null || true)
}

log "serial, zero page, events, exit code"
run_guest "lt.t=hello,events lt.end=exit:7 marker=abc"
assert_eq 7 "$RC" "exit code from the guest's 'exit 7'"
assert_contains "$OUT" "hello from lttle guest" "serial banner"
assert_contains "$OUT" "cmdline: lt.t=hello,events lt.end=exit:7 marker=abc" "cmdline via zero page"
assert_contains "$OUT" "e820 entries 3 ram 65151 KiB" "e820 (64 MiB minus the EBDA/BIOS hole)"
assert_contains "$OUT" "reply: !ok" "guest device reply"
assert_contains "$OUT" "events done" "guest finished the event sequence"
# Events in order with their payloads (the malformed and overlong lines
# are reported / dropped, the rest continue).
got=$(python3 - "$T/ev.log" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    e = json.loads(line)
    keys = [e["event"]] + [str(e[k]) for k in ("reason", "port", "ret", "code", "text") if k in e]
    print(" ".join(keys))
PY
)
want="ready
bind-before 8080
bind-after 8080 0
listen-before 8080
listen-after 8080 0
log hello log
trigger 7
this-is-unknown this-is-unknown 1
malformed listen-after notaport
hold
release
exit 7
poweroff
stopped poweroff 7"
assert_eq "$want" "$got" "event stream"
seqs=$(python3 -c 'import json,sys; print(" ".join(str(json.loads(l).get("seq","")) for l in open(sys.argv[1])))' "$T/ev.log")
assert_eq "1 2 3 4 5 6 7 8 9 10 11 12 13 " "$seqs" "event sequence numbers"

log "coalesced serial output: same bytes, in order, with fewer exits"
exits_of() { python3 -c 'import json,sys; print([json.loads(l) for l in open(sys.argv[1])][-1]["io_exits"])' "$T/ev.log"; }
run_guest "lt.t=hello,events lt.end=exit:7 marker=abc" --no-coalesced-io
assert_eq 7 "$RC" "exit code without coalescing"
plain_out=$OUT
plain_exits=$(exits_of)
run_guest "lt.t=hello,events lt.end=exit:7 marker=abc"
assert_eq "$plain_out" "$OUT" "console output with and without coalescing"
coal_exits=$(exits_of)
bytes=$(printf '%s\n' "$OUT" | wc -c)
log "I/O exits: $plain_exits byte by byte, $coal_exits coalesced ($bytes console bytes)"
[ "$coal_exits" -le $((plain_exits - bytes / 2)) ] ||
	fail "coalescing saved too few exits: $plain_exits -> $coal_exits for $bytes bytes"

# The guest runs its tests in ring 3, which cannot halt; lt.ring0=1 keeps
# it in ring 0 for a real HLT with interrupts off.
log "8250 semantics with coalescing toggled at run time (seccomp on)"
run_guest "lt.t=uart lt.end=exit:0"
assert_eq 0 "$RC" "uart test exit code: $(cat "$T/err")"
assert_contains "$OUT" "uart: plain
uart: with THRI
uart: ok" "uart output in order"

log "halt with interrupts off ends the VM with 0"
run_guest "lt.ring0=1 lt.t=hello lt.end=halt"
assert_eq 0 "$RC" "halt exit code"
assert_contains "$OUT" "halting" "guest reached the halt"
assert_contains "$EV" '"reason":"halt"' "halt reason"
run_guest "lt.ring0=1 lt.end=halt" --cpus 3
assert_eq 0 "$RC" "3-vCPU halt exit code"
assert_contains "$EV" '"reason":"halt"' "halt with APs waiting for SIPI"

log "i8042 reset"
run_guest "lt.end=reset"
assert_eq 0 "$RC" "reset exit code"
assert_contains "$OUT" "resetting" "guest reached the reset"
assert_contains "$EV" '"reason":"reset"' "reset reason"

log "poweroff event"
run_guest "lt.end=poweroff"
assert_eq 0 "$RC" "poweroff exit code"
assert_contains "$EV" '"event":"poweroff"' "poweroff event"
assert_contains "$EV" '"reason":"poweroff"' "poweroff reason"

log "triple fault (exception without an IDT)"
run_guest "lt.end=crash"
assert_eq 0 "$RC" "triple fault is a reset"
assert_contains "$OUT" "crashing" "guest reached the fault"
assert_contains "$EV" '"reason":"reset"' "triple fault reason"

log "exit code from ring 0, then halt"
run_guest "lt.ring0=1 lt.t=hello lt.end=exit:5"
assert_eq 5 "$RC" "ring-0 guest exit code"
assert_contains "$EV" '"reason":"halt"' "halt after exit"

log "idle with interrupts on does not end the VM; SIGTERM does"
set +e
"$LTTLE" run --kernel "$G" --mem 64 --cmdline "lt.t=hello lt.end=idle" >"$T/idle.out" 2>&1 &
pid=$!
sleep 1.5
kill -0 $pid 2>/dev/null || fail "idle guest ended by itself: $(cat "$T/idle.out")"
kill -TERM $pid
wait $pid
rc=$?
set -e
assert_eq 143 "$rc" "exit code after SIGTERM"

log "two vCPUs (APs wait for SIPI), baseline CPU template, serial log file"
run_guest "lt.t=hello lt.end=exit:0" --cpus 2 --cpu-template baseline --serial-log "$T/serial.log"
assert_eq 0 "$RC" "2-vCPU run"
assert_contains "$(cat "$T/serial.log")" "hello from lttle guest" "serial log file"
[ -z "$OUT" ] || fail "console went to stdout despite --serial-log: $OUT"

pass "vmm boot"
