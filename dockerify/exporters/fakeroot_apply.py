"""Run under `fakeroot` by the SD-card exporter (see ext4img.py); not a user command.

`mke2fs -d DIR` copies owners, modes, device numbers and xattrs from what stat(2) and listxattr(2)
report. An ordinary user cannot chown, mknod or set security.* attributes for real, but under
fakeroot these calls succeed and later calls in the same session see the result. So this helper,
inside one fakeroot session, gives the staged tree its true metadata from the records the exporter
wrote, then runs mke2fs, which thereby copies ownership, devices and xattrs into the filesystem
without any privilege. (fakeroot keeps xattrs only for the life of its session, hence one process
does both.)

Usage: python3 -m dockerify.exporters.fakeroot_apply HEADER PLAN
HEADER is a pickled dict (staging root, path prefixes to skip, the mke2fs attempts); PLAN a stream
of pickled lists of records (path, kind, mode, uid, gid, mtime, major, minor, xattrs), both
written by the exporter for this run. On success it prints the index of the
mke2fs attempt that fitted as JSON on stdout; exit status 3 means no attempt had room.
"""

from __future__ import annotations

import json
import os
import pickle
import stat
import sys
from typing import Any

from dockerify.errors import DockerifyError
from dockerify.run import run

NO_ROOM = 3
_NO_ROOM_WORDS = ("No space left", "Could not allocate", "not enough space", "Not enough space", "too small")
_DEVICES = {"c": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO, "s": stat.S_IFSOCK}
_PASS_ENV = ("LD_PRELOAD", "LD_LIBRARY_PATH", "FAKEROOTKEY", "FAKED_MODE", "FAKEROOT_FD_BASE")


def _apply(root: bytes, rec: tuple[Any, ...], dirs: list[tuple[bytes, int, int]]) -> None:
    path, kind, mode, uid, gid, mtime, major, minor, xattrs = rec
    full = root if path == b"." else os.path.join(root, path)
    if kind in _DEVICES and not os.path.lexists(full):
        os.mknod(full, _DEVICES[kind] | 0o600, os.makedev(major, minor))
    # Always: fakeroot reports an untouched file as root's, but a file it first meets through
    # setxattr is recorded with its real owner.
    os.lchown(full, uid, gid)
    for name, value in xattrs:
        os.setxattr(full, name, value, follow_symlinks=False)
    if kind == "d":
        dirs.append((full, mode, mtime))
        return
    if kind != "l":
        os.chmod(full, mode)
    ns = mtime * 1_000_000_000
    os.utime(full, ns=(ns, ns), follow_symlinks=False)


class NoRoomError(Exception):
    pass


def apply_plan(root_text: str, skip: tuple[bytes, ...], plan_path: str) -> None:
    """Give the staged tree its recorded metadata (under fakeroot, or for real as root)."""
    root = os.fsencode(root_text)
    dirs: list[tuple[bytes, int, int]] = []
    with open(plan_path, "rb") as f:
        while True:
            try:
                batch = pickle.load(f)
            except EOFError:
                break
            for rec in batch:
                if skip and rec[0].startswith(skip):
                    continue
                _apply(root, rec, dirs)
    # Directories last, deepest first: their modes may forbid writing and their mtimes must not be
    # disturbed by what was created in them.
    dirs.sort(key=lambda d: d[0].count(b"/"), reverse=True)
    for full, mode, mtime in dirs:
        os.chmod(full, mode)
        ns = mtime * 1_000_000_000
        os.utime(full, ns=(ns, ns))


def run_attempts(attempts: list[dict[str, Any]], env: dict[str, str]) -> int:
    """Run the mke2fs attempts in turn; the index of the first that fitted."""
    last = ""
    for index, attempt in enumerate(attempts):
        if "truncate" in attempt:
            with open(attempt["truncate"][0], "r+b") as out:
                out.truncate(attempt["truncate"][1])
        try:
            run(attempt["cmd"], env=env)
        except DockerifyError as e:
            last = e.message
            if any(word in last for word in _NO_ROOM_WORDS):
                continue
            raise
        return index
    raise NoRoomError(last)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python3 -m dockerify.exporters.fakeroot_apply HEADER PLAN", file=sys.stderr)
        return 2
    if "FAKEROOTKEY" not in os.environ and os.geteuid() != 0:
        print("fakeroot_apply: not running under fakeroot", file=sys.stderr)
        return 2
    with open(argv[1], "rb") as f:
        header: dict[str, Any] = pickle.load(f)
    apply_plan(header["root"], tuple(header.get("skip", ())), argv[2])
    env = {k: v for k, v in os.environ.items() if k in _PASS_ENV}
    env.update(header.get("env", {}))
    try:
        index = run_attempts(header["attempts"], env)
    except NoRoomError as e:
        print(str(e), file=sys.stderr)
        return NO_ROOM
    except DockerifyError as e:
        print(e.message, file=sys.stderr)
        return 1
    print(json.dumps({"attempt": index}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
