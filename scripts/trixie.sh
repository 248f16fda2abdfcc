#!/usr/bin/env bash
# Debian 13 (trixie) tools for the buildx tier: Docker 26 (dockerd, CLI), buildx, containerd,
# cosign and oras, at stable paths under /opt/dockerify-trixie:
#   bin/docker bin/dockerd bin/containerd bin/cosign bin/oras   wrappers (only the binary path)
#   docker-config/cli-plugins/docker-buildx                     a DOCKER_CONFIG dir for buildx
#   root/                                                       the unpacked packages
# On Debian 12 the packages come from the trixie archive through a private apt state (the
# machine's own apt sources are never changed, nothing is installed with dpkg -i: the .debs are
# unpacked with dpkg-deb -x). Debian 13's runc needs glibc 2.38, so the machine's own runc is used.
# On Debian 13 the native packages are installed with apt and the same paths point at them.
# Idempotent: a finished install is recognised by its stamp and nothing is fetched again
# (--refresh fetches the newest packages anyway). Run as root.
set -euo pipefail

OPT=${DOCKERIFY_TRIXIE:-/opt/dockerify-trixie}
STATE=${DOCKERIFY_TRIXIE_APT:-/var/cache/dockerify-trixie}
PACKAGES=(docker.io docker-cli docker-buildx containerd cosign oras)
TOOLS=(docker dockerd containerd containerd-shim-runc-v2 docker-proxy cosign oras)
STAMP="$OPT/.installed"
WANT="packages=${PACKAGES[*]}"

refresh=0
[ "${1:-}" = "--refresh" ] && refresh=1

done_already() {
  [ "$refresh" = 0 ] && [ -f "$STAMP" ] && head -n1 "$STAMP" | grep -qxF "$WANT" || return 1
  for t in docker cosign oras; do [ -x "$OPT/bin/$t" ] || return 1; done
  [ -x "$OPT/docker-config/cli-plugins/docker-buildx" ]
}

if done_already; then
  echo "Debian 13 tools already in $OPT ($(tail -n +2 "$STAMP" | tr '\n' ' '))"
  exit 0
fi

# Writes bin/NAME as a two-line wrapper that runs TARGET (sets nothing but the binary path).
wrapper() {
  local name=$1 target=$2
  [ -x "$target" ] || { echo "error: $target is missing (package not unpacked?)" >&2; exit 1; }
  printf '#!/bin/sh\nexec %s "$@"\n' "$target" >"$OPT/bin/$name.new"
  chmod 755 "$OPT/bin/$name.new"
  mv -f "$OPT/bin/$name.new" "$OPT/bin/$name"
}

# Where the packages' files are: root/ on Debian 12, / on Debian 13.
link_tools() {
  local root=$1
  mkdir -p "$OPT/bin" "$OPT/docker-config/cli-plugins"
  wrapper docker "$root/usr/bin/docker"
  wrapper dockerd "$root/usr/sbin/dockerd"
  wrapper containerd "$root/usr/bin/containerd"
  wrapper cosign "$root/usr/bin/cosign"
  wrapper oras "$root/usr/bin/oras"
  local buildx=$root/usr/libexec/docker/cli-plugins/docker-buildx
  [ -x "$buildx" ] || { echo "error: $buildx is missing" >&2; exit 1; }
  # A copy, not a link: the docker CLI lists plugins by what it finds in the directory.
  install -m 755 "$buildx" "$OPT/docker-config/cli-plugins/docker-buildx"
}

write_stamp() {
  { echo "$WANT"; "$@"; } >"$STAMP.new"
  mv -f "$STAMP.new" "$STAMP"
}

if grep -q '^13' /etc/debian_version 2>/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  missing=()
  for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
  mkdir -p "$OPT"
  ln -sfn / "$OPT/root"
  link_tools /
  # shellcheck disable=SC2016  # dpkg-query's own ${field} syntax, not the shell's
  write_stamp dpkg-query -W -f='${Package} ${Version}\n' "${PACKAGES[@]}"
  echo "Debian 13: native packages; $OPT points at them"
  exit 0
fi

# The archive the machine already uses for Debian (deb822 .sources first, then sources.list).
archive_uri() {
  local f uri
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    # The first URIs: line of a stanza whose Suites name a Debian release (not -security).
    uri=$(awk '
      /^[[:space:]]*$/ { if (u != "" && s ~ /(bookworm|trixie|stable)([[:space:]]|$)/) { print u; exit } u=""; s=""; next }
      /^URIs:/ { u=$2 } /^Suites:/ { s=$0 }
      END { if (u != "" && s ~ /(bookworm|trixie|stable)([[:space:]]|$)/) print u }' "$f" | head -n1)
    [ -n "$uri" ] && { echo "$uri"; return; }
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    uri=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) { if ($(i+1) ~ /^(bookworm|trixie|stable)$/) { print $i; exit } break } }' "$f")
    [ -n "$uri" ] && { echo "$uri"; return; }
  done
  return 1
}

uri=$(archive_uri) || { echo "error: no Debian archive found in /etc/apt/sources.list{,.d} to fetch trixie from" >&2; exit 1; }
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[ -f /usr/share/keyrings/debian-archive-trixie-stable.gpg ] || {
  echo "error: $keyring has no trixie keys; update debian-archive-keyring (bookworm's 2023.3+deb12u1 has them)" >&2
  exit 1
}

mkdir -p "$STATE/etc" "$STATE/lists/partial" "$STATE/cache/archives/partial" "$STATE/debs"
echo "deb [signed-by=$keyring] $uri trixie main" >"$STATE/etc/sources.list"
APT=(apt-get -q
  -o "Dir::Etc::SourceList=$STATE/etc/sources.list"
  -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State::Lists=$STATE/lists"
  -o "Dir::Cache=$STATE/cache"
  -o "Dir::State::status=/dev/null"
  -o APT::Architecture=amd64
  -o APT::Architectures::=amd64)

# apt-get download writes into the working directory as the sandbox user _apt.
id _apt >/dev/null 2>&1 && chown _apt "$STATE/debs"
for attempt in 1 2 3; do
  "${APT[@]}" update && break
  [ "$attempt" = 3 ] && { echo "error: apt-get update of $uri trixie failed" >&2; exit 1; }
  sleep $((attempt * 5))
done
(cd "$STATE/debs" && rm -f ./*.deb && "${APT[@]}" download "${PACKAGES[@]}")

new=$OPT/root.new
rm -rf "$new"
mkdir -p "$new"
for deb in "$STATE"/debs/*.deb; do
  dpkg-deb -x "$deb" "$new"
done
# trixie's runc (glibc 2.38) must never shadow the machine's own; none of the packages above ship
# it today, but make sure.
rm -f "$new/usr/sbin/runc" "$new/usr/bin/runc"
command -v runc >/dev/null || { echo "error: runc is not installed (apt-get install runc; docker.io brings it)" >&2; exit 1; }

mkdir -p "$OPT"
rm -rf "$OPT/root.old"
[ -e "$OPT/root" ] && mv "$OPT/root" "$OPT/root.old"
mv "$new" "$OPT/root"
rm -rf "$OPT/root.old"
link_tools "$OPT/root"

# Every tool must run on this machine's glibc (fails here, not later inside a daemon's log).
for t in "${TOOLS[@]}"; do
  bin=
  for d in usr/bin usr/sbin; do [ -x "$OPT/root/$d/$t" ] && bin=$OPT/root/$d/$t; done
  [ -n "$bin" ] || { echo "error: $t is not in the unpacked packages" >&2; exit 1; }
  case $t in
    containerd-shim-runc-v2 | docker-proxy) "$bin" -v >/dev/null 2>&1 || "$bin" --help >/dev/null 2>&1 || true ;;
    *) "$bin" --version >/dev/null 2>&1 || "$bin" version >/dev/null 2>&1 \
         || { echo "error: $bin does not run here: $("$bin" --version 2>&1 | head -n1)" >&2; exit 1; } ;;
  esac
done
"$OPT/bin/docker" --config "$OPT/docker-config" buildx version >/dev/null \
  || { echo "error: docker buildx does not run from $OPT/docker-config" >&2; exit 1; }

deb_versions() {
  local d
  # shellcheck disable=SC2016  # dpkg-deb's own ${field} syntax, not the shell's
  for d in "$STATE"/debs/*.deb; do dpkg-deb --showformat='${Package} ${Version}\n' --show "$d"; done
}
write_stamp deb_versions
echo "Debian 13 tools unpacked in $OPT/root: $(tail -n +2 "$STAMP" | tr '\n' ' ')"
