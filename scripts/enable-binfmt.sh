#!/usr/bin/env bash
# Register and enable the qemu-user binfmt handlers for arm64 and arm (run as root).
# Debian 12 registers them through binfmt-support (update-binfmts); Debian 13's qemu-user-binfmt
# ships only systemd's /usr/lib/binfmt.d/*.conf, which nothing reads on a machine without systemd
# (containers, CI), so the handler's line is written to the kernel directly. The F flag (both
# releases set it) opens the interpreter at registration: it then works inside containers too.
# Safe to run again: enabled handlers are left alone. `--check` only reports.
set -euo pipefail

BINFMT=/proc/sys/fs/binfmt_misc
HANDLERS=(qemu-aarch64 qemu-arm)
check=0
[ "${1:-}" = "--check" ] && check=1

enabled() { [ "$(head -n1 "$BINFMT/$1" 2>/dev/null)" = enabled ]; }

if [ "$check" = 0 ] && [ ! -e "$BINFMT/register" ]; then
  mount -t binfmt_misc binfmt_misc "$BINFMT"
fi
for h in "${HANDLERS[@]}"; do
  if [ "$check" = 0 ] && ! enabled "$h"; then
    if [ -e "$BINFMT/$h" ]; then
      echo 1 >"$BINFMT/$h"
    elif [ -f "/usr/share/binfmts/$h" ] && command -v update-binfmts >/dev/null; then
      update-binfmts --enable "$h" >/dev/null 2>&1 || true
    fi
    if [ ! -e "$BINFMT/$h" ] && [ -f "/usr/lib/binfmt.d/$h.conf" ]; then
      grep -v '^[#;]' "/usr/lib/binfmt.d/$h.conf" | grep -m1 "^:$h:" >"$BINFMT/register"
    fi
  fi
  enabled "$h" || { echo "error: binfmt handler $h is not registered (apt-get install qemu-user-static binfmt-support)" >&2; exit 1; }
  grep -q '^flags:.*F' "$BINFMT/$h" || { echo "error: binfmt handler $h lacks the F flag" >&2; exit 1; }
done
