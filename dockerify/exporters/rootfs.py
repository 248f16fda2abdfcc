"""`--format rootfs-tar` and `--format rootfs-dir`: an image's flattened root filesystem.

The tarball is written by the same reproducible writer the builder uses for layers, entry by
entry in the order the image holds them, so `dockerify build` of the tarball gives back the very
same layer. The directory is written as an ordinary user would: ownership only when running as
root, and everything that could not be represented is named in a warning."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from dockerify.entry import Entry, FileType
from dockerify.errors import CorruptInput, DockerifyError
from dockerify.exporters.common import (
    CHUNK,
    StreamCompressor,
    Warnings,
    atomic_dir,
    atomic_file,
    compression_for,
    display,
    make_parents,
)
from dockerify.exporters.sink import EntrySource, Result, read_once
from dockerify.oci.select import Image
from dockerify.oci.tarwriter import END_OF_ARCHIVE, entry_blocks

log = logging.getLogger("dockerify")


@dataclass(frozen=True)
class RootfsTarOptions:
    compress: str | None = None  # None: by the output name's suffix


@dataclass(frozen=True)
class TarResult(Result):
    FORMAT: ClassVar[str] = "rootfs-tar"
    path: str
    entries: int
    tar_size: int
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "output": self.path,
            "format": self.FORMAT,
            "entries": self.entries,
            "tar_size": self.tar_size,
            "warnings": list(self.warnings),
        }


class RootfsTar:
    name = TarResult.FORMAT
    options = RootfsTarOptions
    directory = False

    def write(self, image: Image, entries: EntrySource, output: str, options: RootfsTarOptions) -> TarResult:
        return write_rootfs_tar(read_once(entries), output, options.compress)


def write_rootfs_tar(entries: Iterable[Entry], output: str, compression: str | None = None) -> TarResult:
    kind = compression_for(output, compression)
    warnings = Warnings(output)
    count = size = 0
    with atomic_file(output) as tmp, open(tmp, "wb") as f:
        sink = StreamCompressor(kind, f.write) if kind != "none" else None
        pending: list[bytes] = []
        pending_len = 0

        def emit(block: bytes) -> None:
            nonlocal pending_len
            pending.append(block)
            pending_len += len(block)
            if pending_len >= CHUNK:
                flush()

        def flush() -> None:
            nonlocal pending, pending_len
            data = b"".join(pending)
            if sink is not None:
                sink.write(data)
            else:
                f.write(data)
            pending, pending_len = [], 0

        for entry in entries:
            if entry.type is FileType.SOCKET:
                warnings.add("sockets cannot be stored in tar, left out", display(entry.path))
                continue
            for block in entry_blocks(entry, mtime=entry.mtime):
                size += len(block)
                emit(block)
            count += 1
        emit(END_OF_ARCHIVE)
        size += len(END_OF_ARCHIVE)
        flush()
        if sink is not None:
            sink.close()
    return TarResult(output, count, size, tuple(warnings.report()))


# ---------------------------------------------------------------- directory


@dataclass(frozen=True)
class RootfsDirOptions:
    """A directory takes no options of its own."""


@dataclass(frozen=True)
class DirResult(Result):
    FORMAT: ClassVar[str] = "rootfs-dir"
    path: str
    entries: int
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "output": self.path,
            "format": self.FORMAT,
            "entries": self.entries,
            "warnings": list(self.warnings),
        }


class RootfsDir:
    name = DirResult.FORMAT
    options = RootfsDirOptions
    directory = True

    def write(self, image: Image, entries: EntrySource, output: str, options: RootfsDirOptions) -> DirResult:
        return write_rootfs_dir(read_once(entries), output)


class _DirWriter:
    """Writes entries under `root`, never following a symlink the tree itself holds."""

    def __init__(self, root: Path, warnings: Warnings) -> None:
        self.root = os.fsencode(root)
        self.warnings = warnings
        self.is_root = os.geteuid() == 0
        self.uid, self.gid = os.geteuid(), os.getegid()
        self.dirs: set[bytes] = {b"."}
        # Directory metadata is applied last, deepest first, so that read-only directories and
        # mtimes survive the writing of their children.
        self.dir_meta: dict[bytes, Entry] = {}

    def full(self, path: bytes) -> bytes:
        return self.root if path == b"." else os.path.join(self.root, path)

    def ensure_parent(self, path: bytes) -> None:
        make_parents(self.root, self.dirs, path, 0o755)

    def remove_existing(self, full: bytes) -> None:
        with contextlib.suppress(FileNotFoundError):
            st = os.lstat(full)
            if stat.S_ISDIR(st.st_mode):
                raise CorruptInput(f"{full.decode(errors='replace')}: a directory is replaced by a file")
            os.unlink(full)

    def write(self, entry: Entry) -> None:
        path = entry.path
        full = self.full(path)
        if entry.type is FileType.DIR:
            if path != b".":
                self.ensure_parent(path)
                try:
                    os.mkdir(full, 0o700)
                except FileExistsError:
                    if not stat.S_ISDIR(os.lstat(full).st_mode):
                        raise CorruptInput(f"{display(path)}: exists and is not a directory") from None
                self.dirs.add(path)
            os.chmod(full, 0o700)  # writable for us until the end
            self.dir_meta[path] = entry
            return
        self.ensure_parent(path)
        self.remove_existing(full)
        t = entry.type
        if t is FileType.REG:
            self._write_file(full, entry)
        elif t is FileType.HARDLINK:
            os.link(self.full(entry.linkname), full, follow_symlinks=False)
            return  # the inode's metadata came with its first name
        elif t is FileType.SYMLINK:
            os.symlink(entry.linkname, full)
        elif t is FileType.FIFO:
            os.mkfifo(full, 0o600)
        elif t in (FileType.CHAR, FileType.BLOCK):
            kind = stat.S_IFCHR if t is FileType.CHAR else stat.S_IFBLK
            try:
                os.mknod(full, kind | 0o600, os.makedev(entry.devmajor, entry.devminor))
            except PermissionError:
                self.warnings.add(
                    "device nodes need root, left out", f"{display(path)} ({entry.devmajor},{entry.devminor})"
                )
                return
        elif t is FileType.SOCKET:
            self.warnings.add("sockets cannot be created from an image, left out", display(path))
            return
        self._apply(full, entry)

    def _write_file(self, full: bytes, entry: Entry) -> None:
        fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            for offset, data in entry.chunks():
                os.pwrite(fd, data, offset)
            os.ftruncate(fd, entry.size)  # trailing holes
        finally:
            os.close(fd)

    def _apply(self, full: bytes, entry: Entry) -> None:
        """Owner, mode, xattrs, mtime, in the order that keeps each: chown clears setuid bits and
        file capabilities, so it comes first."""
        link = entry.type is FileType.SYMLINK
        if (entry.uid, entry.gid) != (self.uid, self.gid):
            if self.is_root:
                os.lchown(full, entry.uid, entry.gid)
            else:
                self.warnings.add(
                    "ownership needs root, files are owned by the current user",
                    f"{display(entry.path)} ({entry.uid}:{entry.gid})",
                )
        if not link:
            os.chmod(full, entry.mode & 0o7777)
        for name, value in sorted(entry.xattrs.items()):
            try:
                os.setxattr(full, name, value, follow_symlinks=False)
            except OSError as e:
                if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EACCES, errno.EOPNOTSUPP):
                    raise
                self.warnings.add(
                    "extended attributes not accepted by this filesystem or user",
                    f"{display(entry.path)} {name}",
                )
        os.utime(full, ns=(entry.mtime * 10**9, entry.mtime * 10**9), follow_symlinks=False)

    def finish(self) -> None:
        for path in sorted(self.dir_meta, key=lambda p: -p.count(b"/") if p != b"." else 1):
            self._apply(self.full(path), self.dir_meta[path])


def write_rootfs_dir(entries: Iterable[Entry], output: str) -> DirResult:
    warnings = Warnings(output)
    count = 0
    with atomic_dir(output) as tmp:
        writer = _DirWriter(tmp, warnings)
        for entry in entries:
            writer.write(entry)
            count += 1
        writer.finish()
    if not writer.is_root:
        log.info("%s: written as an ordinary user; run as root to keep owners and device nodes", output)
    return DirResult(output, count, tuple(warnings.report()))


__all__ = ["RootfsDir", "RootfsTar", "write_rootfs_tar", "write_rootfs_dir", "DockerifyError"]
