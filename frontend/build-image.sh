#!/usr/bin/env bash
# Build dockerify's BuildKit frontend image with no Docker Hub: a Debian minbase rootfs per
# platform (mmdebstrap; arm64 through qemu-user binfmt), the dockerify package and the .proto
# files added, made into one linux/amd64 + linux/arm64 image by dockerify itself, then
#   - pushed to $REGISTRY/dockerify/frontend:latest (the multi-platform index),
#   - loaded into Debian's dockerd as dockerify/frontend:latest (the host's platform),
#   - pulled into the buildx daemon when it runs (scripts/start-buildx-daemon.sh).
# The rootfs tarballs are cached in $CACHE, keyed by suite, mirror and package list, so a re-run
# only redoes the quick part. Run as root (mmdebstrap keeps owners and device nodes).
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."

REGISTRY=${REGISTRY:-127.0.0.1:5000}
NAME=${FRONTEND_NAME:-dockerify/frontend:latest}
PLATFORMS=${FRONTEND_PLATFORMS:-"amd64 arm64"}
CACHE=${FRONTEND_CACHE:-/var/cache/dockerify-frontend}
SUITE=bookworm
PYTHON=${PYTHON:-python3}
BUILDX_SOCK=${BUILDX_SOCK:-/run/dockerify-buildx/docker.sock}
# What the frontend and its exec ops need: Python with grpcio for the gateway, zstandard for
# zstd layers and inputs, crc32c for ext4 checksums, and the filesystem tools of the SD-card export.
PACKAGES=python3,python3-grpcio,python3-zstandard,python3-crc32c,e2fsprogs,dosfstools,mtools,fdisk,xz-utils

mirror() {
  # The machine's own Debian mirror (never hard-coded), from deb822 or one-line sources.
  local uri
  # (`|| true`: under pipefail a grep that finds nothing, or no .sources file at all, would
  # otherwise end the script silently.)
  uri=$(grep -h '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -1 | awk '{print $2}' || true)
  if [ -z "$uri" ]; then
    uri=$(grep -h '^deb ' /etc/apt/sources.list 2>/dev/null | grep -v security | head -1 | awk '{print $2}' || true)
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

MIRROR=$(mirror)
KEY=$(printf '%s\n' "$SUITE" "$MIRROR" "$PACKAGES" v1 | sha256sum | cut -c1-16)
mkdir -p "$CACHE"

rootfs_tar() {
  local arch=$1
  local out="$CACHE/$SUITE-$arch-$KEY.tar"
  if [ ! -s "$out" ]; then
    echo "frontend: mmdebstrap $SUITE $arch (cached afterwards in $out)" >&2
    # shellcheck disable=SC2016  # the hook's "$1" is the chroot, expanded by mmdebstrap's shell
    mmdebstrap --quiet --variant=minbase --mode=root --architectures="$arch" \
      --include="$PACKAGES" \
      --dpkgopt='path-exclude=/usr/share/man/*' \
      --dpkgopt='path-exclude=/usr/share/doc/*' \
      --dpkgopt='path-include=/usr/share/doc/*/copyright' \
      --dpkgopt='path-exclude=/usr/share/locale/*' \
      --dpkgopt='path-exclude=/usr/share/info/*' \
      --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/*' \
      "$SUITE" "$out.partial.tar" "$MIRROR" >&2
    mv "$out.partial.tar" "$out"
  fi
  echo "$out"
}

WORK=$(mktemp -d /var/tmp/dockerify-frontend.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
# Reproducible: the same sources and packages give the same image digests.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}

sources=()
for arch in $PLATFORMS; do
  tarball=$(rootfs_tar "$arch")
  root="$WORK/$arch"
  mkdir -p "$root"
  tar -xpf "$tarball" -C "$root" --xattrs --xattrs-include='*' --numeric-owner
  # Mount points BuildKit's executor binds over a read-only root (v0.13 fails without them).
  for f in etc/hosts etc/resolv.conf etc/hostname; do [ -e "$root/$f" ] || : >"$root/$f"; done
  # And the frontend's own exec ops' mount points (dockerify/frontend/compiler.py).
  install -d -m 0755 "$root/context" "$root/out" "$root/meta" "$root/rootfs" "$root/config"
  site="$root/usr/lib/python3/dist-packages"
  # The package as it is in this tree (no wheel: the image uses Debian's Python libraries).
  (cd "$PWD" && find dockerify -name '*.py' -o -name 'py.typed' -o -path 'dockerify/exporters/init/init-*') |
    grep -v __pycache__ | while read -r f; do install -D -m 0644 "$f" "$site/$f"; done
  chmod 0755 "$site"/dockerify/exporters/init/init-* 2>/dev/null || true
  install -d "$site/dockerify/frontend/proto"
  install -m 0644 frontend/proto/*.proto "$site/dockerify/frontend/proto/"
  # Byte-compiled once here, so a frontend start does not compile (its root is read-only).
  # The host's Python 3.11 writes the same bytecode format as the image's 3.11.
  "$PYTHON" -m compileall -q -j0 --invalidation-mode unchecked-hash \
    -s "$root" -p / "$site/dockerify" >/dev/null
  find "$root" -newer "$tarball" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} + 2>/dev/null || true
  case $arch in
    amd64) sources+=("linux/amd64=$root") ;;
    arm64) sources+=("linux/arm64=$root") ;;
    armhf) sources+=("linux/arm/v7=$root") ;;
  esac
done

# Caps a client may ask for (frontend.caps): named contexts, subrequests... none implemented.
CAPS=""
build() {
  "$PYTHON" -m dockerify build -q --no-pi-fixups \
    --entrypoint '["python3","-m","dockerify.frontend"]' --cmd '[]' \
    --env PYTHONDONTWRITEBYTECODE=1 \
    --label moby.buildkit.frontend.network.none=true \
    --label "moby.buildkit.frontend.caps=$CAPS" \
    --label org.opencontainers.image.title="dockerify frontend" \
    "$@"
}

# gzip and dense: Docker 20.10 pulls neither zstd layers nor GNU sparse members.
build --dense --output "oci:$WORK/oci:latest" "${sources[@]}" >/dev/null
"$PYTHON" -m dockerify push -q "oci:$WORK/oci:latest" "$REGISTRY/$NAME" >/dev/null
host=$(dpkg --print-architecture)
for s in "${sources[@]}"; do
  case $s in
    "linux/$host="*) build --output "docker-daemon:$NAME" "$s" >/dev/null ;;
  esac
done
if [ -S "$BUILDX_SOCK" ]; then
  # The buildx daemon (containerd image store) keeps the whole index.
  DOCKER_HOST="unix://$BUILDX_SOCK" /opt/dockerify-trixie/bin/docker pull -q "$REGISTRY/$NAME" >&2 &&
    DOCKER_HOST="unix://$BUILDX_SOCK" /opt/dockerify-trixie/bin/docker tag "$REGISTRY/$NAME" "$NAME" >&2 ||
    echo "frontend: warning: could not load the image into the buildx daemon" >&2
fi
# The compressed size per platform, as a registry serves it.
"$PYTHON" - "$REGISTRY" "$NAME" <<'EOF' >&2
import json, subprocess, sys
registry, name = sys.argv[1], sys.argv[2]
repo = name.rsplit(":", 1)[0]
def raw(ref):
    out = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{registry}/{ref}"],
                         check=True, capture_output=True).stdout
    return json.loads(out)
root = raw(name)
for m in root.get("manifests") or [{"digest": None, "platform": {"os": "linux", "architecture": "?"}}]:
    layers = raw(f"{repo}@{m['digest']}")["layers"] if m["digest"] else root["layers"]
    p = m["platform"]
    print(f"frontend: {registry}/{name} {p['os']}/{p['architecture']}: "
          f"{sum(layer['size'] for layer in layers) / 2**20:.1f} MiB compressed")
EOF
