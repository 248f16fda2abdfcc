"""Tar headers read the way GNU tar reads them, forward-only, one member at a time.

Python's `tarfile` merges consecutive PAX headers, keeps NULs inside PAX names, trusts broken
sparse maps and has no offsets in its errors, so the headers are parsed here: ustar, GNU (long
names `L`/`K`, old sparse `S` with extension blocks, dumpdirs `D`), star and PAX (local `x`/`X`,
global `g`, GNU sparse 0.0/0.1/1.0). Where several meta headers precede one member, the last of
each kind wins, as in GNU tar and Go's archive/tar; the last global header's records apply to every
later member (as GNU tar applies them) and local ones override them. Every refusal names the input and the byte offset of the member's first
header block in the (decompressed) tar stream.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from dockerify.entry import CHUNK
from dockerify.errors import CorruptInput

BLOCK = 512
ZERO_BLOCK = bytes(BLOCK)

#: Long names, long links and PAX headers are held in memory; no real one comes near this.
MAX_META = 1 << 20

POSIX_MAGIC = b"ustar\x00"

_OCTAL = b"01234567"
_PAX_INT = re.compile(rb"-?[0-9]+")
_PAX_MTIME = re.compile(rb"(-?)([0-9]+)(?:\.([0-9]*))?")


@dataclass(frozen=True)
class Member:
    """One archive member with every meta header before it applied.

    `offset` is where its first header block (meta headers included) starts. `size` is the
    logical file size; `stored` the bytes of content that follow the headers (the data regions of
    a sparse file, concatenated). `sparse` lists the data regions of a sparse member, else None.
    """

    offset: int
    name: bytes
    typeflag: bytes
    mode: int
    uid: int
    gid: int
    mtime: int
    mtime_nsec: int
    size: int
    stored: int
    linkname: bytes = b""
    devmajor: int = 0
    devminor: int = 0
    pax: dict[str, bytes] = field(default_factory=dict)
    sparse: tuple[tuple[int, int], ...] | None = None


def checksum_ok(block: bytes) -> bool:
    """GNU tar accepts the sum of the bytes as unsigned or as signed chars (old Sun tar)."""
    field_ = block[148:156]
    digits = field_.strip(b" \x00")
    if not digits or digits.translate(None, _OCTAL):
        return False
    want = int(digits, 8)
    unsigned = sum(block) - sum(field_) + 8 * 0x20
    if want == unsigned:
        return True
    signed = unsigned - 256 * sum(1 for b in block[:148] + block[156:] if b & 0x80)
    return want == signed


def number(field_: bytes) -> int | None:
    """A numeric header field: octal (space/NUL padded) or GNU base-256 (also negative).

    None when the field holds something else.
    """
    first = field_[0]
    if first & 0x80:
        if first & 0x40:  # negative: two's complement over the whole field
            return int.from_bytes(field_, "big", signed=True)
        return int.from_bytes(bytes([first & 0x3F]) + field_[1:], "big")
    # Leading spaces, octal digits, then spaces/NULs to the end (what GNU tar's from_header takes).
    digits = field_.rstrip(b" \x00").lstrip(b" ")
    if digits.translate(None, _OCTAL):
        return None
    return int(digits, 8) if digits else 0


def cstring(field_: bytes) -> bytes:
    end = field_.find(b"\x00")
    return field_ if end < 0 else field_[:end]


def pax_records(data: bytes) -> list[tuple[str, bytes]] | None:
    """`LEN KEY=VALUE\\n` records in order; None if malformed. Values stay raw bytes."""
    out = []
    pos = 0
    while pos < len(data):
        if data[pos] == 0:  # some writers pad the block with NULs after the last record
            if data[pos:].strip(b"\x00"):
                return None
            break
        space = data.find(b" ", pos, pos + 21)
        if space < 0 or not data[pos:space].isdigit():
            return None
        length = int(data[pos:space])
        record = data[space + 1 : pos + length]
        if length <= space - pos or pos + length > len(data) or not record.endswith(b"\n"):
            return None
        key, eq, value = record[:-1].partition(b"=")
        if not eq or not key:
            return None
        out.append((key.decode("utf-8", "surrogateescape"), value))
        pos += length
    return out


def pax_time(value: bytes) -> tuple[int, int] | None:
    """A PAX time `[-]SECONDS[.FRACTION]` as (seconds, nanoseconds), floored like a timespec."""
    m = _PAX_MTIME.fullmatch(value)
    if m is None:
        return None
    sign, whole, frac = m.groups()
    total = int(whole) * 1_000_000_000 + int((frac or b"")[:9].ljust(9, b"0"))
    if sign:
        total = -total
    seconds, nsec = divmod(total, 1_000_000_000)
    return seconds, nsec


@dataclass
class _Meta:
    """What the headers before a member said about it."""

    longname: bytes | None = None
    longlink: bytes | None = None
    local: list[tuple[str, bytes]] | None = None


class TarReader:
    """Members of an uncompressed tar stream and the content of the current one."""

    def __init__(self, fileobj: BinaryIO, where: str) -> None:
        self._f = fileobj
        self.where = where
        self._pos = 0
        self._skip = 0  # bytes (content and padding) of the current member not consumed yet
        self._current: Member | None = None
        self._started = False  # content of the current member was (being) read
        self._globals: dict[str, bytes] = {}
        #: Where a single zero block ended the archive with more headers after it (GNU tar stops
        #: there too, with a warning).
        self.lone_zero_block: int | None = None

    # --- low-level reading -----------------------------------------------------------------------

    def _read(self, n: int) -> bytes:
        data = self._f.read(n)
        if len(data) < n:
            # A short read on a pipe-like stream is not the end: read until it is.
            parts = [data]
            got = len(data)
            while got < n and (more := self._f.read(n - got)):
                parts.append(more)
                got += len(more)
            data = b"".join(parts)
        self._pos += len(data)
        return data

    def _exact(self, n: int, offset: int, what: str) -> bytes:
        data = self._read(n)
        if len(data) < n:
            raise self.error(offset, f"the archive ends inside {what} (truncated?)")
        return data

    def error(self, offset: int, message: str, name: bytes | None = None) -> CorruptInput:
        member = (
            f"member {name.decode('utf-8', 'backslashreplace')!r} at byte {offset}"
            if name is not None
            else None
        )
        place = member or f"the header at byte {offset}"
        return CorruptInput(f"{self.where}: {place}: {message}")

    def _skip_rest(self) -> None:
        while self._skip:
            n = min(self._skip, CHUNK)
            if len(self._read(n)) < n:
                cur = self._current
                assert cur is not None
                raise self.error(cur.offset, "the archive ends inside its content (truncated?)", cur.name)
            self._skip -= n

    # --- members ----------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Member]:
        while True:
            self._skip_rest()
            self._current = None
            member = self._next()
            if member is None:
                return
            self._current = member
            self._started = False
            self._skip = member.stored + (-member.stored % BLOCK)
            yield member

    def _next(self) -> Member | None:
        start = self._pos
        meta = _Meta()
        while True:
            offset = self._pos
            block = self._read(BLOCK)
            if not block or block == ZERO_BLOCK:
                if meta.longname is not None or meta.longlink is not None or meta.local is not None:
                    raise self.error(start, "the archive ends after a long-name or extended header")
                # GNU tar stops at the first zero block, and takes a missing end marker quietly.
                if block and (following := self._read(BLOCK)) and following != ZERO_BLOCK:
                    self.lone_zero_block = offset
                return None
            if len(block) < BLOCK:
                raise self.error(offset, "the archive ends inside a header block (truncated?)")
            if not checksum_ok(block):
                raise self.error(offset, "checksum mismatch (a damaged archive, or not a tar archive)")
            typeflag = block[156:157]
            if typeflag in (b"L", b"K", b"x", b"X", b"g"):
                data = self._meta_data(block, offset, typeflag)
                if typeflag in (b"L", b"K"):
                    name = data.rstrip(b"\x00")
                    if b"\x00" in name:
                        raise self.error(
                            start, "its long name has a NUL byte inside (refused: GNU tar would cut it)", name
                        )
                    if typeflag == b"L":
                        meta.longname = name
                    else:
                        meta.longlink = name
                    continue
                records = pax_records(data)
                if records is None:
                    raise self.error(offset, "malformed PAX extended header")
                if typeflag == b"g":
                    # GNU tar: a global header replaces the previous global header's records.
                    self._globals = dict(records)
                else:
                    meta.local = records  # the last of several extended headers wins
                continue
            return self._member(block, start, meta)

    def _meta_data(self, block: bytes, offset: int, typeflag: bytes) -> bytes:
        size = number(block[124:136])
        if size is None or size < 0 or size > MAX_META:
            raise self.error(offset, f"a {typeflag.decode()!r} header has a bad size")
        data = self._exact(size + (-size % BLOCK), offset, f"a {typeflag.decode()!r} header")
        return data[:size]

    def _member(self, block: bytes, start: int, meta: _Meta) -> Member:
        typeflag = block[156:157] or b"\x00"
        magic = block[257:265]
        name = cstring(block[0:100])
        if magic[:6] == POSIX_MAGIC:
            # star puts atime/ctime after a 131-byte prefix; GNU tar recognises it this way.
            star = (
                block[475] == 0
                and block[476:477] in (b"0", b"1", b"2", b"3", b"4", b"5", b"6", b"7")
                and block[487] == 0x20
                and block[488:489] in (b"0", b"1", b"2", b"3", b"4", b"5", b"6", b"7")
                and block[499] == 0x20
            )
            prefix = cstring(block[345:476] if star else block[345:500])
            if prefix:
                name = prefix + b"/" + name
        pax: dict[str, bytes] = dict(self._globals)
        local = meta.local or []
        pax.update(local)
        if meta.longname is not None:
            name = meta.longname
        linkname = meta.longlink if meta.longlink is not None else cstring(block[157:257])
        if "path" in pax:
            name = pax["path"]
        if "linkpath" in pax:
            linkname = pax["linkpath"]
        if "GNU.sparse.name" in pax:
            name = pax["GNU.sparse.name"]
        for what, value in (("name", name), ("link target", linkname)):
            if b"\x00" in value:
                raise self.error(
                    start, f"its {what} has a NUL byte inside (refused: GNU tar would cut it)", value
                )

        def num(lo: int, hi: int, key: str, what: str) -> int:
            if key in pax:
                v = pax[key]
                if not _PAX_INT.fullmatch(v):
                    raise self.error(start, f"PAX record {key}={v!r} is not a number", name)
                return int(v)
            value = number(block[lo:hi])
            if value is None:
                raise self.error(start, f"its {what} field {block[lo:hi]!r} is not a number", name)
            return value

        mode = num(100, 108, "", "mode") & 0o7777
        uid = num(108, 116, "uid", "uid")
        gid = num(116, 124, "gid", "gid")
        stored = num(124, 136, "size", "size")
        mtime = num(136, 148, "", "mtime")
        mtime_nsec = 0
        if "mtime" in pax:
            parsed = pax_time(pax["mtime"])
            if parsed is None:
                raise self.error(start, f"PAX record mtime={pax['mtime']!r} is not a time", name)
            mtime, mtime_nsec = parsed
        devmajor = devminor = 0
        if typeflag in (b"3", b"4"):
            devmajor = num(329, 337, "SCHILY.devmajor", "devmajor")
            devminor = num(337, 345, "SCHILY.devminor", "devminor")
        if stored < 0 or uid < 0 or gid < 0:
            raise self.error(start, "a negative size, uid or gid", name)
        if typeflag in (b"1", b"2", b"3", b"4", b"5", b"6"):
            # Header-only types carry no content whatever their size field says (GNU tar and
            # Go's archive/tar agree; a hard link's size is its target's).
            stored = 0
        size = stored
        sparse = None
        if typeflag == b"S":
            sparse, size = self._old_gnu_sparse(block, start, name, stored)
        elif "GNU.sparse.major" in pax or "GNU.sparse.size" in pax or "GNU.sparse.map" in pax:
            sparse, size, stored = self._pax_sparse(pax, local, start, name, stored)
        if sparse is not None and typeflag not in (b"0", b"\x00", b"7", b"S"):
            raise self.error(start, f"a sparse map on a member of type {typeflag!r}", name)
        return Member(
            offset=start,
            name=name,
            typeflag=typeflag,
            mode=mode,
            uid=uid,
            gid=gid,
            mtime=mtime,
            mtime_nsec=mtime_nsec,
            size=size,
            stored=stored,
            linkname=linkname,
            devmajor=devmajor,
            devminor=devminor,
            pax=pax,
            sparse=sparse,
        )

    # --- sparse maps ------------------------------------------------------------------------------

    def _old_gnu_sparse(
        self, block: bytes, start: int, name: bytes, stored: int
    ) -> tuple[tuple[tuple[int, int], ...], int]:
        """The map of an old GNU `S` member: 4 slots in the header, 21 per extension block."""
        regions: list[tuple[int, int]] = []
        area, extended = block[386:482], block[482]
        realsize = number(block[483:495])
        while True:
            for slot in range(0, len(area), 24):
                if area[slot] == 0:
                    break
                off, length = number(area[slot : slot + 12]), number(area[slot + 12 : slot + 24])
                if off is None or length is None:
                    raise self.error(
                        start, f"malformed GNU sparse map (slot at byte {self._pos - BLOCK})", name
                    )
                regions.append((off, length))
            if not extended:
                break
            ext = self._exact(BLOCK, start, "a sparse map extension block")
            area, extended = ext[:504], ext[504]
        if realsize is None:
            raise self.error(start, "malformed GNU sparse map (bad real size)", name)
        return self._check_map(regions, realsize, stored, start, name), realsize

    def _pax_sparse(
        self, pax: dict[str, bytes], local: list[tuple[str, bytes]], start: int, name: bytes, stored: int
    ) -> tuple[tuple[tuple[int, int], ...], int, int]:
        def bad(why: str) -> CorruptInput:
            return self.error(start, f"malformed GNU sparse map ({why})", name)

        def integer(value: bytes, what: str) -> int:
            if not value.isdigit():
                raise bad(f"{what} {value!r} is not a number")
            return int(value)

        major = pax.get("GNU.sparse.major")
        if major is not None:
            if (major, pax.get("GNU.sparse.minor")) != (b"1", b"0"):
                raise bad(f"unknown version {major!r}.{pax.get('GNU.sparse.minor')!r}")
            realsize = integer(pax.get("GNU.sparse.realsize", b""), "real size")
            # 1.0: the map is decimal text at the start of the content, padded to a block.
            text = b""
            count = None
            while True:
                if len(text) >= min(stored, MAX_META * 16):
                    raise bad("the map runs past the member's content")
                text += self._exact(BLOCK, start, "the sparse map")
                lines = text.split(b"\n")
                if count is None and len(lines) > 1:
                    count = integer(lines[0], "entry count")
                if count is not None and len(lines) > 1 + 2 * count:
                    break
            flat = [integer(x, "entry") for x in lines[1 : 1 + 2 * count]]
            if b"".join(lines[1 + 2 * count :]).strip(b"\x00"):
                raise bad("junk after the map")
            stored -= len(text)
        else:
            realsize = integer(pax.get("GNU.sparse.size", b""), "real size")
            if "GNU.sparse.map" in pax:  # 0.1: one comma-separated record
                raw = pax["GNU.sparse.map"]
                flat = [integer(x, "entry") for x in raw.split(b",")] if raw else []
            else:  # 0.0: offset/numbytes records repeated, in order
                flat = [
                    integer(v, "entry") for k, v in local if k in ("GNU.sparse.offset", "GNU.sparse.numbytes")
                ]
            if not flat:  # GNU tar fails on these; its own maps always end with (size, 0)
                raise bad("no entries")
            numblocks = pax.get("GNU.sparse.numblocks")
            if len(flat) % 2 or (
                numblocks is not None and integer(numblocks, "block count") * 2 != len(flat)
            ):
                raise bad("the number of entries does not match")
        regions = list(zip(flat[0::2], flat[1::2], strict=True))
        return self._check_map(regions, realsize, stored, start, name), realsize, stored

    def _check_map(
        self, regions: list[tuple[int, int]], realsize: int, stored: int, start: int, name: bytes
    ) -> tuple[tuple[int, int], ...]:
        end = 0
        for off, length in regions:
            if off < end or length < 0 or off + length > realsize:
                raise self.error(
                    start,
                    f"malformed GNU sparse map (region {off}+{length} out of order or past the end)",
                    name,
                )
            end = off + length
        if sum(n for _, n in regions) != stored:
            raise self.error(
                start,
                f"malformed GNU sparse map (its regions hold {sum(n for _, n in regions)} bytes, "
                f"the member stores {stored})",
                name,
            )
        return tuple(r for r in regions if r[1] > 0)

    # --- content ----------------------------------------------------------------------------------

    def content(self, member: Member) -> Iterator[tuple[int, bytes]]:
        """(offset, data) pieces of the member's data regions, read from the stream."""
        if member is not self._current or self._started:
            raise self.error(
                member.offset, "content read twice, or after the next member was taken", member.name
            )
        self._started = True
        spans = member.sparse if member.sparse is not None else ((0, member.stored),)
        for offset, length in spans:
            done = 0
            while done < length:
                n = min(CHUNK, length - done)
                data = self._read(n)
                self._skip -= len(data)
                if len(data) < n:
                    self._skip = 0
                    raise self.error(
                        member.offset, "the archive ends inside its content (truncated?)", member.name
                    )
                yield offset + done, data
                done += n
