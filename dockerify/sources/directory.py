"""Entries from a directory on this machine (a rootfs tree)."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from typing import Any

from dockerify.entry import CHUNK, ChunkReader, Entry, FileType
from dockerify.errors import DockerifyError


def _xattrs(path: bytes) -> dict[str, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EPERM):
            return {}
        raise
    return {n: os.getxattr(path, n, follow_symlinks=False) for n in sorted(names)}


def data_regions(fd: int, size: int) -> tuple[tuple[int, int], ...] | None:
    """Data regions found with SEEK_DATA/SEEK_HOLE; None when the file has no holes."""
    if size == 0:
        return None
    regions = []
    pos = 0
    try:
        while pos < size:
            start = os.lseek(fd, pos, os.SEEK_DATA)
            end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
            regions.append((start, end - start))
            pos = end
    except OSError as e:
        if e.errno != errno.ENXIO:  # ENXIO: no data after pos, the rest is a hole
            return None
    if regions == [(0, size)]:
        return None
    return tuple(regions)


def _reader(path: bytes, regions: tuple[tuple[int, int], ...] | None, size: int) -> ChunkReader:
    def read() -> Iterator[tuple[int, bytes]]:
        with open(path, "rb", buffering=0) as f:
            for offset, length in regions if regions is not None else ((0, size),):
                done = 0
                while done < length:
                    data = os.pread(f.fileno(), min(CHUNK, length - done), offset + done)
                    if not data:
                        raise DockerifyError(f"{path.decode(errors='replace')}: file shrank while reading")
                    yield offset + done, data
                    done += len(data)

    return read


def directory_entries(root: str) -> Iterator[Entry]:
    base = os.fsencode(root)
    if not os.path.isdir(base):
        raise DockerifyError(f"{root}: not a directory")
    links: dict[tuple[int, int], bytes] = {}

    def walk(rel: bytes) -> Iterator[Entry]:
        full = base if rel == b"." else os.path.join(base, rel)
        st = os.lstat(full)
        entry = Entry(
            path=rel,
            type=FileType.DIR,
            mode=stat.S_IMODE(st.st_mode),
            uid=st.st_uid,
            gid=st.st_gid,
            mtime=int(st.st_mtime),
            xattrs=_xattrs(full),
        )
        yield entry
        for name in sorted(os.listdir(full)):
            child = name if rel == b"." else rel + b"/" + name
            path = os.path.join(full, name)
            cst = os.lstat(path)
            if stat.S_ISDIR(cst.st_mode):
                yield from walk(child)
                continue
            yield _entry(child, path, cst, links)

    yield from walk(b".")


def _entry(rel: bytes, path: bytes, st: os.stat_result, links: dict[tuple[int, int], bytes]) -> Entry:
    mode = st.st_mode
    common: dict[str, Any] = dict(
        path=rel,
        mode=stat.S_IMODE(mode),
        uid=st.st_uid,
        gid=st.st_gid,
        mtime=int(st.st_mtime),
        xattrs=_xattrs(path),
    )
    if st.st_nlink > 1 and not stat.S_ISDIR(mode):
        key = (st.st_dev, st.st_ino)
        if key in links:
            return Entry(type=FileType.HARDLINK, linkname=links[key], **common)
        links[key] = rel
    if stat.S_ISREG(mode):
        with open(path, "rb", buffering=0) as f:
            regions = data_regions(f.fileno(), st.st_size)
        return Entry(
            type=FileType.REG,
            size=st.st_size,
            sparse=regions,
            reader=_reader(path, regions, st.st_size),
            **common,
        )
    if stat.S_ISLNK(mode):
        return Entry(type=FileType.SYMLINK, linkname=os.readlink(path), **common)
    kinds = {
        stat.S_IFCHR: FileType.CHAR,
        stat.S_IFBLK: FileType.BLOCK,
        stat.S_IFIFO: FileType.FIFO,
        stat.S_IFSOCK: FileType.SOCKET,
    }
    ftype = kinds[stat.S_IFMT(mode)]
    return Entry(
        type=ftype,
        devmajor=os.major(st.st_rdev) if ftype in (FileType.CHAR, FileType.BLOCK) else 0,
        devminor=os.minor(st.st_rdev) if ftype in (FileType.CHAR, FileType.BLOCK) else 0,
        **common,
    )
