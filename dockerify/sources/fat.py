"""A read-only FAT12/16/32 reader with VFAT long names, working on a plain file at a byte offset.

The tree it yields looks like what Linux shows for a vfat mount with default options
(shortname=mixed, umask 022, utf8 names, times in UTC): that is what a boot partition's files
look like to the system that boots from it.
"""

from __future__ import annotations

import array
import calendar
import struct
import sys
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from dockerify.entry import CHUNK, Entry, FileType
from dockerify.errors import CorruptInput

BOOT_SECTOR_SIZE = 512
DIRENT_SIZE = 32
#: Linux refuses directories with more entries than this (FAT_MAX_DIR_ENTRIES); so do we.
MAX_DIR_BYTES = 65536 * DIRENT_SIZE
#: Cluster counts that decide the FAT width (Microsoft's FAT specification).
MAX_FAT12_CLUSTERS = 4084
MAX_FAT16_CLUSTERS = 65524

ATTR_READ_ONLY = 0x01
ATTR_VOLUME_ID = 0x08
ATTR_DIRECTORY = 0x10
ATTR_LFN = 0x0F  # read-only | hidden | system | volume id: what no real file can have
ATTR_LFN_MASK = 0x3F
NT_LOWER_BASE = 0x08
NT_LOWER_EXT = 0x10
DIRENT_FREE = 0x00  # this and all following dirents are unused
DIRENT_DELETED = 0xE5
DIRENT_KANJI_E5 = 0x05  # a name really starting with 0xE5 is stored as 0x05
DOT_NAMES = (b".          ", b"..         ")
LFN_LAST = 0x40
LFN_MAX_SLOTS = 20  # 255 UTF-16 units / 13 per slot

#: Linux's default vfat modes: 0777 & ~umask(022); read-only files lose their write bits.
DIR_MODE = 0o755
FILE_MODE = 0o755
READ_ONLY_FILE_MODE = 0o555

#: The FAT is read in pages of this size and a bounded number of them is cached.
FAT_PAGE = 64 << 10
FAT_CACHE_PAGES = 256


@dataclass(frozen=True)
class FatInfo:
    fat_type: int  # 12, 16, 32
    volume_id: str  # 8 uppercase hex digits, as `mkfs.vfat -i` takes it
    label: str  # "" when unset ("NO NAME")
    cluster_size: int
    size_bytes: int
    oem_name: str


@dataclass(frozen=True)
class _Geometry:
    """The layout the BPB describes, in bytes relative to the start of the filesystem."""

    fat_type: int
    bytes_per_sector: int
    cluster_size: int
    size_bytes: int
    fat_offset: int
    fat_bytes: int
    root_dir_offset: int  # FAT12/16: the fixed root directory region
    root_dir_bytes: int
    root_cluster: int  # FAT32: the first cluster of the root directory chain
    data_offset: int
    cluster_count: int

    @property
    def max_cluster(self) -> int:
        return self.cluster_count + 1  # data clusters are numbered from 2

    def cluster_offset(self, cluster: int) -> int:
        return self.data_offset + (cluster - 2) * self.cluster_size


@dataclass(frozen=True)
class _Dirent:
    name: bytes
    attr: int
    cluster: int
    size: int
    mtime: int

    @property
    def is_dir(self) -> bool:
        return bool(self.attr & ATTR_DIRECTORY)


class FatReader:
    def __init__(self, f: BinaryIO, offset: int = 0, size: int | None = None, name: str = "fat") -> None:
        self._f = f
        self._offset = offset
        self._name = name
        if size is None:
            size = f.seek(0, 2) - offset
        boot = self._read(0, BOOT_SECTOR_SIZE, "the boot sector")
        self._geo = _parse_bpb(boot, size, name)
        self._fat = _FatTable(self._geo, self._read)
        self.info = FatInfo(
            fat_type=self._geo.fat_type,
            volume_id=_volume_id(boot, self._geo.fat_type),
            label=self._label(boot),
            cluster_size=self._geo.cluster_size,
            size_bytes=self._geo.size_bytes,
            oem_name=boot[3:11].decode("cp437").rstrip(" \0"),
        )

    def used_bytes(self) -> int:
        """The bytes of the clusters the FAT marks in use: a cheap estimate of what reading the
        tree reads (the FAT is read page by page, as the tree walk reads it)."""
        return self._fat.used_clusters() * self._geo.cluster_size

    # --- tree -------------------------------------------------------------------------------------

    def entries(self) -> Iterator[Entry]:
        """The tree, root first, depth-first with siblings in byte order of their names."""
        walk = _Walk(self._geo.max_cluster)
        if self._geo.fat_type == 32:
            walk.dirs.add(self._geo.root_cluster)  # a subdirectory pointing there is a loop too
        yield Entry(path=b".", type=FileType.DIR, mode=DIR_MODE)
        # An explicit stack instead of recursion: a hostile image may nest directories deeply.
        stack: list[tuple[bytes, Iterator[_Dirent]]] = [(b"", iter(self._children(None, b".", walk)))]
        while stack:
            prefix, children = stack[-1]
            dirent = next(children, None)
            if dirent is None:
                stack.pop()
                continue
            path = prefix + dirent.name
            if dirent.is_dir:
                yield Entry(path=path, type=FileType.DIR, mode=DIR_MODE, mtime=dirent.mtime)
                stack.append((path + b"/", iter(self._children(dirent, path, walk))))
            else:
                yield self._file_entry(dirent, path, walk)

    def _children(self, dirent: _Dirent | None, path: bytes, walk: _Walk) -> list[_Dirent]:
        if dirent is not None:
            if dirent.cluster in walk.dirs or dirent.cluster == 0:
                raise CorruptInput(
                    f"{self._where(path)}: directory loop (it points back to a parent directory)"
                )
            walk.dirs.add(dirent.cluster)
        data = self._dir_bytes(None if dirent is None else dirent.cluster, path, walk)
        children = sorted(_parse_dirents(data, self._geo.fat_type, self._where(path)), key=lambda d: d.name)
        for prev, cur in zip(children, children[1:], strict=False):
            if prev.name == cur.name:
                raise CorruptInput(f"{self._where(path)}: two directory entries are named {_show(cur.name)}")
        return children

    def _file_entry(self, dirent: _Dirent, path: bytes, walk: _Walk) -> Entry:
        mode = READ_ONLY_FILE_MODE if dirent.attr & ATTR_READ_ONLY else FILE_MODE
        runs: list[tuple[int, int]] = []
        if dirent.size:
            need = -(-dirent.size // self._geo.cluster_size)
            runs = self._chain(dirent.cluster, need, path, walk.used)
        return Entry(
            path=path,
            type=FileType.REG,
            mode=mode,
            mtime=dirent.mtime,
            size=dirent.size,
            reader=lambda: self._read_runs(runs, dirent.size, path),
        )

    # --- directories ------------------------------------------------------------------------------

    def _dir_bytes(self, cluster: int | None, path: bytes, walk: _Walk | None) -> bytes:
        """A directory's dirents; `cluster` None is the root directory."""
        geo = self._geo
        if cluster is None and geo.fat_type != 32:
            return self._read(geo.root_dir_offset, geo.root_dir_bytes, self._where(path))
        first = geo.root_cluster if cluster is None else cluster
        max_clusters = -(-MAX_DIR_BYTES // geo.cluster_size)
        runs = self._chain(first, None, path, None if walk is None else walk.used, max_clusters)
        return b"".join(self._read_runs_all(runs, path))

    def _label(self, boot: bytes) -> str:
        """The volume label as blkid reports it: the root directory's label entry wins over the BPB's."""
        raw = _root_label(self._dir_bytes(None, b".", None))
        if raw is None:
            label_offset = 71 if self._geo.fat_type == 32 else 43
            raw = (
                boot[label_offset : label_offset + 11] if _has_extended_bpb(boot, self._geo.fat_type) else b""
            )
        label = raw.decode("cp437").rstrip(" \0")
        return "" if label == "NO NAME" else label

    # --- cluster chains ---------------------------------------------------------------------------

    def _chain(
        self,
        first: int,
        need: int | None,
        path: bytes,
        used: bytearray | None,
        max_clusters: int | None = None,
    ) -> list[tuple[int, int]]:
        """Walk a cluster chain into runs of contiguous clusters (first cluster, count).

        With `need`, exactly that many clusters are taken (a longer chain is fine, as for Linux);
        without it, the chain is followed to its end-of-chain mark. `used` marks every cluster
        of the walk so that a loop or a cross-link shows up as a cluster seen twice.
        """
        runs: list[list[int]] = []
        cluster = first
        taken = 0
        while True:
            self._check_cluster(cluster, path, taken)
            # The clusters that follow this one contiguously, taken at once (files are mostly
            # unfragmented); each is a valid cluster, so only the span's end needs the checks.
            limit = self._geo.max_cluster + 1 - cluster
            if need is not None:
                limit = min(limit, need - taken)
            if max_clusters is not None:
                limit = min(limit, max_clusters + 1 - taken)
            span = self._fat.contiguous(cluster, limit)
            if used is not None:
                self._mark_span(used, cluster, span, runs, path)
            if runs and runs[-1][0] + runs[-1][1] == cluster:
                runs[-1][1] += span
            else:
                runs.append([cluster, span])
            taken += span
            cluster += span - 1
            if need is not None and taken == need:
                break
            if max_clusters is not None and taken > max_clusters:
                raise CorruptInput(f"{self._where(path)}: directory is larger than {MAX_DIR_BYTES} bytes")
            cluster = self._fat.next(cluster)
            if self._fat.is_end(cluster):
                if need is not None:
                    raise CorruptInput(
                        f"{self._where(path)}: cluster chain ends after {taken} clusters, but the file"
                        f" needs {need} ({need * self._geo.cluster_size} bytes)"
                    )
                break
        return [(a, b) for a, b in runs]

    def _check_cluster(self, cluster: int, path: bytes, index: int) -> None:
        if not 2 <= cluster <= self._geo.max_cluster:
            what = "a free cluster" if cluster == 0 else f"cluster {cluster}"
            raise CorruptInput(
                f"{self._where(path)}: cluster chain entry {index} points to {what}, outside the"
                f" data clusters 2..{self._geo.max_cluster}"
            )

    def _mark_span(self, used: bytearray, first: int, count: int, runs: list[list[int]], path: bytes) -> None:
        """Mark clusters first .. first+count-1 used: the bitmap's whole bytes inside the span at
        once when none of their clusters is used yet, the edges (and any span that collides, so
        the message names its first cluster used twice) one cluster at a time."""
        end = first + count
        lo, hi = -(-first // 8), end // 8
        rest = range(first, end)
        if hi > lo and used.count(0, lo, hi) == hi - lo:
            for cluster in range(first, lo * 8):
                self._mark_used(used, cluster, runs, path)
            used[lo:hi] = b"\xff" * (hi - lo)
            rest = range(hi * 8, end)
        for cluster in rest:
            self._mark_used(used, cluster, runs, path)

    def _mark_used(self, used: bytearray, cluster: int, runs: list[list[int]], path: bytes) -> None:
        byte, bit = divmod(cluster, 8)
        if used[byte] & (1 << bit):
            in_chain = any(a <= cluster < a + n for a, n in runs)
            why = "the cluster chain loops" if in_chain else "it is cross-linked with another file"
            raise CorruptInput(f"{self._where(path)}: cluster {cluster} is used twice ({why})")
        used[byte] |= 1 << bit

    def _read_runs(self, runs: list[tuple[int, int]], size: int, path: bytes) -> Iterator[tuple[int, bytes]]:
        """Stream a file's content: contiguous clusters are read together, at most CHUNK at a time."""
        pos = 0
        for cluster, count in runs:
            disk = self._geo.cluster_offset(cluster)
            run_end = min(pos + count * self._geo.cluster_size, size)
            while pos < run_end:
                n = min(CHUNK, run_end - pos)
                yield pos, self._read(disk, n, self._where(path))
                disk += n
                pos += n

    def _read_runs_all(self, runs: list[tuple[int, int]], path: bytes) -> Iterator[bytes]:
        for cluster, count in runs:
            yield self._read(
                self._geo.cluster_offset(cluster), count * self._geo.cluster_size, self._where(path)
            )

    # --- I/O --------------------------------------------------------------------------------------

    def _read(self, pos: int, length: int, what: str) -> bytes:
        self._f.seek(self._offset + pos)
        data = self._f.read(length)
        if len(data) != length:
            raise CorruptInput(
                f"{self._name}: {what}: reading {length} bytes at byte {pos} of the filesystem hit the"
                " end of the image (truncated?)"
            )
        return data

    def _where(self, path: bytes) -> str:
        return f"{self._name}: {'/' if path == b'.' else '/' + path.decode('utf-8', 'replace')}"


class _Walk:
    """Per-walk state: clusters already used by a chain, and directories already entered."""

    def __init__(self, max_cluster: int) -> None:
        self.used = bytearray(max_cluster // 8 + 1)
        self.dirs: set[int] = set()


class _FatTable:
    """Random access to the active FAT, one cached page at a time, so memory stays bounded."""

    def __init__(self, geo: _Geometry, read: Callable[[int, int, str], bytes]) -> None:
        self._geo = geo
        self._read = read
        self._pages: OrderedDict[int, array.array[int]] = OrderedDict()
        self._end_mark = {12: 0xFF8, 16: 0xFFF8, 32: 0x0FFFFFF8}[geo.fat_type]
        # A FAT12 FAT is at most 6 KiB: read it whole.
        self._fat12 = read(geo.fat_offset, geo.fat_bytes, "the FAT") if geo.fat_type == 12 else b""

    def is_end(self, value: int) -> bool:
        return value >= self._end_mark

    def contiguous(self, cluster: int, limit: int) -> int:
        """How many clusters from `cluster` on follow each other in a chain (at most `limit`,
        at least 1): 1 + the number of entries from `cluster`'s on that each name the next
        cluster. Compared a block of entries at a time rather than one call per cluster."""
        if self._geo.fat_type == 12 or limit <= 1:
            return 1
        width = self._geo.fat_type // 8
        per_page = FAT_PAGE // width
        span = 1
        while span < limit:
            page_no, index = divmod(cluster, per_page)
            page = self._page(page_no, width)
            take = min(limit - span, per_page - index, len(page) - index, 4096)
            if take <= 0:
                break
            got = page[index : index + take]
            want = array.array(page.typecode, range(cluster + 1, cluster + 1 + take))
            if got == want:
                span += take
                cluster += take
                continue
            # Entries with reserved top bits set mismatch here: next() reads them, one by one.
            same = 0
            while got[same] == want[same]:
                same += 1
            return span + same
        return span

    def next(self, cluster: int) -> int:
        """The FAT entry of `cluster`: the next cluster of its chain, or an end/bad/free mark."""
        if self._geo.fat_type == 12:
            # 12-bit entries are packed two per three bytes.
            pos = cluster + cluster // 2
            pair = int.from_bytes(self._fat12[pos : pos + 2], "little")
            return pair >> 4 if cluster & 1 else pair & 0xFFF
        width = self._geo.fat_type // 8
        page_no, index = divmod(cluster, FAT_PAGE // width)
        value = self._page(page_no, width)[index]
        # FAT32 entries are 28 bits; the top 4 are reserved and must be ignored.
        return value & 0x0FFFFFFF if width == 4 else value

    def used_clusters(self) -> int:
        last = self._geo.max_cluster
        if self._geo.fat_type == 12:
            return sum(1 for c in range(2, last + 1) if self.next(c))
        width = self._geo.fat_type // 8
        per_page = FAT_PAGE // width
        used = 0
        for page_no in range(last // per_page + 1):
            first = page_no * per_page
            used += _nonzero_entries(self._page(page_no, width)[max(0, 2 - first) : last + 1 - first])
        return used

    def _page(self, page_no: int, width: int) -> array.array[int]:
        page = self._pages.get(page_no)
        if page is not None:
            self._pages.move_to_end(page_no)
            return page
        start = page_no * FAT_PAGE
        data = self._read(self._geo.fat_offset + start, min(FAT_PAGE, self._geo.fat_bytes - start), "the FAT")
        page = array.array("H" if width == 2 else "I", data)
        if sys.byteorder == "big":
            page.byteswap()  # FAT entries are little-endian
        self._pages[page_no] = page
        if len(self._pages) > FAT_CACHE_PAGES:
            self._pages.popitem(last=False)
        return page


def _nonzero_entries(entries: array.array[int]) -> int:
    """How many of the FAT entries are not free, without a Python step per entry: the entries'
    bytes are OR-ed lane by lane as big integers, so a byte of the result is zero exactly where an
    entry is free. FAT32's top 4 bits are reserved: masked off, as readers do."""
    width = entries.itemsize
    raw = entries.tobytes()  # in the machine's byte order, as _page left the entries
    lanes = [raw[i::width] for i in range(width)]
    if width == 4:
        top = 3 if sys.byteorder == "little" else 0
        lanes[top] = lanes[top].translate(_LOW_NIBBLE)
    merged = 0
    for lane in lanes:
        merged |= int.from_bytes(lane, "little")
    return len(entries) - merged.to_bytes(len(entries), "little").count(0)


_LOW_NIBBLE = bytes(b & 0x0F for b in range(256))


# --- boot sector ------------------------------------------------------------------------------------


def _parse_bpb(boot: bytes, size: int, name: str) -> _Geometry:
    (
        bytes_per_sector,
        sectors_per_cluster,
        reserved,
        fat_count,
        root_entries,
        total16,
        _media,
        fat_size16,
    ) = struct.unpack_from("<HBHBHHBH", boot, 11)
    (total32, fat_size32, ext_flags, _version, root_cluster) = struct.unpack_from("<IIHHI", boot, 32)
    _check_bpb(name, bytes_per_sector, sectors_per_cluster, reserved, fat_count)
    total = total16 or total32
    # Linux decides FAT32 by a zero 16-bit FAT size, then FAT12 vs FAT16 by the cluster count.
    fat_sectors = fat_size16 or fat_size32
    root_dir_sectors = -(-(root_entries * DIRENT_SIZE) // bytes_per_sector)
    meta_sectors = reserved + fat_count * fat_sectors + root_dir_sectors
    if fat_sectors == 0 or total <= meta_sectors:
        raise CorruptInput(f"{name}: boot sector: the BPB leaves no room for data (FAT or total size is 0)")
    cluster_count = (total - meta_sectors) // sectors_per_cluster
    if fat_size16 == 0:
        fat_type = 32
    else:
        fat_type = 12 if cluster_count <= MAX_FAT12_CLUSTERS else 16
    if fat_type == 32 and ext_flags & 0x80 and (ext_flags & 0x0F) < fat_count:
        active_fat = ext_flags & 0x0F  # FAT mirroring disabled: only the active FAT is current
    else:
        active_fat = 0
    geo = _Geometry(
        fat_type=fat_type,
        bytes_per_sector=bytes_per_sector,
        cluster_size=bytes_per_sector * sectors_per_cluster,
        size_bytes=total * bytes_per_sector,
        fat_offset=(reserved + active_fat * fat_sectors) * bytes_per_sector,
        fat_bytes=fat_sectors * bytes_per_sector,
        root_dir_offset=(reserved + fat_count * fat_sectors) * bytes_per_sector,
        root_dir_bytes=root_entries * DIRENT_SIZE,
        root_cluster=root_cluster,
        data_offset=meta_sectors * bytes_per_sector,
        cluster_count=cluster_count,
    )
    _check_geometry(geo, size, name)
    return geo


def _check_bpb(
    name: str, bytes_per_sector: int, sectors_per_cluster: int, reserved: int, fat_count: int
) -> None:
    if bytes_per_sector not in (512, 1024, 2048, 4096):
        raise CorruptInput(f"{name}: boot sector: not a FAT filesystem (bytes per sector {bytes_per_sector})")
    if sectors_per_cluster == 0 or sectors_per_cluster & (sectors_per_cluster - 1):
        raise CorruptInput(
            f"{name}: boot sector: not a FAT filesystem (sectors per cluster {sectors_per_cluster})"
        )
    if fat_count == 0 or reserved == 0:
        raise CorruptInput(
            f"{name}: boot sector: not a FAT filesystem ({fat_count} FATs, {reserved} reserved sectors)"
        )


def _check_geometry(geo: _Geometry, size: int, name: str) -> None:
    if geo.size_bytes > size:
        raise CorruptInput(
            f"{name}: the FAT filesystem is {geo.size_bytes} bytes but only {size} bytes are available"
            " (truncated?)"
        )
    fat_entries = geo.fat_bytes * 8 // geo.fat_type
    if fat_entries < geo.cluster_count + 2:
        raise CorruptInput(
            f"{name}: boot sector: the FAT has room for {fat_entries} entries but the filesystem has"
            f" {geo.cluster_count} clusters"
        )
    if geo.fat_type == 32 and not 2 <= geo.root_cluster <= geo.max_cluster:
        raise CorruptInput(f"{name}: boot sector: root directory cluster {geo.root_cluster} is out of range")


def _has_extended_bpb(boot: bytes, fat_type: int) -> bool:
    # The volume id and label exist only when the extended boot signature says so.
    return boot[66 if fat_type == 32 else 38] in (0x28, 0x29)


def _volume_id(boot: bytes, fat_type: int) -> str:
    if not _has_extended_bpb(boot, fat_type):
        return "00000000"
    (volume_id,) = struct.unpack_from("<I", boot, 67 if fat_type == 32 else 39)
    return f"{volume_id:08X}"


# --- dirents ----------------------------------------------------------------------------------------


def _root_label(data: bytes) -> bytes | None:
    for pos in range(0, len(data), DIRENT_SIZE):
        raw = data[pos : pos + DIRENT_SIZE]
        if raw[0] == DIRENT_FREE:
            break
        attr = raw[11]
        if raw[0] == DIRENT_DELETED or attr & ATTR_LFN_MASK == ATTR_LFN:
            continue
        if attr & (ATTR_VOLUME_ID | ATTR_DIRECTORY) == ATTR_VOLUME_ID:
            return raw[:11]
    return None


def _parse_dirents(data: bytes, fat_type: int, where: str) -> Iterator[_Dirent]:
    """The live dirents of a directory, with their long names; ".", "..", labels and deleted ones skipped."""
    lfn = _LongName()
    for pos in range(0, len(data), DIRENT_SIZE):
        raw = data[pos : pos + DIRENT_SIZE]
        if raw[0] == DIRENT_FREE:
            return
        if raw[0] == DIRENT_DELETED:
            lfn.reset()
            continue
        attr = raw[11]
        if attr & ATTR_LFN_MASK == ATTR_LFN:
            lfn.add(raw)
            continue
        long_name = lfn.finish(raw[:11])
        if attr & ATTR_VOLUME_ID or raw[:11] in DOT_NAMES:
            continue
        name = long_name if long_name is not None else _short_name(raw)
        _check_name(name, where)
        yield _dirent(raw, name, fat_type)


def _dirent(raw: bytes, name: bytes, fat_type: int) -> _Dirent:
    attr = raw[11]
    (cluster_high, wtime, wdate, cluster_low, size) = struct.unpack_from("<HHHHI", raw, 20)
    # On FAT12/16 the high word is not part of the cluster number (OS/2 kept EA handles there).
    cluster = (cluster_high << 16 | cluster_low) if fat_type == 32 else cluster_low
    return _Dirent(
        name=name,
        attr=attr,
        cluster=cluster,
        size=0 if attr & ATTR_DIRECTORY else size,
        mtime=_fat_time(wdate, wtime),
    )


def _short_name(raw: bytes) -> bytes:
    """The 8.3 name as Linux shows it with shortname=mixed: NT case flags applied, codepage 437."""
    base = raw[0:8].rstrip(b" ")
    ext = raw[8:11].rstrip(b" ")
    if base[:1] == bytes([DIRENT_KANJI_E5]):
        base = b"\xe5" + base[1:]
    if raw[12] & NT_LOWER_BASE:
        base = base.lower()  # bytes.lower() touches ASCII letters only, like the cp437 NLS table
    if raw[12] & NT_LOWER_EXT:
        ext = ext.lower()
    name = base + b"." + ext if ext else base
    return name.decode("cp437").encode("utf-8")


def _check_name(name: bytes, where: str) -> None:
    # A hostile image can put any UTF-16 in a long name; these would escape or break the tree.
    if name in (b"", b".", b"..") or b"/" in name or b"\0" in name:
        raise CorruptInput(f"{where}: invalid file name {_show(name)} in the directory")


def _fat_time(date: int, time: int) -> int:
    """FAT write date/time (local time by convention; read as UTC like Linux's tz=UTC) to seconds."""
    year = 1980 + (date >> 9)
    # Linux clamps a zero month/day instead of rejecting them; timegm absorbs the other overflows.
    month = min(max(1, (date >> 5) & 0x0F), 12)
    day = max(1, date & 0x1F)
    hour, minute, second = time >> 11, (time >> 5) & 0x3F, (time & 0x1F) * 2
    return calendar.timegm((year, month, 1, hour, minute, second, 0, 0, 0)) + (day - 1) * 86400


class _LongName:
    """Collects VFAT long-name slots the way Linux does.

    Slots come last-first: the one flagged 0x40 carries the slot count, then the ordinals count
    down to 1, all with the checksum of the 8.3 name that follows. A broken sequence is dropped;
    a checksum mismatch (a DOS tool renamed the file) falls back to the 8.3 name.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._slots: list[bytes] = []
        self._expect = 0  # the ordinal the next slot must have; 0 once the sequence is complete
        self._checksum = -1

    def add(self, raw: bytes) -> None:
        ordinal, checksum = raw[0], raw[13]
        chars = raw[1:11] + raw[14:26] + raw[28:32]
        if ordinal & LFN_LAST:
            count = ordinal & ~LFN_LAST
            if not 1 <= count <= LFN_MAX_SLOTS:
                self.reset()
                return
            self._slots = [chars]
            self._expect = count - 1
            self._checksum = checksum
        elif self._slots and self._expect and ordinal == self._expect and checksum == self._checksum:
            self._slots.append(chars)
            self._expect -= 1
        else:
            self.reset()

    def finish(self, short: bytes) -> bytes | None:
        """The long name for the 8.3 dirent `short`, or None to use the 8.3 name."""
        complete = bool(self._slots) and self._expect == 0 and self._checksum == _lfn_checksum(short)
        slots = self._slots
        self.reset()
        if not complete:
            return None
        units = b"".join(reversed(slots))
        for pos in range(0, len(units), 2):
            if units[pos : pos + 2] == b"\0\0":
                units = units[:pos]
                break
        try:
            name = units.decode("utf-16-le")
        except UnicodeDecodeError:
            return None  # unpaired surrogates: no UTF-8 form, keep the 8.3 name
        return name.encode("utf-8") if name else None


def _lfn_checksum(short: bytes) -> int:
    total = 0
    for byte in short:
        total = (((total & 1) << 7) + (total >> 1) + byte) & 0xFF
    return total


def _show(name: bytes) -> str:
    return repr(name.decode("utf-8", "replace"))
