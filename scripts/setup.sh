#!/usr/bin/env bash
# Install everything dockerify and its test suite need on Debian bookworm or trixie (run as root).
# Idempotent: packages already present are skipped by apt.
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
# Foreign architectures for the fixtures' busybox/libc packages (downloaded, never installed).
for arch in arm64 armhf armel; do
  dpkg --print-foreign-architectures | grep -qx "$arch" || dpkg --add-architecture "$arch"
done
PACKAGES=(
  docker.io docker-registry skopeo umoci
  e2fsprogs dosfstools mtools fdisk util-linux attr libcap2-bin
  qemu-user-static binfmt-support qemu-system-x86 qemu-system-arm
  pigz zstd xz-utils bzip2 gzip cpio tar time apache2-utils
  lz4 lzip lzop ncompress libarchive-tools acl
  busybox-static gcc-arm-linux-gnueabihf gcc-aarch64-linux-gnu gcc libc6-dev
  libc6-dev-armhf-cross libc6-dev-arm64-cross binutils debootstrap
  fakeroot seabios openssl curl python3-pip python3-venv ca-certificates openssh-client
  golang-docker-credential-helpers pass gnupg
  mmdebstrap arch-test shellcheck iproute2
)

# A mirror caught mid-sync makes `apt-get update` fail for one index; retry, then go on with
# what was fetched (a package that really is missing still fails the install below).
apt_update() {
  for attempt in 1 2 3; do
    apt-get update -q && return 0
    echo "apt-get update failed (attempt $attempt); retrying" >&2
    sleep $((attempt * 5))
  done
  echo "warning: apt-get update reported errors; continuing with the package lists it has" >&2
}

missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
apt_update
if [ ${#missing[@]} -gt 0 ]; then
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Debian 13's python3 (and Debian 12's own, unlike a pyenv or venv one) is marked externally
# managed (PEP 668) and pip refuses to install into it. This is a machine set up for dockerify as
# root: install into /usr/local beside Debian's packages (pip never removes those).
pip_flags=(-q --disable-pip-version-check)
if python3 -c 'import os, sys, sysconfig
marker = os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")
sys.exit(0 if sys.prefix == sys.base_prefix and os.path.exists(marker) else 1)'; then
  pip_flags+=(--break-system-packages)
fi
python3 -m pip install "${pip_flags[@]}" -e ".[test]"

# Debian 13's Docker 26, buildx, cosign and oras for the buildx tier (unpacked under
# /opt/dockerify-trixie on Debian 12, the native packages on Debian 13).
bash scripts/trixie.sh
