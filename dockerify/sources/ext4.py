"""A read-only, userspace reader for ext2, ext3 and ext4 filesystems.

It reads a filesystem that sits at a byte offset inside a plain file (a disk image partition),
so it never needs root, loop devices or mounts. The on-disk format follows the kernel's
Documentation/filesystems/ext4 ("ext4 Data Structures and Algorithms").

Everything read from the image is treated as hostile: every number is range-checked before it
is used, and any inconsistency raises `CorruptInput` naming the input, the inode and its path.
On metadata_csum filesystems every checksum of the metadata read is verified (ext4csum.py).
A filesystem that was not cleanly unmounted has its journal replayed into an overlay of
changed blocks (jbd2.py), so the tree read is the one the kernel would mount; the input is
never written.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import struct
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from dockerify.entry import CHUNK, Entry, FileType, bytes_reader, sparse_map_from_chunks
from dockerify.errors import CorruptInput, DockerifyError
from dockerify.sources import ext4csum, jbd2
from dockerify.sources.ext4csum import ChecksumKind
from dockerify.sources.options import ReadOptions

log = logging.getLogger("dockerify")

# --- superblock -------------------------------------------------------------------------------

SUPERBLOCK_OFFSET = 1024
SUPERBLOCK_SIZE = 1024
EXT4_MAGIC = 0xEF53
MAGIC_OFFSET = SUPERBLOCK_OFFSET + 0x38
ROOT_INO = 2
GOOD_OLD_INODE_SIZE = 128
MAX_LOG_BLOCK_SIZE = 6  # 64 KiB blocks

# Feature bits, with the names mke2fs -O and dumpe2fs use.
COMPAT_FEATURES = {
    0x0001: "dir_prealloc",
    0x0002: "imagic_inodes",
    0x0004: "has_journal",
    0x0008: "ext_attr",
    0x0010: "resize_inode",
    0x0020: "dir_index",
    0x0040: "lazy_bg",
    0x0100: "snapshot_bitmap",
    0x0200: "sparse_super2",
    0x0400: "fast_commit",
    0x0800: "stable_inodes",
    0x1000: "orphan_file",
}
RO_COMPAT_FEATURES = {
    0x0001: "sparse_super",
    0x0002: "large_file",
    0x0008: "huge_file",
    0x0010: "uninit_bg",
    0x0020: "dir_nlink",
    0x0040: "extra_isize",
    0x0080: "snapshot",
    0x0100: "quota",
    0x0200: "bigalloc",
    0x0400: "metadata_csum",
    0x0800: "replica",
    0x1000: "read-only",
    0x2000: "project",
    0x4000: "shared_blocks",
    0x8000: "verity",
    0x10000: "orphan_present",
}
INCOMPAT_FEATURES = {
    0x0001: "compression",
    0x0002: "filetype",
    0x0004: "needs_recovery",
    0x0008: "journal_dev",
    0x0010: "meta_bg",
    0x0040: "extent",
    0x0080: "64bit",
    0x0100: "mmp",
    0x0200: "flex_bg",
    0x0400: "ea_inode",
    0x1000: "dirdata",
    0x2000: "metadata_csum_seed",
    0x4000: "large_dir",
    0x8000: "inline_data",
    0x10000: "encrypt",
    0x20000: "casefold",
}

COMPAT_HAS_JOURNAL = 0x0004
RO_COMPAT_METADATA_CSUM = 0x0400
INCOMPAT_CSUM_SEED = 0x2000
RO_COMPAT_SPARSE_SUPER = 0x0001
RO_COMPAT_LARGE_FILE = 0x0002
RO_COMPAT_BTREE_DIR = 0x0004
RO_COMPAT_HUGE_FILE = 0x0008
RO_COMPAT_BIGALLOC = 0x0200
COMPAT_SPARSE_SUPER2 = 0x0200
INCOMPAT_FILETYPE = 0x0002
INCOMPAT_RECOVER = 0x0004
INCOMPAT_META_BG = 0x0010
INCOMPAT_64BIT = 0x0080
INCOMPAT_EA_INODE = 0x0400

# Incompatible features this reader cannot read: compressed data, Lustre's extra dirent data,
# and an external journal device (which holds no files). Everything else in the table only
# moves metadata around; encrypt is refused inode by inode (only encrypted ones are unreadable).
INCOMPAT_UNSUPPORTED = {"compression", "journal_dev", "dirdata"}
INCOMPAT_SUPPORTED = sum(bit for bit, name in INCOMPAT_FEATURES.items() if name not in INCOMPAT_UNSUPPORTED)
# What ext3 knows; anything beyond makes the filesystem ext4 (the rule blkid applies).
EXT3_INCOMPAT = INCOMPAT_FILETYPE | INCOMPAT_RECOVER | INCOMPAT_META_BG
EXT3_RO_COMPAT = RO_COMPAT_SPARSE_SUPER | RO_COMPAT_LARGE_FILE | RO_COMPAT_BTREE_DIR

# --- inodes -----------------------------------------------------------------------------------

# The 128-byte base inode: mode, uid, size_lo, mtime, gid, links, blocks_lo, flags, i_block,
# file_acl_lo, size_high, blocks_high, file_acl_high, uid_high, gid_high.
INODE_BASE = struct.Struct("<HHI8xi4xHHII4x60s4xII4xHHHH4x")
EXTRA_ISIZE_OFFSET = 0x80
# Superblock fields beyond the geometry.
SB_CREATOR_OS = 0x48
SB_JOURNAL_INUM = 0xE0
SB_JNL_BACKUP_TYPE = 0xFD  # 1: s_jnl_blocks holds the journal inode's i_block and size
SB_JNL_BLOCKS = 0x10C
JNL_BACKUP_BLOCKS = 1
SB_CHECKSUM_TYPE = 0x175
SB_CHECKSUM_SEED = 0x270
CREATOR_OS_LINUX = 0
CRC32C_CHECKSUM_TYPE = 1
MTIME_EXTRA_OFFSET = 0x88

S_IFMT = 0xF000
FILE_TYPES = {
    0x1000: FileType.FIFO,
    0x2000: FileType.CHAR,
    0x4000: FileType.DIR,
    0x6000: FileType.BLOCK,
    0x8000: FileType.REG,
    0xA000: FileType.SYMLINK,
    0xC000: FileType.SOCKET,
}

ENCRYPT_FL = 0x800
INDEX_FL = 0x1000  # an htree (dir_index) directory
HUGE_FILE_FL = 0x40000
VERITY_FL = 0x100000
EA_INODE_FL = 0x200000
EXTENTS_FL = 0x80000
INLINE_DATA_FL = 0x10000000
I_BLOCK_SIZE = 60
MAX_SYMLINK = 65536

# --- extents ----------------------------------------------------------------------------------

EXTENT_MAGIC = 0xF30A
EXTENT_HEADER = struct.Struct("<HHHH4x")  # eh_magic, eh_entries, eh_max, eh_depth
EXTENT_LEAF = struct.Struct("<IHHI")  # ee_block, ee_len, ee_start_hi, ee_start_lo
EXTENT_INDEX = struct.Struct("<IIH2x")  # ei_block, ei_leaf_lo, ei_leaf_hi
EXTENT_ENTRY_SIZE = 12
MAX_EXTENT_DEPTH = 5
# ee_len above this marks an unwritten (preallocated) extent, which reads as zeros.
EXTENT_INIT_MAX_LEN = 32768

# --- directories ------------------------------------------------------------------------------

DIRENT = struct.Struct("<IHBx")  # inode, rec_len, name_len (then file_type, unused here)

# --- extended attributes ----------------------------------------------------------------------

XATTR_MAGIC = 0xEA020000
XATTR_ENTRY = struct.Struct("<BBHII4x")  # name_len, name_index, value_offs, value_inum, value_size
XATTR_BLOCK_HEADER = struct.Struct("<III")  # h_magic, h_refcount, h_blocks
XATTR_BLOCK_HEADER_SIZE = 32
XATTR_PREFIXES = {
    1: "user.",
    2: "system.posix_acl_access",
    3: "system.posix_acl_default",
    4: "trusted.",
    6: "security.",
    7: "system.",
    8: "system.richacl",
}
XATTR_ACL_INDEXES = {2, 3}
# Indexes the kernel keeps for itself and never lists: the fscrypt context, Hurd's, fs-verity's.
XATTR_HIDDEN_INDEXES = {9, 10, 11}
XATTR_SIZE_MAX = 65536  # the VFS limit, and so the largest value an ea_inode may hold
INLINE_DATA_XATTR = "system.data"

# POSIX ACLs: ext4 stores version 1 with 4-byte short entries; the VFS speaks version 2 with
# 8-byte entries everywhere (what getxattr returns and what tar and OCI layers carry).
EXT4_ACL_VERSION = 1
VFS_ACL_VERSION = 2
ACL_SHORT_TAGS = {0x01, 0x04, 0x10, 0x20}  # USER_OBJ, GROUP_OBJ, MASK, OTHER
ACL_ID_TAGS = {0x02, 0x08}  # USER, GROUP
ACL_UNDEFINED_ID = 0xFFFFFFFF

# Bounded caches: inode table locations per group, and recently read metadata blocks (inode
# table blocks are read 4 to 256 inodes at a time; xattr blocks are often shared).
INODE_TABLE_CACHE_SIZE = 256
META_CACHE_SIZE = 512


@dataclass(frozen=True)
class Ext4Info:
    fs_type: str
    uuid: str
    label: str
    block_size: int
    blocks_count: int
    inodes_count: int
    inode_size: int
    features: tuple[str, ...]
    size_bytes: int


@dataclass(frozen=True)
class _Superblock:
    block_size: int
    blocks_count: int
    inodes_count: int
    inode_size: int
    inodes_per_group: int
    blocks_per_group: int
    first_data_block: int
    groups: int
    desc_size: int
    first_meta_bg: int
    cluster_size: int
    backup_bgs: tuple[int, int]
    compat: int
    incompat: int
    ro_compat: int
    journal_inum: int = 0
    free_blocks: int = 0  # as the superblock counts them (what `df` shows)
    csum_seed: int | None = None  # metadata_csum: the seed every checksum starts from
    inode_csums: bool = False  # inode checksums (the kernel skips them unless Linux made the fs)


@dataclass(slots=True)
class _Inode:
    """The fields of one on-disk inode that a file entry needs."""

    number: int
    path: bytes
    raw: bytes
    mode: int
    uid: int
    gid: int
    size: int
    mtime: int
    flags: int
    blocks: int  # in 512-byte units
    i_block: bytes
    file_acl: int
    extra_isize: int = 0
    csum_seed: int | None = None  # the seed of the inode's own blocks (extent tree, directory)

    @property
    def file_type(self) -> FileType | None:
        return FILE_TYPES.get(self.mode & S_IFMT)


@dataclass(slots=True)
class _MapWalk:
    """One walk over a file's block mapping: what it found so far."""

    inode: _Inode
    nblocks: int  # blocks that i_size covers; mappings beyond are ignored
    runs: list[tuple[int, int, int]] = field(default_factory=list)
    next_logical: int = 0  # extents must come in increasing, non-overlapping order
    seen: set[int] = field(default_factory=set)

    def add(self, logical: int, physical: int, count: int) -> None:
        if self.runs:
            last_l, last_p, last_n = self.runs[-1]
            if last_l + last_n == logical and last_p + last_n == physical:
                self.runs[-1] = (last_l, last_p, last_n + count)
                return
        self.runs.append((logical, physical, count))


def _feature_names(bits: int, table: dict[int, str], letter: str) -> list[str]:
    # Unnamed bits get dumpe2fs's FEATURE_<C|I|R><bit> spelling.
    return [table.get(1 << n, f"FEATURE_{letter}{n}") for n in range(32) if bits & (1 << n)]


def _display(path: bytes) -> str:
    if path[:1] == b"\0":
        return path[1:].decode()  # a label for an inode no directory names (the journal ...)
    return "/" if path == b"." else "/" + path.decode("utf-8", "backslashreplace")


def _join(parent: bytes, name: bytes) -> bytes:
    return name if parent == b"." else parent + b"/" + name


class Ext4Reader:
    """Reads the tree of an ext2/3/4 filesystem at `offset` in `f` as `Entry` objects.

    `size` is the number of bytes available from `offset` (the partition length; by default up
    to the end of `f`) and `name` names the input in every error message. `f` may be shared with
    other readers: it is read with os.pread, or seek + read when it has no descriptor.
    `options` say whether to replay the journal and to verify checksums (ReadOptions).
    """

    info: Ext4Info
    journal: jbd2.JournalReport

    def __init__(
        self,
        f: BinaryIO,
        offset: int = 0,
        size: int | None = None,
        name: str = "ext4",
        options: ReadOptions | None = None,
    ) -> None:
        self._f = f
        self._offset = offset
        self._name = name
        self._options = options or ReadOptions()
        self._fd = self._fileno(f)
        self._available = self._available_size(size)
        self._overlay: jbd2.Overlay | None = None
        self._warned: set[str] = set()
        self._inode_tables: OrderedDict[int, int] = OrderedDict()
        self._meta: OrderedDict[int, bytes] = OrderedDict()
        self._sb = self._read_superblock()
        self.journal = self._recover()
        self.info = self._make_info()

    def used_bytes(self) -> int:
        """The bytes the superblock counts as used, less the inode tables (allocated whole
        however few inodes are in use) and the journal: a cheap estimate of what reading the
        tree reads."""
        sb = self._sb
        used = (sb.blocks_count - sb.first_data_block - sb.free_blocks) * sb.block_size
        journal = 0
        if sb.journal_inum and self._raw_sb[SB_JNL_BACKUP_TYPE] == JNL_BACKUP_BLOCKS:
            # The journal inode's size, as mke2fs and the kernel back it up in the superblock.
            size_hi, size_lo = struct.unpack_from("<II", self._raw_sb, SB_JNL_BLOCKS + 15 * 4)
            journal = size_hi << 32 | size_lo
        return max(0, used - sb.inodes_count * sb.inode_size - journal)

    # --- raw I/O ------------------------------------------------------------------------------

    @staticmethod
    def _fileno(f: BinaryIO) -> int | None:
        try:
            return f.fileno()
        except (AttributeError, OSError, io.UnsupportedOperation):
            return None

    def _available_size(self, size: int | None) -> int:
        if size is not None:
            return size
        position = self._f.tell()
        end = self._f.seek(0, os.SEEK_END)
        self._f.seek(position)  # the file is shared: leave its position as found
        return max(0, end - self._offset)

    def _read(self, pos: int, length: int) -> bytes:
        """`length` bytes at filesystem byte `pos`, as the journal's replay left them."""
        data = self._read_disk(pos, length)
        if self._overlay is not None:
            return self._overlay.patch(pos, data, self._read_disk)
        return data

    def _read_disk(self, pos: int, length: int) -> bytes:
        """`length` bytes at filesystem byte `pos`; the file is shared, so never rely on its position."""
        if self._fd is not None:
            data = os.pread(self._fd, length, self._offset + pos)
        else:
            self._f.seek(self._offset + pos)
            data = self._f.read(length)
        if len(data) != length:
            raise self._corrupt(f"short read: {len(data)} of {length} bytes at byte {pos} (truncated image?)")
        return data

    def _corrupt(self, what: str, ino: int | None = None, path: bytes | None = None) -> CorruptInput:
        where = ""
        if ino is not None:
            where = f"inode {ino} ({_display(path)}): " if path is not None else f"inode {ino}: "
        return CorruptInput(f"{self._name}: {where}{what}")

    def _bad(self, inode: _Inode, what: str) -> CorruptInput:
        return self._corrupt(what, inode.number, inode.path)

    def _checksum_failed(
        self, kind: ChecksumKind, stored: int, computed: int, ino: int | None = None, path: bytes | None = None,
        where: str = "",
    ) -> None:  # fmt: skip
        """A metadata checksum that does not match: refuse, or with --ignore-checksums warn once per kind."""
        what = f"{kind.value}{where} checksum mismatch (stored 0x{stored:x}, computed 0x{computed:x})"
        error = self._corrupt(what, ino, path)
        if self._options.verify_checksums:
            error.hint = "the kernel refuses this metadata too; --ignore-checksums reads it anyway"
            raise error
        if kind.value not in self._warned:
            self._warned.add(kind.value)
            log.warning("%s; read anyway (--ignore-checksums), further %s checksum errors are not reported",
                        error.message, kind.value)  # fmt: skip

    def _inode_seed(self, inode: _Inode) -> int:
        """The checksum seed of an inode's extent and directory blocks, computed when first needed."""
        if inode.csum_seed is None:
            inode.csum_seed = ext4csum.inode_seed(self._sb.csum_seed or 0, inode.number, inode.raw)
        return inode.csum_seed

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("%s", message)

    # --- superblock and group descriptors -----------------------------------------------------

    def _read_superblock(self) -> _Superblock:
        if self._available < SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE:
            raise self._corrupt(
                f"not an ext2/3/4 filesystem: only {self._available} bytes, too small to hold a superblock"
            )
        raw = self._read(SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE)
        (magic,) = struct.unpack_from("<H", raw, 0x38)
        if magic != EXT4_MAGIC:
            raise self._corrupt(f"not an ext2/3/4 filesystem: bad magic 0x{magic:04x} at byte {MAGIC_OFFSET}")
        sb = self._parse_superblock(raw)
        self._raw_sb = raw
        return sb

    def _parse_superblock(self, raw: bytes) -> _Superblock:
        (inodes_count, blocks_lo, first_data_block, log_block, log_cluster, blocks_per_group) = (
            struct.unpack_from("<II12xIIII", raw, 0)
        )
        (inodes_per_group,) = struct.unpack_from("<I", raw, 0x28)
        (rev_level,) = struct.unpack_from("<I", raw, 0x4C)
        inode_size, _, compat, incompat, ro_compat = struct.unpack_from("<HHIII", raw, 0x58)
        (desc_size,) = struct.unpack_from("<H", raw, 0xFE)
        (first_meta_bg,) = struct.unpack_from("<I", raw, 0x104)
        (journal_inum,) = struct.unpack_from("<I", raw, SB_JOURNAL_INUM)
        (creator_os,) = struct.unpack_from("<I", raw, SB_CREATOR_OS)
        (blocks_hi, free_hi) = struct.unpack_from("<I4xI", raw, 0x150)
        (free_lo,) = struct.unpack_from("<I", raw, 0x0C)
        backup_bgs = struct.unpack_from("<II", raw, 0x24C)
        if rev_level == 0:
            # The original format has no feature fields and a fixed inode size.
            inode_size, compat, incompat, ro_compat = GOOD_OLD_INODE_SIZE, 0, 0, 0
        self._check_incompat(incompat)
        if log_block > MAX_LOG_BLOCK_SIZE:
            raise self._corrupt(f"superblock: absurd block size 2^{10 + log_block}")
        block_size = 1024 << log_block
        is_64bit = bool(incompat & INCOMPAT_64BIT)
        blocks_count = blocks_lo | (blocks_hi << 32 if is_64bit else 0)
        desc_size = desc_size if is_64bit else 32
        # With bigalloc, space is allocated in clusters (same encoding as the block size).
        bigalloc = ro_compat & RO_COMPAT_BIGALLOC and log_cluster <= MAX_LOG_BLOCK_SIZE + 16
        cluster_size = 1024 << log_cluster if bigalloc else block_size
        sb = _Superblock(
            block_size=block_size,
            blocks_count=blocks_count,
            inodes_count=inodes_count,
            inode_size=inode_size,
            inodes_per_group=inodes_per_group,
            blocks_per_group=blocks_per_group,
            first_data_block=first_data_block,
            groups=0,
            desc_size=desc_size,
            first_meta_bg=first_meta_bg,
            cluster_size=cluster_size,
            backup_bgs=(backup_bgs[0], backup_bgs[1]),
            compat=compat,
            incompat=incompat,
            ro_compat=ro_compat,
            journal_inum=journal_inum,
            free_blocks=free_lo | (free_hi << 32 if is_64bit else 0),
        )
        sb = self._validate_superblock(sb)
        if ro_compat & RO_COMPAT_METADATA_CSUM:
            if raw[SB_CHECKSUM_TYPE] != CRC32C_CHECKSUM_TYPE:
                raise self._corrupt(f"superblock: unknown checksum type {raw[SB_CHECKSUM_TYPE]}")
            stored, computed = ext4csum.superblock(raw)
            if stored != computed:
                self._checksum_failed(ChecksumKind.SUPERBLOCK, stored, computed)
            if incompat & INCOMPAT_CSUM_SEED:
                (seed,) = struct.unpack_from("<I", raw, SB_CHECKSUM_SEED)
            else:
                seed = ext4csum.crc(ext4csum.MASK, raw[0x68:0x78])
            sb = dataclasses.replace(sb, csum_seed=seed, inode_csums=creator_os == CREATOR_OS_LINUX)
        return sb

    def _check_incompat(self, incompat: int) -> None:
        unsupported = incompat & ~INCOMPAT_SUPPORTED
        if unsupported:
            bit = unsupported & -unsupported
            feature = INCOMPAT_FEATURES.get(bit, f"FEATURE_I{bit.bit_length() - 1}")
            raise self._corrupt(
                f"the filesystem uses incompatible feature {feature!r} (incompat bit 0x{bit:x}), "
                "which is not supported"
            )

    def _validate_superblock(self, sb: _Superblock) -> _Superblock:
        def bad(what: str) -> CorruptInput:
            return self._corrupt(f"superblock: {what}")

        bs = sb.block_size
        if sb.blocks_count == 0 or sb.first_data_block >= sb.blocks_count:
            raise bad(f"absurd block count {sb.blocks_count} (first data block {sb.first_data_block})")
        if sb.blocks_per_group == 0 or sb.inodes_per_group == 0 or sb.inodes_per_group > 8 * bs:
            raise bad(
                f"absurd group geometry: {sb.blocks_per_group} blocks, {sb.inodes_per_group} inodes per group"
            )
        if sb.inode_size < GOOD_OLD_INODE_SIZE or sb.inode_size > bs or sb.inode_size & (sb.inode_size - 1):
            raise bad(f"absurd inode size {sb.inode_size}")
        if sb.desc_size < 32 or sb.desc_size > bs or sb.desc_size & (sb.desc_size - 1):
            raise bad(f"absurd group descriptor size {sb.desc_size}")
        groups = -(-(sb.blocks_count - sb.first_data_block) // sb.blocks_per_group)
        if sb.inodes_count < ROOT_INO or sb.inodes_count > groups * sb.inodes_per_group:
            raise bad(
                f"absurd inode count {sb.inodes_count} for {groups} groups of {sb.inodes_per_group} inodes"
            )
        size = sb.blocks_count * bs
        if size > self._available:
            raise self._corrupt(
                f"filesystem is {size} bytes ({sb.blocks_count} blocks of {bs}) but only "
                f"{self._available} bytes are available (truncated image?)"
            )
        return dataclasses.replace(sb, groups=groups)

    # --- the journal --------------------------------------------------------------------------

    def _recover(self) -> jbd2.JournalReport:
        """Replay the journal if the filesystem needs recovery (as the kernel does on mount)."""
        sb = self._sb
        if not (sb.incompat & INCOMPAT_RECOVER and sb.compat & COMPAT_HAS_JOURNAL):
            return jbd2.JournalReport()
        skipped = jbd2.JournalReport(needed=True, skipped_reason="--no-journal")
        if sb.journal_inum == 0:
            if not self._options.journal:
                return skipped
            raise CorruptInput(
                f"{self._name}: the filesystem needs recovery from an external journal device "
                "(journal_dev), which dockerify cannot read",
                hint="--no-journal reads the filesystem as it is on disk, without the journal's changes",
            )
        journal = self._open_journal()
        if not journal.needs_replay():
            return jbd2.JournalReport()  # the flag is set but the log is empty: nothing to replay
        if not self._options.journal:
            log.warning(
                "%s: the filesystem was not cleanly unmounted; its journal is not replayed (--no-journal): "
                "recent changes are missing",
                self._name,
            )
            return skipped
        overlay, report = journal.replay()
        if overlay.sources:
            self._overlay = overlay
            self._meta.clear()
            self._inode_tables.clear()
            self._sb = self._read_superblock()  # the superblock is journaled like any block
        return report

    def _open_journal(self) -> jbd2.Journal:
        inode = self._read_inode(self._sb.journal_inum, b"\0the journal")
        if inode.file_type is not FileType.REG:
            raise self._bad(inode, "the journal inode is not a regular file")
        return jbd2.Journal(
            self._read_disk,
            self._data_runs(inode),
            self._sb.block_size,
            self._sb.blocks_count,
            self._name,
            verify=self._options.verify_checksums,
        )

    def _make_info(self) -> Ext4Info:
        sb, raw = self._sb, self._raw_sb
        # needs_recovery is a state, not a feature to recreate (inspect reports it as the journal's).
        incompat = sb.incompat & ~INCOMPAT_RECOVER
        features = (
            _feature_names(sb.compat, COMPAT_FEATURES, "C")
            + _feature_names(sb.ro_compat, RO_COMPAT_FEATURES, "R")
            + _feature_names(incompat, INCOMPAT_FEATURES, "I")
        )
        if sb.incompat & ~EXT3_INCOMPAT or sb.ro_compat & ~EXT3_RO_COMPAT:
            fs_type = "ext4"
        elif sb.compat & COMPAT_HAS_JOURNAL:
            fs_type = "ext3"
        else:
            fs_type = "ext2"
        return Ext4Info(
            fs_type=fs_type,
            uuid=str(uuid.UUID(bytes=raw[0x68:0x78])),
            label=raw[0x78:0x88].split(b"\0", 1)[0].decode("utf-8", "replace"),
            block_size=sb.block_size,
            blocks_count=sb.blocks_count,
            inodes_count=sb.inodes_count,
            inode_size=sb.inode_size,
            features=tuple(sorted(features)),
            size_bytes=sb.blocks_count * sb.block_size,
        )

    def _group_has_superblock(self, group: int) -> bool:
        """Whether `group` starts with a superblock backup (and so a descriptor copy follows it)."""
        sb = self._sb
        if group == 0:
            return True
        if sb.compat & COMPAT_SPARSE_SUPER2:
            return group in sb.backup_bgs
        if group == 1 or not sb.ro_compat & RO_COMPAT_SPARSE_SUPER:
            return True
        if group % 2 == 0:
            return False
        for base in (3, 5, 7):
            n = base
            while n < group:
                n *= base
            if n == group:
                return True
        return False

    def _descriptor_block(self, index: int) -> int:
        """The block holding the `index`-th block of group descriptors."""
        sb = self._sb
        if sb.incompat & INCOMPAT_META_BG and index >= sb.first_meta_bg:
            # meta_bg: each run of groups that one descriptor block covers keeps that block in
            # its first group, right after the superblock backup if the group has one.
            group = index * (sb.block_size // sb.desc_size)
            first = sb.first_data_block + group * sb.blocks_per_group
            return first + (1 if self._group_has_superblock(group) else 0)
        # The descriptor table follows the block holding the primary superblock (at byte 1024).
        return SUPERBLOCK_OFFSET // sb.block_size + 1 + index

    def _inode_table(self, group: int, ino: int, path: bytes) -> int:
        cached = self._inode_tables.get(group)
        if cached is not None:
            return cached
        sb = self._sb
        per_block = sb.block_size // sb.desc_size
        desc_block = self._descriptor_block(group // per_block)
        if desc_block >= sb.blocks_count:
            raise self._corrupt(
                f"group descriptor block {desc_block} of group {group} is beyond the end of the filesystem "
                f"({sb.blocks_count} blocks)",
                ino,
                path,
            )
        raw = self._meta_block(desc_block)
        pos = (group % per_block) * sb.desc_size
        if sb.csum_seed is not None:
            stored, computed = ext4csum.group_descriptor(sb.csum_seed, group, raw[pos : pos + sb.desc_size])
            if stored != computed:
                self._checksum_failed(
                    ChecksumKind.GROUP_DESCRIPTOR, stored, computed, ino, path, f" of group {group}"
                )
        table: int
        (table,) = struct.unpack_from("<I", raw, pos + 0x08)
        if sb.desc_size >= 64:
            (table_hi,) = struct.unpack_from("<I", raw, pos + 0x28)
            table |= table_hi << 32
        table_blocks = -(-sb.inodes_per_group * sb.inode_size // sb.block_size)
        if table == 0 or table + table_blocks > sb.blocks_count:
            raise self._corrupt(
                f"inode table of group {group} at block {table} is beyond the end of the filesystem "
                f"({sb.blocks_count} blocks)",
                ino,
                path,
            )
        self._inode_tables[group] = table
        if len(self._inode_tables) > INODE_TABLE_CACHE_SIZE:
            self._inode_tables.popitem(last=False)
        return table

    def _meta_block(self, block: int) -> bytes:
        """A metadata block (descriptors, inode table, xattr block), from a small LRU cache."""
        data = self._meta.get(block)
        if data is None:
            data = self._read(block * self._sb.block_size, self._sb.block_size)
            self._meta[block] = data
            if len(self._meta) > META_CACHE_SIZE:
                self._meta.popitem(last=False)
        else:
            self._meta.move_to_end(block)
        return data

    def _check_blocks(self, inode: _Inode, block: int, count: int = 1) -> None:
        if block + count > self._sb.blocks_count:
            last = block + count - 1
            raise self._bad(
                inode, f"block {last} is beyond the end of the filesystem ({self._sb.blocks_count} blocks)"
            )

    # --- inodes -------------------------------------------------------------------------------

    def _read_inode(self, ino: int, path: bytes) -> _Inode:
        sb = self._sb
        if not 1 <= ino <= sb.inodes_count:
            raise self._corrupt(f"inode number out of range (1..{sb.inodes_count})", ino, path)
        group, index = divmod(ino - 1, sb.inodes_per_group)
        table = self._inode_table(group, ino, path)
        per_block = sb.block_size // sb.inode_size
        block, slot = divmod(index, per_block)
        raw = self._meta_block(table + block)[slot * sb.inode_size : (slot + 1) * sb.inode_size]
        inode = self._parse_inode(ino, path, raw)
        if sb.csum_seed is not None:
            stored, computed = ext4csum.inode(sb.csum_seed, ino, raw, inode.extra_isize)
            if stored != computed and sb.inode_csums:
                self._checksum_failed(ChecksumKind.INODE, stored, computed, ino, path)
        return inode

    def _parse_inode(self, ino: int, path: bytes, raw: bytes) -> _Inode:
        (mode, uid, size_lo, mtime, gid, _links, blocks_lo, flags, i_block, acl_lo, size_hi, blocks_hi,
         acl_hi, uid_hi, gid_hi) = INODE_BASE.unpack_from(raw)  # fmt: skip
        extra_isize = self._extra_isize(ino, path, raw)
        if extra_isize >= MTIME_EXTRA_OFFSET + 4 - GOOD_OLD_INODE_SIZE:
            # Large inodes carry two more seconds bits to take mtime past 2038.
            (mtime_extra,) = struct.unpack_from("<I", raw, MTIME_EXTRA_OFFSET)
            mtime += (mtime_extra & 3) << 32
        blocks = blocks_lo
        if self._sb.ro_compat & RO_COMPAT_HUGE_FILE:
            blocks |= blocks_hi << 32
            if flags & HUGE_FILE_FL:
                blocks *= self._sb.block_size // 512
        return _Inode(
            number=ino,
            path=path,
            raw=raw,
            mode=mode,
            uid=uid | uid_hi << 16,
            gid=gid | gid_hi << 16,
            size=size_lo | size_hi << 32,
            mtime=mtime,
            flags=flags,
            blocks=blocks,
            i_block=i_block,
            file_acl=acl_lo | acl_hi << 32,
            extra_isize=extra_isize,
        )

    def _extra_isize(self, ino: int, path: bytes, raw: bytes) -> int:
        if len(raw) <= GOOD_OLD_INODE_SIZE:
            return 0
        extra: int
        (extra,) = struct.unpack_from("<H", raw, EXTRA_ISIZE_OFFSET)
        if extra % 4 or GOOD_OLD_INODE_SIZE + extra > len(raw):
            raise self._corrupt(f"absurd i_extra_isize {extra} for {len(raw)}-byte inodes", ino, path)
        return extra

    # --- extended attributes ------------------------------------------------------------------

    def _xattrs(self, inode: _Inode) -> dict[str, bytes]:
        """All extended attributes: the in-inode area first, then the external block."""
        attrs: dict[str, bytes] = {}
        start = GOOD_OLD_INODE_SIZE + inode.extra_isize
        raw = inode.raw
        if start + 4 <= len(raw) and struct.unpack_from("<I", raw, start)[0] == XATTR_MAGIC:
            # In-inode value offsets count from the first entry, just after the magic.
            attrs.update(self._xattr_entries(inode, raw, start + 4, len(raw), value_base=start + 4))
        if inode.file_acl:
            attrs.update(self._xattr_block(inode))
        return attrs

    def _xattr_block(self, inode: _Inode) -> dict[str, bytes]:
        self._check_blocks(inode, inode.file_acl)
        block = self._meta_block(inode.file_acl)
        magic, _refcount, nblocks = XATTR_BLOCK_HEADER.unpack_from(block)
        if magic != XATTR_MAGIC or nblocks != 1:
            raise self._bad(
                inode, f"xattr block {inode.file_acl} has bad magic 0x{magic:08x} or block count {nblocks}"
            )
        if self._sb.csum_seed is not None:
            stored, computed = ext4csum.xattr_block(self._sb.csum_seed, inode.file_acl, block)
            if stored != computed:
                where = f" {inode.file_acl}"
                self._checksum_failed(
                    ChecksumKind.XATTR_BLOCK, stored, computed, inode.number, inode.path, where
                )
        return self._xattr_entries(inode, block, XATTR_BLOCK_HEADER_SIZE, len(block), value_base=0)

    def _xattr_entries(
        self, inode: _Inode, buf: bytes, pos: int, end: int, value_base: int
    ) -> dict[str, bytes]:
        attrs: dict[str, bytes] = {}
        # The list ends with four zero bytes; every entry takes at least 16, so this terminates.
        while pos + 4 <= end and buf[pos : pos + 4] != b"\0\0\0\0":
            if pos + XATTR_ENTRY.size > end:
                raise self._bad(inode, f"xattr entry at byte {pos} overruns its area")
            name_len, index, value_offs, value_inum, value_size = XATTR_ENTRY.unpack_from(buf, pos)
            name_end = pos + XATTR_ENTRY.size + name_len
            if name_end > end:
                raise self._bad(inode, f"xattr name at byte {pos} overruns its area")
            pos_next = (name_end + 3) & ~3
            if index in XATTR_HIDDEN_INDEXES:
                pos = pos_next
                continue
            name = self._xattr_name(inode, index, buf[pos + XATTR_ENTRY.size : name_end])
            if value_inum:
                value = self._ea_inode_value(inode, name, value_inum, value_size)
            else:
                value_start = value_base + value_offs
                if value_size and (value_start < pos or value_start + value_size > end):
                    raise self._bad(
                        inode, f"xattr {name!r} value ({value_size} bytes at {value_offs}) overruns its area"
                    )
                value = buf[value_start : value_start + value_size] if value_size else b""
            if index in XATTR_ACL_INDEXES:
                value = self._acl_to_vfs(inode, name, value)
            attrs[name] = value
            pos = pos_next
        return attrs

    def _ea_inode_value(self, owner: _Inode, name: str, ino: int, size: int) -> bytes:
        """ea_inode: a large value is the content of an inode of its own (flagged EA_INODE)."""
        if not self._sb.incompat & INCOMPAT_EA_INODE:
            raise self._bad(owner, f"xattr {name!r} is stored in inode {ino} but the ea_inode feature is off")
        if size > XATTR_SIZE_MAX:
            raise self._bad(owner, f"xattr {name!r} claims {size} bytes (at most {XATTR_SIZE_MAX})")
        label = f"\0the value of xattr {name!r} of {_display(owner.path)}".encode()
        value_inode = self._read_inode(ino, label)
        if value_inode.file_type is not FileType.REG or not value_inode.flags & EA_INODE_FL:
            raise self._bad(value_inode, "not an xattr value inode (EA_INODE flag missing)")
        if value_inode.size != size:
            raise self._bad(value_inode, f"holds {value_inode.size} bytes, the xattr entry says {size}")
        value = bytearray(size)
        for offset, data in self._run_pieces(self._data_runs(value_inode), size):
            value[offset : offset + len(data)] = data
        return bytes(value)

    def _xattr_name(self, inode: _Inode, index: int, suffix: bytes) -> str:
        prefix = XATTR_PREFIXES.get(index)
        if prefix is None:
            raise self._bad(inode, f"xattr with unknown name index {index}")
        return prefix + suffix.decode("utf-8", "surrogateescape")

    def _acl_to_vfs(self, inode: _Inode, name: str, value: bytes) -> bytes:
        """Convert ext4's compact on-disk POSIX ACL to the VFS xattr format (version 2)."""
        if len(value) < 4 or struct.unpack_from("<I", value)[0] != EXT4_ACL_VERSION:
            raise self._bad(inode, f"xattr {name!r} is not an ext4 ACL (bad version)")
        out = [struct.pack("<I", VFS_ACL_VERSION)]
        pos = 4
        while pos < len(value):
            if pos + 4 > len(value):
                raise self._bad(inode, f"xattr {name!r}: truncated ACL entry")
            tag, perm = struct.unpack_from("<HH", value, pos)
            if tag in ACL_SHORT_TAGS:
                qualifier, pos = ACL_UNDEFINED_ID, pos + 4
            elif tag in ACL_ID_TAGS and pos + 8 <= len(value):
                (qualifier,) = struct.unpack_from("<I", value, pos + 4)
                pos += 8
            else:
                raise self._bad(inode, f"xattr {name!r}: bad ACL entry tag 0x{tag:x}")
            out.append(struct.pack("<HHI", tag, perm, qualifier))
        return b"".join(out)

    def _split_inline(self, inode: _Inode, attrs: dict[str, bytes]) -> bytes | None:
        """Remove the internal system.data xattr; return the inline data if the inode has any."""
        continuation = attrs.pop(INLINE_DATA_XATTR, b"")
        if not inode.flags & INLINE_DATA_FL:
            return None
        return inode.i_block + continuation

    # --- block mapping ------------------------------------------------------------------------

    def _data_runs(self, inode: _Inode) -> list[tuple[int, int, int]]:
        """The written data of a file as (logical block, physical block, count), in order.

        Physically contiguous neighbours are merged so that a read covers as much as possible.
        Unwritten extents and holes are left out, as is anything past i_size.
        """
        walk = _MapWalk(inode, nblocks=-(-inode.size // self._sb.block_size))
        if walk.nblocks == 0:
            return walk.runs
        if inode.flags & EXTENTS_FL:
            self._walk_extent_node(walk, inode.i_block, None)
        else:
            self._walk_block_map(walk)
        return walk.runs

    def _mapping_block(self, walk: _MapWalk, block: int) -> bytes:
        """An extent tree node or indirect block, which a sound file references only once."""
        self._check_blocks(walk.inode, block)
        if block in walk.seen:
            # Without this, a hostile tree of nodes pointing at each other costs exponential reads.
            raise self._bad(walk.inode, f"block map block {block} is referenced twice")
        walk.seen.add(block)
        return self._read(block * self._sb.block_size, self._sb.block_size)

    def _walk_extent_node(self, walk: _MapWalk, node: bytes, depth: int | None) -> None:
        inode = walk.inode
        magic, entries, capacity, node_depth = EXTENT_HEADER.unpack_from(node)
        if magic != EXTENT_MAGIC:
            raise self._bad(
                inode, f"extent header has bad magic 0x{magic:04x} (expected 0x{EXTENT_MAGIC:04x})"
            )
        room = len(node) // EXTENT_ENTRY_SIZE - 1
        if entries > capacity or capacity > room:
            raise self._bad(inode, f"extent header claims {entries} entries of {capacity} in room for {room}")
        if node_depth > MAX_EXTENT_DEPTH or (depth is not None and node_depth != depth):
            raise self._bad(inode, f"extent tree node has depth {node_depth}, expected {depth}")
        if depth is not None and self._sb.csum_seed is not None:
            # Nodes outside i_block end with a checksum after their eh_max entries.
            stored, computed = ext4csum.extent_block(
                self._inode_seed(inode), node, EXTENT_ENTRY_SIZE * (capacity + 1)
            )
            if stored != computed:
                self._checksum_failed(ChecksumKind.EXTENT_BLOCK, stored, computed, inode.number, inode.path)
        for i in range(entries):
            pos = EXTENT_ENTRY_SIZE * (i + 1)
            if node_depth == 0:
                self._leaf_extent(walk, node, pos)
                continue
            logical, leaf_lo, leaf_hi = EXTENT_INDEX.unpack_from(node, pos)
            if logical >= walk.nblocks:
                return  # the rest maps space preallocated past i_size
            if logical < walk.next_logical:
                raise self._bad(inode, f"extent index for block {logical} is out of order")
            child = self._mapping_block(walk, leaf_lo | leaf_hi << 32)
            self._walk_extent_node(walk, child, node_depth - 1)

    def _leaf_extent(self, walk: _MapWalk, node: bytes, pos: int) -> None:
        logical, length, start_hi, start_lo = EXTENT_LEAF.unpack_from(node, pos)
        written = length <= EXTENT_INIT_MAX_LEN
        if not written:
            length -= EXTENT_INIT_MAX_LEN
        if logical < walk.next_logical:
            raise self._bad(walk.inode, f"extents overlap or are out of order at logical block {logical}")
        walk.next_logical = logical + length
        physical = start_hi << 32 | start_lo
        self._check_blocks(walk.inode, physical, length)
        if written and length and logical < walk.nblocks:
            walk.add(logical, physical, min(length, walk.nblocks - logical))

    def _walk_block_map(self, walk: _MapWalk) -> None:
        """ext2/3 block map: 12 direct pointers, then single, double and triple indirect blocks."""
        pointers = struct.unpack("<15I", walk.inode.i_block)
        for logical in range(min(12, walk.nblocks)):
            if pointers[logical]:
                self._check_blocks(walk.inode, pointers[logical])
                walk.add(logical, pointers[logical], 1)
        per_block = self._sb.block_size // 4
        logical = 12
        for level, pointer in enumerate(pointers[12:], start=1):
            if logical >= walk.nblocks:
                break
            if pointer:
                self._walk_indirect(walk, pointer, level, logical)
            logical += per_block**level

    def _walk_indirect(self, walk: _MapWalk, block: int, level: int, first: int) -> None:
        """An indirect block of `level` (1 = it points at data) mapping blocks from `first` on."""
        data = self._mapping_block(walk, block)
        pointers = struct.unpack(f"<{len(data) // 4}I", data)
        span = len(pointers) ** (level - 1)
        limit = min(len(pointers), -(-(walk.nblocks - first) // span))
        for i in range(limit):
            pointer = pointers[i]
            if not pointer:
                continue
            if level == 1:
                self._check_blocks(walk.inode, pointer)
                walk.add(first + i, pointer, 1)
            else:
                self._walk_indirect(walk, pointer, level - 1, first + i * span)

    def _run_pieces(self, runs: list[tuple[int, int, int]], size: int) -> Iterator[tuple[int, bytes]]:
        """(offset, data) of the runs, in reads of up to CHUNK bytes, the last block cut at `size`."""
        bs = self._sb.block_size
        for logical, physical, count in runs:
            start = logical * bs
            end = min(start + count * bs, size)
            disk = physical * bs - start
            pos = start
            while pos < end:
                n = min(CHUNK, end - pos)
                yield pos, self._read(disk + pos, n)
                pos += n

    # --- file content -------------------------------------------------------------------------

    def _regular(self, entry: Entry, inode: _Inode, inline: bytes | None) -> None:
        if inline is not None:
            # Like the kernel, read what lies past the inline area as a hole (mke2fs -d makes
            # an all-hole file inline).
            data = inline[: inode.size]
            entry.reader = bytes_reader(data)
            regions: tuple[tuple[int, int], ...] = ((0, len(data)),) if data else ()
        else:
            runs = self._data_runs(inode)
            bs = self._sb.block_size
            regions = sparse_map_from_chunks(
                (logical * bs, min(count * bs, inode.size - logical * bs)) for logical, _, count in runs
            )
            size = inode.size
            entry.reader = lambda: self._run_pieces(runs, size)
        if inode.size and regions != ((0, inode.size),):
            entry.sparse = regions

    def _symlink_target(self, inode: _Inode, inline: bytes | None) -> bytes:
        if inode.size > max(MAX_SYMLINK, self._sb.block_size):
            raise self._bad(inode, f"absurd symlink length {inode.size}")
        if inline is not None:
            target = inline[: inode.size]
        else:
            ea_blocks = self._sb.cluster_size // 512 if inode.file_acl else 0
            if inode.blocks - ea_blocks == 0 and inode.size < I_BLOCK_SIZE:
                # A fast symlink keeps its target in i_block and owns no data block.
                target = inode.i_block[: inode.size]
            else:
                target = b"".join(data for _, data in self._run_pieces(self._data_runs(inode), inode.size))
        if len(target) != inode.size:
            raise self._bad(inode, f"symlink target has {len(target)} of {inode.size} bytes")
        return target

    @staticmethod
    def _device(inode: _Inode) -> tuple[int, int]:
        old, new = struct.unpack_from("<II", inode.i_block)
        if old:
            # The original 8:8 encoding, still written for small numbers.
            return (old >> 8) & 0xFF, old & 0xFF
        return (new & 0xFFF00) >> 8, (new & 0xFF) | ((new >> 12) & 0xFFF00)

    # --- directories --------------------------------------------------------------------------

    def _children(self, inode: _Inode, inline: bytes | None) -> list[tuple[bytes, int]]:
        """The (name, inode number) of a directory's entries, sorted by name, without . and .."""
        children: dict[bytes, int] = {}
        for offset, block in self._directory_blocks(inode, inline):
            for name, child in self._dirents(inode, block, offset):
                if name in (b".", b".."):
                    continue
                if not name or b"/" in name or b"\0" in name:
                    raise self._bad(inode, f"invalid file name {name!r} in directory")
                if name in children:
                    raise self._bad(inode, f"duplicate file name {name!r} in directory")
                children[name] = child
        return sorted(children.items())

    def _directory_blocks(self, inode: _Inode, inline: bytes | None) -> Iterator[tuple[int, bytes]]:
        """The byte areas that hold dirents, each parsed on its own, with their offsets."""
        if inline is not None:
            # Inline directories: the parent's inode number, then dirents in the rest of i_block
            # and in the system.data xattr value.
            yield 4, inline[4:I_BLOCK_SIZE]
            if len(inline) > I_BLOCK_SIZE:
                yield I_BLOCK_SIZE, inline[I_BLOCK_SIZE:]
            return
        if inode.size > self._sb.blocks_count * self._sb.block_size:
            raise self._bad(inode, f"absurd directory size {inode.size}")
        bs = self._sb.block_size
        # htree (dir_index) interior blocks look like one empty dirent, so a linear read works.
        verify = self._sb.csum_seed is not None
        for offset, data in self._run_pieces(self._data_runs(inode), inode.size):
            for pos in range(0, len(data), bs):
                block = data[pos : pos + bs]
                if verify and len(block) == bs:
                    self._verify_directory_block(inode, block, (offset + pos) // bs)
                yield offset + pos, block

    def _verify_directory_block(self, inode: _Inode, block: bytes, logical: int) -> None:
        """The checksum of a leaf (its dirent tail) or of an htree node (its dx_tail), as the kernel tells them apart."""
        bs = self._sb.block_size
        _, rec_len, _ = DIRENT.unpack_from(block)
        if bs >= 65536:
            rec_len = 65536 if rec_len in (0, 65535) else (rec_len & 65532) | ((rec_len & 3) << 16)
        if inode.flags & INDEX_FL and (logical == 0 or rec_len == bs):
            # The root holds "." and ".." then dx_root_info; an interior node one empty dirent.
            count_offset = 0x18 + block[0x1D] if logical == 0 else 8
            if count_offset + 4 > bs:
                raise self._bad(inode, f"htree node at directory block {logical} is malformed")
            limit, count = struct.unpack_from("<HH", block, count_offset)
            if count > limit or count_offset + limit * 8 + ext4csum.DX_TAIL_SIZE > bs:
                raise self._bad(
                    inode, f"htree node at directory block {logical} has no room for its checksum"
                )
            stored, computed = ext4csum.dx_node(self._inode_seed(inode), block, count_offset, count, limit)
            kind = ChecksumKind.HTREE_NODE
        elif ext4csum.has_dirent_tail(block):
            stored, computed = ext4csum.dirent_block(self._inode_seed(inode), block)
            kind = ChecksumKind.DIRECTORY_BLOCK
        else:
            raise self._bad(inode, f"directory block {logical} has no checksum tail (metadata_csum)")
        if stored != computed:
            self._checksum_failed(kind, stored, computed, inode.number, inode.path, f" {logical}")

    def _dirents(self, inode: _Inode, block: bytes, offset: int) -> Iterator[tuple[bytes, int]]:
        big_blocks = self._sb.block_size >= 65536
        pos, end = 0, len(block)
        while pos < end:
            if pos + DIRENT.size > end:
                raise self._bad(inode, f"directory entry at byte {offset + pos} overruns its block")
            # Without the filetype feature the type byte was the high byte of a 16-bit name_len;
            # names never exceed 255 bytes, so like the kernel only the low byte is read.
            child, rec_len, name_len = DIRENT.unpack_from(block, pos)
            if big_blocks:
                # 64 KiB blocks do not fit in 16 bits: the kernel folds the top bits into the low two.
                rec_len = 65536 if rec_len in (0, 65535) else (rec_len & 65532) | ((rec_len & 3) << 16)
            if rec_len < DIRENT.size or rec_len % 4 or pos + rec_len > end:
                raise self._bad(
                    inode,
                    f"directory entry at byte {offset + pos} has rec_len {rec_len} that overruns its "
                    f"{end}-byte block",
                )
            if child:
                if DIRENT.size + name_len > rec_len:
                    raise self._bad(
                        inode, f"directory entry at byte {offset + pos} has a name longer than its rec_len"
                    )
                yield block[pos + DIRENT.size : pos + DIRENT.size + name_len], child
            pos += rec_len

    # --- the tree -----------------------------------------------------------------------------

    def entries(self) -> Iterator[Entry]:
        """Every inode reachable from the root, depth first, siblings in name byte order."""
        root = self._read_inode(ROOT_INO, b".")
        if root.file_type is not FileType.DIR:
            raise self._bad(root, "the root is not a directory")
        visited_dirs = {ROOT_INO}
        first_paths: dict[int, bytes] = {}
        entry, inline = self._entry(root, first_paths)
        yield entry
        stack = [(b".", iter(self._children(root, inline)))]
        while stack:
            parent, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                continue
            name, ino = child
            inode = self._read_inode(ino, _join(parent, name))
            if inode.file_type is FileType.DIR:
                if ino in visited_dirs:
                    raise self._bad(inode, "directory reached twice (a directory loop or hard link)")
                visited_dirs.add(ino)
            entry, inline = self._entry(inode, first_paths)
            yield entry
            if inode.file_type is FileType.DIR:
                stack.append((inode.path, iter(self._children(inode, inline))))

    def _entry(self, inode: _Inode, first_paths: dict[int, bytes]) -> tuple[Entry, bytes | None]:
        """The entry for one inode, and its inline data (needed to list an inline directory)."""
        file_type = inode.file_type
        if file_type is None:
            raise self._bad(inode, f"unknown file type in mode 0o{inode.mode:o}")
        if inode.flags & ENCRYPT_FL:
            what = "directory" if file_type is FileType.DIR else "file"
            raise DockerifyError(
                f"{self._name}: inode {inode.number} ({_display(inode.path)}): the {what} is encrypted "
                "(fscrypt); its names and contents cannot be read without the key",
                hint="copy the tree from a system where the key is unlocked, or remove the encrypted directory",
            )
        if inode.flags & VERITY_FL and file_type is FileType.REG:
            self._warn_once(
                "verity",
                f"{self._name}: {_display(inode.path)} is an fs-verity file: its Merkle tree and signature "
                "are not part of the tree, the file is read as a plain file (further ones are not named)",
            )
        entry = Entry(
            path=inode.path,
            type=file_type,
            mode=inode.mode & 0o7777,
            uid=inode.uid,
            gid=inode.gid,
            mtime=inode.mtime,
        )
        if file_type is FileType.REG and inode.number in first_paths:
            entry.type = FileType.HARDLINK
            entry.linkname = first_paths[inode.number]
            return entry, None
        entry.xattrs = self._xattrs(inode)
        inline = self._split_inline(inode, entry.xattrs)
        if file_type is FileType.REG:
            first_paths[inode.number] = inode.path
            entry.size = inode.size
            self._regular(entry, inode, inline)
        elif file_type is FileType.SYMLINK:
            entry.linkname = self._symlink_target(inode, inline)
        elif file_type in (FileType.CHAR, FileType.BLOCK):
            entry.devmajor, entry.devminor = self._device(inode)
        return entry, inline
