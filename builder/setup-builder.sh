#!/usr/bin/env bash
# Make the Docker 26 daemon's own BuildKit (buildx `docker` driver) a multi-platform builder and
# show it: enables the qemu-user binfmt handlers, creates and selects a docker context
# `dockerify-buildx` for the daemon, and checks that buildx lists linux/arm64 and linux/arm/v7.
#
#   builder/setup-builder.sh                       # as root, after scripts/start-daemons.sh
#   DOCKER_CONFIG=~/.docker builder/setup-builder.sh   # select it in your own docker config
#
# Environment: DOCKER (the Docker 26 CLI), DOCKER_CONFIG (default: /opt/dockerify-trixie/docker-config,
# which carries the buildx plugin), BUILDX_SOCKET (the daemon, default its socket from
# scripts/start-buildx-daemon.sh). Idempotent.
set -euo pipefail

OPT=${DOCKERIFY_TRIXIE:-/opt/dockerify-trixie}
DOCKER=${DOCKER:-$OPT/bin/docker}
export DOCKER_CONFIG=${DOCKER_CONFIG:-$OPT/docker-config}
SOCKET=${BUILDX_SOCKET:-unix:///run/dockerify-buildx/docker.sock}
CONTEXT=dockerify-buildx
# The context is what selects the daemon here; a DOCKER_HOST would override it.
unset DOCKER_HOST DOCKER_CONTEXT

fail() { echo "error: $*" >&2; exit 1; }

# 1. qemu-user for foreign RUN steps (qemu-aarch64, qemu-arm), registered with the F flag: the
#    interpreter is opened at registration, so it works inside build containers, which have no qemu.
bash "$(dirname "$0")/../scripts/enable-binfmt.sh"

# 2. The buildx plugin and the daemon.
[ -x "$DOCKER" ] || fail "$DOCKER is missing: run scripts/trixie.sh"
if [ ! -x "$DOCKER_CONFIG/cli-plugins/docker-buildx" ]; then
  mkdir -p "$DOCKER_CONFIG/cli-plugins"
  ln -sfn "$OPT/docker-config/cli-plugins/docker-buildx" "$DOCKER_CONFIG/cli-plugins/docker-buildx"
fi
"$DOCKER" buildx version >/dev/null || fail "docker buildx does not run from $DOCKER_CONFIG/cli-plugins"
"$DOCKER" -H "$SOCKET" info >/dev/null 2>&1 || fail "no daemon at $SOCKET (scripts/start-daemons.sh starts it)"

# 3. A context for the daemon; the docker driver's builder carries the context's name.
if ! "$DOCKER" context inspect "$CONTEXT" >/dev/null 2>&1; then
  "$DOCKER" context create "$CONTEXT" --description "dockerify: Docker 26, containerd image store" \
    --docker "host=$SOCKET" >/dev/null
fi
"$DOCKER" context use "$CONTEXT" >/dev/null
"$DOCKER" buildx use "$CONTEXT"

# 4. Its platforms: linux/arm64 and linux/arm/v7 must be there.
platforms=$("$DOCKER" buildx inspect --bootstrap "$CONTEXT" | sed -n 's/^Platforms: *//p' | head -n1)
for want in linux/arm64 linux/arm/v7; do
  [[ ", $platforms," == *", $want,"* ]] \
    || fail "builder $CONTEXT does not list $want (platforms: $platforms); restart the daemon after enabling binfmt"
done
"$DOCKER" buildx ls
echo "builder $CONTEXT (driver docker, $SOCKET) selected in $DOCKER_CONFIG: $platforms"
