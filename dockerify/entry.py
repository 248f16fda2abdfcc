"""The file entry: the one unit that flows from every source to every sink.

Sources (disk images, tarballs, directories, OCI layers) yield `Entry` objects in a stable,
sorted, parent-before-child order; sinks (OCI layers, tarballs, filesystems, cpio) consume them.
An entry's content is read through `chunks()`, which is only valid until the next entry is taken
from the same source: streaming sources (a compressed tarball) cannot go back.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace

#: A content reader yields (offset, data) pieces of the data regions in increasing offset order.
#: Bytes not covered by any piece are holes and read as zeros.
ChunkReader = Callable[[], Iterator[tuple[int, bytes]]]

CHUNK = 1 << 20

log = logging.getLogger("dockerify")


class FileType(enum.Enum):
    REG = "reg"
    DIR = "dir"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"
    CHAR = "char"
    BLOCK = "block"
    FIFO = "fifo"
    SOCKET = "socket"


@dataclass
class Entry:
    """One file of a tree.

    `path` is relative to the root, as raw bytes, without a leading or trailing slash; the root
    directory itself is b".". `mode` holds the permission bits including setuid/setgid/sticky
    (mask 0o7777), never the type bits. For HARDLINK, `linkname` is the path of the first entry
    of the group (which is a REG entry earlier in the stream); for SYMLINK it is the target.
    `sparse` lists the data regions (offset, length) of a file with holes, None for dense files.
    `mtime_nsec` is the sub-second part of the mtime (0..999999999) where the source has one
    (tar PAX times); `mtime` is floored, so -1.5 s is mtime -2 and mtime_nsec 500000000.
    """

    path: bytes
    type: FileType
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime: int = 0
    size: int = 0
    linkname: bytes = b""
    devmajor: int = 0
    devminor: int = 0
    xattrs: dict[str, bytes] = field(default_factory=dict)
    sparse: tuple[tuple[int, int], ...] | None = None
    reader: ChunkReader | None = None
    mtime_nsec: int = 0

    def chunks(self) -> Iterator[tuple[int, bytes]]:
        if self.type is not FileType.REG or self.reader is None or self.size == 0:
            return iter(())
        return self.reader()

    def dense_chunks(self) -> Iterator[bytes]:
        """The whole logical content with holes filled by zeros."""
        pos = 0
        for offset, data in self.chunks():
            while pos < offset:
                n = min(CHUNK, offset - pos)
                yield bytes(n)
                pos += n
            yield data
            pos += len(data)
        while pos < self.size:
            n = min(CHUNK, self.size - pos)
            yield bytes(n)
            pos += n

    def read_all(self) -> bytes:
        return b"".join(self.dense_chunks())

    def with_(self, **changes: object) -> Entry:
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def name(self) -> str:
        return self.path.decode("utf-8", "surrogateescape")


def bytes_reader(data: bytes) -> ChunkReader:
    def read() -> Iterator[tuple[int, bytes]]:
        for off in range(0, len(data), CHUNK):
            yield off, data[off : off + CHUNK]

    return read


def file_entry(path: bytes, data: bytes, *, mode: int = 0o644, mtime: int = 0) -> Entry:
    """A regular file whose content is held in memory (generated config, an init binary)."""
    return Entry(
        path=path, type=FileType.REG, mode=mode, mtime=mtime, size=len(data), reader=bytes_reader(data)
    )


def path_key(path: bytes) -> tuple[bytes, ...]:
    """Sort key that puts a directory before its children and siblings in byte order."""
    return () if path == b"." else tuple(path.split(b"/"))


def sparse_map_from_chunks(pieces: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Merge adjacent (offset, length) data regions."""
    out: list[list[int]] = []
    for off, length in pieces:
        if length <= 0:
            continue
        if out and out[-1][0] + out[-1][1] == off:
            out[-1][1] += length
        else:
            out.append([off, length])
    return tuple((a, b) for a, b in out)


def skip_sockets(entries: Iterable[Entry], where: str) -> Iterator[Entry]:
    """The entries without Unix sockets, each one left out named in a warning (GNU tar's
    "socket ignored"): tar, and so an OCI layer, has no member type for a socket, and a socket
    means nothing without the process that listened on it."""
    for entry in entries:
        if entry.type is FileType.SOCKET:
            log.warning(
                "warning: %s: /%s: socket ignored (a tar layer cannot hold sockets)", where, entry.name
            )
            continue
        yield entry
