#!/usr/bin/env bash
# Start the real components the tests use: dockerd, a loopback docker-registry, the
# qemu-user binfmt handlers and the buildx tier's Docker 26 daemon.
# Safe to run again: running services are left alone.
set -euo pipefail

log_dir=${DOCKERIFY_LOG_DIR:-/tmp/dockerify-daemons}
mkdir -p "$log_dir"

here=$(dirname "$0")

# binfmt_misc: arm64 / armhf binaries run through qemu-user (F flag: the interpreter is opened at
# registration, so it works inside containers too). Debian 12 and 13 register them differently.
bash "$here/enable-binfmt.sh"

# dockerd with BuildKit built in (Debian's docker.io 20.10).
if ! /usr/bin/docker info >/dev/null 2>&1; then
  (dockerd --host=unix:///var/run/docker.sock >"$log_dir/dockerd.log" 2>&1 &)
  for _ in $(seq 1 60); do
    /usr/bin/docker info >/dev/null 2>&1 && break
    sleep 1
  done
  /usr/bin/docker info >/dev/null 2>&1 || { echo "dockerd did not start; see $log_dir/dockerd.log" >&2; exit 1; }
fi

# A plain registry on 127.0.0.1:5000 only.
if ! curl -fsS http://127.0.0.1:5000/v2/ >/dev/null 2>&1; then
  mkdir -p "$log_dir/registry-data"
  cat >"$log_dir/registry.yml" <<YML
version: 0.1
storage:
  filesystem:
    rootdirectory: $log_dir/registry-data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:5000
YML
  (docker-registry serve "$log_dir/registry.yml" >"$log_dir/registry.log" 2>&1 &)
  for _ in $(seq 1 30); do
    curl -fsS http://127.0.0.1:5000/v2/ >/dev/null 2>&1 && break
    sleep 0.5
  done
  curl -fsS http://127.0.0.1:5000/v2/ >/dev/null || { echo "registry did not start; see $log_dir/registry.log" >&2; exit 1; }
fi

# The buildx tier: Docker 26 with the containerd image store beside the first daemon (its tools
# come from scripts/trixie.sh, a no-op when they are already unpacked).
bash "$here/trixie.sh" >/dev/null
bash "$here/start-buildx-daemon.sh"
echo "dockerd, the Docker 26 daemon, registry (127.0.0.1:5000) and binfmt handlers are up"
