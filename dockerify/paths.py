"""Input files named on the command line: a missing one and a directory in its place are told
apart, each in one line with a hint, before any work."""

from __future__ import annotations

from pathlib import Path

from dockerify.errors import DockerifyError, NotFound


def require_file(path: str | Path, what: str, hint: str | None = None) -> Path:
    """`path` as a Path if it is a file (or a link to one); `what` names it in the message
    (`--kernel vmlinuz`, `oci-archive:x.tar`)."""
    p = Path(path)
    if p.is_file():
        return p
    if p.is_dir():
        raise DockerifyError(f"{what}: is a directory, not a file", hint=hint or "name the file inside it")
    raise NotFound(f"{what}: no such file", hint=hint)
