#!/usr/bin/env bash
# Install everything dockerify and its test suite need on Debian bookworm (run as root).
# Idempotent: packages already present are skipped by apt.
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
# Foreign architectures for the fixtures' busybox/libc packages (downloaded, never installed).
for arch in arm64 armhf armel; do
  dpkg --print-foreign-architectures | grep -qx "$arch" || dpkg --add-architecture "$arch"
done
apt-get update -q
apt-get install -y -q --no-install-recommends \
  docker.io docker-registry skopeo umoci \
  e2fsprogs dosfstools mtools fdisk util-linux attr libcap2-bin \
  qemu-user-static binfmt-support qemu-system-x86 qemu-system-arm \
  pigz zstd xz-utils bzip2 gzip cpio tar time apache2-utils \
  busybox-static gcc-arm-linux-gnueabihf gcc-aarch64-linux-gnu gcc libc6-dev \
  libc6-dev-armhf-cross libc6-dev-arm64-cross binutils debootstrap \
  openssl curl python3-pip ca-certificates

python3 -m pip install -q --disable-pip-version-check -e ".[test]"
