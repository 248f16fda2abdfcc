"""Settle the inode change times of an ext4 filesystem that `mke2fs -d` just made.

mke2fs 1.47.0 copies each inode's ctime from the staging tree's stat(2), which is when the file was
staged: the one thing that made two exports of the same image differ. Nothing can set a ctime from
userspace, so afterwards every inode in use gets its own mtime as ctime (seconds and the extra
nanosecond/epoch word), and its metadata_csum checksum is computed again. Everything else mke2fs
writes is already fixed by the options (UUID, hash seed, E2FSPROGS_FAKE_TIME).

The filesystem is one this process made; the checks here guard against a layout this code does not
know (meta_bg), not against hostile input.
"""

from __future__ import annotations

import os
import struct

from crc32c import crc32c

from dockerify.errors import DockerifyError

SUPERBLOCK = 1024
INCOMPAT_META_BG = 0x10
INCOMPAT_64BIT = 0x80
INCOMPAT_CSUM_SEED = 0x2000
RO_COMPAT_METADATA_CSUM = 0x400
BG_INODE_UNINIT = 0x1

I_CTIME, I_MTIME, I_GENERATION = 0x0C, 0x10, 0x64
I_CSUM_LO, I_EXTRA_ISIZE, I_CSUM_HI = 0x7C, 0x80, 0x82
I_CTIME_EXTRA, I_MTIME_EXTRA = 0x84, 0x88
CSUM_HI_EXTRA_END = I_CSUM_HI + 2 - 128  # i_extra_isize that covers i_checksum_hi
CTIME_EXTRA_END = I_CTIME_EXTRA + 4 - 128


def _raw_crc(seed: int, data: bytes | bytearray | memoryview) -> int:
    """The kernel's ext4_chksum: CRC32C without the final inversion."""
    return crc32c(data, seed ^ 0xFFFFFFFF) ^ 0xFFFFFFFF


def settle_ctimes(image: str | os.PathLike[str], offset: int) -> int:
    """Give every inode in use its mtime as ctime; the number of inodes changed."""
    fd = os.open(image, os.O_RDWR)
    try:
        sb = os.pread(fd, 1024, offset + SUPERBLOCK)
        (magic,) = struct.unpack_from("<H", sb, 0x38)
        if magic != 0xEF53:
            raise DockerifyError(f"{os.fspath(image)}: no ext4 superblock at offset {offset}")
        (inodes_count,) = struct.unpack_from("<I", sb, 0)
        (first_data_block, log_block) = struct.unpack_from("<II", sb, 0x14)
        (inodes_per_group,) = struct.unpack_from("<I", sb, 0x28)
        inode_size, _, _compat, incompat, ro_compat = struct.unpack_from("<HHIII", sb, 0x58)
        (desc_size,) = struct.unpack_from("<H", sb, 0xFE)
        if incompat & INCOMPAT_META_BG:
            return 0  # descriptors scattered over the disk: not made by our mke2fs options
        block = 1024 << log_block
        desc_size = desc_size if incompat & INCOMPAT_64BIT and desc_size >= 64 else 32
        groups = -(-inodes_count // inodes_per_group)
        csum = bool(ro_compat & RO_COMPAT_METADATA_CSUM)
        if incompat & INCOMPAT_CSUM_SEED:
            (seed,) = struct.unpack_from("<I", sb, 0x270)
        else:
            seed = _raw_crc(0xFFFFFFFF, sb[0x68:0x78])
        descs = os.pread(fd, groups * desc_size, offset + (first_data_block + 1) * block)
        changed = 0
        for group in range(groups):
            d = group * desc_size
            (table,) = struct.unpack_from("<I", descs, d + 0x08)
            (flags,) = struct.unpack_from("<H", descs, d + 0x12)
            (unused,) = struct.unpack_from("<H", descs, d + 0x1C)
            if desc_size >= 64:
                table |= struct.unpack_from("<I", descs, d + 0x28)[0] << 32
                unused |= struct.unpack_from("<H", descs, d + 0x32)[0] << 16
            if flags & BG_INODE_UNINIT:
                continue
            used = inodes_per_group - unused  # itable_unused: 0 without uninit_bg/metadata_csum
            if used <= 0:
                continue
            where = offset + table * block
            buf = bytearray(os.pread(fd, used * inode_size, where))
            dirty = False
            for i in range(used):
                pos = i * inode_size
                if buf[pos] == 0 and buf[pos + 1] == 0:
                    continue  # i_mode 0: a free inode
                if _settle(buf, pos, inode_size, group * inodes_per_group + i + 1, seed, csum):
                    dirty = True
                    changed += 1
            if dirty:
                os.pwrite(fd, buf, where)
        return changed
    finally:
        os.close(fd)


def _settle(buf: bytearray, pos: int, size: int, ino: int, seed: int, csum: bool) -> bool:
    extra = struct.unpack_from("<H", buf, pos + I_EXTRA_ISIZE)[0] if size > 128 else 0
    has_extra = extra >= CTIME_EXTRA_END
    mtime = buf[pos + I_MTIME : pos + I_MTIME + 4]
    mtime_extra = buf[pos + I_MTIME_EXTRA : pos + I_MTIME_EXTRA + 4] if has_extra else b""
    if buf[pos + I_CTIME : pos + I_CTIME + 4] == mtime and (
        not has_extra or buf[pos + I_CTIME_EXTRA : pos + I_CTIME_EXTRA + 4] == mtime_extra
    ):
        return False
    if csum and _checksum(buf, pos, size, ino, seed, extra) != _stored(buf, pos, extra):
        raise DockerifyError(f"inode {ino}: the checksum mke2fs wrote does not verify; not changing it")
    buf[pos + I_CTIME : pos + I_CTIME + 4] = mtime
    if has_extra:
        buf[pos + I_CTIME_EXTRA : pos + I_CTIME_EXTRA + 4] = mtime_extra
    if csum:
        value = _checksum(buf, pos, size, ino, seed, extra)
        struct.pack_into("<H", buf, pos + I_CSUM_LO, value & 0xFFFF)
        if extra >= CSUM_HI_EXTRA_END:
            struct.pack_into("<H", buf, pos + I_CSUM_HI, value >> 16)
    return True


def _stored(buf: bytearray, pos: int, extra: int) -> int:
    value: int = struct.unpack_from("<H", buf, pos + I_CSUM_LO)[0]
    if extra >= CSUM_HI_EXTRA_END:
        value |= struct.unpack_from("<H", buf, pos + I_CSUM_HI)[0] << 16
    return value


def _checksum(buf: bytearray, pos: int, size: int, ino: int, seed: int, extra: int) -> int:
    inode = bytearray(buf[pos : pos + size])
    inode[I_CSUM_LO : I_CSUM_LO + 2] = b"\0\0"
    hi = extra >= CSUM_HI_EXTRA_END
    if hi:
        inode[I_CSUM_HI : I_CSUM_HI + 2] = b"\0\0"
    crc = _raw_crc(seed, struct.pack("<I", ino))
    crc = _raw_crc(crc, inode[I_GENERATION : I_GENERATION + 4])
    crc = _raw_crc(crc, inode)
    return crc if hi else crc & 0xFFFF
