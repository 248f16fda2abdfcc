"""How much a source's layer will read, known before reading it, so the build's progress bar has
a total (a percentage and a time left). Each estimate is cheap: the used blocks a superblock
counts, the clusters a FAT marks, a gzip or zstd tarball's recorded uncompressed size. A tarball
whose uncompressed size is not recorded (xz, bzip2, lz4, ...) is measured against its file size
by how far into the file the decompressor has read. A directory has none (no bar total)."""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

import zstandard

from dockerify.sources.compression import sniff


@dataclass(frozen=True)
class Estimate:
    """`total` bytes of the tar stream the layer writer will read; with `position`, `total`
    bytes of the source file instead, of which position() have been read."""

    total: int
    position: Callable[[], int] | None = None

    def counter(self, advance: Callable[[int], object]) -> Callable[[int], object]:
        """The layer writer's progress callback (told each batch of tar bytes) for a bar of
        `total`: those bytes, or the file's read position, whichever the estimate counts."""
        position = self.position
        if position is None:
            return advance
        done = 0

        def tell(_written: int) -> None:
            nonlocal done
            now = position()
            if now > done:
                advance(now - done)
                done = now

        return tell


class FilePosition:
    """How far into a file its reader has got (the descriptor's offset, which a decoding tool
    reading the same descriptor moves too); 0 when no file is being read."""

    def __init__(self) -> None:
        self._fd: int | None = None

    def follow(self, f: BinaryIO | None) -> None:
        self._fd = None if f is None else f.fileno()

    def __call__(self) -> int:
        if self._fd is None:
            return 0
        try:
            return os.lseek(self._fd, 0, os.SEEK_CUR)
        except OSError:
            return 0


def tarball_estimate(path: str, position: FilePosition) -> Estimate:
    """A plain tar is about its own size; a gzip or zstd one records its uncompressed size (the
    last gzip member's ISIZE, the first zstd frame's content size: trusted only when it is not
    less than the file, as a multi-member file or a wrapped 4 GiB ISIZE would make it)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        fmt = sniff(f)
        recorded = None
        if fmt == "none":
            recorded = size
        elif fmt == "gzip" and size >= 18:
            f.seek(size - 4)
            (recorded,) = struct.unpack("<I", f.read(4))
        elif fmt == "zstd":
            try:
                content = zstandard.get_frame_parameters(f.read(18)).content_size
            except zstandard.ZstdError:
                content = zstandard.CONTENTSIZE_UNKNOWN
            if content not in (zstandard.CONTENTSIZE_UNKNOWN, zstandard.CONTENTSIZE_ERROR):
                recorded = content
    if recorded is not None and recorded >= size:
        return Estimate(recorded)
    return Estimate(size, position)
