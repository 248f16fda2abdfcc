"""The tar header parser, the ACL conversion and the writer's out-of-range values, on bytes built
by tests/tarcraft.py (GNU tar judges the same archives in tests/integration/test_tar_exact.py)."""

from __future__ import annotations

import io
import struct

import pytest

from dockerify.entry import Entry, FileType, bytes_reader
from dockerify.errors import CorruptInput
from dockerify.oci.tarwriter import END_OF_ARCHIVE, entry_blocks, header, pax_time
from dockerify.sources import posixacl
from dockerify.sources.tarheader import TarReader, checksum_ok, number, pax_records
from dockerify.sources.tarheader import pax_time as read_pax_time
from dockerify.sources.tarstream import tar_entries
from tests import tarcraft as tc


def _entries(data: bytes) -> list[Entry]:
    out = []
    for e in tar_entries(io.BytesIO(data), "t.tar"):
        e.reader = bytes_reader(e.read_all()) if e.type is FileType.REG else None
        out.append(e)
    return out


def _refusal(data: bytes) -> str:
    with pytest.raises(CorruptInput) as info:
        _entries(data)
    return str(info.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (b"0000644\x00", 0o644),
        (b"  644 \x00\x00", 0o644),
        (b"\x00" * 8, 0),
        (tc.base256(3_000_000, 8), 3_000_000),
        (tc.base256(-100, 12), -100),
        (tc.base256(2**80, 12), 2**80),
    ],
)
def test_numbers_octal_and_base256(field: bytes, value: int) -> None:
    assert number(field) == value


@pytest.mark.parametrize("field", [b"12a4\x00\x00\x00\x00", b"1_0\x00\x00\x00\x00\x00", b"12 34\x00\x00\x00"])
def test_numbers_refuse_junk(field: bytes) -> None:
    assert number(field) is None


def test_checksum_signed_and_unsigned() -> None:
    block = tc.header(b"caf\xc3\xa9")
    assert checksum_ok(block)
    signed = sum(b - 256 if b & 0x80 else b for b in block[:148] + block[156:]) + 8 * 32
    assert checksum_ok(block[:148] + b"%06o\x00 " % signed + block[156:])
    assert not checksum_ok(block[:148] + b"000001\x00 " + block[156:])


def test_pax_records_binary_values_and_malformed() -> None:
    body = tc.record(b"SCHILY.xattr.user.x", b"a\nb\x00c") + tc.record(b"path", b"p")
    assert pax_records(body) == [("SCHILY.xattr.user.x", b"a\nb\x00c"), ("path", b"p")]
    assert pax_records(body + b"\x00" * 20) is not None
    assert pax_records(b"99 path=p\n") is None
    assert pax_records(b"9 pathp\n") is None


@pytest.mark.parametrize(
    ("text", "want"),
    [
        (b"5", (5, 0)),
        (b"1.5", (1, 500_000_000)),
        (b"-1.5", (-2, 500_000_000)),
        (b"1.1234567899", (1, 123456789)),
    ],
)
def test_pax_times(text: bytes, want: tuple[int, int]) -> None:
    assert read_pax_time(text) == want
    seconds, nsec = want
    assert read_pax_time(pax_time(seconds, nsec)) == want


def test_last_of_several_meta_headers_wins_and_globals_apply() -> None:
    data = (
        tc.pax([(b"uid", b"42")], b"g")
        + tc.long_name(b"first")
        + tc.long_name(b"second")
        + tc.pax([(b"gid", b"7"), (b"path", b"ignored")])
        + tc.pax([(b"mtime", b"1.25")])
        + tc.member(b"short", b"x", magic="gnu")
        + tc.member(b"next", b"y")
        + tc.END
    )
    first, second = _entries(data)
    assert (first.path, first.uid, first.gid, first.mtime, first.mtime_nsec) == (
        b"second",
        42,
        0,
        1,
        250_000_000,
    )
    assert (second.path, second.uid) == (b"next", 42)


def test_member_offsets_in_refusals() -> None:
    good = tc.member(b"a", b"hello")
    message = _refusal(good + tc.pax([(b"path", b"x\x00y")]) + tc.member(b"b") + tc.END)
    assert "t.tar: member 'x\\x00y' at byte 1024" in message and "NUL" in message
    assert "the header at byte 1024: checksum mismatch" in _refusal(
        good + tc.header(b"b", checksum=b"0000000\x00")
    )
    assert "member 'big' at byte 1024" in _refusal(good + tc.header(b"big", size=5000) + bytes(1024))
    assert "t.tar: the header at byte 1024: the archive ends after a long-name" in _refusal(
        good + tc.long_name(b"long") + tc.END
    )


@pytest.mark.parametrize(
    ("map_", "why"),
    [
        ([(0, 10), (5, 10)], "out of order"),
        ([(0, 10), (100, 10)], "past the end"),
    ],
)
def test_bad_sparse_maps_refused(map_: list[tuple[int, int]], why: str) -> None:
    for version in ("0.0", "0.1", "1.0"):
        message = _refusal(tc.member(b"a", b"1") + tc.pax_sparse(b"s", 50, map_, version) + tc.END)
        assert "member 's' at byte 1024: malformed GNU sparse map" in message and why in message
    message = _refusal(tc.old_gnu_sparse(b"s", 50, map_) + tc.END)
    assert "member 's' at byte 0: malformed GNU sparse map" in message


def test_sparse_map_text_junk_refused() -> None:
    bad = tc.pax([(b"GNU.sparse.size", b"10"), (b"GNU.sparse.map", b"0,x")]) + tc.member(b"s", b"") + tc.END
    assert "is not a number" in _refusal(bad)
    count = tc.pax(
        [(b"GNU.sparse.size", b"10"), (b"GNU.sparse.numblocks", b"2"), (b"GNU.sparse.map", b"0,1")]
    )
    assert "does not match" in _refusal(count + tc.member(b"s", b"A") + tc.END)


def test_old_gnu_sparse_with_extension_blocks() -> None:
    regions = [(i * 4096, 100) for i in range(30)]
    (entry,) = _entries(tc.old_gnu_sparse(b"s", 30 * 4096 + 7, regions) + tc.END)
    assert entry.size == 30 * 4096 + 7 and entry.sparse == tuple(regions)
    assert entry.read_all() == tc.dense(30 * 4096 + 7, regions)


def test_content_read_once_only() -> None:
    reader = TarReader(io.BytesIO(tc.member(b"a", b"hello") + tc.END), "t.tar")
    member = next(iter(reader))
    assert b"".join(d for _, d in reader.content(member)) == b"hello"
    with pytest.raises(CorruptInput):
        list(reader.content(member))


def test_acl_text_to_kernel_xattr() -> None:
    entries = posixacl.parse("user::rwx,user:bin:r--:1000,group::r-x,group:55:rw-,mask::r-x,other::---")
    value = posixacl.to_xattr(entries)
    assert value[:4] == struct.pack("<I", 2)
    items = [struct.unpack("<HHI", value[i : i + 8]) for i in range(4, len(value), 8)]
    undefined = 0xFFFFFFFF
    assert items == [
        (1, 7, undefined),
        (2, 4, 1000),
        (4, 5, undefined),
        (8, 6, 55),
        (16, 5, undefined),
        (32, 0, undefined),
    ]
    assert posixacl.apply_to_mode(entries, 0o4777) == 0o4750
    assert posixacl.minimal(posixacl.parse("u::rw-\ng::r--\no::r--\n"))
    for bad in ("user::rwx,group::r-x", "user::rwx,user:7:r--,group::r-x,other::---", "user::rwz"):
        with pytest.raises(posixacl.AclError):
            posixacl.parse(bad)


def test_acls_on_symlinks_are_ignored_as_gnu_tar_does() -> None:
    acl = [(b"SCHILY.acl.access", b"user::rwx,user:5:r--,group::r-x,mask::r--,other::---")]
    (link, file) = _entries(
        tc.pax(acl)
        + tc.header(b"l", b"2", linkname=b"t", mode=0o777)
        + tc.pax(acl)
        + tc.member(b"f")
        + tc.END
    )
    assert (link.mode, link.xattrs) == (0o777, {})
    assert file.mode == 0o740 and set(file.xattrs) == {"system.posix_acl_access"}


def test_writer_pax_for_values_octal_cannot_hold() -> None:
    entries = [
        Entry(b"old", FileType.REG, mtime=-100),
        Entry(b"frac", FileType.REG, mtime=1_700_000_000, mtime_nsec=5),
        Entry(b"future", FileType.REG, mtime=9_000_000_000),
        Entry(b"dev", FileType.BLOCK, devmajor=3_000_000, devminor=2**40),
        Entry(b"ids", FileType.DIR, uid=2**32 - 2, gid=3_000_000),
    ]
    data = b"".join(b for e in entries for b in entry_blocks(e, mtime=e.mtime)) + END_OF_ARCHIVE
    back = _entries(data)
    for want, got in zip(entries, back, strict=True):
        fields = ("mtime", "mtime_nsec", "devmajor", "devminor", "uid", "gid")
        assert [getattr(got, f) for f in fields] == [getattr(want, f) for f in fields]
    # A clamped time loses its fraction: the fraction belongs to the entry's own time.
    assert b"mtime=" not in header(entries[1], mtime=1_600_000_000)


@pytest.mark.parametrize(
    "entry",
    [
        Entry(b"a\x00b", FileType.REG),
        Entry(b"l", FileType.SYMLINK, linkname=b"t\x00"),
        Entry(b"x", FileType.REG, xattrs={"user.a=b": b""}),
    ],
)
def test_writer_refuses_what_tar_cannot_hold(entry: Entry) -> None:
    with pytest.raises(CorruptInput):
        header(entry, mtime=0)


def test_writer_bytes_unchanged_for_values_that_fit() -> None:
    """Layers built before the PAX time/device records existed keep their digests."""
    e = Entry(b"bin/sh", FileType.REG, mode=0o755, uid=1, gid=2, size=0, mtime=1_700_000_000)
    assert header(e, mtime=1_700_000_000) == tc.header(
        b"bin/sh", mode=0o755, uid=1, gid=2, mtime=1_700_000_000, raw={"uname": b"", "gname": b""}
    )


def _rich_archive() -> bytes:
    regions = [(0, 1024), (4096, 512), (9000, 3), (10000, 0)]
    return (
        tc.pax([(b"uid", b"5")], b"g")
        + tc.long_name(b"long/" + b"n" * 150)
        + tc.member(b"x", b"content", magic="gnu")
        + tc.pax(
            [
                (b"mtime", b"-1.5"),
                (b"SCHILY.xattr.user.a", b"b"),
                (b"SCHILY.acl.access", b"u::rw-,g::r--,o::---"),
            ]
        )
        + tc.member(b"y", b"more")
        + tc.pax_sparse(b"s1", 10000, regions, "1.0")
        + tc.pax_sparse(b"s0", 10000, regions, "0.1")
        + tc.old_gnu_sparse(b"s2", 10000, regions)
        + tc.header(b"dev", b"3", devmajor=1, devminor=3)
        + tc.header(b"link", b"2", linkname=b"x")
        + tc.END
    )


def test_damaged_archives_give_clear_refusals_only() -> None:
    """Issue 7 point 6, tar side: any byte damage is read or refused with a DockerifyError (the
    CLI's exit 1), never another exception (the CLI's exit 70, "internal error")."""
    import random

    from dockerify.errors import DockerifyError

    good = _rich_archive()
    headers = [i for i in range(len(good) // 512) if checksum_ok(good[i * 512 : (i + 1) * 512])]
    rng = random.Random(7)
    outcomes = {"read": 0, "refused": 0}
    for _ in range(3000):
        data = bytearray(good)
        for _ in range(rng.choice((1, 2, 8))):
            block = rng.choice(headers) if rng.random() < 0.8 else rng.randrange(len(data) // 512)
            offset = block * 512 + rng.choice((rng.randrange(512), *range(100, 160), *range(329, 500)))
            data[offset] = rng.randrange(256)
            if block in headers and rng.random() < 0.9:  # past the checksum, into the parser
                data[block * 512 + 148 : block * 512 + 156] = b" " * 8
                data[block * 512 + 148 : block * 512 + 156] = b"%06o\x00 " % sum(
                    data[block * 512 : block * 512 + 512]
                )
        if rng.random() < 0.2:
            del data[rng.randrange(len(data)) :]
        try:
            for e in tar_entries(io.BytesIO(bytes(data)), "t.tar"):
                pieces = list(e.chunks())
                e.reader = lambda pieces=pieces: iter(pieces)
                for _ in entry_blocks(e, mtime=e.mtime):
                    pass
            outcomes["read"] += 1
        except DockerifyError:
            outcomes["refused"] += 1
    assert outcomes["read"] > 100 and outcomes["refused"] > 100, outcomes
