"""A reproducible newc (SVR4 "070701") cpio writer for file entries, as the Linux initramfs reads.

Layout of each member: a 110-byte ASCII header of thirteen 8-digit hex fields, the NUL-terminated
name, padding to 4 bytes, the data, padding to 4 bytes; the archive ends with "TRAILER!!!" and is
padded to 512 bytes. Inode numbers are counted from 1 in stream order; device fields are 0.

Hard links follow newc: every name of a group carries the same inode number and the group's link
count. The count is only known once the whole stream has been seen, so the writer needs a seekable
file: headers of multiply linked files are patched in place at the end (the fields have a fixed
width). The data travels with the first name; later names have size 0, which both the kernel and
GNU cpio accept.

newc cannot hold extended attributes, files of 4 GiB or more, or mtimes outside 0..2^32-1: the
first is warned about (with the files named), the others are refused or clamped with a warning.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass, field
from typing import BinaryIO

from dockerify.entry import Entry, FileType
from dockerify.errors import DockerifyError
from dockerify.exporters.common import Warnings, display

MAGIC = b"070701"
HEADER_SIZE = 110
NLINK_OFFSET = 6 + 4 * 8  # magic, ino, mode, uid, gid -> nlink
MAX_FIELD = 0xFFFFFFFF
MAX_FILE = 1 << 32  # newc's filesize is 32 bits: a file must be smaller than 4 GiB
TRAILER = b"TRAILER!!!"

_TYPE_BITS = {
    FileType.REG: stat.S_IFREG,
    FileType.HARDLINK: stat.S_IFREG,
    FileType.DIR: stat.S_IFDIR,
    FileType.SYMLINK: stat.S_IFLNK,
    FileType.CHAR: stat.S_IFCHR,
    FileType.BLOCK: stat.S_IFBLK,
    FileType.FIFO: stat.S_IFIFO,
    FileType.SOCKET: stat.S_IFSOCK,
}


class FileTooLarge(DockerifyError):
    pass


def _pad4(n: int) -> bytes:
    return bytes(-n % 4)


def header(
    name: bytes,
    *,
    ino: int,
    mode: int,
    uid: int,
    gid: int,
    nlink: int,
    mtime: int,
    filesize: int,
    rdevmajor: int = 0,
    rdevminor: int = 0,
) -> bytes:
    fields = (ino, mode, uid, gid, nlink, mtime, filesize, 0, 0, rdevmajor, rdevminor, len(name) + 1, 0)
    out = MAGIC + b"".join(b"%08X" % v for v in fields) + name + b"\0"
    return out + _pad4(len(out))


@dataclass
class CpioStats:
    entries: int = 0
    unpacked: int = 0  # bytes the kernel will hold in RAM for file content
    largest: tuple[int, bytes] = (0, b"")
    xattr_files: int = 0


@dataclass
class CpioWriter:
    """Writes members to `f` (seekable, positioned at the archive's start)."""

    f: BinaryIO
    warnings: Warnings
    stats: CpioStats = field(default_factory=CpioStats)
    _ino: int = 0
    _pos: int = 0
    # first path of a regular file -> (ino, header offsets of each of its names)
    _files: dict[bytes, tuple[int, list[int]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._base = self.f.tell()

    def _write(self, data: bytes) -> None:
        self.f.write(data)
        self._pos += len(data)

    def _clamp_mtime(self, entry: Entry) -> int:
        if 0 <= entry.mtime <= MAX_FIELD:
            return entry.mtime
        self.warnings.add("mtimes outside what newc can store (1970..2106), clamped", display(entry.path))
        return min(max(entry.mtime, 0), MAX_FIELD)

    def _id(self, value: int, what: str, entry: Entry) -> int:
        if 0 <= value <= MAX_FIELD:
            return value
        raise DockerifyError(f"{display(entry.path)}: {what} {value} does not fit in a newc cpio")

    def add(self, entry: Entry) -> None:
        name = b"." if entry.path == b"." else entry.path
        if entry.xattrs:
            self.stats.xattr_files += 1
            self.warnings.add(
                "newc cpio has no extended attributes; dropped",
                f"{display(entry.path)} ({', '.join(sorted(entry.xattrs))})",
            )
        mode = _TYPE_BITS[entry.type] | (entry.mode & 0o7777)
        uid = self._id(entry.uid, "uid", entry)
        gid = self._id(entry.gid, "gid", entry)
        mtime = self._clamp_mtime(entry)
        self.stats.entries += 1
        if entry.type is FileType.HARDLINK:
            first = self._files.get(entry.linkname)
            if first is None:
                raise DockerifyError(
                    f"{display(entry.path)}: hard link to {display(entry.linkname)}, "
                    "which is not a regular file earlier in the image"
                )
            ino, offsets = first
            offsets.append(self._pos)
            self._write(header(name, ino=ino, mode=mode, uid=uid, gid=gid, nlink=1, mtime=mtime, filesize=0))
            return
        self._ino += 1
        ino = self._ino
        if entry.type is FileType.REG:
            if entry.size >= MAX_FILE:
                raise FileTooLarge(
                    f"{display(entry.path)} is {entry.size} bytes; a newc cpio (initramfs) cannot hold a "
                    "file of 4 GiB or more",
                    hint="leave the file out of the image, or boot it from a disk (--format sdcard)",
                )
            if entry.sparse is not None and sum(n for _, n in entry.sparse) < entry.size:
                self.warnings.add("sparse files are stored in full (newc has no holes)", display(entry.path))
            self._files[entry.path] = (ino, [self._pos])
            self._write(
                header(name, ino=ino, mode=mode, uid=uid, gid=gid, nlink=1, mtime=mtime, filesize=entry.size)
            )
            written = 0
            for data in entry.dense_chunks():
                self._write(data)
                written += len(data)
            if written != entry.size:
                raise DockerifyError(
                    f"{display(entry.path)}: content is {written} bytes, expected {entry.size}"
                )
            self._write(_pad4(written))
            self.stats.unpacked += entry.size
            if entry.size > self.stats.largest[0]:
                self.stats.largest = (entry.size, entry.path)
            return
        body = b""
        nlink = 1
        if entry.type is FileType.SYMLINK:
            body = entry.linkname
        elif entry.type is FileType.DIR:
            nlink = 2
        self._write(
            header(
                name,
                ino=ino,
                mode=mode,
                uid=uid,
                gid=gid,
                nlink=nlink,
                mtime=mtime,
                filesize=len(body),
                rdevmajor=entry.devmajor,
                rdevminor=entry.devminor,
            )
        )
        if body:
            self._write(body + _pad4(len(body)))
            self.stats.unpacked += len(body)

    def finish(self) -> int:
        """Write the trailer, pad to 512 bytes, patch link counts; returns the archive size."""
        self._write(header(TRAILER, ino=0, mode=0, uid=0, gid=0, nlink=1, mtime=0, filesize=0))
        self._write(bytes(-self._pos % 512))
        end = self._pos
        for _ino, offsets in self._files.values():
            if len(offsets) > 1:
                field_ = b"%08X" % len(offsets)
                for off in offsets:
                    self.f.seek(self._base + off + NLINK_OFFSET)
                    self.f.write(field_)
        self.f.seek(self._base + end)
        return end
