#!/usr/bin/env bash
# Runs every test and prints one closing line: "N passed, N failed, N skipped".
#   tests/run.sh               unit + integration + e2e
#   tests/run.sh --unit-only   cmocka unit tests only
#   tests/run.sh PATTERN       only tests whose file name contains PATTERN
# Integration scripts exit 0 (pass), 77 (skip; they print why) or other (fail).
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BUILD=${BUILD:-build}
export LTTLE_ROOT="$ROOT" LTTLE_BUILD="$ROOT/$BUILD" LTTLE_BIN="$ROOT/$BUILD/lttle"
unit_only=0
pattern=""
for a in "$@"; do
	case "$a" in
	--unit-only) unit_only=1 ;;
	*) pattern="$a" ;;
	esac
done

passed=0 failed=0 skipped=0
failures=()
LOGDIR=$(mktemp -d /tmp/lttle-tests.XXXXXX)

run_unit() {
	local bin=$1 name out
	name=$(basename "$bin")
	out="$LOGDIR/$name.log"
	timeout 300 "$bin" >"$out" 2>&1
	local rc=$?
	local p f
	p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -1)
	f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -1)
	p=${p:-0} f=${f:-0}
	if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
	passed=$((passed + p)) failed=$((failed + f))
	if [ "$f" -ne 0 ]; then
		failures+=("$name")
		echo "FAIL unit $name ($p passed, $f failed)"
		sed 's/^/    /' "$out" | tail -40
	else
		echo "ok   unit $name ($p tests)"
	fi
}

run_script() {
	local script=$1 name out rc limit
	name=${script#tests/}
	out="$LOGDIR/$(echo "$name" | tr / _).log"
	limit=${LTTLE_TEST_TIMEOUT:-900}
	local t0=$SECONDS
	timeout --kill-after=10 "$limit" bash "$script" >"$out" 2>&1 </dev/null
	rc=$?
	local dt=$((SECONDS - t0))
	case $rc in
	0) passed=$((passed + 1)); echo "ok   $name (${dt}s)" ;;
	77) skipped=$((skipped + 1))
	    echo "skip $name: $(grep -m1 '^skipped:' "$out" | sed 's/^skipped: *//')" ;;
	*) failed=$((failed + 1)); failures+=("$name")
	   echo "FAIL $name (exit $rc, ${dt}s)"; sed 's/^/    /' "$out" | tail -60 ;;
	esac
}

for bin in "$BUILD"/tests/test_*; do
	[ -x "$bin" ] || continue
	[ -z "$pattern" ] || [[ "$bin" == *"$pattern"* ]] || continue
	run_unit "$bin"
done

if [ $unit_only -eq 0 ]; then
	for script in tests/integration/*.sh tests/e2e/*.test.sh; do
		[ -f "$script" ] || continue
		[ -z "$pattern" ] || [[ "$script" == *"$pattern"* ]] || continue
		run_script "$script"
	done
fi

echo
if [ ${#failures[@]} -ne 0 ]; then
	echo "failed: ${failures[*]} (logs in $LOGDIR)"
else
	rm -rf "$LOGDIR"
fi
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ] && [ $((passed + skipped)) -gt 0 ]
