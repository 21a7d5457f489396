#!/usr/bin/env bash
# The README demo: the main job on a built-in sample, with no internet.
#   1. make a sample app image (busybox httpd) from files on this machine
#   2. serve it from a real OCI registry on 127.0.0.1
#   3. lttle pull, lttle build (ext4 and squashfs), lttle images
# Later stages (deploy, wake through the proxy, scale to zero) run when the
# daemon is part of the build.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
. tests/lib/common.sh
LTTLE=$LTTLE_ROOT/build/lttle
export LTTLE_HOME="$T/home"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "Making a sample image: static busybox httpd + a page"
python3 tests/lib/sample-image.py "$T/sample" >/dev/null
start_registry
python3 tests/lib/mkimage.py push "$T/sample" sample "$REGISTRY/demo/hello:1" >/dev/null
echo "pushed $REGISTRY/demo/hello:1"

step "lttle pull $REGISTRY/demo/hello:1"
"$LTTLE" pull "$REGISTRY/demo/hello:1"

step "lttle images"
"$LTTLE" images

for fmt in ext4 squashfs; do
	step "lttle build $REGISTRY/demo/hello:1 --format $fmt"
	t0=$(date +%s%N)
	out=$("$LTTLE" build "$REGISTRY/demo/hello:1" --format "$fmt" | tail -1)
	t1=$(date +%s%N)
	printf '%s (%s bytes, %d ms)\n' "$out" "$(stat -c %s "$out")" $(((t1 - t0) / 1000000))
done
e2fsck -fn "$(ls "$LTTLE_HOME"/rootfs/*.ext4 | head -1)" | tail -1

if [ -x "$LTTLE_ROOT/scripts/demo-deploy.sh" ]; then
	step "Deploying the sample (scale to zero and back)"
	bash "$LTTLE_ROOT/scripts/demo-deploy.sh" "$REGISTRY/demo/hello:1"
fi
step "Done"
