"""Fill an empty ext4 filesystem that mke2fs just made with a tree, straight from its entries.

The fast path of the SD-card export (see sdcard.py): mke2fs lays down the empty filesystem with
the same options as ever (size, inodes, features, UUID, hash seed, fake time), and this module
then writes every inode, extent tree, directory block, xattr, bitmap and descriptor itself, with
file data pwritten once, directly into the card file at the partition's offset. No staging tree,
no second copy of the data.

Layout choices (all deterministic, so the same entries give the same bytes): inodes and blocks
are taken in order from the free ranges `dumpe2fs` reports for the empty filesystem; a file's
blocks are contiguous unless a free range ends; directories are linear (no htree; valid with
dir_index, the kernel indexes them when they grow); ctime = atime = crtime = mtime.

`Unsupported` means this layout is not one the writer handles (the caller falls back to the
staging path); `OutOfSpace` that the tree did not fit (the caller tries the next size).
"""

from __future__ import annotations

import bisect
import logging
import os
import queue
import re
import struct
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from dockerify.entry import Entry, FileType
from dockerify.errors import DockerifyError
from dockerify.exporters.common import display
from dockerify.run import run
from dockerify.sources.ext4csum import crc

log = logging.getLogger("dockerify")

#: Features the writer lays out correctly; any other one in the made filesystem means fallback.
SUPPORTED = frozenset(
    {
        "has_journal",
        "ext_attr",
        "resize_inode",
        "dir_index",
        "filetype",
        "extent",
        "extents",
        "64bit",
        "flex_bg",
        "sparse_super",
        "large_file",
        "huge_file",
        "dir_nlink",
        "extra_isize",
        "metadata_csum",
        "metadata_csum_seed",
        "large_dir",
        "orphan_file",  # mke2fs's own inode and blocks, left as they are
        "orphan_present",
    }
)
REQUIRED = frozenset({"extent", "filetype"})

EXTENTS_FL = 0x80000
BG_INODE_UNINIT, BG_BLOCK_UNINIT = 0x1, 0x2
ROOT_INO, LOST_FOUND_INO = 2, 11
MAX_EXTENT = 32768  # blocks in one initialized extent
EXTRA_ISIZE = 32
_S_IF = {
    FileType.REG: 0o100000,
    FileType.DIR: 0o040000,
    FileType.SYMLINK: 0o120000,
    FileType.CHAR: 0o020000,
    FileType.BLOCK: 0o060000,
    FileType.FIFO: 0o010000,
    FileType.SOCKET: 0o140000,
}
_FTYPE = {
    FileType.REG: 1,
    FileType.DIR: 2,
    FileType.CHAR: 3,
    FileType.BLOCK: 4,
    FileType.FIFO: 5,
    FileType.SOCKET: 6,
    FileType.SYMLINK: 7,
}
# (xattr name prefix, ext4 name index), the longest prefixes first.
_XATTR_INDEX = (
    ("system.posix_acl_access", 2),
    ("system.posix_acl_default", 3),
    ("security.", 6),
    ("trusted.", 4),
    ("system.", 7),
    ("user.", 1),
)


class Unsupported(Exception):
    """Something the direct writer does not lay out; the staging path can."""


class OutOfSpace(Exception):
    pass


# ---------------------------------------------------------------- geometry


@dataclass
class Geometry:
    block_size: int
    blocks_count: int
    first_data_block: int
    blocks_per_group: int
    inodes_per_group: int
    inodes_count: int
    inode_size: int
    desc_size: int
    groups: int
    csum: bool
    seed: int
    features: frozenset[str]
    descs: bytearray
    free_blocks: list[tuple[int, int]]  # [start, end) ranges, merged, in order
    free_inodes: list[tuple[int, int]]

    def group_start(self, g: int) -> int:
        return self.first_data_block + g * self.blocks_per_group

    def desc_field(self, g: int, lo: int, hi: int | None, size: int = 4) -> int:
        d = g * self.desc_size
        fmt = "<I" if size == 4 else "<H"
        value: int = struct.unpack_from(fmt, self.descs, d + lo)[0]
        if hi is not None and self.desc_size >= 64:
            value |= struct.unpack_from(fmt, self.descs, d + hi)[0] << (8 * size)
        return value

    def set_desc_field(self, g: int, lo: int, hi: int | None, value: int, size: int = 4) -> None:
        d = g * self.desc_size
        fmt = "<I" if size == 4 else "<H"
        mask = (1 << (8 * size)) - 1
        struct.pack_into(fmt, self.descs, d + lo, value & mask)
        if hi is not None and self.desc_size >= 64:
            struct.pack_into(fmt, self.descs, d + hi, (value >> (8 * size)) & mask)

    def inode_table(self, g: int) -> int:
        return self.desc_field(g, 0x08, 0x28)


_RANGE = re.compile(rb"(\d+)(?:-(\d+))?")


def _ranges(text: bytes) -> list[tuple[int, int]]:
    return [(int(a), int(b or a) + 1) for a, b in _RANGE.findall(text)]


def _merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in ranges:
        if out and out[-1][1] == a:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def _dumpe2fs(image: str, offset: int, size: int) -> bytes:
    """dumpe2fs of the `size`-byte filesystem at `offset` in `image`. e2fsprogs 1.47.1+ (Debian
    13) resolves the whole `FILE?offset=N` argument as a device name and fails, so the empty
    filesystem's written extents are copied into a sparse scratch file beside the card and read
    there (a few MiB: the superblocks, descriptors and bitmaps mke2fs wrote; the rest are holes)."""
    with open(image, "rb") as src:
        fd, probe = tempfile.mkstemp(
            prefix=".dockerify-dumpe2fs-", dir=os.path.dirname(os.path.abspath(image))
        )
        try:
            with os.fdopen(fd, "wb") as dst:
                dst.truncate(size)
                at = offset
                end = offset + size
                while at < end:
                    try:
                        start = os.lseek(src.fileno(), at, os.SEEK_DATA)
                    except OSError:
                        break  # no data after `at`
                    if start >= end:
                        break
                    stop = min(os.lseek(src.fileno(), start, os.SEEK_HOLE), end)
                    while start < stop:
                        chunk = os.pread(src.fileno(), min(stop - start, 8 << 20), start)
                        os.pwrite(dst.fileno(), chunk, start - offset)
                        start += len(chunk)
                    at = stop
            return run(["dumpe2fs", probe]).stdout
        finally:
            os.unlink(probe)


def read_geometry(image: str, offset: int) -> Geometry:
    """The empty filesystem's layout: the superblock and descriptors from disk (the one place
    the superblock is parsed), the features and the free block and inode ranges from dumpe2fs
    (which knows how each uninitialized group is laid out)."""
    with open(image, "rb") as f:
        sb = os.pread(f.fileno(), 1024, offset + 1024)
        (inodes_count, blocks_lo) = struct.unpack_from("<II", sb, 0)
        (first_data_block, log_block) = struct.unpack_from("<II", sb, 0x14)
        (blocks_per_group, _, inodes_per_group) = struct.unpack_from("<III", sb, 0x20)
        (inode_size,) = struct.unpack_from("<H", sb, 0x58)
        (incompat,) = struct.unpack_from("<I", sb, 0x60)
        (desc_size,) = struct.unpack_from("<H", sb, 0xFE)
        (blocks_hi,) = struct.unpack_from("<I", sb, 0x150)
        block = 1024 << log_block
        is64 = bool(incompat & 0x80)
        blocks_count = blocks_lo | (blocks_hi << 32 if is64 else 0)
        desc_size = desc_size if is64 and desc_size >= 64 else 32
        groups = -(-(blocks_count - first_data_block) // blocks_per_group)
        if incompat & 0x2000:
            (seed,) = struct.unpack_from("<I", sb, 0x270)
        else:
            seed = crc(0xFFFFFFFF, sb[0x68:0x78])
        descs = bytearray(os.pread(f.fileno(), groups * desc_size, offset + (first_data_block + 1) * block))
    out = _dumpe2fs(image, offset, blocks_count * block)
    m = re.search(rb"^Filesystem features:\s+(.*)$", out, re.M)
    features = frozenset(m.group(1).decode().split()) if m else frozenset()
    free_blocks: list[tuple[int, int]] = []
    free_inodes: list[tuple[int, int]] = []
    for line in out.splitlines():
        if not line.startswith(b" "):
            continue  # the superblock's own "Free blocks:" counts, not ranges
        s = line.strip()
        if s.startswith(b"Free blocks: "):
            free_blocks += _ranges(s[len(b"Free blocks: ") :])
        elif s.startswith(b"Free inodes: "):
            free_inodes += _ranges(s[len(b"Free inodes: ") :])
    return Geometry(
        block_size=block,
        blocks_count=blocks_count,
        first_data_block=first_data_block,
        blocks_per_group=blocks_per_group,
        inodes_per_group=inodes_per_group,
        inodes_count=inodes_count,
        inode_size=inode_size,
        desc_size=desc_size,
        groups=groups,
        csum="metadata_csum" in features,
        seed=seed,
        features=features,
        descs=descs,
        free_blocks=_merge(free_blocks),
        free_inodes=_merge(free_inodes),
    )


def check_supported(geo: Geometry) -> None:
    unknown = sorted(geo.features - SUPPORTED)
    if unknown:
        raise Unsupported("features " + ",".join(unknown))
    missing = sorted(REQUIRED - geo.features)
    if missing:
        raise Unsupported("no " + ",".join(missing))
    if geo.inode_size < 256:
        raise Unsupported(f"{geo.inode_size}-byte inodes")


# ---------------------------------------------------------------- allocation


class Allocator:
    """Takes blocks (or inodes) from the front of the free ranges, in order."""

    def __init__(self, ranges: list[tuple[int, int]], what: str) -> None:
        self.ranges = [list(r) for r in ranges]
        self.i = 0
        self.what = what
        self.taken: list[tuple[int, int]] = []

    def take(self, n: int, limit: int = MAX_EXTENT) -> list[tuple[int, int]]:
        """`n` units as (start, count) runs of at most `limit` each."""
        out: list[tuple[int, int]] = []
        while n > 0:
            while self.i < len(self.ranges) and self.ranges[self.i][0] >= self.ranges[self.i][1]:
                self.i += 1
            if self.i >= len(self.ranges):
                raise OutOfSpace(self.what)
            r = self.ranges[self.i]
            k = min(n, r[1] - r[0], limit)
            out.append((r[0], k))
            self.taken.append((r[0], k))
            r[0] += k
            n -= k
        return out

    def one(self) -> int:
        return self.take(1)[0][0]

    def remaining(self) -> list[tuple[int, int]]:
        return [(a, b) for a, b in self.ranges[self.i :] if a < b]


# ---------------------------------------------------------------- encodings


def _time(sec: int, nsec: int) -> tuple[int, int]:
    lo = sec & 0xFFFFFFFF
    signed = lo - (1 << 32) if lo & 0x80000000 else lo
    return lo, (((sec - signed) >> 32) & 3) | ((nsec & 0x3FFFFFFF) << 2)


def _pad4(n: int) -> int:
    return (n + 3) & ~3


def _xattr_name(key: str) -> tuple[int, bytes]:
    for prefix, index in _XATTR_INDEX:
        if key.startswith(prefix):
            if index in (2, 3) and key != prefix:
                continue
            return index, key[len(prefix) :].encode("utf-8", "surrogateescape")
    raise Unsupported(f"xattr namespace of {key!r}")


def _acl_to_disk(value: bytes) -> bytes:
    """A POSIX ACL xattr (version 2, 8-byte entries) in ext4's own on-disk form (version 1,
    4-byte entries for the owner/group/mask/other entries)."""
    if len(value) < 4 or (len(value) - 4) % 8 or struct.unpack_from("<I", value, 0)[0] != 2:
        raise Unsupported("a malformed POSIX ACL")
    out = [struct.pack("<I", 1)]
    for pos in range(4, len(value), 8):
        tag, perm, ident = struct.unpack_from("<HHI", value, pos)
        out.append(struct.pack("<HHI", tag, perm, ident) if tag in (2, 8) else struct.pack("<HH", tag, perm))
    return b"".join(out)


def _entry_hash(name: bytes, value: bytes) -> int:
    h = 0
    for c in name:
        h = ((h << 5) ^ (h >> 27) ^ c) & 0xFFFFFFFF
    padded = value + bytes(-len(value) % 4)
    for (w,) in struct.iter_unpack("<I", padded):
        h = ((h << 16) ^ (h >> 16) ^ w) & 0xFFFFFFFF
    return h


@dataclass(frozen=True)
class _Xattr:
    index: int
    name: bytes
    value: bytes
    hash: int


def _xattrs(xattrs: dict[str, bytes]) -> list[_Xattr]:
    out = []
    for key, value in xattrs.items():
        index, name = _xattr_name(key)
        if index in (2, 3):
            value = _acl_to_disk(value)
        out.append(_Xattr(index, name, value, _entry_hash(name, value)))
    # The kernel's order: by index, name length, name.
    out.sort(key=lambda x: (x.index, len(x.name), x.name))
    return out


def _xattr_region(attrs: list[_Xattr], size: int, base: int) -> bytearray | None:
    """Entries from offset `base`, values packed at the end, value offsets from the region's start
    (in the inode the region begins at the first entry, base 0; a block's after its 32-byte
    header, base 32). None: no room."""
    need = sum(16 + _pad4(len(a.name)) + _pad4(len(a.value)) for a in attrs) + 4
    if base + need > size:
        return None
    buf = bytearray(size)
    pos, end = base, size
    for a in attrs:
        end -= _pad4(len(a.value))
        buf[end : end + len(a.value)] = a.value
        struct.pack_into(
            "<BBHIII", buf, pos, len(a.name), a.index, end if a.value else 0, 0, len(a.value), a.hash
        )
        buf[pos + 16 : pos + 16 + len(a.name)] = a.name
        pos += 16 + _pad4(len(a.name))
    return buf


# ---------------------------------------------------------------- the writer


@dataclass
class _Dir:
    ino: int
    entry: Entry
    children: list[tuple[bytes, int, int]] = field(default_factory=list)  # name, ino, ftype
    subdirs: int = 0


@dataclass
class Populated:
    inodes: int = 0
    data_blocks: int = 0
    files: int = 0


class _Writes:
    """File data pwritten on a thread of its own (os.pwrite releases the GIL), so that parsing the
    next entries overlaps with the writes; at most `depth` pieces (of up to 1 MiB) wait."""

    def __init__(self, fd: int, depth: int = 32) -> None:
        self.fd = fd
        self.error: BaseException | None = None
        self._queue: queue.Queue[tuple[memoryview, int] | None] = queue.Queue(depth)
        self._thread = threading.Thread(target=self._loop, name="dockerify-ext4-data", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while (item := self._queue.get()) is not None:
            if self.error is None:
                try:
                    os.pwrite(self.fd, *item)
                except BaseException as e:  # raised on the main thread at the next write or close
                    self.error = e

    def write(self, data: memoryview, offset: int) -> None:
        if self.error is not None:
            raise self.error
        self._queue.put((data, offset))

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if self.error is not None:
            raise self.error


class Populator:
    """Writes entries (parent before child) into the empty filesystem at `offset` of `image`."""

    def __init__(self, image: str, offset: int, geo: Geometry) -> None:
        check_supported(geo)
        self.geo = geo
        self.bs = geo.block_size
        self.base = offset
        self.fd = os.open(image, os.O_RDWR)
        self.data = _Writes(self.fd)
        self.blocks = Allocator(geo.free_blocks, "blocks")
        self.inodes = Allocator(geo.free_inodes, "inodes")
        self.freed: list[tuple[int, int]] = []
        self.dirs: dict[bytes, _Dir] = {}
        self.by_path: dict[bytes, tuple[int, int]] = {}  # non-directories: ino, ftype
        self.links: dict[int, int] = {}  # inodes with more than one name
        self.used_inodes: list[int] = []
        self.dir_inodes: list[int] = []
        self.stats = Populated()
        self.huge = "huge_file" in geo.features
        root = self._read_inode(ROOT_INO)
        if struct.unpack_from("<I", root, 0x20)[0] & EXTENTS_FL:
            # The empty root directory's block is given back: the root is written anew.
            hdr = struct.unpack_from("<HHHH", root, 0x28)
            if hdr[0] != 0xF30A or hdr[3] != 0:
                raise Unsupported("the root directory's extent tree")
            for i in range(hdr[1]):
                _lb, length, hi, lo = struct.unpack_from("<IHHI", root, 0x28 + 12 + 12 * i)
                self.freed.append(((hi << 32) | lo, (hi << 32 | lo) + length))
        else:
            raise Unsupported("a root directory without extents")
        self.dirs[b"."] = _Dir(ROOT_INO, Entry(path=b".", type=FileType.DIR, mode=0o755))
        self.dirs[b"."].children.append((b"lost+found", LOST_FOUND_INO, 2))
        self.dirs[b"."].subdirs = 1
        self.lost_found: Entry | None = None

    def close(self) -> None:
        if self.fd >= 0:
            try:
                self.data.close()
            finally:
                os.close(self.fd)
                self.fd = -1

    # -- low level

    def _pwrite(self, data: bytes | bytearray | memoryview, block: int, within: int = 0) -> None:
        os.pwrite(self.fd, data, self.base + block * self.bs + within)

    def _inode_pos(self, ino: int) -> int:
        g, i = divmod(ino - 1, self.geo.inodes_per_group)
        return self.base + self.geo.inode_table(g) * self.bs + i * self.geo.inode_size

    def _read_inode(self, ino: int) -> bytearray:
        return bytearray(os.pread(self.fd, self.geo.inode_size, self._inode_pos(ino)))

    def _ino_seed(self, ino: int) -> int:
        return crc(crc(self.geo.seed, struct.pack("<I", ino)), b"\0\0\0\0")  # generation 0

    def _write_inode(self, ino: int, buf: bytearray) -> None:
        if self.geo.csum:
            struct.pack_into("<H", buf, 0x7C, 0)
            struct.pack_into("<H", buf, 0x82, 0)
            value = crc(self._ino_seed(ino), buf)
            struct.pack_into("<H", buf, 0x7C, value & 0xFFFF)
            struct.pack_into("<H", buf, 0x82, value >> 16)
        os.pwrite(self.fd, buf, self._inode_pos(ino))

    def _new_ino(self, is_dir: bool) -> int:
        ino = self.inodes.one()
        self.used_inodes.append(ino)
        if is_dir:
            self.dir_inodes.append(ino)
        return ino

    def _inode(
        self,
        entry: Entry,
        ftype: FileType,
        size: int,
        links: int,
        iblock: bytes,
        flags: int,
        blocks: int,
    ) -> bytearray:
        """A whole inode; `blocks` counts file system blocks (data, extent tree, xattr block)."""
        buf = bytearray(self.geo.inode_size)
        mode = _S_IF[ftype] | (entry.mode & 0o7777)
        sec, extra = _time(entry.mtime, entry.mtime_nsec)
        sectors = blocks * (self.bs // 512)
        if sectors >= 1 << 48 or (sectors >= 1 << 32 and not self.huge):
            raise Unsupported(f"{display(entry.path)}: too large")
        struct.pack_into(
            "<HHIIIIIHHII",
            buf,
            0,
            mode,
            entry.uid & 0xFFFF,
            size & 0xFFFFFFFF,
            sec,
            sec,
            sec,
            0,
            entry.gid & 0xFFFF,
            links,
            sectors & 0xFFFFFFFF,
            flags,
        )
        buf[0x28 : 0x28 + len(iblock)] = iblock
        struct.pack_into("<I", buf, 0x6C, size >> 32)
        struct.pack_into("<HHHH", buf, 0x74, sectors >> 32, 0, entry.uid >> 16, entry.gid >> 16)
        struct.pack_into("<HHIIIII", buf, 0x80, EXTRA_ISIZE, 0, extra, extra, extra, sec, extra)
        attrs = _xattrs(entry.xattrs) if entry.xattrs else []
        if attrs:
            start = 128 + EXTRA_ISIZE
            region = _xattr_region(attrs, self.geo.inode_size - start - 4, 0)
            if region is not None:
                struct.pack_into("<I", buf, start, 0xEA020000)
                buf[start + 4 :] = region
            else:
                block = self._xattr_block(attrs, entry)
                struct.pack_into("<I", buf, 0x68, block & 0xFFFFFFFF)
                struct.pack_into("<H", buf, 0x76, block >> 32)
                sectors += self.bs // 512
                struct.pack_into("<I", buf, 0x1C, sectors & 0xFFFFFFFF)
                struct.pack_into("<H", buf, 0x74, sectors >> 32)
        return buf

    def _xattr_block(self, attrs: list[_Xattr], entry: Entry) -> int:
        region = _xattr_region(attrs, self.bs, 32)
        if region is None:
            raise Unsupported(f"{display(entry.path)}: xattrs larger than a block")
        block = self.blocks.one()
        h = 0
        for a in attrs:
            h = ((h << 16) ^ (h >> 16) ^ a.hash) & 0xFFFFFFFF
        struct.pack_into("<IIIII", region, 0, 0xEA020000, 1, 1, h, 0)
        if self.geo.csum:
            value = crc(crc(self.geo.seed, struct.pack("<Q", block)), region)
            struct.pack_into("<I", region, 0x10, value)
        self._pwrite(region, block)
        return block

    def _extents(self, runs: list[tuple[int, int, int]], ino: int) -> tuple[bytes, int]:
        """i_block for extents (logical, physical, count), writing leaf blocks when more than 4;
        the number of tree blocks used."""
        if len(runs) <= 4:
            body = b"".join(struct.pack("<IHHI", lb, n, pb >> 32, pb & 0xFFFFFFFF) for lb, pb, n in runs)
            return struct.pack("<HHHHI", 0xF30A, len(runs), 4, 0, 0) + body, 0
        per = (self.bs - 12) // 12
        leaves = [runs[i : i + per] for i in range(0, len(runs), per)]
        if len(leaves) > 4:
            raise Unsupported(f"a file of more than {4 * per} extents")
        index = []
        for leaf in leaves:
            block = self.blocks.one()
            buf = bytearray(self.bs)
            struct.pack_into("<HHHHI", buf, 0, 0xF30A, len(leaf), per, 0, 0)
            for i, (lb, pb, n) in enumerate(leaf):
                struct.pack_into("<IHHI", buf, 12 + 12 * i, lb, n, pb >> 32, pb & 0xFFFFFFFF)
            if self.geo.csum:
                tail = 12 + 12 * per
                struct.pack_into("<I", buf, tail, crc(self._ino_seed(ino), buf[:tail]))
            self._pwrite(buf, block)
            index.append(struct.pack("<IIHH", leaf[0][0], block & 0xFFFFFFFF, block >> 32, 0))
        return struct.pack("<HHHHI", 0xF30A, len(index), 4, 1, 0) + b"".join(index), len(leaves)

    # -- entries

    def _parent(self, path: bytes) -> tuple[_Dir, bytes]:
        parent, _, name = path.rpartition(b"/")
        d = self.dirs.get(parent or b".")
        if d is None:
            raise Unsupported(f"{display(path)}: its directory came later or not at all")
        return d, name

    def add(self, entry: Entry, content: bytes | None = None) -> None:
        t = entry.type
        if entry.path == b".":
            if t is not FileType.DIR:
                raise DockerifyError("the image's root is not a directory")
            self.dirs[b"."].entry = entry
            return
        parent, name = self._parent(entry.path)
        if len(name) > 255:
            raise DockerifyError(f"{display(entry.path)}: a name longer than 255 bytes")
        if entry.path == b"lost+found":
            if t is not FileType.DIR:
                raise Unsupported("lost+found is not a directory")
            self.lost_found = entry
            return
        if entry.path.startswith(b"lost+found/"):
            raise Unsupported("files in lost+found")
        if entry.path in self.dirs or entry.path in self.by_path:
            raise Unsupported(f"{display(entry.path)}: given twice")
        if t is FileType.DIR:
            ino = self._new_ino(True)
            self.dirs[entry.path] = _Dir(ino, entry.with_(reader=None))
            parent.children.append((name, ino, 2))
            parent.subdirs += 1
            return
        if t is FileType.HARDLINK:
            target = self.by_path.get(entry.linkname)
            if target is None:
                raise Unsupported(f"{display(entry.path)}: a hard link to what is not in the tree")
            ino, ftype = target
            self.links[ino] = self.links.get(ino, 1) + 1
            parent.children.append((name, ino, ftype))
            return
        ino = self._new_ino(False)
        if t is FileType.REG:
            buf = self._file(entry, ino, content)
        elif t is FileType.SYMLINK:
            link = entry.linkname
            if len(link) < 60:
                buf = self._inode(entry, t, len(link), 1, link, 0, 0)
            else:
                if len(link) >= self.bs:
                    raise DockerifyError(f"{display(entry.path)}: a symlink target longer than a block")
                block = self.blocks.one()
                self._pwrite(link, block)
                iblock, _ = self._extents([(0, block, 1)], ino)
                buf = self._inode(entry, t, len(link), 1, iblock, EXTENTS_FL, 1)
                self.stats.data_blocks += 1
        elif t in (FileType.CHAR, FileType.BLOCK):
            major, minor = entry.devmajor, entry.devminor
            if major < 256 and minor < 256:
                iblock = struct.pack("<I", (major << 8) | minor)
            else:
                iblock = struct.pack("<II", 0, (minor & 0xFF) | (major << 8) | ((minor & ~0xFF) << 12))
            buf = self._inode(entry, t, 0, 1, iblock, 0, 0)
        elif t in (FileType.FIFO, FileType.SOCKET):
            buf = self._inode(entry, t, 0, 1, b"", 0, 0)
        else:
            raise Unsupported(f"entry type {t}")
        self._write_inode(ino, buf)
        self.by_path[entry.path] = (ino, _FTYPE[t])
        parent.children.append((name, ino, _FTYPE[t]))
        self.stats.files += 1

    def _file(self, entry: Entry, ino: int, content: bytes | None) -> bytearray:
        bs = self.bs
        size = len(content) if content is not None else entry.size
        if content is not None or entry.sparse is None:
            spans = [(0, -(-size // bs))] if size else []
        else:
            spans = []
            for off, length in entry.sparse:
                if length <= 0:
                    continue
                a, b = off // bs, -(-(off + length) // bs)
                if spans and spans[-1][1] >= a:
                    spans[-1] = (spans[-1][0], max(spans[-1][1], b))
                else:
                    spans.append((a, b))
        runs: list[tuple[int, int, int]] = []  # logical, physical, count
        for a, b in spans:
            lb = a
            for pb, n in self.blocks.take(b - a):
                runs.append((lb, pb, n))
                lb += n
        starts = [r[0] for r in runs]
        pieces = [(0, content)] if content is not None else entry.chunks()
        for off, data in pieces:
            view = memoryview(data)
            while len(view):
                lb = off // bs
                i = bisect.bisect_right(starts, lb) - 1
                if i < 0 or lb >= runs[i][0] + runs[i][2]:
                    raise Unsupported(f"{display(entry.path)}: data outside its sparse map")
                rl, pb, n = runs[i]
                room = (rl + n) * bs - off
                k = min(room, len(view))
                self.data.write(view[:k], self.base + pb * bs + (off - rl * bs))
                view = view[k:]
                off += k
        nblocks = sum(r[2] for r in runs)
        iblock, tree = self._extents(runs, ino)
        self.stats.data_blocks += nblocks + tree
        return self._inode(entry, FileType.REG, size, 1, iblock, EXTENTS_FL, nblocks + tree)

    # -- the end

    def _dir_blocks(self, d: _Dir, parent_ino: int) -> list[bytearray]:
        bs = self.bs
        room = bs - (12 if self.geo.csum else 0)
        blocks: list[bytearray] = []
        buf = bytearray(bs)
        pos = 0
        last = -1
        for name, ino, ftype in [(b".", d.ino, 2), (b"..", parent_ino, 2), *d.children]:
            need = 8 + _pad4(len(name))
            if pos + need > room:
                struct.pack_into("<H", buf, last + 4, room - last)
                blocks.append(buf)
                buf, pos = bytearray(bs), 0
            struct.pack_into("<IHBB", buf, pos, ino, need, len(name), ftype)
            buf[pos + 8 : pos + 8 + len(name)] = name
            last, pos = pos, pos + need
        struct.pack_into("<H", buf, last + 4, room - last)
        blocks.append(buf)
        if self.geo.csum:
            seed = self._ino_seed(d.ino)
            for b in blocks:
                struct.pack_into("<IHBB", b, room, 0, 12, 0, 0xDE)
                struct.pack_into("<I", b, room + 8, crc(seed, b[:room]))
        return blocks

    def finish(self) -> Populated:
        """Write the directories, link counts, bitmaps, descriptors and superblock."""
        self.data.close()
        if self.lost_found is not None:
            buf = self._read_inode(LOST_FOUND_INO)
            e = self.lost_found
            sec, extra = _time(e.mtime, e.mtime_nsec)
            struct.pack_into("<HH", buf, 0, 0o040000 | (e.mode & 0o7777), e.uid & 0xFFFF)
            struct.pack_into("<III", buf, 0x08, sec, sec, sec)
            struct.pack_into("<H", buf, 0x18, e.gid & 0xFFFF)
            struct.pack_into("<HH", buf, 0x78, e.uid >> 16, e.gid >> 16)
            struct.pack_into("<IIII", buf, 0x84, extra, extra, extra, sec)
            struct.pack_into("<I", buf, 0x94, extra)
            if e.xattrs:
                raise Unsupported("xattrs on lost+found")
            self._write_inode(LOST_FOUND_INO, buf)
        for path, d in self.dirs.items():
            parent_ino = ROOT_INO if path == b"." else self._parent(path)[0].ino
            blocks = self._dir_blocks(d, parent_ino)
            runs = []
            lb = 0
            for pb, n in self.blocks.take(len(blocks)):
                self._pwrite(b"".join(blocks[lb : lb + n]), pb)
                runs.append((lb, pb, n))
                lb += n
            iblock, tree = self._extents(runs, d.ino)
            links = 2 + d.subdirs
            if links >= 65000 and "dir_nlink" in self.geo.features:
                links = 1
            elif links >= 65000:
                raise Unsupported("a directory with 65000 subdirectories")
            buf = self._inode(
                d.entry, FileType.DIR, len(blocks) * self.bs, links, iblock, EXTENTS_FL, len(blocks) + tree
            )
            self._write_inode(d.ino, buf)
            self.stats.data_blocks += len(blocks) + tree
        for ino, n in self.links.items():
            buf = self._read_inode(ino)
            struct.pack_into("<H", buf, 0x1A, n)
            self._write_inode(ino, buf)
        self._bitmaps()
        self.stats.inodes = len(self.used_inodes)
        return self.stats

    def _bitmaps(self) -> None:
        geo, bs = self.geo, self.bs
        free = sorted(self.blocks.remaining() + self.freed)
        free_inodes = self.inodes.remaining()
        used_inodes = sorted(self.used_inodes)
        dirs_per_group: dict[int, int] = {}
        for ino in self.dir_inodes:
            g = (ino - 1) // geo.inodes_per_group
            dirs_per_group[g] = dirs_per_group.get(g, 0) + 1
        touched_blocks: set[int] = set()
        for a, n in self.blocks.taken:
            touched_blocks.update(range(self._group_of(a), self._group_of(a + n - 1) + 1))
        for a, _b in self.freed:
            touched_blocks.add(self._group_of(a))
        ipg, bpg = geo.inodes_per_group, geo.blocks_per_group
        total_free_blocks = 0
        total_free_inodes = 0
        fi = 0
        bi = 0
        for g in range(geo.groups):
            start = geo.group_start(g)
            end = min(start + bpg, geo.blocks_count)
            # free block ranges within this group
            bits = (1 << bpg) - 1
            nfree = 0
            while bi < len(free) and free[bi][1] <= start:
                bi += 1
            j = bi
            while j < len(free) and free[j][0] < end:
                a, b = max(free[j][0], start), min(free[j][1], end)
                if a < b:
                    bits &= ~(((1 << (b - a)) - 1) << (a - start))
                    nfree += b - a
                j += 1
            total_free_blocks += nfree
            istart = g * ipg + 1
            ibits = (1 << ipg) - 1
            ifree = 0
            while fi < len(free_inodes) and free_inodes[fi][1] <= istart:
                fi += 1
            j = fi
            while j < len(free_inodes) and free_inodes[j][0] < istart + ipg:
                a, b = max(free_inodes[j][0], istart), min(free_inodes[j][1], istart + ipg)
                if a < b:
                    ibits &= ~(((1 << (b - a)) - 1) << (a - istart))
                    ifree += b - a
                j += 1
            total_free_inodes += ifree
            lo = bisect.bisect_left(used_inodes, istart)
            hi = bisect.bisect_left(used_inodes, istart + ipg)
            flags = geo.desc_field(g, 0x12, None, 2)
            if g in touched_blocks:
                bitmap = (
                    bits.to_bytes(bs, "little")
                    if bpg == bs * 8
                    else (bits | (((1 << (bs * 8)) - 1) ^ ((1 << bpg) - 1))).to_bytes(bs, "little")
                )
                self._pwrite(bitmap, geo.desc_field(g, 0x00, 0x20))
                flags &= ~BG_BLOCK_UNINIT
                if geo.csum:
                    geo.set_desc_field(g, 0x18, 0x38, crc(geo.seed, bitmap[: bpg // 8]), 2)
            if hi > lo:
                ibitmap = (ibits | (((1 << (bs * 8)) - 1) ^ ((1 << ipg) - 1))).to_bytes(bs, "little")
                self._pwrite(ibitmap, geo.desc_field(g, 0x04, 0x24))
                flags &= ~BG_INODE_UNINIT
                highest = used_inodes[hi - 1] - istart + 1
                unused = geo.desc_field(g, 0x1C, 0x32, 2)
                geo.set_desc_field(g, 0x1C, 0x32, min(unused, ipg - highest), 2)
                if geo.csum:
                    geo.set_desc_field(g, 0x1A, 0x3A, crc(geo.seed, ibitmap[: ipg // 8]), 2)
                used_dirs = geo.desc_field(g, 0x10, 0x30, 2)
                geo.set_desc_field(g, 0x10, 0x30, used_dirs + dirs_per_group.get(g, 0), 2)
            geo.set_desc_field(g, 0x0C, 0x2C, nfree, 2)
            geo.set_desc_field(g, 0x0E, 0x2E, ifree, 2)
            geo.set_desc_field(g, 0x12, None, flags, 2)
            if geo.csum:
                d = g * geo.desc_size
                desc = bytearray(geo.descs[d : d + geo.desc_size])
                desc[0x1E:0x20] = b"\0\0"
                value = crc(crc(geo.seed, struct.pack("<I", g)), desc) & 0xFFFF
                struct.pack_into("<H", geo.descs, d + 0x1E, value)
        self._pwrite(geo.descs, geo.first_data_block + 1)
        sb = bytearray(os.pread(self.fd, 1024, self.base + 1024))
        struct.pack_into("<II", sb, 0x0C, total_free_blocks & 0xFFFFFFFF, total_free_inodes)
        struct.pack_into("<I", sb, 0x158, total_free_blocks >> 32)
        if geo.csum:
            struct.pack_into("<I", sb, 0x3FC, crc(0xFFFFFFFF, sb[:0x3FC]))
        os.pwrite(self.fd, sb, self.base + 1024)

    def _group_of(self, block: int) -> int:
        return (block - self.geo.first_data_block) // self.geo.blocks_per_group


def populate(image: str, offset: int, entries: Iterable[tuple[Entry, bytes | None]]) -> Populated:
    """Write `entries` (with replacement content, or None) into the empty filesystem mke2fs made
    at `offset` of `image`."""
    geo = read_geometry(image, offset)
    p = Populator(image, offset, geo)
    try:
        for entry, content in entries:
            p.add(entry, content)
        return p.finish()
    finally:
        p.close()
