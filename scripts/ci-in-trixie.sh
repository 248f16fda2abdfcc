#!/usr/bin/env bash
# `.ci/run` on a Debian 13 (trixie) machine, from a Debian 12 (or any Docker) host: the machine is
# a privileged container of a fresh trixie rootfs (what a Debian 13 cloud machine starts with:
# apt, ca-certificates, git, make, python3, sudo, procps), made by mmdebstrap and turned into an
# image by dockerify itself (no Docker Hub). The committed HEAD of this tree is cloned into it and
# `CI=true bash .ci/run` runs there as it would on the real machine: setup.sh installs the native
# packages, the machine's own dockerd (Docker 26) and the buildx tier's second daemon start inside.
#
#   scripts/ci-in-trixie.sh [--keep] [--rebuild] [-- PYTEST-ARGS...]
#
# What the container shares with the host, and why:
#   - the kernel's binfmt_misc handlers (they are global; enable-binfmt.sh finds them enabled and
#     leaves them alone, nothing is registered or removed from inside);
#   - /dev (loop devices made after the container starts must appear in it) and /dev/kvm;
#   - the host's extra CA certificates (/usr/local/share/ca-certificates), for a machine whose
#     egress goes through a TLS proxy.
# It has its own network namespace (its registry on 127.0.0.1:5000 and its bridges are its own),
# and /var/lib/docker and /var/lib/dockerify-buildx are volumes (overlayfs cannot sit on the
# container's own overlay root). The volumes and the clone are removed at the end (--keep keeps
# them). Run as root; needs the host's docker, mmdebstrap and the debian-archive-keyring.
# PYTEST-ARGS (for a quick look at a few tests) replace `make test` after `make setup`.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

IMAGE=${CI_TRIXIE_IMAGE:-dockerify-ci/trixie:latest}
CACHE=${CI_TRIXIE_CACHE:-/var/cache/dockerify-ci}
MIRROR=${CI_TRIXIE_MIRROR:-http://deb.debian.org/debian}
BASE=apt,ca-certificates,git,make,python3,sudo,procps
keep=0
rebuild=0
pytest_args=()
while [ $# -gt 0 ]; do
  case $1 in
    --keep) keep=1 ;;
    --rebuild) rebuild=1 ;;
    --) shift; pytest_args=("$@"); break ;;
    *) echo "usage: $0 [--keep] [--rebuild] [-- PYTEST-ARGS...]" >&2; exit 2 ;;
  esac
  shift
done
[ "$(id -u)" = 0 ] || { echo "error: run as root (mmdebstrap and a privileged container)" >&2; exit 1; }

# The machine's image: built once, rebuilt on --rebuild.
if [ "$rebuild" = 1 ] || ! docker image inspect "$IMAGE" >/dev/null 2>&1; then
  mkdir -p "$CACHE"
  tarball=$CACHE/trixie-rootfs.tar
  echo "ci-in-trixie: mmdebstrap trixie ($BASE) from $MIRROR"
  mmdebstrap --quiet --variant=minbase --mode=root --include="$BASE" trixie "$tarball.partial.tar" "$MIRROR"
  mv -f "$tarball.partial.tar" "$tarball"
  PYTHONPATH=$REPO python3 -m dockerify build "$tarball" --platform linux/amd64 --cmd /bin/bash \
    -t "$IMAGE" --output "docker-daemon:$IMAGE"
  rm -f "$tarball"
fi

id=dockerify-ci-trixie-$$
WORK=$(mktemp -d /var/tmp/dockerify-ci-trixie.XXXXXX)
VOLUMES=("$id-docker" "$id-buildx")
# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
  docker rm -f "$id" >/dev/null 2>&1 || true
  if [ "$keep" = 0 ]; then
    # (a container being removed still holds its volumes for a moment)
    for _ in 1 2 3 4 5 6 7 8 9 10; do
      docker volume rm -f "${VOLUMES[@]}" >/dev/null 2>&1 && break
      sleep 2
    done
    rm -rf "$WORK/c"
  else
    echo "ci-in-trixie: kept $WORK and volumes ${VOLUMES[*]}"
  fi
}
trap cleanup EXIT

# The repository as CI sees it: the committed HEAD, beside ../shared when this tree has one.
git clone --quiet "$REPO" "$WORK/c"
mounts=(-v "$WORK/c:/work/c")
shared=$(readlink -f "$REPO/../shared" 2>/dev/null || true)
[ -d "$shared" ] || shared=/work/shared
[ -d "$shared" ] && mounts+=(-v "$shared:/work/shared:ro")
[ -d /usr/local/share/ca-certificates ] && mounts+=(-v /usr/local/share/ca-certificates:/usr/local/share/host-ca:ro)
for v in "${VOLUMES[@]}"; do docker volume create "$v" >/dev/null; done

if [ ${#pytest_args[@]} -gt 0 ]; then
  test_cmd="make setup && python3 -m pytest -q -rs $(printf '%q ' "${pytest_args[@]}")"
else
  test_cmd="bash .ci/run"
fi
# What --privileged gives, spelled out: --privileged asks runc for every capability the kernel
# knows, and fails ("unable to apply caps") where the host's own root lacks one (sandboxed VMs
# often drop CAP_SYS_RESOURCE); so all capabilities but those missing here, every device, no
# seccomp/AppArmor/masked paths, and /sys and the cgroup mounts writable (remounted inside).
powers=(--cap-add ALL --security-opt seccomp=unconfined --security-opt apparmor=unconfined
  --security-opt systempaths=unconfined --device-cgroup-rule 'a *:* rwm')
bounding=$((16#$(awk '/^CapBnd:/ {print $2}' /proc/self/status)))
(( bounding >> 24 & 1 )) || powers+=(--cap-drop SYS_RESOURCE)
# Inside: trust the host's extra CAs (if any), then the CI entry point exactly as on a machine.
inner="set -e
mount -o remount,rw /sys
for d in /sys/fs/cgroup/*/; do mount -o remount,bind,rw \"\$d\"; done
[ -e /sys/fs/cgroup/cgroup.controllers ] && mount -o remount,rw /sys/fs/cgroup
if [ -d /usr/local/share/host-ca ]; then
  cp /usr/local/share/host-ca/*.crt /usr/local/share/ca-certificates/ 2>/dev/null || true
  update-ca-certificates >/dev/null
fi
echo \"ci-in-trixie: Debian \$(cat /etc/debian_version)\"
cd /work/c && CI=true $test_cmd"

echo "ci-in-trixie: $(git -C "$REPO" log -1 --format='%h %s') in $IMAGE; log: $WORK/ci.log"
start=$(date +%s)
rc=0
docker run "${powers[@]}" --name "$id" --hostname debian13 \
  -v /dev:/dev "${mounts[@]}" \
  -v "$id-docker:/var/lib/docker" -v "$id-buildx:/var/lib/dockerify-buildx" \
  "$IMAGE" bash -c "$inner" >"$WORK/ci.log" 2>&1 || rc=$?
took=$(($(date +%s) - start))
tail -n 40 "$WORK/ci.log"
summary=$(grep -E '^(=+ )?[0-9]+ (passed|failed)' "$WORK/ci.log" | tail -n1 || true)
release=$(sed -n 's/^ci-in-trixie: Debian //p' "$WORK/ci.log" | head -n1)
echo "ci-in-trixie: exit $rc after ${took}s on Debian ${release:-?}: ${summary:-no pytest summary}"
exit "$rc"
