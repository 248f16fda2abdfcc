"""Decompress gzip, xz, bzip2, zstd and zip inputs as forward-only streams or as disk images.

Every decoder counts what it produces and stops at a size limit, so a small hostile input cannot
fill the disk or memory (a decompression bomb). Damaged inputs raise CorruptInput naming the file;
the zlib/lzma/bz2/zstd exception text only ever appears after the path.
"""

from __future__ import annotations

import bz2
import contextlib
import io
import lzma
import os
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol

import zstandard

from dockerify.entry import CHUNK
from dockerify.errors import CorruptInput

GZIP_MAGIC = b"\x1f\x8b"
XZ_MAGIC = b"\xfd7zXZ\x00"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
BZIP2_MAGIC = b"BZh"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header, or the end record of an empty zip
#: Zstandard skippable frames: magic 0x184D2A50..0x184D2A5F, little-endian.
ZSTD_SKIPPABLE_TAIL = b"\x2a\x4d\x18"

#: Disk images are written sparsely: all-zero blocks of this size become holes.
SPARSE_BLOCK = 64 << 10
_ZERO_BLOCK = bytes(SPARSE_BLOCK)

BOMB_HINT = "raise it with --max-size"


def detect(head: bytes) -> str:
    """The compression format of a file from its first bytes (at least 6 for xz)."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(XZ_MAGIC):
        return "xz"
    if head.startswith(ZSTD_MAGIC) or _is_zstd_skippable(head):
        return "zstd"
    if head.startswith(BZIP2_MAGIC) and head[3:4].isdigit() and head[3:4] != b"0":
        return "bzip2"
    if head.startswith(ZIP_MAGICS):
        return "zip"
    return "none"


def _is_zstd_skippable(head: bytes) -> bool:
    return len(head) >= 4 and head[0] & 0xF0 == 0x50 and head[1:4] == ZSTD_SKIPPABLE_TAIL


@contextlib.contextmanager
def open_stream(path: str, max_size: int) -> Iterator[BinaryIO]:
    """A forward-only reader of the decompressed content of `path` (or of `path` itself)."""
    with open(path, "rb") as src:
        fmt = detect(src.read(8))
        src.seek(0)
        if fmt == "none":
            yield src
            return
        if fmt == "zip":
            with _zip_member(path, src) as member:
                yield _reader(_guarded(_copy_chunks(member), path, "zip"), path, max_size)
            return
        yield _reader(_decompress_chunks(fmt, src, path), path, max_size)


@contextlib.contextmanager
def open_disk_image(path: str, max_size: int) -> Iterator[tuple[BinaryIO, int]]:
    """A random-access view of a disk image: the file itself, or a sparse decompressed temp copy."""
    with open(path, "rb") as src:
        fmt = detect(src.read(8))
        if fmt == "none":
            src.seek(0)
            yield src, os.fstat(src.fileno()).st_size
            return
    # TemporaryFile is unlinked at once: nothing stays behind in $TMPDIR, even after a crash.
    with tempfile.TemporaryFile() as tmp, open_stream(path, max_size) as stream:
        size = _copy_sparse(stream, tmp)
        tmp.seek(0)
        yield tmp, size


def _copy_sparse(stream: BinaryIO, out: BinaryIO) -> int:
    """Copy `stream` into `out`, seeking over all-zero blocks so that they stay holes."""
    pos = 0
    while data := stream.read(CHUNK):
        view = memoryview(data)
        start = 0  # the first byte of the pending run of non-zero blocks
        for block in range(0, len(data), SPARSE_BLOCK):
            if view[block : block + SPARSE_BLOCK] == _ZERO_BLOCK[: min(SPARSE_BLOCK, len(data) - block)]:
                _write_at(out, pos + start, view[start:block])
                start = block + SPARSE_BLOCK
        _write_at(out, pos + start, view[start:])
        pos += len(data)
    out.truncate(pos)  # extends the file over a trailing hole
    return pos


def _write_at(out: BinaryIO, pos: int, data: memoryview) -> None:
    if len(data):
        out.seek(pos)
        out.write(data)


# --- the reader -------------------------------------------------------------------------------------


class _ChunkStream(io.RawIOBase):
    """A file-like reader over an iterator of decompressed chunks, enforcing the size limit."""

    def __init__(self, chunks: Iterator[bytes], path: str, max_size: int) -> None:
        self._chunks = chunks
        self._path = path
        self._max_size = max_size
        self._produced = 0
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._produced += len(chunk)
            if self._produced > self._max_size:
                raise CorruptInput(
                    f"{self._path}: decompressed data exceeds the limit of {self._max_size} bytes"
                    " (a decompression bomb?)",
                    hint=BOMB_HINT,
                )
            self._pending = memoryview(chunk)
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def _reader(chunks: Iterator[bytes], path: str, max_size: int) -> BinaryIO:
    return io.BufferedReader(_ChunkStream(chunks, path, max_size), CHUNK)


#: What each decoder raises on damaged data (bz2 raises a plain OSError, zipfile an EOFError when
#: a member's deflate data ends early).
_DECODER_ERRORS: dict[str, tuple[type[Exception], ...]] = {
    "gzip": (zlib.error,),
    "xz": (lzma.LZMAError,),
    "bzip2": (OSError,),
    "zstd": (zstandard.ZstdError,),
    "zip": (zipfile.BadZipFile, zlib.error, EOFError, OSError),
}


def _decompress_chunks(fmt: str, src: BinaryIO, path: str) -> Iterator[bytes]:
    if fmt == "zstd":
        return _guarded(_zstd_chunks(src, path), path, fmt)
    return _guarded(_member_chunks(_FORMATS[fmt], src, path), path, fmt)


def _guarded(chunks: Iterator[bytes], path: str, fmt: str) -> Iterator[bytes]:
    """Turn the decoder's exceptions into CorruptInput naming the file."""
    try:
        yield from chunks
    except _DECODER_ERRORS[fmt] as exc:
        raise CorruptInput(f"{path}: corrupt {fmt} data ({exc})") from exc


# --- gzip, xz, bzip2: concatenated members ------------------------------------------------------------


class _Decoder(Protocol):
    """The interface of lzma.LZMADecompressor and bz2.BZ2Decompressor (and _GzipMember)."""

    @property
    def eof(self) -> bool: ...
    @property
    def needs_input(self) -> bool: ...
    @property
    def unused_data(self) -> bytes: ...
    def decompress(self, data: bytes, max_length: int = -1) -> bytes: ...


class _GzipMember:
    """zlib's decompressobj shaped like LZMADecompressor: unconsumed input is kept inside."""

    def __init__(self) -> None:
        self._zlib = zlib.decompressobj(wbits=31)  # 31: a gzip header and trailer, not raw zlib
        self._tail = b""

    @property
    def eof(self) -> bool:
        return self._zlib.eof

    @property
    def needs_input(self) -> bool:
        return not self._tail

    @property
    def unused_data(self) -> bytes:
        return self._zlib.unused_data

    def decompress(self, data: bytes, max_length: int = -1) -> bytes:
        out = self._zlib.decompress(self._tail + data if self._tail else data, max(max_length, 0))
        self._tail = self._zlib.unconsumed_tail
        return out


@dataclass(frozen=True)
class _Format:
    name: str
    magic: bytes
    new: Callable[[], _Decoder]


_FORMATS = {
    "gzip": _Format("gzip", GZIP_MAGIC, _GzipMember),
    "xz": _Format("xz", XZ_MAGIC, lambda: lzma.LZMADecompressor(format=lzma.FORMAT_XZ)),
    "bzip2": _Format("bzip2", BZIP2_MAGIC, bz2.BZ2Decompressor),
}


def _member_chunks(fmt: _Format, src: BinaryIO, path: str) -> Iterator[bytes]:
    """Decompress one member after the other (`cat a.gz b.gz`, pigz, pbzip2 and xz -T write several).

    After the last member only zero padding may follow (dd to a block size does that).
    """
    offset = 0  # compressed offset of pending[0]
    pending = b""
    while True:
        while len(pending) < len(fmt.magic) and (more := src.read(CHUNK)):
            pending += more
        if not pending:
            return
        if not pending.startswith(fmt.magic):
            _expect_zero_tail(src, pending, offset, path, fmt.name)
            return
        decoder = fmt.new()
        fed = yield from _one_member(decoder, pending, src, path, fmt.name)
        # What the decoder did not use belongs to the next member (or is trailing data).
        pending = decoder.unused_data
        offset += fed - len(pending)


def _one_member(
    decoder: _Decoder, pending: bytes, src: BinaryIO, path: str, fmt: str
) -> Generator[bytes, None, int]:
    """Decode one member; returns how many compressed bytes were fed to the decoder."""
    data = pending
    fed = 0
    while not decoder.eof:
        if decoder.needs_input and not data:
            data = src.read(CHUNK)
            if not data:
                # Input is over; a decoder may still hold output for what it already has.
                out = decoder.decompress(b"", CHUNK)
                if not out:
                    raise CorruptInput(f"{path}: truncated {fmt} data (the file ends inside the stream)")
                yield out
                continue
        out = decoder.decompress(data, CHUNK)
        fed += len(data)
        data = b""
        if out:
            yield out
    return fed


def _expect_zero_tail(src: BinaryIO, pending: bytes, offset: int, path: str, fmt: str) -> None:
    while pending:
        rest = pending.lstrip(b"\0")
        if rest:
            garbage_at = offset + len(pending) - len(rest)
            raise CorruptInput(f"{path}: trailing garbage after {fmt} data at byte {garbage_at}")
        offset += len(pending)
        pending = src.read(CHUNK)


# --- zstd: frames walked by hand ------------------------------------------------------------------

#: A zstd block regenerates at most 128 KiB, so feeding this many blocks at once bounds the output
#: of one decompress() call to CHUNK. (zstandard's stream readers neither bound a single call's
#: output on hostile input nor report a truncated frame, hence the frame walk here.)
ZSTD_BLOCKS_PER_FEED = CHUNK // (128 << 10)
ZSTD_BLOCK_RLE = 1
ZSTD_BLOCK_RESERVED = 3


class _ZstdDecoder(Protocol):
    @property
    def eof(self) -> bool: ...
    def decompress(self, data: bytes) -> bytes: ...


class _Input:
    """Buffered forward reading of the compressed file, with exact-length takes and an offset."""

    def __init__(self, src: BinaryIO, path: str, fmt: str) -> None:
        self._src = src
        self._path = path
        self._fmt = fmt
        self._buf = bytearray()
        self._pos = 0
        self.offset = 0  # of the next byte to take

    def peek(self, n: int) -> bytes:
        self._fill(n)
        return bytes(self._buf[self._pos : self._pos + n])

    def take(self, n: int) -> bytes:
        self._fill(n)
        data = bytes(self._buf[self._pos : self._pos + n])
        if len(data) < n:
            raise CorruptInput(f"{self._path}: truncated {self._fmt} data (the file ends inside a frame)")
        self._pos += n
        self.offset += n
        return data

    def rest(self) -> bytes:
        """What is buffered but not taken yet; the reader is then used up."""
        data = bytes(self._buf[self._pos :])
        self._buf = bytearray()
        self._pos = 0
        return data

    def _fill(self, n: int) -> None:
        if len(self._buf) - self._pos >= n:
            return
        del self._buf[: self._pos]  # drop what was taken so the buffer stays about CHUNK
        self._pos = 0
        while len(self._buf) < n and (more := self._src.read(max(CHUNK, n - len(self._buf)))):
            self._buf += more


def _zstd_chunks(src: BinaryIO, path: str) -> Iterator[bytes]:
    """Decompress concatenated zstd frames (and skip skippable frames), as RFC 8878 lays them out."""
    data = _Input(src, path, "zstd")
    decompressor = zstandard.ZstdDecompressor()
    while head := data.peek(4):
        if head == ZSTD_MAGIC:
            yield from _zstd_frame(data, decompressor.decompressobj(), path)
        elif _is_zstd_skippable(head):
            data.take(4)
            data.take(int.from_bytes(data.take(4), "little"))
        else:
            _expect_zero_tail(src, data.rest(), data.offset, path, "zstd")
            return


def _zstd_frame(data: _Input, decoder: _ZstdDecoder, path: str) -> Iterator[bytes]:
    batch = [data.take(4), _zstd_frame_header(data, path)]
    checksum_present = bool(batch[1][0] & 0x04)
    blocks = 0
    last = False
    while not last:
        header = data.take(3)
        value = int.from_bytes(header, "little")
        last, block_type, block_size = bool(value & 1), (value >> 1) & 3, value >> 3
        if block_type == ZSTD_BLOCK_RESERVED:
            raise CorruptInput(f"{path}: corrupt zstd data (reserved block type at byte {data.offset - 3})")
        # An RLE block stores one byte that is repeated block_size times.
        batch += (header, data.take(1 if block_type == ZSTD_BLOCK_RLE else block_size))
        blocks += 1
        if blocks == ZSTD_BLOCKS_PER_FEED or last:
            if checksum_present and last:
                batch.append(data.take(4))
            if out := decoder.decompress(b"".join(batch)):
                yield out
            batch, blocks = [], 0
    if not decoder.eof:
        raise CorruptInput(f"{path}: corrupt zstd data (frame ending at byte {data.offset} is incomplete)")


def _zstd_frame_header(data: _Input, path: str) -> bytes:
    """The frame header descriptor and the optional fields whose sizes it gives."""
    descriptor = data.take(1)
    fhd = descriptor[0]
    if fhd & 0x08:
        raise CorruptInput(f"{path}: corrupt zstd data (reserved bit set in a frame header)")
    single_segment = bool(fhd & 0x20)
    window_size = 0 if single_segment else 1
    dictionary_id_size = (0, 1, 2, 4)[fhd & 0x03]
    content_size_size = (1 if single_segment else 0, 2, 4, 8)[fhd >> 6]
    return descriptor + data.take(window_size + dictionary_id_size + content_size_size)


# --- zip ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _zip_member(path: str, src: BinaryIO) -> Iterator[BinaryIO]:
    try:
        archive = zipfile.ZipFile(src)
    except (zipfile.BadZipFile, OSError) as exc:
        raise CorruptInput(f"{path}: corrupt zip archive ({exc})") from exc
    with archive:
        members = [info for info in archive.infolist() if not info.is_dir()]
        if not members:
            raise CorruptInput(f"{path}: the zip archive has no members")
        # Vendors ship "image.zip" holding the .img next to a README or a checksum file.
        member = next((m for m in members if m.filename.lower().endswith(".img")), members[0])
        try:
            handle = archive.open(member)
        except (zipfile.BadZipFile, NotImplementedError, OSError) as exc:
            raise CorruptInput(
                f"{path}: cannot read {member.filename!r} from the zip archive ({exc})"
            ) from exc
        with handle:
            yield handle  # type: ignore[misc]


def _copy_chunks(src: BinaryIO) -> Iterator[bytes]:
    while data := src.read(CHUNK):
        yield data
