#!/bin/sh
# Fetch Debian's amd64 and arm64 kernels for the boot tests, without installing anything.
#
# `apt-get download` the linux-image package each metapackage points at, unpack it with
# `dpkg-deb -x` into a scratch directory, and keep only the kernel:
#   .cache/kernels/vmlinuz-amd64   bzImage (x86 boot protocol, what `qemu-system-x86_64 -kernel` takes)
#   .cache/kernels/vmlinuz-arm64   the arm64 Image as Debian ships it (bookworm: uncompressed)
#   .cache/kernels/Image-arm64     the same, decompressed if Debian ever ships it gzipped
#   .cache/kernels/config-<arch>   its build configuration
#   .cache/kernels/VERSION-<arch>  the package version, to tell when a refresh is due
# Needs the arm64 architecture enabled in dpkg (`dpkg --add-architecture arm64; apt-get update`);
# scripts/setup.sh does that. Idempotent: a kernel already present is kept unless --force.
set -eu

REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${DOCKERIFY_KERNELS:-$REPO/.cache/kernels}
FORCE=0
[ "${1:-}" = "--force" ] && FORCE=1

mkdir -p "$OUT"

have() { command -v "$1" >/dev/null 2>&1; }
# The first match of a glob, sorted as ls sorts (the pattern itself when nothing matches).
first() { printf "%s\n" "$1"; }
for tool in apt-get apt-cache dpkg-deb gzip; do
	have "$tool" || { echo "get-kernels: $tool is required (Debian's apt and dpkg)" >&2; exit 1; }
done

# The concrete image package behind the metapackage (linux-image-amd64 -> linux-image-6.1.0-N-amd64).
image_package() {
	apt-cache depends "$1" 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n 1
}

fetch() {
	arch=$1
	if [ "$FORCE" = 0 ] && [ -s "$OUT/vmlinuz-$arch" ]; then
		echo "get-kernels: $OUT/vmlinuz-$arch already present"
		return 0
	fi
	if [ "$arch" = "$(dpkg --print-architecture)" ]; then meta=linux-image-$arch; else meta=linux-image-$arch:$arch; fi
	pkg=$(image_package "$meta")
	if [ -z "$pkg" ]; then
		echo "get-kernels: apt knows no $meta; for arm64 run: dpkg --add-architecture arm64 && apt-get update" >&2
		exit 1
	fi
	case "$pkg" in *:*) ;; *) [ "$arch" = "$(dpkg --print-architecture)" ] || pkg="$pkg:$arch" ;; esac
	work=$(mktemp -d "$OUT/.work-$arch.XXXXXX")
	trap 'rm -rf "$work"' EXIT INT TERM
	chmod 755 "$work"  # so apt's sandbox user can write the download
	sandbox=""
	[ "$(id -u)" = 0 ] && sandbox="-o APT::Sandbox::User=root"
	# shellcheck disable=SC2086
	(cd "$work" && apt-get download -q $sandbox "$pkg" >/dev/null)
	deb=$(ls "$work"/*.deb)
	dpkg-deb -x "$deb" "$work/x"
	kernel=$(first "$work"/x/boot/vmlinuz-*)
	[ -s "$kernel" ] || { echo "get-kernels: no /boot/vmlinuz-* in $deb" >&2; exit 1; }
	cp "$kernel" "$OUT/vmlinuz-$arch.tmp" && mv "$OUT/vmlinuz-$arch.tmp" "$OUT/vmlinuz-$arch"
	cp "$(first "$work"/x/boot/config-*)" "$OUT/config-$arch" 2>/dev/null || true
	if [ "$arch" = arm64 ]; then
		# An arm64 vmlinuz is either the raw Image or a plain gzip stream of it.
		if [ "$(head -c 2 "$OUT/vmlinuz-$arch" | od -An -tx1 | tr -d ' ')" = 1f8b ]; then
			gzip -dc "$OUT/vmlinuz-$arch" >"$OUT/Image-arm64.tmp"
		else
			cp "$OUT/vmlinuz-$arch" "$OUT/Image-arm64.tmp"
		fi
		mv "$OUT/Image-arm64.tmp" "$OUT/Image-arm64"
	fi
	dpkg-deb -f "$deb" Package Version | tr '\n' ' ' >"$OUT/VERSION-$arch"
	echo >>"$OUT/VERSION-$arch"
	rm -rf "$work"
	trap - EXIT INT TERM
	echo "get-kernels: $OUT/vmlinuz-$arch ($(cat "$OUT/VERSION-$arch"))"
}

for arch in ${KERNEL_ARCHES:-amd64 arm64}; do
	fetch "$arch"
done
