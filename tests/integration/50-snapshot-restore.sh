#!/usr/bin/env bash
# Snapshots of real VMs on this machine's KVM with the tiny snapguest: a
# guest that fills memory with a data set, counts and reports "trigger t"
# is captured at its first trigger (lttle run --snapshot-on manual) and
# restored in separate processes with each memory strategy (eager, lazy,
# cached). The restored guest must continue exactly there: it sees the
# "!restored" reply to the report it was captured at, its counter and all
# of its memory are intact (it regenerates the data set and compares every
# byte), the next triggers arrive, serial goes on, nothing is replayed.
# Also: several cached restores of one snapshot at once, each its own VM;
# lttle snapshot on request (at a waiting trigger and mid-run); working-set
# recording; damaged snapshots refused before any VM runs.
. "$(dirname "$0")/../lib/common.sh"
[ -c /dev/kvm ] && [ -w /dev/kvm ] || skip "no usable /dev/kvm"
G=$LTTLE_BUILD/guest/snapguest.elf
[ -f "$G" ] || fail "$G missing (make test-prereqs)"
need python3

CACHE=$T/cache
CMD="sg.mem=16 sg.triggers=4 sg.exit=7"

log "capture at the first trigger"
"$LTTLE" run --kernel "$G" --mem 256 --cmdline "$CMD" --snapshot-on manual \
	--snapshot-out "$T/s1.snap" --serial-log "$T/boot.serial" --events-log "$T/boot.ev" \
	>"$T/boot.out" 2>&1 || fail "lttle run: $(cat "$T/boot.out")"
[ -s "$T/s1.snap" ] || fail "no snapshot written"
grep -q '^count 1$' "$T/boot.serial" || fail "guest did not reach count 1"
! grep -q '^count 2$' "$T/boot.serial" || fail "the VM ran past the trigger"
MEMSUM=$(sed -n 's/^memsum //p' "$T/boot.serial")
[ -n "$MEMSUM" ] || fail "no memsum"
grep -q '"event":"snapshot".*"ok":true' "$T/boot.ev" || fail "no snapshot event"
size=$(stat -c %s "$T/s1.snap")
# 256 MiB guest, 16 MiB of partly compressible data: sparse and compressed.
[ "$size" -lt $((12 * 1024 * 1024)) ] || fail "snapshot is $size bytes"
log "snapshot: $size bytes for a 256 MiB guest"

check_restored() { # SERIAL EVENTS WHAT
	local s=$1 e=$2 what=$3
	grep -q '^restored at 1 entropy [0-9a-f]\{16\}$' "$s" || fail "$what: no restored line: $(head -c 600 "$s")"
	grep -q "^verify 1 ok $MEMSUM\$" "$s" || fail "$what: memory not intact: $(head -c 600 "$s")"
	for c in 2 3 4; do grep -q "^count $c\$" "$s" || fail "$what: no count $c"; done
	grep -q '^done counter 4$' "$s" || fail "$what: counter did not continue"
	! grep -q '^memsum\|^count 1$' "$s" || fail "$what: the guest started over"
	python3 - "$e" "$what" <<'PY' || fail "$3: event checks failed"
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
names = [e["event"] for e in ev]
assert "restored" in names and "running" in names, names
codes = [e["code"] for e in ev if e["event"] == "trigger"]
assert codes == [2, 3, 4], codes
seqs = [e["seq"] for e in ev if "seq" in e]
assert seqs and seqs[0] == 2 and seqs == sorted(seqs), seqs   # numbering goes on
stop = [e for e in ev if e["event"] == "stopped"][-1]
assert stop["reason"] == "poweroff" and stop["code"] == 7, stop
PY
}

for m in eager lazy cached; do
	log "restore ($m) in a fresh process"
	rc=0
	"$LTTLE" restore "$T/s1.snap" --memory "$m" --cache-dir "$CACHE" \
		--serial-log "$T/$m.serial" --events-log "$T/$m.ev" >"$T/$m.out" 2>&1 || rc=$?
	[ "$rc" = 7 ] || fail "restore $m exited $rc: $(cat "$T/$m.out")"
	check_restored "$T/$m.serial" "$T/$m.ev" "$m"
done

log "4 cached restores of one snapshot at once"
pids=()
for i in 1 2 3 4; do
	"$LTTLE" restore "$T/s1.snap" --memory cached --cache-dir "$CACHE" \
		--serial-log "$T/m$i.serial" --events-log "$T/m$i.ev" >"$T/m$i.out" 2>&1 &
	pids+=($!)
done
for i in 1 2 3 4; do
	rc=0
	wait "${pids[$((i - 1))]}" || rc=$?
	[ "$rc" = 7 ] || fail "parallel restore $i exited $rc: $(cat "$T/m$i.out")"
	check_restored "$T/m$i.serial" "$T/m$i.ev" "parallel $i"
done
ents=$(sed -n 's/^restored at 1 entropy //p' "$T"/m?.serial | sort -u | wc -l)
assert_eq 4 "$ents" "distinct entropy per restored instance"
assert_eq 1 "$(ls "$CACHE"/mem-*.raw | wc -l)" "one shared memory cache"

log "lttle snapshot at a waiting trigger, --keep-running"
CTL=$T/ctl.sock
"$LTTLE" run --kernel "$G" --mem 256 --cmdline "$CMD" --snapshot-on manual --control "$CTL" \
	--serial-log "$T/w.serial" >"$T/w.out" 2>&1 &
W=$!
_BG_PIDS+=($W)
for _ in $(seq 200); do [ -S "$CTL" ] && grep -q '^count 1$' "$T/w.serial" 2>/dev/null && break; sleep 0.05; done
sleep 0.2
! grep -q '^count 2$' "$T/w.serial" || fail "the VM did not wait at its trigger"
"$LTTLE" snapshot --control "$CTL" -o "$T/s2.snap" --keep-running --json >"$T/snap.json" \
	|| fail "lttle snapshot failed"
python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); assert r["ok"] and r["bytes"] > 0, r' "$T/snap.json"
rc=0
wait "$W" || rc=$?
[ "$rc" = 7 ] || fail "the kept VM exited $rc"
grep -q '^done counter 4$' "$T/w.serial" || fail "the kept VM did not finish"
rc=0
"$LTTLE" restore "$T/s2.snap" --memory eager --serial-log "$T/s2.serial" --events-log "$T/s2.ev" \
	>"$T/s2.out" 2>&1 || rc=$?
[ "$rc" = 7 ] || fail "restore of s2 exited $rc: $(cat "$T/s2.out")"
check_restored "$T/s2.serial" "$T/s2.ev" "on-request snapshot"

log "lttle snapshot mid-run of a restored VM (stops it), restored again"
CMD2="sg.mem=16 sg.triggers=40 sg.spin=30000000 sg.exit=5"
"$LTTLE" run --kernel "$G" --mem 256 --cmdline "$CMD2" --snapshot-on manual \
	--snapshot-out "$T/slow.snap" --serial-log /dev/null >/dev/null 2>&1 || fail "slow capture"
CTL2=$T/ctl2.sock
"$LTTLE" restore "$T/slow.snap" --memory cached --cache-dir "$CACHE" --control "$CTL2" \
	--serial-log "$T/r1.serial" >"$T/r1.out" 2>&1 &
R=$!
_BG_PIDS+=($R)
for _ in $(seq 400); do grep -q '^count 4$' "$T/r1.serial" 2>/dev/null && break; sleep 0.05; done
grep -q '^count 4$' "$T/r1.serial" || fail "restored VM does not count: $(cat "$T/r1.out")"
"$LTTLE" snapshot --control "$CTL2" -o "$T/mid.snap" >"$T/mid.out" || fail "mid-run snapshot"
rc=0
wait "$R" || rc=$?
last=$(grep -c '^count ' "$T/r1.serial")
"$LTTLE" restore "$T/mid.snap" --memory lazy --serial-log "$T/r2.serial" >"$T/r2.out" 2>&1 \
	|| rc=$?
[ "$rc" = 5 ] || fail "second-generation restore exited $rc: $(cat "$T/r2.out")"
first=$(sed -n 's/^count //p' "$T/r2.serial" | head -1)
[ "$first" -ge "$last" ] && [ "$first" -le $((last + 2)) ] \
	|| fail "mid-run snapshot resumed at count $first, the VM had printed $last"
grep -q '^done counter 40$' "$T/r2.serial" || fail "mid-run restore did not finish"
! grep -q '^count 1$' "$T/r2.serial" || fail "mid-run restore started over"

log "working-set recording"
"$LTTLE" restore "$T/s1.snap" --memory lazy --record-working-set 150 --serial-log /dev/null \
	--events-log "$T/ws.ev" >/dev/null 2>&1 || true
grep -q '"event":"working-set","ok":true' "$T/ws.ev" || fail "no working set recorded: $(cat "$T/ws.ev")"
chunks=$(python3 -c 'import json,sys; print([json.loads(l) for l in open(sys.argv[1]) if "working-set" in l][0]["chunks"])' "$T/ws.ev")
[ "$chunks" -gt 0 ] || fail "empty working set"
rc=0
"$LTTLE" restore "$T/s1.snap" --memory lazy --serial-log "$T/ws2.serial" --events-log "$T/ws2.ev" \
	>/dev/null 2>&1 || rc=$?
[ "$rc" = 7 ] || fail "lazy restore with a working set exited $rc"
check_restored "$T/ws2.serial" "$T/ws2.ev" "lazy with working set"

log "damaged snapshots are refused before any VM runs"
cp "$T/s1.snap" "$T/trunc.snap"
truncate -s $((size / 2)) "$T/trunc.snap"
cp "$T/s1.snap" "$T/flip.snap"
python3 - "$T/flip.snap" <<'PY'
import sys
p = sys.argv[1]
with open(p, "r+b") as f:
    f.seek(300)          # inside the section table / first sections
    b = f.read(1)
    f.seek(300)
    f.write(bytes([b[0] ^ 0x40]))
PY
printf 'not a snapshot at all' >"$T/junk.snap"
for bad in trunc flip junk; do
	for m in eager cached; do
		rm -f "$T/bad.serial"
		expect_fail "$bad/$m restore" "$LTTLE" restore "$T/$bad.snap" --memory "$m" \
			--cache-dir "$CACHE" --serial-log "$T/bad.serial"
		assert_eq 1 "$(wc -l <"$T/err")" "one error line for $bad"
		assert_contains "$(cat "$T/err")" "lttle restore:" "error prefix for $bad"
		assert_contains "$(cat "$T/err")" "$bad.snap" "error names the file ($bad)"
		[ ! -s "$T/bad.serial" ] || fail "$bad: a VM ran: $(cat "$T/bad.serial")"
	done
done
# A corrupt memory chunk is caught at decompression: eager refuses to run.
cp "$T/s1.snap" "$T/chunk.snap"
python3 - "$T/chunk.snap" <<'PY'
import sys
p = sys.argv[1]
with open(p, "r+b") as f:
    f.seek(0, 2); n = f.tell()
    f.seek(n // 2); b = f.read(1); f.seek(n // 2); f.write(bytes([b[0] ^ 0xff]))
PY
rm -f "$T/bad.serial"
expect_fail "corrupt chunk" "$LTTLE" restore "$T/chunk.snap" --memory eager --serial-log "$T/bad.serial"
[ ! -s "$T/bad.serial" ] || fail "corrupt chunk: a VM ran"
log "error: $(cat "$T/err")"
pass "snapshot capture and restore (eager, lazy, cached, parallel, on request, working set, damaged)"
