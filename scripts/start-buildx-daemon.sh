#!/usr/bin/env bash
# The buildx tier's daemon: Docker 26 (Debian 13's dockerd, BuildKit v0.13 built in) with the
# containerd image store, beside the machine's own dockerd, sharing nothing with it:
#   socket      unix:///run/dockerify-buildx/docker.sock
#   data-root   /var/lib/dockerify-buildx/data   exec-root  /run/dockerify-buildx/exec
#   containerd  its own, unix:///run/dockerify-buildx/containerd/containerd.sock
#   bridge      dockerify0 (its own; no iptables rules, so the first daemon's stay as they are)
# The daemon is a second one on Debian 13 too (from the native binaries): the machine's own
# Docker 26 uses the overlay2 graph driver by default, and this tier needs the containerd store.
# Needs scripts/trixie.sh first. Idempotent: a running daemon is left alone. Both daemons are
# checked to run a container before this script reports success. Run as root.
set -euo pipefail

OPT=${DOCKERIFY_TRIXIE:-/opt/dockerify-trixie}
STATE=/var/lib/dockerify-buildx
RUN=/run/dockerify-buildx
SOCK=unix://$RUN/docker.sock
BRIDGE=dockerify0
# A range the first daemon never picks (it uses 172.17-31.x and 192.168.x by default).
# No "default-address-pools" in the config: with it, dockerd deletes the interface named docker0
# (whatever its own bridge is called) on every start after the first, which breaks the first daemon.
BRIDGE_ADDR=10.213.0.1/24
log_dir=${DOCKERIFY_LOG_DIR:-/tmp/dockerify-daemons}
DOCKER26=("$OPT/bin/docker" -H "$SOCK")
# shellcheck disable=SC2034  # read through the nameref in the check below
DOCKER20=(/usr/bin/docker -H unix:///var/run/docker.sock)
CHECK_IMAGE=dockerify-daemon-check:busybox

fail() { echo "error: $*" >&2; exit 1; }

[ -x "$OPT/bin/dockerd" ] || fail "$OPT has no dockerd: run scripts/trixie.sh first"
mkdir -p "$log_dir" "$STATE" "$RUN"

root=$(readlink -f "$OPT/root")
# The packages' binaries first on PATH (containerd starts its shims from it); runc is the
# machine's own (Debian 13's needs glibc 2.38).
DAEMON_PATH="$root/usr/bin:$root/usr/sbin:$PATH"

binfmt_on() { [ "$(head -n1 "/proc/sys/fs/binfmt_misc/$1" 2>/dev/null)" = enabled ]; }

# containerd of its own, started before dockerd (which would otherwise start one with a config
# of its own making). Why: BuildKit lists a platform only when no platform already listed
# "covers" it, and linux/arm64 covers linux/arm/v7, so with the binfmt handlers alone
# `docker buildx ls` never shows arm/v7 although it builds. The runtime plugin's platforms are
# listed first, so arm/v7 is declared there when its qemu handler is registered.
CTR_SOCK=$RUN/containerd/containerd.sock
if ! "$root/usr/bin/ctr" -a "$CTR_SOCK" version >/dev/null 2>&1; then
  platforms='"linux/amd64"'
  binfmt_on qemu-arm && platforms+=', "linux/arm/v7"'
  binfmt_on qemu-aarch64 && platforms+=', "linux/arm64"'
  mkdir -p "$RUN/containerd"
  cat >"$STATE/containerd.toml.new" <<TOML
version = 2
root = "$STATE/containerd"
state = "$RUN/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "$CTR_SOCK"

[ttrpc]
  address = "$CTR_SOCK.ttrpc"

[debug]
  address = "$RUN/containerd/debug.sock"

[plugins."io.containerd.runtime.v2.task"]
  platforms = [$platforms]
TOML
  mv -f "$STATE/containerd.toml.new" "$STATE/containerd.toml"
  PATH=$DAEMON_PATH setsid -f "$root/usr/bin/containerd" --config "$STATE/containerd.toml" \
    >"$log_dir/containerd-buildx.log" 2>&1 </dev/null
  for _ in $(seq 1 30); do
    "$root/usr/bin/ctr" -a "$CTR_SOCK" version >/dev/null 2>&1 && break
    sleep 0.5
  done
  "$root/usr/bin/ctr" -a "$CTR_SOCK" version >/dev/null 2>&1 \
    || fail "containerd for the Docker 26 daemon did not start; see $log_dir/containerd-buildx.log"
fi

if ! "${DOCKER26[@]}" info >/dev/null 2>&1; then
  # Its own bridge, made before the daemon starts: a daemon left to pick (or told "none") has
  # been seen deleting the first daemon's docker0.
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
  fi
  addrs=$(ip -o addr show dev "$BRIDGE")
  [[ $addrs == *"inet $BRIDGE_ADDR "* ]] || ip addr add "$BRIDGE_ADDR" dev "$BRIDGE"
  ip link set "$BRIDGE" up

  cat >"$STATE/daemon.json.new" <<JSON
{
  "features": {"containerd-snapshotter": true},
  "storage-driver": "overlayfs",
  "data-root": "$STATE/data",
  "exec-root": "$RUN/exec",
  "pidfile": "$RUN/dockerd.pid",
  "hosts": ["$SOCK"],
  "containerd": "$CTR_SOCK",
  "bridge": "$BRIDGE",
  "iptables": false,
  "ip6tables": false,
  "ip-forward": false,
  "insecure-registries": ["127.0.0.1:5000"]
}
JSON
  mv -f "$STATE/daemon.json.new" "$STATE/daemon.json"

  PATH=$DAEMON_PATH setsid -f "$root/usr/sbin/dockerd" \
    --config-file "$STATE/daemon.json" >"$log_dir/dockerd-buildx.log" 2>&1 </dev/null
  for _ in $(seq 1 60); do
    "${DOCKER26[@]}" info >/dev/null 2>&1 && break
    sleep 1
  done
  "${DOCKER26[@]}" info >/dev/null 2>&1 || fail "the Docker 26 daemon did not start; see $log_dir/dockerd-buildx.log"
fi

status=$("${DOCKER26[@]}" info --format '{{.DriverStatus}}')
[[ $status == *io.containerd.snapshotter* ]] || fail "the Docker 26 daemon at $SOCK does not use the containerd image store ($STATE/daemon.json)"

# Both daemons must still run containers: a tiny static busybox image, imported into each.
ensure_check_image() {
  "$@" image inspect "$CHECK_IMAGE" >/dev/null 2>&1 && return 0
  local tmp
  tmp=$(mktemp -d)
  mkdir -p "$tmp/root/bin"
  cp /usr/bin/busybox "$tmp/root/bin/busybox"
  ln -s busybox "$tmp/root/bin/true"
  ln -s busybox "$tmp/root/bin/sh"
  tar -C "$tmp/root" -cf "$tmp/root.tar" .
  "$@" import --platform linux/amd64 "$tmp/root.tar" "$CHECK_IMAGE" >/dev/null
  rm -rf "$tmp"
}
for which in DOCKER20 DOCKER26; do
  declare -n cli=$which
  [ -x /usr/bin/busybox ] || fail "busybox-static is not installed (scripts/setup.sh installs it)"
  ensure_check_image "${cli[@]}" || fail "could not import $CHECK_IMAGE with ${cli[*]}"
  if ! { out=$("${cli[@]}" run --rm "$CHECK_IMAGE" /bin/sh -c 'echo ok' 2>&1) && [ "$out" = ok ]; }; then
    fail "${cli[*]} cannot run containers after the Docker 26 daemon started: $out"
  fi
  unset -n cli
done
ip link show docker0 >/dev/null 2>&1 || fail "the first daemon's docker0 bridge is gone (restart that dockerd to recreate it)"
echo "Docker 26 daemon (containerd image store) at $SOCK; both daemons run containers"
