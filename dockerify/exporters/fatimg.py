"""The FAT32 boot partition of an SD card: `mkfs.vfat` at the partition's offset in the card
image, then mtools (`mmd`/`mcopy -m`, `mattrib`) to put the staged boot files on it, with their
mtimes. No mounts, no privilege."""

from __future__ import annotations

import logging
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from dockerify.exporters.common import Warnings
from dockerify.run import check_tool, run

log = logging.getLogger("dockerify")

SECTOR = 512
MiB = 1 << 20
FAT32_MIN_CLUSTERS = 65525
RESERVED_SECTORS = 32
#: Characters FAT long names cannot hold.
_BAD = set('"*/:<>?\\|')
# UTC, and no clock where mtools would take one (SOURCE_DATE_EPOCH): the same tree, the same bytes.
_MTOOLS_ENV = {"MTOOLS_SKIP_CHECK": "1", "TZ": "UTC", "SOURCE_DATE_EPOCH": "0"}


@dataclass(frozen=True)
class FatSpec:
    volume_id: str  # 8 hex digits
    label: str
    cluster_size: int  # bytes
    hidden_sectors: int  # the partition's first sector, as firmware expects in the BPB


def cluster_for(size: int) -> int:
    """Microsoft's FAT32 cluster size for a volume of `size` bytes (what mkfs.vfat picks, too)."""
    if size <= 260 * MiB:
        return 512
    if size <= 8 << 30:
        return 4096
    if size <= 16 << 30:
        return 8192
    return 16384 if size <= 32 << 30 else 32768


def clusters_needed(root: Path, cluster: int) -> int:
    """Clusters the staged tree takes on FAT32: file data, and every directory (root included)
    with its 32-byte entries, long-name slots and the dot entries."""
    total = 0
    for dirpath, dirnames, filenames in os.walk(os.fsencode(root)):
        slots = 2
        for name in dirnames + filenames:
            units = len(os.fsdecode(name).encode("utf-16-le")) // 2
            slots += 1 + -(-units // 13)
        total += max(1, -(-slots * 32 // cluster))
        for name in filenames:
            st = os.lstat(os.path.join(dirpath, name))
            if stat.S_ISREG(st.st_mode):
                total += -(-st.st_size // cluster)
    return total


def size_for(clusters: int, cluster: int) -> int:
    """Bytes of a FAT32 volume with `clusters` data clusters (two FATs, 32 reserved sectors)."""
    clusters = max(clusters, FAT32_MIN_CLUSTERS + 16)
    fat_bytes = -(-(clusters + 2) * 4 // SECTOR) * SECTOR
    return RESERVED_SECTORS * SECTOR + 2 * fat_bytes + clusters * cluster


def needed_size(root: Path, cluster: int | None) -> tuple[int, int]:
    """(smallest volume size in whole MiB, cluster size) for the staged tree."""
    c = cluster or 512
    for _ in range(4):
        need = clusters_needed(root, c)
        size = -(-size_for(need + need // 50 + 16, c) // MiB) * MiB
        if cluster or cluster_for(size) == c:
            return size, c
        c = cluster_for(size)
    return size, c


def check_names(root: Path, warnings: Warnings, mount: str) -> None:
    """Remove what FAT cannot hold from the staged boot tree, saying so: symlinks (mcopy would
    follow them out of the tree), FIFOs and sockets, names with characters FAT forbids."""
    for dirpath, dirnames, filenames in os.walk(os.fsencode(root)):
        for name in list(dirnames) + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, os.fsencode(root)).decode(errors="replace")
            shown = f"{mount.rstrip('/')}/{rel}"
            st = os.lstat(full)
            text = os.fsdecode(name)
            if _BAD & set(text) or any(ord(ch) < 32 for ch in text) or text.endswith((" ", ".")):
                warnings.add("names FAT cannot hold, left out of the boot partition", shown)
            elif stat.S_ISLNK(st.st_mode):
                warnings.add("FAT has no symlinks, left out of the boot partition", shown)
            elif not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
                warnings.add("FAT holds only files and directories, left out", shown)
            else:
                continue
            if stat.S_ISDIR(st.st_mode) and not stat.S_ISLNK(st.st_mode):
                shutil.rmtree(full)
                dirnames.remove(name)
            else:
                os.unlink(full)


def make_fat(spec: FatSpec, root: Path, image: Path, offset: int, size: int, read_only: list[str]) -> None:
    """FAT32 of `size` bytes at `offset` in `image` holding the tree at `root` (mcopy -m keeps the
    mtimes of files and directories); `read_only` lists paths ('/'-separated) to mark read-only."""
    for tool in ("mkfs.vfat", "mcopy", "mattrib"):
        check_tool(tool)
    cmd = [
        "mkfs.vfat",
        "-F",
        "32",
        "-S",
        str(SECTOR),
        "-s",
        str(spec.cluster_size // SECTOR),
        "-h",
        str(spec.hidden_sectors),
        "--invariant",
        "-i",
        spec.volume_id,
        "--offset",
        str(offset // SECTOR),
    ]
    if spec.label:
        cmd += ["-n", spec.label]
    cmd += [str(image), str(size // 1024)]
    run(cmd, env={"SOURCE_DATE_EPOCH": "0"})
    target = f"{image}@@{offset}"
    items = sorted(os.listdir(root))
    if items:
        run(
            ["mcopy", "-s", "-m", "-Q", "-D", "o", "-i", target, *(str(root / n) for n in items), "::/"],
            env=_MTOOLS_ENV,
        )
    for rel in read_only:
        run(["mattrib", "-i", target, "+r", "::/" + rel], env=_MTOOLS_ENV)
