"""The pure parts of the direct ext4 writer: time encoding, the allocator, ACL and xattr hash
encodings, and the root usage counted from entries against `measure_tree` of a staged tree."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import struct

import pytest

from dockerify.entry import Entry, FileType, bytes_reader, file_entry
from dockerify.exporters.common import Warnings
from dockerify.exporters.ext4img import RootUsage, Staging, measure_tree
from dockerify.exporters.ext4populate import (
    MAX_EXTENT,
    Allocator,
    OutOfSpace,
    _acl_to_disk,
    _entry_hash,
    _merge,
    _ranges,
    _time,
)


def test_time_keeps_nanoseconds_and_epoch_bits() -> None:
    assert _time(1_700_000_000, 123) == (1_700_000_000, 123 << 2)
    assert _time(-1, 0) == (0xFFFFFFFF, 0)  # 1969: the signed 32-bit range needs no epoch bits
    assert _time(1 << 31, 0) == (1 << 31, 1)  # 2038 and later: epoch 1
    assert _time((1 << 32) + 5, 7) == (5, 1 | 7 << 2)


def test_allocator_splits_at_range_ends_and_extent_limit() -> None:
    a = Allocator([(10, 20), (30, 30 + 2 * MAX_EXTENT)], "blocks")
    assert a.take(15) == [(10, 10), (30, 5)]
    assert a.take(MAX_EXTENT + 1) == [(35, MAX_EXTENT), (35 + MAX_EXTENT, 1)]
    assert a.remaining() == [(36 + MAX_EXTENT, 30 + 2 * MAX_EXTENT)]
    with pytest.raises(OutOfSpace):
        a.take(MAX_EXTENT)


def test_dumpe2fs_ranges_merge_across_groups() -> None:
    assert _merge(_ranges(b"13, 3731-32767") + _ranges(b"32768-40000")) == [(13, 14), (3731, 40001)]


def test_posix_acl_in_ext4_disk_form() -> None:
    xattr = struct.pack("<I", 2) + b"".join(
        struct.pack("<HHI", tag, perm, ident)
        for tag, perm, ident in (
            (1, 7, 0xFFFFFFFF),
            (2, 5, 1000),
            (4, 5, 0xFFFFFFFF),
            (0x10, 5, 0xFFFFFFFF),
            (0x20, 0, 0xFFFFFFFF),
        )
    )
    disk = _acl_to_disk(xattr)
    assert disk == struct.pack("<I", 1) + struct.pack("<HH", 1, 7) + struct.pack(
        "<HHI", 2, 5, 1000
    ) + struct.pack("<HH", 4, 5) + struct.pack("<HH", 0x10, 5) + struct.pack("<HH", 0x20, 0)


def test_xattr_entry_hash() -> None:
    # ext2fs_ext_attr_hash_entry by hand: the name shifted by 5, the value's words by 16.
    h = 0
    for c in b"ab":
        h = ((h << 5) ^ (h >> 27) ^ c) & 0xFFFFFFFF
    h = ((h << 16) ^ (h >> 16) ^ 0x00636261) & 0xFFFFFFFF
    assert _entry_hash(b"ab", b"abc") == h


def _entries() -> list[Entry]:
    sparse_data = b"x" * 5000
    sparse = Entry(
        path=b"data/sparse",
        type=FileType.REG,
        size=10 << 20,
        sparse=((0, 5000), (4 << 20, 5000)),
        reader=lambda: iter([(0, sparse_data), (4 << 20, sparse_data)]),
    )
    out = [
        Entry(path=b".", type=FileType.DIR, mode=0o755),
        Entry(path=b"boot", type=FileType.DIR, mode=0o755),
        file_entry(b"boot/config.txt", b"arm_64bit=1\n"),
        Entry(path=b"boot/overlays", type=FileType.DIR, mode=0o755),
        file_entry(b"boot/overlays/a.dtbo", b"a" * 70000),
        Entry(path=b"data", type=FileType.DIR, mode=0o755),
        *(file_entry(b"data/f%04d-%s" % (i, b"n" * (i % 13)), b"y" * (i * 37)) for i in range(900)),
        sparse,
        Entry(path=b"data/big", type=FileType.REG, size=3 << 20, reader=bytes_reader(b"z" * (3 << 20))),
        Entry(path=b"data/link", type=FileType.HARDLINK, linkname=b"data/big"),
        Entry(path=b"data/short", type=FileType.SYMLINK, linkname=b"big"),
        Entry(path=b"data/long", type=FileType.SYMLINK, linkname=b"/" + b"l" * 80),
        Entry(path=b"data/fifo", type=FileType.FIFO),
        Entry(path=b"data/null", type=FileType.CHAR, devmajor=1, devminor=3),
        Entry(path=b"data/xattrs", type=FileType.REG, xattrs={f"user.k{i}": b"v" * 40 for i in range(4)}),
        Entry(path=b"empty", type=FileType.DIR, mode=0o755),
    ]
    return out


@pytest.mark.parametrize("block_size", [1024, 4096])
def test_root_usage_from_entries_equals_measure_tree(tmp_path, block_size) -> None:
    """The direct path sizes the root exactly as the staging path does."""
    staged = tmp_path / "root"
    staged.mkdir()
    counted = RootUsage(block_size, False, b"boot/", os.statvfs(tmp_path).f_bsize)
    with contextlib.closing(Staging(staged, io.BytesIO(), Warnings("t"))) as staging:
        for e in _entries():
            staging.add(e)
            counted.add(e, e.size)
        staging.sync()
    shutil.rmtree(staged / "boot")
    (staged / "boot").mkdir()
    big = sum(1 for p in staging.big_xattrs if not p.startswith(b"boot/"))
    assert big == 1
    want = measure_tree(staged, block_size, False, big)
    assert counted.usage(b"boot/") == want
