"""A reproducible tar writer for file entries (PAX format, numeric owners, no atime/ctime).

Written by hand rather than through `tarfile` so that every byte is under our control: raw-byte
names and xattr values, a fixed header layout, and GNU sparse 1.0 members (the PAX form that Go's
archive/tar, GNU tar and Python's tarfile all read) for files with holes.
"""

from __future__ import annotations

from collections.abc import Iterator

from dockerify.entry import Entry, FileType
from dockerify.errors import CorruptInput, DockerifyError

BLOCK = 512

_TYPEFLAG = {
    FileType.REG: b"0",
    FileType.HARDLINK: b"1",
    FileType.SYMLINK: b"2",
    FileType.CHAR: b"3",
    FileType.BLOCK: b"4",
    FileType.DIR: b"5",
    FileType.FIFO: b"6",
}


def _octal(value: int, width: int) -> bytes:
    digits = b"%o" % value
    if len(digits) > width - 1:
        raise ValueError("octal field overflow")
    return digits.rjust(width - 1, b"0") + b"\0"


def _base256(value: int, width: int) -> bytes:
    """GNU's binary form for numbers octal cannot hold: a 0x80 lead byte, big-endian. GNU tar,
    libarchive, Go and Python read it; PAX has no standard device keys (GNU tar ignores star's)."""
    if value >= 1 << (8 * width - 2):
        raise CorruptInput(f"device number {value} is too large for a tar header")
    raw = bytearray(value.to_bytes(width, "big"))
    raw[0] |= 0x80
    return bytes(raw)


def _number(value: int, width: int) -> bytes:
    return _octal(value, width) if _fits(value, width) else _base256(value, width)


def _fits(value: int, width: int) -> bool:
    return 0 <= value < 1 << 3 * (width - 1)  # 8 ** (width - 1), as an int for the type checker


def _pax_record(key: bytes, value: bytes) -> bytes:
    body = b" " + key + b"=" + value + b"\n"
    # The length prefix counts itself, so iterate until it is stable.
    n = len(body) + 1
    while len(str(n).encode()) + len(body) != n:
        n = len(str(n).encode()) + len(body)
    return str(n).encode() + body


def _pad(n: int) -> bytes:
    return bytes(-n % BLOCK)


def _ustar_header(
    name: bytes,
    typeflag: bytes,
    *,
    mode: int,
    uid: int,
    gid: int,
    size: int,
    mtime: int,
    linkname: bytes = b"",
    devmajor: int = 0,
    devminor: int = 0,
) -> bytes:
    hdr = bytearray(BLOCK)
    hdr[0:100] = name[:100].ljust(100, b"\0")
    hdr[100:108] = _octal(mode, 8)
    hdr[108:116] = _octal(uid, 8)
    hdr[116:124] = _octal(gid, 8)
    hdr[124:136] = _octal(size, 12)
    hdr[136:148] = _octal(mtime, 12)
    hdr[148:156] = b" " * 8
    hdr[156:157] = typeflag
    hdr[157:257] = linkname[:100].ljust(100, b"\0")
    hdr[257:265] = b"ustar\x0000"
    hdr[329:337] = _number(devmajor, 8)
    hdr[337:345] = _number(devminor, 8)
    hdr[148:156] = b"%06o\0 " % sum(hdr)
    return bytes(hdr)


def pax_time(seconds: int, nsec: int) -> bytes:
    """`[-]SECONDS[.FRACTION]`, the shortest exact form (readers floor it back to seconds+nsec)."""
    total = seconds * 1_000_000_000 + nsec
    sign = b"-" if total < 0 else b""
    whole, frac = divmod(abs(total), 1_000_000_000)
    text = sign + str(whole).encode()
    if frac:
        text += b"." + b"%09d" % frac
        text = text.rstrip(b"0")
    return text


def _check_writable(entry: Entry) -> None:
    """Values no tar header can hold are refused before a byte is written."""
    for what, value in (("name", entry.path), ("link target", entry.linkname)):
        if b"\x00" in value:
            raise CorruptInput(f"{entry.name!r}: the {what} has a NUL byte inside; tar cannot store it")
    for key in entry.xattrs:
        if "\x00" in key or "=" in key or not key:
            raise CorruptInput(f"{entry.name!r}: the xattr name {key!r} cannot be stored in a PAX header")
    if entry.uid < 0 or entry.gid < 0 or entry.devmajor < 0 or entry.devminor < 0:
        raise CorruptInput(f"{entry.name!r}: negative owner or device numbers cannot be stored in tar")


def tar_name(entry: Entry) -> bytes:
    if entry.path == b".":
        return b"./"
    return entry.path + b"/" if entry.type is FileType.DIR else entry.path


def header(entry: Entry, *, mtime: int, sparse_body: int | None = None) -> bytes:
    """The header blocks for `entry`: a PAX extended header when needed, then the ustar header."""
    if entry.type is FileType.SOCKET:  # callers leave sockets out (entry.skip_sockets)
        raise DockerifyError(f"/{entry.name}: a socket cannot be stored in tar", hint="leave it out")
    _check_writable(entry)
    name = tar_name(entry)
    size = entry.size if entry.type is FileType.REG else 0
    pax: list[tuple[bytes, bytes]] = []
    ustar_name = name
    if sparse_body is not None:
        pax += [
            (b"GNU.sparse.major", b"1"),
            (b"GNU.sparse.minor", b"0"),
            (b"GNU.sparse.name", name),
            (b"GNU.sparse.realsize", str(entry.size).encode()),
        ]
        ustar_name = b"./GNUSparseFile.0/" + name.rsplit(b"/", 1)[-1]
        size = sparse_body
    elif len(name) > 100 or not name.isascii():
        pax.append((b"path", name))
    link = entry.linkname
    if len(link) > 100 or not link.isascii():
        pax.append((b"linkpath", link))
    if not _fits(entry.uid, 8):
        pax.append((b"uid", str(entry.uid).encode()))
    if not _fits(entry.gid, 8):
        pax.append((b"gid", str(entry.gid).encode()))
    if not _fits(size, 12):
        pax.append((b"size", str(size).encode()))
    # Sub-second times only while the time is the entry's own (a clamped time has no fraction).
    nsec = entry.mtime_nsec if mtime == entry.mtime else 0
    if nsec or not _fits(mtime, 12):
        pax.append((b"mtime", pax_time(mtime, nsec)))
    for key in sorted(entry.xattrs):
        pax.append((b"SCHILY.xattr." + key.encode(), entry.xattrs[key]))
    if any(not v.isascii() or b"\n" in v for k, v in pax if not k.startswith(b"SCHILY")):
        # Non-UTF-8 names are legal on Linux: declare the values binary so readers keep raw bytes.
        try:
            for k, v in pax:
                if not k.startswith(b"SCHILY"):
                    v.decode("utf-8")
        except UnicodeDecodeError:
            pax.insert(0, (b"hdrcharset", b"BINARY"))
    ustar_mtime = mtime if _fits(mtime, 12) else 0
    out = b""
    if pax:
        body = b"".join(_pax_record(k, v) for k, v in pax)
        pax_name = b"PaxHeaders/" + ustar_name.rstrip(b"/").rsplit(b"/", 1)[-1][:80]
        out = _ustar_header(pax_name, b"x", mode=0o644, uid=0, gid=0, size=len(body), mtime=ustar_mtime)
        out += body + _pad(len(body))
    out += _ustar_header(
        ustar_name,
        _TYPEFLAG[entry.type],
        mode=entry.mode & 0o7777,
        uid=entry.uid if _fits(entry.uid, 8) else 0,
        gid=entry.gid if _fits(entry.gid, 8) else 0,
        size=size if _fits(size, 12) else 0,
        mtime=ustar_mtime,
        linkname=link,
        devmajor=entry.devmajor,
        devminor=entry.devminor,
    )
    return out


def _sparse_map_block(regions: tuple[tuple[int, int], ...]) -> bytes:
    text = b"%d\n" % len(regions) + b"".join(b"%d\n%d\n" % r for r in regions)
    return text + _pad(len(text))


def entry_blocks(entry: Entry, *, mtime: int) -> Iterator[bytes]:
    """Everything one entry contributes to the archive: headers, content, padding."""
    if entry.type is not FileType.REG:
        yield header(entry, mtime=mtime)
        return
    if entry.sparse is not None:
        regions = entry.sparse
        if not regions or regions[-1][0] + regions[-1][1] != entry.size:
            # The map must end at the real size so readers know the length of a trailing hole.
            regions = regions + ((entry.size, 0),)
        map_block = _sparse_map_block(regions)
        data_len = sum(length for _, length in regions)
        yield header(entry, mtime=mtime, sparse_body=len(map_block) + data_len)
        yield map_block
        written = 0
        for _offset, data in entry.chunks():
            yield data
            written += len(data)
        _check_length(entry, written, data_len)
        yield _pad(data_len)
        return
    yield header(entry, mtime=mtime)
    written = 0
    for data in entry.dense_chunks():
        yield data
        written += len(data)
    _check_length(entry, written, entry.size)
    yield _pad(entry.size)


def _check_length(entry: Entry, got: int, want: int) -> None:
    if got != want:
        raise CorruptInput(f"{entry.name}: content is {got} bytes, its header says {want}")


END_OF_ARCHIVE = bytes(2 * BLOCK)
