#!/usr/bin/env bash
# Proxy overhead: wrk against a host-side HTTP backend (tests/bench/
# proxy_backend.c, keep-alive, epoll) directly and through the proxy
# (lt-proxy-testd: TCP listener -> pool (warm instance) -> splice forwarder),
# in the same run, rounds interleaved, medians reported.
#
# Two placements, both printed:
#   isolated  wrk alone on CPU 1; the system under test (the backend, or the
#             backend + the proxy) on CPU 0 -- clients live elsewhere in
#             production. This is the figure the targets apply to.
#   shared    all processes float over every CPU (the proxy competes with
#             the load generator for CPU).
# Targets: throughput through the proxy >= 90% of direct; p99 added
# < 200 us. Latency is measured by proxy_latency: requests alternate one
# at a time between a direct and a proxied keep-alive connection, so noise
# from other work on the machine lands on both sides alike (wrk's own p99
# at low concurrency is printed too).
# Also printed: CPU time per request of every process (wrk, backend,
# proxy; softirq work lands on the process that sent the packet), whose
# direct/proxied ratio is what throughput would be when CPU-bound, free of
# scheduling noise; the proxy's own CPU time per request; and the proxy with
# its upstream over a unix socket -- the shape of the lttle engine, whose
# instances are reached through the VMM's vsock UDS.
#
# Knobs: PROXY_BENCH_SECS (5) PROXY_BENCH_ROUNDS (3) PROXY_BENCH_BODY (64)
#        PROXY_BENCH_CONNS (64) PROXY_BENCH_LAT_CONNS (4)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
case "$BUILD" in /*) B=$BUILD ;; *) B=$ROOT/$BUILD ;; esac
SECS=${PROXY_BENCH_SECS:-5}
ROUNDS=${PROXY_BENCH_ROUNDS:-3}
BODY=${PROXY_BENCH_BODY:-64}
CONNS=${PROXY_BENCH_CONNS:-64}
LCONNS=${PROXY_BENCH_LAT_CONNS:-4}

command -v wrk >/dev/null || { echo "proxy-bench: wrk is not installed (scripts/install-deps.sh)"; exit 1; }
[ -x /usr/bin/time ] || { echo "proxy-bench: /usr/bin/time is not installed (Debian package time)"; exit 1; }
[ -x "$B/proxy/lt-proxy-testd" ] && [ -x "$B/proxy/proxy_backend" ] &&
	[ -x "$B/proxy/proxy_latency" ] ||
	make -s -C "$ROOT" BUILD="$BUILD" proxy-tools
NCPU=$(nproc)

T=$(mktemp -d /tmp/proxy-bench.XXXXXX)
PIDS=()
cleanup() {
	for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$T"
}
trap cleanup EXIT

# Raised priority (same for every process, direct or proxied) keeps other
# work on a shared machine from deciding the result.
NICE=()
if nice -n -19 true 2>/dev/null; then NICE=(nice -n -19); fi

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

BPORT=$(free_port)
"${NICE[@]}" "$B/proxy/proxy_backend" --port "$BPORT" --body-size "$BODY" \
	--unix "$T/backend.sock" >/dev/null 2>&1 &
BACK=$!
PIDS+=("$BACK")
"${NICE[@]}" "$B/proxy/lt-proxy-testd" \
	--app "bench,static=127.0.0.1:$BPORT,min=1,max=1,conc=1000000,qmax=1000000,idle=0" \
	--app "benchuds,static=unix:$T/backend.sock,min=1,max=1,conc=1000000,qmax=1000000,idle=0" \
	--tcp "bench=127.0.0.1:0:80" --tcp "benchuds=127.0.0.1:0:80" --ready-file "$T/ready" >"$T/proxy.log" 2>&1 &
PROXY=$!
PIDS+=("$PROXY")
for _ in $(seq 100); do [ -s "$T/ready" ] && break; sleep 0.05; done
PPORT=$(awk '$1 == "tcp" && $2 == "bench" {print $3}' "$T/ready")
UPORT=$(awk '$1 == "tcp" && $2 == "benchuds" {print $3}' "$T/ready")
[ -n "$PPORT" ] || { echo "proxy-bench: proxy did not start: $(cat "$T/proxy.log")"; exit 1; }

place() { # place isolated|shared
	local sut=0 all
	all="0-$((NCPU - 1))"
	if [ "$1" = isolated ] && [ "$NCPU" -ge 2 ]; then
		taskset -a -p -c "$sut" "$BACK" >/dev/null
		taskset -a -p -c "$sut" "$PROXY" >/dev/null
		WRK=("${NICE[@]}" taskset -c 1 wrk)
	else
		taskset -a -p -c "$all" "$BACK" >/dev/null
		taskset -a -p -c "$all" "$PROXY" >/dev/null
		WRK=("${NICE[@]}" wrk)
	fi
}

# run PORT THREADS CONNS SECS -> "rps p50_us p99_us requests wrk_cpu_s"
run_wrk() {
	/usr/bin/time -f "%U %S" -o "$T/wrk.time" "${WRK[@]}" -t"$2" -c"$3" -d"$4"s --latency "http://127.0.0.1:$1/" 2>&1 | awk '
		function us(v) {
			if (v ~ /us$/) return v + 0;
			if (v ~ /ms$/) return v * 1000;
			if (v ~ /s$/) return v * 1000000;
			return v;
		}
		/Requests\/sec/ { rps = $2 }
		/^ +50%/ { p50 = us($2) }
		/^ +99%/ { p99 = us($2) }
		/requests in/ { n = $1 }
		/Non-2xx|Socket errors/ { err = err $0 }
		END { printf "%s %s %s %s ", rps, p50, p99, n; if (err) print err > "/dev/stderr" }'
	awk '{ printf "%.3f\n", $1 + $2 }' "$T/wrk.time"
}

median() { sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

echo "proxy-bench: $NCPU CPUs, body $BODY bytes, $ROUNDS rounds x ${SECS}s, throughput at $CONNS connections, latency at $LCONNS"
[ ${#NICE[@]} -gt 0 ] || echo "proxy-bench: note: running without raised priority (not permitted)"
"${WRK[@]:-wrk}" -t1 -c8 -d1s "http://127.0.0.1:$BPORT/" >/dev/null 2>&1 || true
WRK=(wrk)
wrk -t1 -c8 -d1s "http://127.0.0.1:$PPORT/" >/dev/null 2>&1

declare -A R
for placement in isolated shared; do
	place "$placement"
	threads=1
	[ "$placement" = shared ] && threads=2
	: >"$T/$placement.direct" >"$T/$placement.proxy" >"$T/$placement.pcpu" >"$T/$placement.uds"
	: >"$T/$placement.cpu.direct" >"$T/$placement.cpu.proxy" >"$T/$placement.cpu.uds"
	for r in $(seq "$ROUNDS"); do
		# alternate the order so drift hits every side alike
		order="direct proxy uds"
		[ $((r % 2)) -eq 0 ] && order="uds proxy direct"
		[ "$placement" = shared ] && order=${order/uds/}
		for side in $order; do
			port=$BPORT
			[ "$side" = proxy ] && port=$PPORT
			[ "$side" = uds ] && port=$UPORT
			c0=$(cpu_ticks "$PROXY")
			b0=$(cpu_ticks "$BACK")
			out=$(run_wrk "$port" "$threads" "$CONNS" "$SECS")
			c1=$(cpu_ticks "$PROXY")
			b1=$(cpu_ticks "$BACK")
			echo "$out" | awk '{print $1}' >>"$T/$placement.$side"
			# all processes' CPU per request, in us
			pd=$((c1 - c0))
			[ "$side" = direct ] && pd=0
			echo "$out" | awk -v p=$pd -v b=$((b1 - b0)) \
				'{ if ($4 > 0) printf "%.2f\n", ($5 * 1e6 + (p + b) * 1e4) / $4 }' >>"$T/$placement.cpu.$side"
			if [ "$side" = proxy ]; then
				# proxy CPU (ticks of 1/100 s) per request, in us
				echo "$out" | awk -v d=$((c1 - c0)) '{ if ($4 > 0) printf "%.2f\n", d * 10000 / $4 }' >>"$T/$placement.pcpu"
			fi
		done
	done
	R[$placement.direct]=$(median <"$T/$placement.direct")
	R[$placement.proxy]=$(median <"$T/$placement.proxy")
	R[$placement.pcpu]=$(median <"$T/$placement.pcpu")
	R[$placement.cpud]=$(median <"$T/$placement.cpu.direct")
	R[$placement.cpup]=$(median <"$T/$placement.cpu.proxy")
done
R[isolated.uds]=$(median <"$T/isolated.uds")

place isolated
: >"$T/lat.direct" >"$T/lat.proxy" >"$T/lat50.direct" >"$T/lat50.proxy"
for r in $(seq "$ROUNDS"); do
	for side in direct proxy; do
		port=$BPORT
		[ "$side" = proxy ] && port=$PPORT
		out=$(run_wrk "$port" 1 "$LCONNS" "$SECS")
		echo "$out" | awk '{print $3}' >>"$T/lat.$side"
		echo "$out" | awk '{print $2}' >>"$T/lat50.$side"
	done
done
"${NICE[@]}" taskset -c 1 "$B/proxy/proxy_latency" "$BPORT" "$PPORT" "${PROXY_BENCH_SAMPLES:-20000}" >"$T/probe"
read -r _ Q50D Q90D Q99D Q999D < <(grep '^direct' "$T/probe")
read -r _ Q50P Q90P Q99P Q999P < <(grep '^proxy' "$T/probe")
P99D=$(median <"$T/lat.direct")
P99P=$(median <"$T/lat.proxy")
P50D=$(median <"$T/lat50.direct")
P50P=$(median <"$T/lat50.proxy")

awk -v cd="${R[shared.cpud]}" -v cp="${R[shared.cpup]}" -v icd="${R[isolated.cpud]}" \
	-v icp="${R[isolated.cpup]}" -v iu="${R[isolated.uds]}" -v id="${R[isolated.direct]}" -v ip="${R[isolated.proxy]}" -v ic="${R[isolated.pcpu]}" \
	-v sd="${R[shared.direct]}" -v sp="${R[shared.proxy]}" -v sc="${R[shared.pcpu]}" \
	-v d50="$P50D" -v p50="$P50P" -v d99="$P99D" -v p99="$P99P" -v lc="$LCONNS" \
	-v q50d="$Q50D" -v q90d="$Q90D" -v q99d="$Q99D" -v q999d="$Q999D" \
	-v q50p="$Q50P" -v q90p="$Q90P" -v q99p="$Q99P" -v q999p="$Q999P" '
BEGIN {
	printf "\n%-34s %12s %12s %8s %14s\n", "throughput (req/s, median)", "direct", "proxied", "ratio", "proxy CPU/req";
	printf "%-34s %12.0f %12.0f %7.1f%% %11.1f us\n", "isolated (wrk CPU1, SUT CPU0)", id, ip, 100 * ip / id, ic;
	printf "%-34s %12.0f %12.0f %7.1f%% %11.1f us\n", "shared (all CPUs)", sd, sp, 100 * sp / sd, sc;
	printf "%-34s %12.0f %12.0f %7.1f%%\n", "isolated, upstream over a UDS", id, iu, 100 * iu / id;
	printf "\n%-34s %12s %12s %8s\n", "CPU per request, all processes", "direct", "proxied", "ratio";
	printf "%-34s %9.1f us %9.1f us %7.1f%%\n", "isolated", icd, icp, 100 * icd / icp;
	printf "%-34s %9.1f us %9.1f us %7.1f%%\n", "shared", cd, cp, 100 * cd / cp;
	printf "\n%-34s %12s %12s %12s\n", "latency, paired probe (us)", "direct", "proxied", "added";
	printf "%-34s %12.0f %12.0f %12.0f\n", "p50", q50d, q50p, q50p - q50d;
	printf "%-34s %12.0f %12.0f %12.0f\n", "p90", q90d, q90p, q90p - q90d;
	printf "%-34s %12.0f %12.0f %12.0f\n", "p99", q99d, q99p, q99p - q99d;
	printf "%-34s %12.0f %12.0f %12.0f\n", "p99.9", q999d, q999p, q999p - q999d;
	printf "%-34s %12.0f %12.0f %12.0f\n", "wrk p50 at " lc " connections", d50, p50, p50 - d50;
	printf "%-34s %12.0f %12.0f %12.0f\n", "wrk p99 at " lc " connections", d99, p99, p99 - d99;
	ok1 = ip >= 0.9 * id; ok2 = (q99p - q99d) < 200;
	printf "\ntarget throughput >= 90%% of direct (isolated, TCP upstream): %s (%.1f%%)\n", ok1 ? "MET" : "MISSED", 100 * ip / id;
	printf "  with a UDS upstream (the lttle engine): %s (%.1f%%)\n", (iu >= 0.9 * id) ? "MET" : "MISSED", 100 * iu / id;
	printf "target p99 added < 200 us (paired probe): %s (%.0f us)\n", ok2 ? "MET" : "MISSED", q99p - q99d;
}'
