#!/usr/bin/env bash
# make e2e: the full stack on the lttle VMM, for hosts with VT-x/AMD-V.
#   1. full Linux boot on the lttle VMM (tests/integration/39-vmm-linux.sh)
#   2. the sample app deployed with --engine lttle: the project kernel and
#      init in a real microVM, snapshot at first listen, woken through the
#      proxy, scaled to zero and restored again (scripts/demo-deploy.sh)
# Elsewhere it prints why it skips and exits 0: these build machines run
# guest kernel code emulated, so the guest-side is covered under QEMU by
# `make check` instead.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! grep -qwE 'vmx|svm' /proc/cpuinfo; then
	echo "skipped: no hardware virtualization (no vmx/svm in /proc/cpuinfo);" \
		"make e2e needs VT-x/AMD-V. make check covers the guest side under QEMU."
	exit 0
fi
if ! [ -c /dev/kvm ] || ! [ -w /dev/kvm ]; then
	echo "skipped: /dev/kvm is missing or not writable"
	exit 0
fi
echo "== full Linux boot on the lttle VMM"
bash tests/integration/39-vmm-linux.sh

echo "== deploy on the lttle engine"
. tests/lib/common.sh
python3 tests/lib/sample-image.py "$T/sample" >/dev/null
start_registry
python3 tests/lib/mkimage.py push "$T/sample" sample "$REGISTRY/e2e/hello:1" >/dev/null
LTTLE_ENGINE=lttle bash scripts/demo-deploy.sh "$REGISTRY/e2e/hello:1" | tee "$T/deploy.out"
grep -q "engine lttle:" "$T/deploy.out" || fail "the app did not run on the lttle engine"
grep -Eq "engine lttle: ([2-9]|[1-9][0-9]+) restores" "$T/deploy.out" ||
	fail "expected two restores (first request, then from zero)"
echo "e2e: passed"
