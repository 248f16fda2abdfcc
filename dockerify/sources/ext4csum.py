"""The crc32c checksums that ext4's metadata_csum feature and jbd2's checksum v2/v3 define.

The kernel's crc32c() is the raw CRC update: no inversion before or after. The `crc32c` package
(C, hardware accelerated) computes the standard CRC-32C, which inverts both ends; `crc` maps
one onto the other. Each function returns the value as the filesystem stores it.
"""

from __future__ import annotations

import struct
from enum import Enum

import crc32c as _crc32c

MASK = 0xFFFFFFFF
_std = _crc32c.crc32c
_U32 = struct.Struct("<I")


def crc(seed: int, data: bytes | bytearray | memoryview) -> int:
    """The kernel's crc32c(seed, data)."""
    return int(_crc32c.crc32c(data, seed ^ MASK)) ^ MASK


class ChecksumKind(Enum):
    """What a metadata checksum protects, in the words of the messages."""

    SUPERBLOCK = "superblock"
    GROUP_DESCRIPTOR = "group descriptor"
    INODE = "inode"
    EXTENT_BLOCK = "extent tree block"
    DIRECTORY_BLOCK = "directory block"
    HTREE_NODE = "htree node"
    XATTR_BLOCK = "xattr block"


# --- ext4 -------------------------------------------------------------------------------------

SB_CHECKSUM_OFFSET = 0x3FC
INODE_CHECKSUM_LO = 0x7C
INODE_CHECKSUM_HI = 0x82
INODE_GENERATION = 0x64
GOOD_OLD_INODE_SIZE = 128
# i_checksum_hi exists when i_extra_isize reaches past it (EXT4_INODE_CSUM_HI_EXTRA_END).
CSUM_HI_EXTRA_END = INODE_CHECKSUM_HI + 2 - GOOD_OLD_INODE_SIZE
DESC_CHECKSUM_OFFSET = 0x1E
XATTR_CHECKSUM_OFFSET = 0x10
DIRENT_TAIL_SIZE = 12
DIRENT_TAIL_FT = 0xDE
DX_TAIL_SIZE = 8


def superblock(raw: bytes) -> tuple[int, int]:
    """(stored, computed) checksum of the 1024-byte superblock."""
    (stored,) = struct.unpack_from("<I", raw, SB_CHECKSUM_OFFSET)
    return stored, crc(MASK, raw[:SB_CHECKSUM_OFFSET])


def group_descriptor(seed: int, group: int, desc: bytes) -> tuple[int, int]:
    (stored,) = struct.unpack_from("<H", desc, DESC_CHECKSUM_OFFSET)
    value = crc(seed, struct.pack("<I", group))
    value = crc(value, desc[:DESC_CHECKSUM_OFFSET])
    value = crc(value, b"\0\0")
    value = crc(value, desc[DESC_CHECKSUM_OFFSET + 2 :])
    return stored, value & 0xFFFF


def inode_seed(seed: int, ino: int, raw: bytes) -> int:
    """The per-inode seed that the inode's own blocks (extent tree, directory) are checked with."""
    return int(_std(_U32.pack(ino) + raw[INODE_GENERATION : INODE_GENERATION + 4], seed ^ MASK)) ^ MASK


def inode(seed: int, ino: int, raw: bytes, extra_isize: int) -> tuple[int, int]:
    """(stored, computed) inode checksum: 32 bits with i_checksum_hi, else the low 16.

    This runs for every inode, so it is one library call over one buffer: the inode number and
    generation (the per-inode seed) followed by the inode with its checksum fields zeroed."""
    body = bytearray(_U32.pack(ino))
    body += raw[INODE_GENERATION : INODE_GENERATION + 4]
    body += raw
    lo = 8 + INODE_CHECKSUM_LO
    stored = body[lo] | body[lo + 1] << 8
    body[lo] = body[lo + 1] = 0
    if len(raw) > GOOD_OLD_INODE_SIZE and extra_isize >= CSUM_HI_EXTRA_END:
        hi = 8 + INODE_CHECKSUM_HI
        stored |= (body[hi] | body[hi + 1] << 8) << 16
        body[hi] = body[hi + 1] = 0
        return stored, int(_std(body, seed ^ MASK)) ^ MASK
    return stored, (int(_std(body, seed ^ MASK)) ^ MASK) & 0xFFFF


def extent_block(iseed: int, block: bytes, tail: int) -> tuple[int, int]:
    """The ext4_extent_tail that follows eh_max entries covers everything before it."""
    (stored,) = struct.unpack_from("<I", block, tail)
    return stored, crc(iseed, block[:tail])


def has_dirent_tail(block: bytes) -> bool:
    """A leaf block ends with a fake dirent (inode 0, rec_len 12, type 0xDE) holding the checksum."""
    tail = len(block) - DIRENT_TAIL_SIZE
    inode_nr, rec_len, name_len, file_type = struct.unpack_from("<IHBB", block, tail)
    return bool(
        inode_nr == 0 and rec_len == DIRENT_TAIL_SIZE and name_len == 0 and file_type == DIRENT_TAIL_FT
    )


def dirent_block(iseed: int, block: bytes) -> tuple[int, int]:
    tail = len(block) - DIRENT_TAIL_SIZE
    (stored,) = struct.unpack_from("<I", block, tail + 8)
    return stored, crc(iseed, block[:tail])


def dx_node(iseed: int, block: bytes, count_offset: int, count: int, limit: int) -> tuple[int, int]:
    """An htree node: the entries in use, then the dx_tail's reserved word and a zero checksum."""
    tail = count_offset + limit * 8
    (stored,) = struct.unpack_from("<I", block, tail + 4)
    value = crc(iseed, block[: count_offset + count * 8])
    value = crc(value, block[tail : tail + 4])
    return stored, crc(value, b"\0\0\0\0")


def xattr_block(seed: int, block_nr: int, block: bytes) -> tuple[int, int]:
    (stored,) = struct.unpack_from("<I", block, XATTR_CHECKSUM_OFFSET)
    value = crc(seed, struct.pack("<Q", block_nr))
    value = crc(value, block[:XATTR_CHECKSUM_OFFSET])
    value = crc(value, b"\0\0\0\0")
    return stored, crc(value, block[XATTR_CHECKSUM_OFFSET + 4 :])
