#!/bin/sh
# Build the initramfs /init (dockerify/exporters/init/init.c) for every architecture the
# initramfs export supports, as small static binaries:
#   init-amd64  gcc                       (x86_64)
#   init-arm64  aarch64-linux-gnu-gcc     (Debian: gcc-aarch64-linux-gnu, libc6-dev-arm64-cross)
#   init-arm    arm-linux-gnueabihf-gcc   (Debian: gcc-arm-linux-gnueabihf, libc6-dev-armhf-cross;
#                                          ARMv7: linux/arm/v7 images and Pi 2 and later)
# The binaries are package data (ignored by git) found by `dockerify export --format initramfs`;
# they are built here once so an export never needs a compiler or the network.
# Usage: scripts/build-init.sh [--force] [ARCH...]   (default: every architecture with a compiler)
set -eu

REPO=$(cd "$(dirname "$0")/.." && pwd)
DIR=$REPO/dockerify/exporters/init
SRC=$DIR/init.c
FORCE=0
if [ "${1:-}" = "--force" ]; then FORCE=1; shift; fi
ARCHES=${*:-amd64 arm64 arm}
CFLAGS="-static -Os -Wall -Wextra -Wno-unused-parameter -ffunction-sections -fdata-sections -Wl,--gc-sections -s"
# Reproducible: no build paths or dates in the binary.
CFLAGS="$CFLAGS -ffile-prefix-map=$REPO=. -Wl,--build-id=none"

compiler() {
	case "$1" in
	amd64) echo "${CC_AMD64:-$(test "$(uname -m)" = x86_64 && echo gcc || echo x86_64-linux-gnu-gcc)}" ;;
	arm64) echo "${CC_ARM64:-$(test "$(uname -m)" = aarch64 && echo gcc || echo aarch64-linux-gnu-gcc)}" ;;
	arm) echo "${CC_ARM:-arm-linux-gnueabihf-gcc}" ;;
	*) echo "build-init: unknown architecture $1 (amd64, arm64, arm)" >&2; exit 2 ;;
	esac
}

built=0
for arch in $ARCHES; do
	out=$DIR/init-$arch
	cc=$(compiler "$arch")
	if [ "$FORCE" = 0 ] && [ -x "$out" ] && [ "$out" -nt "$SRC" ] && [ "$out" -nt "$0" ]; then
		echo "build-init: $out is up to date"
		built=$((built + 1))
		continue
	fi
	if ! command -v "$cc" >/dev/null 2>&1; then
		echo "build-init: $cc not found; skipping $arch" >&2
		continue
	fi
	# shellcheck disable=SC2086
	SOURCE_DATE_EPOCH=0 "$cc" $CFLAGS -o "$out.tmp" "$SRC"
	mv "$out.tmp" "$out"
	echo "build-init: $out ($(wc -c <"$out") bytes)"
	built=$((built + 1))
done
[ "$built" -gt 0 ] || { echo "build-init: no compiler found for: $ARCHES" >&2; exit 1; }
