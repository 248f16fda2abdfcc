"""A partitioned disk image as one tree: the root filesystem with the boot partition mounted
where the image's own /etc/fstab puts it, and the disk layout recorded for the way back."""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator
from typing import BinaryIO

from dockerify.entry import Entry, FileType, path_key
from dockerify.errors import CorruptInput
from dockerify.sources.disklayout import BARE, DiskLayout, ExtRecord, FatRecord, PartitionRecord
from dockerify.sources.ext4 import Ext4Reader
from dockerify.sources.fat import FatReader
from dockerify.sources.options import ReadOptions
from dockerify.sources.partitions import Partition, PartitionTable, read_partition_table

log = logging.getLogger("dockerify")


def probe_bare_fs(head: bytes) -> str | None:
    """'ext' or 'fat' when `head` (at least 2 KiB) starts a filesystem with no partition table
    around it: ext's magic 0xEF53 at byte 1080 with a plausible block size, or a FAT boot
    sector whose BPB is sane (an MBR's boot code never names a FAT type at bytes 54/82)."""
    if len(head) >= 1082 and head[1080:1082] == b"\x53\xef":
        (log_block_size,) = struct.unpack_from("<I", head, 1024 + 24)
        if log_block_size <= 6:
            return "ext"
    if len(head) < 512 or head[510:512] != b"\x55\xaa" or head[0] not in (0xEB, 0xE9):
        return None
    bytes_per_sector, per_cluster, reserved, fats = struct.unpack_from("<HBHB", head, 11)
    sane = (
        bytes_per_sector in (512, 1024, 2048, 4096)
        and per_cluster in (1, 2, 4, 8, 16, 32, 64, 128)
        and reserved >= 1
        and fats in (1, 2)
    )
    if sane and (head[54:57] == b"FAT" or head[82:87] == b"FAT32"):
        return "fat"
    return None


def probe_fs(f: BinaryIO, part: Partition) -> str | None:
    """'ext' or 'fat' from the filesystem's own magic numbers, else None."""
    f.seek(part.start + 1080)
    if f.read(2) == b"\x53\xef":
        return "ext"
    f.seek(part.start)
    boot = f.read(512)
    if (
        len(boot) == 512
        and boot[510:512] == b"\x55\xaa"
        and (b"FAT" in boot[54:62] or b"FAT32" in boot[82:90])
    ):
        return "fat"
    return None


def parse_fstab(text: str) -> list[tuple[str, str, str]]:
    out = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 3:
            out.append((fields[0], fields[1], fields[2]))
    return out


def _boot_mountpoint(
    fstab: list[tuple[str, str, str]], table: PartitionTable, boot: Partition, fat_id: str
) -> str:
    ids = {
        f"PARTUUID={boot.partuuid}".lower(),
        f"UUID={fat_id[:4]}-{fat_id[4:]}".lower(),
        "/dev/mmcblk0p1",
        "/dev/sda1",
    }
    for device, mountpoint, _fstype in fstab:
        if device.lower() in ids:
            return mountpoint
    for _device, mountpoint, fstype in fstab:
        if fstype in ("vfat", "msdos", "fat"):
            return mountpoint
    return "/boot"


def _read_small(reader: Ext4Reader, wanted: bytes) -> bytes | None:
    """Content of one small file, walking only as far as sorted order needs."""
    key = path_key(wanted)
    for entry in reader.entries():
        if entry.path == wanted:
            return entry.read_all() if entry.type is FileType.REG else None
        if path_key(entry.path) > key:
            return None
    return None


def ext_record(reader: Ext4Reader) -> ExtRecord:
    i = reader.info
    return ExtRecord(i.fs_type, i.uuid, i.label, tuple(i.features), i.block_size, i.inode_size, i.size_bytes)


def fat_record(reader: FatReader) -> FatRecord:
    b = reader.info
    return FatRecord(f"fat{b.fat_type}", b.volume_id, b.label, b.cluster_size, b.size_bytes)


def _without_lost_found(entries: Iterator[Entry]) -> Iterator[Entry]:
    return (e for e in entries if e.path != b"lost+found" and not e.path.startswith(b"lost+found/"))


class FilesystemSource:
    """A bare ext2/3/4 or FAT image (Yocto's and Buildroot's rootfs.ext4, a board's update
    bundle): the filesystem is the whole tree. Its layout records the one filesystem as
    partition 0 at byte 0, mounted at /, under table type "none"."""

    def __init__(self, f: BinaryIO, size: int, name: str, kind: str, read: ReadOptions | None = None) -> None:
        self.size, self.name, self.kind = size, name, kind
        self.ext = Ext4Reader(f, 0, size, name, options=read) if kind == "ext" else None
        self.fat = FatReader(f, 0, size, name) if kind == "fat" else None

    def layout(self) -> DiskLayout:
        fs = ext_record(self.ext) if self.ext is not None else fat_record(self.fat) if self.fat else None
        return DiskLayout(
            BARE, "", self.size, (PartitionRecord(0, 0, self.size, "", "", "", False, fs, "/"),)
        )

    def used_bytes(self) -> int:
        return self.ext.used_bytes() if self.ext is not None else self.fat.used_bytes() if self.fat else 0

    def entries(self) -> Iterator[Entry]:
        if self.ext is not None:
            yield from _without_lost_found(self.ext.entries())
        elif self.fat is not None:
            yield from self.fat.entries()


class DiskSource:
    def __init__(self, f: BinaryIO, size: int, name: str, read: ReadOptions | None = None) -> None:
        self.f, self.size, self.name = f, size, name
        self.table = read_partition_table(f, size, name)
        self.root_part: Partition | None = None
        self.boot_part: Partition | None = None
        kinds = {}
        for part in self.table.partitions:
            # An extended partition is a container of logical ones, never a filesystem.
            kinds[part.number] = None if part.is_extended else probe_fs(f, part)
        ext = [p for p in self.table.partitions if kinds[p.number] == "ext"]
        fat = [p for p in self.table.partitions if kinds[p.number] == "fat"]
        if not ext:
            raise CorruptInput(
                f"{name}: no ext2/3/4 partition found to use as the root filesystem",
                hint="partitions: " + ", ".join(f"{p.number} type {p.type}" for p in self.table.partitions),
            )
        self.root_part = ext[0]
        self.root = Ext4Reader(
            f,
            self.root_part.start,
            self.root_part.size,
            f"{name} partition {self.root_part.number}",
            options=read,
        )
        self.boot: FatReader | None = None
        self.boot_mount = ""
        if fat:
            self.boot_part = fat[0]
            self.boot = FatReader(
                f, self.boot_part.start, self.boot_part.size, f"{name} partition {self.boot_part.number}"
            )
            fstab = _read_small(self.root, b"etc/fstab")
            if fstab is None:
                # Without an fstab the Raspberry Pi convention applies: partition 1 is /boot.
                self.boot_mount = "/boot"
            else:
                self.boot_mount = _boot_mountpoint(
                    parse_fstab(fstab.decode(errors="replace")),
                    self.table,
                    self.boot_part,
                    self.boot.info.volume_id,
                )

    def layout(self) -> DiskLayout:
        records = []
        for p in self.table.partitions:
            fs: ExtRecord | FatRecord | None = None
            mountpoint = ""
            if p is self.root_part:
                fs, mountpoint = ext_record(self.root), "/"
            elif p is self.boot_part and self.boot is not None:
                fs, mountpoint = fat_record(self.boot), self.boot_mount
            records.append(
                PartitionRecord(
                    p.number, p.start, p.size, p.type, p.partuuid, p.name, p.bootable, fs, mountpoint
                )
            )
        return DiskLayout(self.table.type, self.table.disk_id, self.size, tuple(records))

    def used_bytes(self) -> int:
        """What the superblock and the FAT count as used in the filesystems the tree is read from."""
        return self.root.used_bytes() + (self.boot.used_bytes() if self.boot is not None else 0)

    def entries(self) -> Iterator[Entry]:
        root_entries = _without_lost_found(self.root.entries())
        if self.boot is None:
            yield from root_entries
            return
        mount = self.boot_mount.strip("/").encode()
        yield from mount_at(root_entries, self.boot.entries(), mount)


def mount_at(base: Iterator[Entry], mounted: Iterator[Entry], mount: bytes) -> Iterator[Entry]:
    """Merge `mounted` (a tree rooted at '.') under `mount` of `base`, keeping sorted order.
    The mount point keeps the base tree's directory metadata; anything the base tree holds below
    it is hidden, as it would be on a running system."""
    key = path_key(mount)
    injected = False
    prefix = mount + b"/"

    def inject(first: Entry | None) -> Iterator[Entry]:
        if first is not None:
            yield first
        else:
            # The mount point (and its parents) do not exist in the base tree: make them.
            yield Entry(path=mount, type=FileType.DIR, mode=0o755)
        for e in mounted:
            if e.path == b".":
                continue
            yield e.with_(path=prefix + e.path, linkname=e.linkname)

    for entry in base:
        if not injected:
            k = path_key(entry.path)
            if entry.path == mount:
                injected = True
                yield from inject(entry)
                continue
            if k > key:
                injected = True
                yield from inject(None)
        elif entry.path.startswith(prefix):
            log.warning("%s is hidden under the mount point /%s", entry.name, mount.decode())
            continue
        yield entry
    if not injected:
        yield from inject(None)
