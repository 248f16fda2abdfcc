"""One wrapper for every external tool: scrubbed environment, stdin from /dev/null, the command
logged under --debug, and failures turned into DockerifyError with the tool's own words."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence

from dockerify.errors import DockerifyError, NotFound

log = logging.getLogger("dockerify")

# Variables that change tool output or behaviour in ways we do not want (locale-dependent
# messages, user-specific tar defaults); PATH and HOME stay so tools are found and configured.
_KEEP = ("PATH", "HOME", "TMPDIR", "DOCKER_HOST", "DOCKER_CONFIG", "SOURCE_DATE_EPOCH", "XDG_RUNTIME_DIR")

# Why each tool is needed and which Debian package provides it.
TOOLS: dict[str, tuple[str, str]] = {
    "mke2fs": ("e2fsprogs", "to write ext4 root filesystems"),
    "e2fsck": ("e2fsprogs", "to check ext4 filesystems"),
    "debugfs": ("e2fsprogs", "to set ext4 ownership and xattrs"),
    "mkfs.vfat": ("dosfstools", "to write FAT boot partitions"),
    "mcopy": ("mtools", "to copy files onto FAT partitions"),
    "mmd": ("mtools", "to create directories on FAT partitions"),
    "sfdisk": ("fdisk", "to write partition tables"),
    "docker": ("docker.io", "to talk to the Docker daemon"),
    "fakeroot": ("fakeroot", "to give files root ownership in filesystems written by an ordinary user"),
    "dumpe2fs": ("e2fsprogs", "to read ext4 filesystem parameters"),
    "mattrib": ("mtools", "to set FAT file attributes"),
    "xz": ("xz-utils", "to compress with xz"),
    "qemu-system-x86_64": ("qemu-system-x86", "to boot amd64 kernels"),
    "qemu-system-aarch64": ("qemu-system-arm", "to boot arm64 kernels"),
}


def scrubbed_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in _KEEP}
    env["LC_ALL"] = "C.UTF-8"
    if extra:
        env.update(extra)
    return env


def check_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        package, why = TOOLS.get(name, (name, "for this command"))
        raise NotFound(f"{name} is required {why}", hint=f"install it: apt-get install {package}")
    return path


def run(
    cmd: Sequence[str],
    *,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    check: bool = True,
    capture: bool = True,
) -> subprocess.CompletedProcess[bytes]:
    check_tool(cmd[0])
    log.debug("+ %s", " ".join(cmd))
    try:
        proc = subprocess.run(
            list(cmd),
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE if capture else None,
            env=scrubbed_env(env),
            cwd=cwd,
        )
    except OSError as e:
        raise DockerifyError(f"{cmd[0]}: cannot start: {e.strerror}") from e
    if check and proc.returncode != 0:
        raise DockerifyError(describe_failure(cmd, proc.returncode, proc.stderr or b""))
    return proc


def describe_failure(cmd: Sequence[str], returncode: int, stderr: bytes) -> str:
    tail = stderr.decode(errors="replace").strip().splitlines()[-3:]
    detail = ("; ".join(tail)) if tail else "no message"
    if returncode == 127:
        return f"{cmd[0]}: not found (exit 127)"
    if returncode < 0:
        return f"{cmd[0]} was killed by {signal.Signals(-returncode).name}: {detail}"
    return f"{cmd[0]} failed with exit status {returncode}: {detail}"
