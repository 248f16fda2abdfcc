"""Temporary files and directories that become outputs get the modes a plain `open()` or `mkdir`
would give them under the user's umask (tempfile makes them 0600 and 0700, which would leave a
layout or an SD card readable by its owner only)."""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path


@functools.cache
def umask() -> int:
    """The process's umask, read without changing it (os.umask would, racing other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def mkstemp(dir: str | Path, prefix: str, suffix: str = "") -> tuple[int, str]:
    """tempfile.mkstemp with the mode of a new file: 0666 less the umask."""
    fd, name = tempfile.mkstemp(dir=dir, prefix=prefix, suffix=suffix)
    os.fchmod(fd, 0o666 & ~umask())
    return fd, name


def mkdtemp(dir: str | Path, prefix: str, suffix: str = "") -> str:
    """tempfile.mkdtemp with the mode of a new directory: 0777 less the umask."""
    name = tempfile.mkdtemp(dir=dir, prefix=prefix, suffix=suffix)
    os.chmod(name, 0o777 & ~umask())
    return name
