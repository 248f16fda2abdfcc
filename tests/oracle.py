"""Independent views of trees for the tests: the kernel's (a read-only loop mount), GNU tar's,
umoci's and mtools', compared attribute by attribute. dockerify's own readers are not used."""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

IGNORE_ROOT = {b"lost+found"}


def _xattrs(path: bytes) -> dict[str, bytes]:
    try:
        return {
            n: os.getxattr(path, n, follow_symlinks=False) for n in os.listxattr(path, follow_symlinks=False)
        }
    except OSError:
        return {}


def _sha(path: bytes) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while data := f.read(1 << 20):
            h.update(data)
    return h.hexdigest()


def snapshot(
    root: str | Path, *, skip: set[bytes] = IGNORE_ROOT, contents: bool = True
) -> dict[bytes, tuple]:
    """path -> (type, mode, uid, gid, mtime, size, target, rdev, xattrs, sha256, link group)."""
    base = os.fsencode(root)
    out: dict[bytes, tuple] = {}
    inodes: dict[int, list[bytes]] = {}
    for dirpath, dirnames, filenames in os.walk(base):
        rel_dir = os.path.relpath(dirpath, base)
        if rel_dir == b".":
            dirnames[:] = [d for d in dirnames if d not in skip]
            filenames = [f for f in filenames if f not in skip]
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            st = os.lstat(full)
            kind = stat.S_IFMT(st.st_mode)
            if kind == stat.S_IFDIR and name in dirnames and os.path.islink(full):
                kind = stat.S_IFLNK
            if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
                inodes.setdefault(st.st_ino, []).append(rel)
            out[rel] = (
                kind,
                stat.S_IMODE(st.st_mode),
                st.st_uid,
                st.st_gid,
                int(st.st_mtime),
                st.st_size if stat.S_ISREG(st.st_mode) else 0,
                os.readlink(full) if stat.S_ISLNK(st.st_mode) else b"",
                st.st_rdev if kind in (stat.S_IFCHR, stat.S_IFBLK) else 0,
                tuple(sorted(_xattrs(full).items())),
                _sha(full) if contents and stat.S_ISREG(st.st_mode) else "",
                b"",
            )
    for paths in inodes.values():
        group = min(paths)
        for p in paths:
            out[p] = out[p][:-1] + (group,)
    return out


def differences(a: dict[bytes, tuple], b: dict[bytes, tuple], limit: int = 20) -> list[str]:
    lines = []
    for path in sorted(set(a) | set(b)):
        if a.get(path) != b.get(path):
            lines.append(f"{path!r}: {a.get(path)} != {b.get(path)}")
            if len(lines) >= limit:
                break
    return lines


@contextlib.contextmanager
def loop_mount(image: str | Path, offset: int, size: int) -> Iterator[Path]:
    """Read-only kernel view of an ext2/3/4 partition at a byte offset (needs root)."""
    mnt = Path(tempfile.mkdtemp(prefix="oracle-mnt-"))
    subprocess.run(
        ["mount", "-o", f"ro,loop,offset={offset},sizelimit={size}", str(image), str(mnt)], check=True
    )
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
        mnt.rmdir()


def umoci_unpack(layout_dir: str | Path, tag: str, dest: Path) -> Path:
    subprocess.run(
        ["umoci", "unpack", "--image", f"{layout_dir}:{tag}", str(dest)], check=True, capture_output=True
    )
    return dest / "rootfs"


def mtools_copy(image: str | Path, offset: int, dest: Path) -> Path:
    """The FAT partition's files as mtools sees them."""
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mcopy", "-s", "-n", "-i", f"{image}@@{offset}", "::/", str(dest)],
        check=True,
        capture_output=True,
        env={**os.environ, "MTOOLS_SKIP_CHECK": "1"},
    )
    return dest


def file_contents(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }
