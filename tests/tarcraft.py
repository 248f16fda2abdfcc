"""A byte-level tar builder for tests: archives no well-behaved writer makes (several long-name
headers, NULs in names, base-256 fields, broken sparse maps, odd type flags)."""

from __future__ import annotations

BLOCK = 512

FIELDS = {  # name: (offset, width) in a ustar header
    "name": (0, 100),
    "mode": (100, 8),
    "uid": (108, 8),
    "gid": (116, 8),
    "size": (124, 12),
    "mtime": (136, 12),
    "chksum": (148, 8),
    "typeflag": (156, 1),
    "linkname": (157, 100),
    "magic": (257, 8),
    "uname": (265, 32),
    "gname": (297, 32),
    "devmajor": (329, 8),
    "devminor": (337, 8),
    "prefix": (345, 155),
}


def octal(value: int, width: int) -> bytes:
    return b"%0*o\x00" % (width - 1, value)


def base256(value: int, width: int) -> bytes:
    """GNU's binary numbers: 0x80 (positive) or 0xff (negative) lead, big-endian two's complement."""
    raw = bytearray(value.to_bytes(width, "big", signed=True))
    if value >= 0:
        raw[0] |= 0x80
    return bytes(raw)


def pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % BLOCK)


def header(
    name: bytes = b"f",
    typeflag: bytes = b"0",
    *,
    size: int = 0,
    mode: int = 0o644,
    uid: int = 0,
    gid: int = 0,
    mtime: int = 1_600_000_000,
    linkname: bytes = b"",
    devmajor: int = 0,
    devminor: int = 0,
    magic: str = "posix",
    raw: dict[str, bytes] | None = None,
    at: dict[int, bytes] | None = None,
    checksum: bytes | None = None,
) -> bytes:
    """One header block; `raw` sets a named field to exact bytes, `at` writes bytes at an offset."""
    h = bytearray(BLOCK)

    def put(field: str, value: bytes) -> None:
        off, width = FIELDS[field]
        assert len(value) <= width, (field, value)
        h[off : off + width] = value.ljust(width, b"\x00")

    put("name", name)
    put("mode", octal(mode, 8))
    put("uid", octal(uid, 8))
    put("gid", octal(gid, 8))
    put("size", octal(size, 12))
    put("mtime", octal(mtime, 12))
    put("typeflag", typeflag)
    put("linkname", linkname)
    if magic == "posix":
        put("magic", b"ustar\x0000")
    elif magic == "gnu":
        put("magic", b"ustar  \x00")
    if magic != "v7":
        put("uname", b"root")
        put("gname", b"root")
        put("devmajor", octal(devmajor, 8))
        put("devminor", octal(devminor, 8))
    for field, value in (raw or {}).items():
        put(field, value)
    for off, value in (at or {}).items():
        h[off : off + len(value)] = value
    h[148:156] = b" " * 8
    h[148:156] = checksum if checksum is not None else b"%06o\x00 " % sum(h)
    return bytes(h)


def member(name: bytes, data: bytes = b"", typeflag: bytes = b"0", **kw: object) -> bytes:
    return header(name, typeflag, size=len(data), **kw) + pad(data)  # type: ignore[arg-type]


def record(key: bytes, value: bytes) -> bytes:
    body = b" " + key + b"=" + value + b"\n"
    n = len(body) + 1
    while len(str(n)) + len(body) != n:
        n = len(str(n)) + len(body)
    return str(n).encode() + body


def pax(records: list[tuple[bytes, bytes]], typeflag: bytes = b"x", name: bytes = b"PaxHeaders/f") -> bytes:
    body = b"".join(record(k, v) for k, v in records)
    return header(name, typeflag, size=len(body), mtime=0) + pad(body)


def long_name(name: bytes, typeflag: bytes = b"L") -> bytes:
    data = name + b"\x00"
    return header(b"././@LongLink", typeflag, size=len(data), magic="gnu", mtime=0) + pad(data)


def old_gnu_sparse(
    name: bytes,
    realsize: int,
    regions: list[tuple[int, int]],
    *,
    per_header: int = 4,
    raw_slots: bytes | None = None,
) -> bytes:
    """An old GNU `S` member: 4 map slots in the header, the rest in 21-slot extension blocks."""
    slots = [octal(o, 12) + octal(n, 12) for o, n in regions]
    first, rest = slots[:per_header], slots[per_header:]
    area = raw_slots if raw_slots is not None else b"".join(first)
    stored = sum(n for _, n in regions)
    at = {386: area, 482: b"\x01" if rest else b"\x00", 483: octal(realsize, 12)}
    out = header(name, b"S", size=stored, magic="gnu", at=at)
    while rest:
        chunk, rest = rest[:21], rest[21:]
        ext = bytearray(BLOCK)
        ext[: 24 * len(chunk)] = b"".join(chunk)
        ext[504] = 1 if rest else 0
        out += bytes(ext)
    data = b"".join(bytes([65 + i % 26]) * n for i, (_, n) in enumerate(regions))
    return out + pad(data)


def sparse_data(regions: list[tuple[int, int]]) -> bytes:
    """The content old_gnu_sparse and the PAX builders store for `regions` (one letter each)."""
    return b"".join(bytes([65 + i % 26]) * n for i, (_, n) in enumerate(regions))


def dense(realsize: int, regions: list[tuple[int, int]]) -> bytes:
    out = bytearray(realsize)
    for i, (o, n) in enumerate(regions):
        out[o : o + n] = bytes([65 + i % 26]) * n
    return bytes(out)


def pax_sparse(name: bytes, realsize: int, regions: list[tuple[int, int]], version: str) -> bytes:
    """A GNU sparse member in PAX form, version "0.0", "0.1" or "1.0"."""
    data = sparse_data(regions)
    flat = [x for r in regions for x in r]
    if version == "1.0":
        text = b"%d\n" % len(regions) + b"".join(b"%d\n" % x for x in flat)
        body = pad(text) + data
        recs = [
            (b"GNU.sparse.major", b"1"),
            (b"GNU.sparse.minor", b"0"),
            (b"GNU.sparse.name", name),
            (b"GNU.sparse.realsize", b"%d" % realsize),
        ]
        return pax(recs) + header(b"GNUSparseFile.0/" + name[-80:], size=len(body)) + pad(body)
    recs = [(b"GNU.sparse.size", b"%d" % realsize), (b"GNU.sparse.numblocks", b"%d" % len(regions))]
    if version == "0.1":
        recs.append((b"GNU.sparse.map", b",".join(b"%d" % x for x in flat)))
    else:
        for o, n in regions:
            recs += [(b"GNU.sparse.offset", b"%d" % o), (b"GNU.sparse.numbytes", b"%d" % n)]
    return pax(recs) + header(name, size=len(data)) + pad(data)


END = bytes(2 * BLOCK)
