#!/usr/bin/env bash
# Image pipeline benchmark (make bench; not part of make check).
#
# Builds a realistic multi-layer image from this machine's files
# (tests/bench/mkbench.py: ~540 MB in 4 gzip layers, with overwrites, a
# whiteout and an opaque dir), pushes it into a local docker-registry and
# measures, side by side in one run:
#   (a) lttle pull + lttle build --format ext4
#       vs skopeo copy + umoci unpack + mkfs.ext4 -d (same size, no journal)
#   (b) lttle build --format squashfs (from the pulled layers)
#       vs tar2sqfs and sqfstar on the flattened tar (zstd, 128 KiB blocks)
# Wall time and peak RSS come from /usr/bin/time; each step runs --runs
# times (default 2), interleaved with its peer, and the best run counts
# (this machine is shared, so single runs are noisy; all runs are shown).
#
#   tests/bench/image-bench.sh [--scale small|full] [--runs N] [--verify]
# --verify also compares the lttle ext4 tree with umoci's (slow).
# The image layout is cached in $LTTLE_BENCH_CACHE (/var/tmp/lttle-bench).
. "$(dirname "$0")/../lib/common.sh"
need skopeo umoci mkfs.ext4 e2fsck tar2sqfs sqfstar python3 gzip
[ -x /usr/bin/time ] || skip "/usr/bin/time is not installed (package 'time')"
[ -x "$LTTLE" ] || skip "$LTTLE is not built"

SCALE=full RUNS=2 VERIFY=0
while [ $# -gt 0 ]; do
	case "$1" in
	--scale) SCALE=$2; shift ;;
	--runs) RUNS=$2; shift ;;
	--verify) VERIFY=1 ;;
	*) echo "usage: $0 [--scale small|full] [--runs N] [--verify]" >&2; exit 2 ;;
	esac
	shift
done

CACHE=${LTTLE_BENCH_CACHE:-/var/tmp/lttle-bench}
LAYOUT="$CACHE/layout-$SCALE"
if [ ! -f "$LAYOUT/index.json" ]; then
	log "building the $SCALE benchmark image from local files (once)"
	rm -rf "$LAYOUT"
	mkdir -p "$CACHE"
	python3 "$LTTLE_ROOT/tests/bench/mkbench.py" "$LAYOUT" --scale "$SCALE" >/dev/null
fi
# A registry holding the image; started again if it went away (this
# machine is shared: long runs have lost theirs).
ensure_registry() {
	if [ -n "${REGISTRY:-}" ] && (exec 3<>"/dev/tcp/${REGISTRY%:*}/${REGISTRY##*:}") 2>/dev/null; then
		return 0
	fi
	[ -z "${REGISTRY:-}" ] || log "the registry went away; starting another one"
	start_registry
	REF="$REGISTRY/bench:v1"
	skopeo copy --quiet --dest-tls-verify=false "oci:$LAYOUT:bench" "docker://$REF"
}
ensure_registry

# measure LABEL CMD...: one timed run, appended to $T/runs.LABEL as
# "wall_s maxrss_kb cpu_s"; stdout kept in $T/out.LABEL.
measure() {
	local label=$1; shift
	if ! /usr/bin/time -f "%e %M %U %S" -o "$T/time" "$@" >"$T/out.$label" 2>"$T/err.$label"; then
		cat "$T/err.$label" >&2
		fail "$label failed"
	fi
	awk '{printf "%s %s %.2f\n", $1, $2, $3 + $4}' "$T/time" >>"$T/runs.$label"
}

best() { sort -n "$T/runs.$1" | head -1 | cut -d' ' -f1; }
rss_mb() { sort -n -k2 "$T/runs.$1" | tail -1 | awk '{printf "%.1f", $2 / 1024}'; }
runs() { cut -d' ' -f1 "$T/runs.$1" | paste -sd' '; }
cpu() { sort -n -k3 "$T/runs.$1" | head -1 | cut -d' ' -f3; }
sum() { python3 -c 'import sys; print("%.2f" % sum(float(a) for a in sys.argv[1:]))' "$@"; }
ratio() { python3 -c 'import sys; print("%.2f" % (float(sys.argv[1]) / float(sys.argv[2])))' "$@"; }

for ((r = 1; r <= RUNS; r++)); do
	ensure_registry
	log "round $r/$RUNS: (a) lttle pull + build ext4"
	rm -rf "$T/home"
	export LTTLE_HOME="$T/home"
	measure lpull "$LTTLE" pull --quiet "$REF"
	measure lext4 "$LTTLE" build "$REF" --format ext4 --no-cache --quiet --json
	img_ext4=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["path"])' "$T/out.lext4")
	size=$(stat -c %s "$img_ext4")

	log "round $r/$RUNS: (a) skopeo copy + umoci unpack + mkfs.ext4 -d"
	rm -rf "$T/sk" "$T/bundle" "$T/base.ext4"
	measure skopeo skopeo copy --quiet --src-tls-verify=false "docker://$REF" "oci:$T/sk:bench"
	measure umoci umoci unpack --image "$T/sk:bench" "$T/bundle"
	measure mkfs mkfs.ext4 -q -F -b 4096 -O ^has_journal -d "$T/bundle/rootfs" "$T/base.ext4" \
		"$((size / 4096))"

	log "round $r/$RUNS: (b) lttle build squashfs vs tar2sqfs / sqfstar"
	measure lsqfs "$LTTLE" build "$REF" --format squashfs --no-cache --quiet --json
	img_sqfs=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["path"])' "$T/out.lsqfs")
	[ -f "$T/flat.tar" ] || tar -C "$T/bundle/rootfs" --numeric-owner --xattrs \
		--xattrs-include='*' -cf "$T/flat.tar" .
	rm -f "$T/t2s.sqfs" "$T/sqfstar.sqfs"
	measure tar2sqfs sh -c "tar2sqfs -q -c zstd -f '$T/t2s.sqfs' < '$T/flat.tar'"
	measure sqfstar sh -c "sqfstar -quiet -no-progress -comp zstd '$T/sqfstar.sqfs' < '$T/flat.tar'"
done

lt_a=$(sum "$(best lpull)" "$(best lext4)")
base_a=$(sum "$(best skopeo)" "$(best umoci)" "$(best mkfs)")
sz() { stat -c %s "$1"; }
du_mb() { du -m "$1" | cut -f1; }
cat <<EOF

Image: $SCALE, $(python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(len(m["manifests"]))' "$LAYOUT/index.json") manifest, $(du -sm "$LAYOUT/blobs" | cut -f1) MB of blobs; flattened tar $(($(sz "$T/flat.tar") >> 20)) MB
Machine: $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg). Best of $RUNS runs (wall and
CPU = user + sys, each its own best); all wall times in brackets.

(a) pull + ext4                  wall s   peak RSS MB   CPU s   runs (wall)
  lttle pull                    $(printf '%7s' "$(best lpull)")   $(printf '%11s' "$(rss_mb lpull)")   $(printf '%5s' "$(cpu lpull)")   [$(runs lpull)]
  lttle build --format ext4     $(printf '%7s' "$(best lext4)")   $(printf '%11s' "$(rss_mb lext4)")   $(printf '%5s' "$(cpu lext4)")   [$(runs lext4)]
  = lttle total                 $(printf '%7s' "$lt_a")
  skopeo copy                   $(printf '%7s' "$(best skopeo)")   $(printf '%11s' "$(rss_mb skopeo)")   $(printf '%5s' "$(cpu skopeo)")   [$(runs skopeo)]
  umoci unpack                  $(printf '%7s' "$(best umoci)")   $(printf '%11s' "$(rss_mb umoci)")   $(printf '%5s' "$(cpu umoci)")   [$(runs umoci)]
  mkfs.ext4 -d                  $(printf '%7s' "$(best mkfs)")   $(printf '%11s' "$(rss_mb mkfs)")   $(printf '%5s' "$(cpu mkfs)")   [$(runs mkfs)]
  = baseline total              $(printf '%7s' "$base_a")
  speed-up                      $(ratio "$base_a" "$lt_a")x   (target >= 3x)
  image: lttle $(($(sz "$img_ext4") >> 20)) MB ($(du_mb "$img_ext4") MB allocated), mkfs.ext4 $(($(sz "$T/base.ext4") >> 20)) MB ($(du_mb "$T/base.ext4") MB allocated)

(b) squashfs (zstd)             wall s   peak RSS MB   CPU s   size bytes   runs (wall)
  lttle build --format squashfs $(printf '%7s' "$(best lsqfs)")   $(printf '%11s' "$(rss_mb lsqfs)")   $(printf '%5s' "$(cpu lsqfs)")   $(printf '%10s' "$(sz "$img_sqfs")")   [$(runs lsqfs)]
  tar2sqfs (flattened tar)      $(printf '%7s' "$(best tar2sqfs)")   $(printf '%11s' "$(rss_mb tar2sqfs)")   $(printf '%5s' "$(cpu tar2sqfs)")   $(printf '%10s' "$(sz "$T/t2s.sqfs")")   [$(runs tar2sqfs)]
  sqfstar (flattened tar)       $(printf '%7s' "$(best sqfstar)")   $(printf '%11s' "$(rss_mb sqfstar)")   $(printf '%5s' "$(cpu sqfstar)")   $(printf '%10s' "$(sz "$T/sqfstar.sqfs")")   [$(runs sqfstar)]
  time vs tar2sqfs              $(ratio "$(best tar2sqfs)" "$(best lsqfs)")x faster, size ratio $(ratio "$(sz "$img_sqfs")" "$(sz "$T/t2s.sqfs")")
  time vs sqfstar               $(ratio "$(best sqfstar)" "$(best lsqfs)")x faster, size ratio $(ratio "$(sz "$img_sqfs")" "$(sz "$T/sqfstar.sqfs")")

Peak RSS of lttle build: ext4 $(rss_mb lext4) MB, squashfs $(rss_mb lsqfs) MB (target < 64 MB)
EOF

log "checks: e2fsck, unsquashfs"
e2fsck -fn "$img_ext4" >"$T/fsck" 2>&1 || fail "e2fsck on the lttle image: $(cat "$T/fsck")"
e2fsck -fn "$T/base.ext4" >/dev/null 2>&1 || fail "e2fsck on the mkfs.ext4 image"
unsquashfs -s "$img_sqfs" >/dev/null || fail "unsquashfs on the lttle image"
if [ "$VERIFY" = 1 ]; then
	# Directory times are left out: parents no layer lists (GNU tar does
	# not add them) get the time of their first entry here and the time
	# of the unpack from umoci.
	log "verify: lttle's tree = umoci's tree (minus /.lttle, the root and directory times)"
	nodirtime() { awk '$2 == "d" { $5 = "-" } { print }'; }
	python3 "$LTTLE_ROOT/tests/lib/mklayer.py" ls-sqfs "$img_sqfs" |
		grep -v '^/\.lttle\|^/ ' | nodirtime >"$T/ls.lttle"
	python3 "$LTTLE_ROOT/tests/lib/mklayer.py" ls-tar "$T/flat.tar" | grep -v '^/ ' |
		nodirtime >"$T/ls.umoci"
	diff -q "$T/ls.umoci" "$T/ls.lttle" >/dev/null ||
		{ diff "$T/ls.umoci" "$T/ls.lttle" | head -20; fail "trees differ"; }
	echo "trees match: $(wc -l <"$T/ls.lttle") entries"
fi

