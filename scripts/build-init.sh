#!/bin/sh
# Build the initramfs /init (dockerify/exporters/init/init.c) for every architecture the
# initramfs export supports, as small static binaries:
#   init-amd64  gcc                       (x86_64)
#   init-arm64  aarch64-linux-gnu-gcc     (Debian: gcc-aarch64-linux-gnu, libc6-dev-arm64-cross)
#   init-arm    arm-linux-gnueabihf-gcc   (Debian: gcc-arm-linux-gnueabihf, libc6-dev-armhf-cross;
#                                          ARMv7: linux/arm/v7 images and Pi 2 and later)
# The binaries are committed package data (every wheel and sdist carries them, so an export never
# needs a compiler or the network); SHA256SUMS records their digests and TOOLCHAIN the compilers
# that made them. The build is reproducible: the same toolchain gives the same bytes anywhere.
# Usage:
#   scripts/build-init.sh           rebuild all three into the package, rewrite SHA256SUMS/TOOLCHAIN
#   scripts/build-init.sh --out DIR  build into DIR (nothing in the package changes)
#   scripts/build-init.sh --check   rebuild in a temporary directory and compare with SHA256SUMS
#                                    (exit 1 on a difference; needs the recorded toolchain)
set -eu

REPO=$(cd "$(dirname "$0")/.." && pwd)
PKG=$REPO/dockerify/exporters/init
SRC=$PKG/init.c
OUT=$PKG
CHECK=0
case "${1:-}" in
--out) OUT=$2; shift 2 ;;
--check) CHECK=1; OUT=$(mktemp -d); trap 'rm -rf "$OUT"' EXIT; shift ;;
esac
ARCHES="amd64 arm64 arm"
CFLAGS="-static -Os -Wall -Wextra -Wno-unused-parameter -ffunction-sections -fdata-sections -Wl,--gc-sections -s"
# Reproducible: no build paths, ids or dates in the binary.
CFLAGS="$CFLAGS -ffile-prefix-map=$REPO=. -Wl,--build-id=none"

compiler() {
	case "$1" in
	amd64) echo "${CC_AMD64:-$(test "$(uname -m)" = x86_64 && echo gcc || echo x86_64-linux-gnu-gcc)}" ;;
	arm64) echo "${CC_ARM64:-$(test "$(uname -m)" = aarch64 && echo gcc || echo aarch64-linux-gnu-gcc)}" ;;
	arm) echo "${CC_ARM:-arm-linux-gnueabihf-gcc}" ;;
	esac
}

package() {  # the Debian package that gives a compiler, for the error message
	case "$1" in
	gcc) echo "gcc" ;;
	aarch64-linux-gnu-gcc) echo "gcc-aarch64-linux-gnu" ;;
	arm-linux-gnueabihf-gcc) echo "gcc-arm-linux-gnueabihf" ;;
	x86_64-linux-gnu-gcc) echo "gcc-x86-64-linux-gnu" ;;
	*) echo "$1" ;;
	esac
}

mkdir -p "$OUT"
: >"$OUT/TOOLCHAIN.new"
for arch in $ARCHES; do
	cc=$(compiler "$arch")
	if ! command -v "$cc" >/dev/null 2>&1; then
		echo "build-init: the compiler for $arch, $cc, is not installed (apt-get install $(package "$cc"))" >&2
		rm -f "$OUT/TOOLCHAIN.new"
		exit 1
	fi
	# shellcheck disable=SC2086
	SOURCE_DATE_EPOCH=0 "$cc" $CFLAGS -o "$OUT/init-$arch.tmp" "$SRC"
	mv "$OUT/init-$arch.tmp" "$OUT/init-$arch"
	# The compiler and the static C library linked in are what decide the bytes.
	libc=$(sha256sum "$("$cc" -print-file-name=libc.a)" | cut -d' ' -f1)
	echo "$arch $("$cc" --version | head -n1); libc.a sha256 $libc" >>"$OUT/TOOLCHAIN.new"
done
(cd "$OUT" && sha256sum init-amd64 init-arm64 init-arm) >"$OUT/SHA256SUMS.new"

if [ "$CHECK" = 1 ]; then
	if ! cmp -s "$OUT/TOOLCHAIN.new" "$PKG/TOOLCHAIN"; then
		echo "build-init: this toolchain differs from the recorded one; the bytes cannot be compared:" >&2
		diff "$PKG/TOOLCHAIN" "$OUT/TOOLCHAIN.new" >&2 || true
		exit 2
	fi
	if ! cmp -s "$OUT/SHA256SUMS.new" "$PKG/SHA256SUMS"; then
		echo "build-init: the rebuilt inits differ from dockerify/exporters/init/SHA256SUMS:" >&2
		diff "$PKG/SHA256SUMS" "$OUT/SHA256SUMS.new" >&2 || true
		exit 1
	fi
	echo "build-init: rebuilt inits match SHA256SUMS"
	exit 0
fi
mv "$OUT/TOOLCHAIN.new" "$OUT/TOOLCHAIN"
mv "$OUT/SHA256SUMS.new" "$OUT/SHA256SUMS"
for arch in $ARCHES; do echo "build-init: $OUT/init-$arch ($(wc -c <"$OUT/init-$arch") bytes)"; done
