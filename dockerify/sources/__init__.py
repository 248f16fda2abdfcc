"""Sources: disk images, rootfs tarballs and directories, each opened as a stream of entries."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from dockerify.entry import Entry
from dockerify.errors import CorruptInput, NotFound
from dockerify.limits import DEFAULT_MAX_SIZE as DEFAULT_MAX_SIZE  # re-exported: callers import it from here
from dockerify.sources.compression import detect, open_disk_image, open_stream
from dockerify.sources.directory import directory_entries
from dockerify.sources.disk import DiskSource, FilesystemSource, probe_bare_fs
from dockerify.sources.disklayout import DiskLayout
from dockerify.sources.estimate import Estimate, FilePosition, tarball_estimate
from dockerify.sources.options import DEFAULT_READ, ReadOptions
from dockerify.sources.tarstream import tar_entries


@dataclass
class Source:
    name: str
    kind: str  # "disk" | "filesystem" | "tarball" | "directory"
    entries: Callable[[], Iterator[Entry]]
    layout: DiskLayout | None = None  # disk images and bare filesystems
    journal: Any = None  # JournalReport of the root filesystem, for ext3/ext4
    estimate: Estimate | None = None  # what the layer will read, for the progress bar's total


def _kind_of(path: str, max_size: int) -> tuple[str, str]:
    """("disk" | "filesystem" | "tarball", the filesystem kind for "filesystem")."""

    if os.path.getsize(path) == 0:
        raise CorruptInput(f"{path}: the file is empty (0 bytes)")
    with open(path, "rb") as f:
        head = f.read(1024)
    with open_stream(path, max_size) as s:
        inner = s.read(2048)
    if len(inner) >= 262 and inner[257:262] == b"ustar":
        return "tarball", ""
    fs = probe_bare_fs(inner)
    if fs is not None:
        return "filesystem", fs
    if detect(head) == "zip":
        return "disk", ""
    if len(inner) >= 512 and inner[510:512] == b"\x55\xaa":
        return "disk", ""
    lower = path.lower()
    if ".tar" in lower or lower.endswith((".tgz", ".tbz2", ".txz")):
        return "tarball", ""
    raise CorruptInput(
        f"{path}: neither a disk image (no partition table signature at byte 510), nor an ext2/3/4 "
        "or FAT filesystem, nor a tar archive",
        hint="dockerify reads MBR/GPT disk images, bare ext2/3/4 and FAT images, rootfs tarballs and directories",
    )


@contextlib.contextmanager
def open_source(
    path: str, *, max_size: int = DEFAULT_MAX_SIZE, read: ReadOptions = DEFAULT_READ
) -> Iterator[Source]:
    if not os.path.exists(path):
        raise NotFound(f"{path}: no such file or directory")
    if os.path.isdir(path):
        yield Source(path, "directory", lambda: directory_entries(path))
        return
    kind, fs = _kind_of(path, max_size)
    if kind == "tarball":
        position = FilePosition()

        def tar_stream() -> Iterator[Entry]:
            try:
                with open_stream(path, max_size, position.follow) as s:
                    yield from tar_entries(s, path)
            finally:
                position.follow(None)

        yield Source(path, "tarball", tar_stream, estimate=tarball_estimate(path, position))
        return

    with open_disk_image(path, max_size) as (f, size):
        if kind == "filesystem":
            bare = FilesystemSource(f, size, path, fs, read)
            journal = bare.ext.journal if bare.ext is not None else None
            yield Source(
                path, "filesystem", bare.entries, bare.layout(), journal, Estimate(bare.used_bytes())
            )
            return
        disk = DiskSource(f, size, path, read)
        yield Source(
            path, "disk", disk.entries, disk.layout(), disk.root.journal, Estimate(disk.used_bytes())
        )
