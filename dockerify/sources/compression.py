"""Decompress gzip, xz, bzip2, zstd, zip, compress (.Z), lzip, lz4 and lzop inputs as
forward-only streams or as disk images.

The first four and zip are decoded in-process; .Z, lzip, lz4 and lzop through their Debian tools
(gzip, lzip, lz4, lzop), whose output streams through the same size-limited reader.

Every decoder counts what it produces and stops at a size limit, so a small hostile input cannot
fill the disk or memory (a decompression bomb). Damaged inputs raise CorruptInput naming the file;
the zlib/lzma/bz2/zstd exception text only ever appears after the path.
"""

from __future__ import annotations

import bz2
import contextlib
import io
import logging
import lzma
import os
import shutil
import subprocess
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol

import zstandard

from dockerify.entry import CHUNK
from dockerify.errors import CorruptInput, NotFound
from dockerify.limits import bounded
from dockerify.run import scrubbed_env

log = logging.getLogger("dockerify")

GZIP_MAGIC = b"\x1f\x8b"
XZ_MAGIC = b"\xfd7zXZ\x00"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
BZIP2_MAGIC = b"BZh"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header, or the end record of an empty zip
#: Zstandard skippable frames: magic 0x184D2A50..0x184D2A5F, little-endian. LZ4 frames use the
#: very same skippable range, so what follows them decides between the two.
ZSTD_SKIPPABLE_TAIL = b"\x2a\x4d\x18"
COMPRESS_MAGIC = b"\x1f\x9d"  # compress(1), LZW
LZIP_MAGIC = b"LZIP"
LZ4_MAGIC = b"\x04\x22\x4d\x18"  # LZ4 frame 0x184D2204
LZ4_LEGACY_MAGIC = b"\x02\x21\x4c\x18"  # the legacy lz4 format, 0x184C2102
LZOP_MAGIC = b"\x89LZO\x00\r\n\x1a\n"

#: Skippable frames looked past when telling zstd from lz4 (hostile files can hold millions).
MAX_SKIPPABLE = 1024

#: Formats decoded by an external tool: its command line and the Debian package providing it.
TOOL_FORMATS: dict[str, tuple[tuple[str, ...], str]] = {
    "compress": (("gzip", "-dc"), "gzip"),  # gzip decodes .Z; ncompress is only needed to write it
    "lzip": (("lzip", "-dc"), "lzip"),
    "lz4": (("lz4", "-dc"), "lz4"),
    "lzop": (("lzop", "-dc"), "lzop"),
}

#: Disk images are written sparsely: all-zero blocks of this size become holes.
SPARSE_BLOCK = 64 << 10
_ZERO_BLOCK = bytes(SPARSE_BLOCK)


def detect(head: bytes) -> str:
    """The compression format of a file from its first bytes (at least 9 for lzop)."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(XZ_MAGIC):
        return "xz"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    if head.startswith((LZ4_MAGIC, LZ4_LEGACY_MAGIC)):
        return "lz4"
    if _is_zstd_skippable(head):
        return _after_skippable(head)
    if head.startswith(BZIP2_MAGIC) and head[3:4].isdigit() and head[3:4] != b"0":
        return "bzip2"
    if head.startswith(ZIP_MAGICS):
        return "zip"
    if head.startswith(COMPRESS_MAGIC):
        return "compress"
    if head.startswith(LZIP_MAGIC):
        return "lzip"
    if head.startswith(LZOP_MAGIC):
        return "lzop"
    return "none"


def _is_zstd_skippable(head: bytes) -> bool:
    return len(head) >= 4 and head[0] & 0xF0 == 0x50 and head[1:4] == ZSTD_SKIPPABLE_TAIL


def _after_skippable(head: bytes) -> str:
    """zstd or lz4: the first frame after the skippable ones says which (zstd when `head` ends
    before that frame; `sniff` reads far enough)."""
    pos = 0
    while _is_zstd_skippable(head[pos : pos + 4]) and len(head) >= pos + 8:
        pos += 8 + int.from_bytes(head[pos + 4 : pos + 8], "little")
    if head[pos : pos + 4] in (LZ4_MAGIC, LZ4_LEGACY_MAGIC):
        return "lz4"
    return "zstd"


def sniff(f: BinaryIO) -> str:
    """The compression format of a seekable file, looking past skippable frames when there are."""
    f.seek(0)
    head = f.read(16)
    fmt = detect(head)
    if _is_zstd_skippable(head):
        pos, frame = 0, head[:8]
        for _ in range(MAX_SKIPPABLE):
            if not (_is_zstd_skippable(frame) and len(frame) == 8):
                break
            pos += 8 + int.from_bytes(frame[4:8], "little")
            f.seek(pos)
            frame = f.read(8)
        fmt = "lz4" if frame[:4] in (LZ4_MAGIC, LZ4_LEGACY_MAGIC) else "zstd"
    f.seek(0)
    return fmt


@contextlib.contextmanager
def open_stream(
    path: str, max_size: int, opened: Callable[[BinaryIO], object] | None = None
) -> Iterator[BinaryIO]:
    """A forward-only reader of the decompressed content of `path` (or of `path` itself);
    `opened` is handed the file itself (to follow how far it has been read)."""
    with open(path, "rb") as src:
        if opened is not None:
            opened(src)
        fmt = sniff(src)
        if fmt == "none":
            yield src
            return
        if fmt == "zip":
            with (
                _zip_member(path, src) as member,
                _closing(_reader(_guarded(_copy_chunks(member), path, "zip"), path, max_size)) as stream,
            ):
                yield stream
            return
        with _closing(_reader(_decompress_chunks(fmt, src, path), path, max_size)) as stream:
            yield stream


@contextlib.contextmanager
def _closing(stream: BinaryIO) -> Iterator[BinaryIO]:
    # Closing the reader closes the decoder's generator, which stops a decoding tool at once.
    try:
        yield stream
    finally:
        stream.close()


@contextlib.contextmanager
def open_disk_image(path: str, max_size: int) -> Iterator[tuple[BinaryIO, int]]:
    """A random-access view of a disk image: the file itself, or a sparse decompressed temp copy."""
    with open(path, "rb") as src:
        fmt = sniff(src)
        if fmt == "none":
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
        self._source = chunks
        self._chunks = bounded(chunks, path, max_size)
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        # A generator never started skips its `finally`: close the decoder itself too.
        self._chunks.close()
        close = getattr(self._source, "close", None)
        if close is not None:
            close()
        super().close()

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
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
    **{fmt: () for fmt in TOOL_FORMATS},  # a tool's failure is reported by _tool_chunks itself
}


def _decompress_chunks(fmt: str, src: BinaryIO, path: str) -> Iterator[bytes]:
    if fmt == "zstd":
        return _guarded(_zstd_chunks(src, path), path, fmt)
    if fmt in TOOL_FORMATS:
        return _tool_chunks(fmt, src, path)
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


# --- compress, lzip, lz4, lzop: through their tools ---------------------------------------------------


def check_tool(fmt: str, path: str) -> str:
    """The tool that decodes `fmt`, or a NotFound naming the package to install."""
    argv, package = TOOL_FORMATS[fmt]
    exe = shutil.which(argv[0])
    if exe is None:
        raise NotFound(
            f"{path}: {argv[0]} is required to read {fmt} data", hint=f"install it: apt-get install {package}"
        )
    return exe


def _tool_chunks(fmt: str, src: BinaryIO, path: str) -> Iterator[bytes]:
    argv = (check_tool(fmt, path), *TOOL_FORMATS[fmt][0][1:])
    return _run_tool(argv, fmt, src, path)


def _run_tool(argv: tuple[str, ...], fmt: str, src: BinaryIO, path: str) -> Iterator[bytes]:
    log.debug("+ %s < %s", " ".join(argv), path)
    # The tool reads the file through a descriptor of its own: `src` is buffered, so its
    # descriptor's position is not where its seek() put it.
    # stderr goes to a file: a pipe nobody reads could fill up and stall the tool.
    with open(os.dup(src.fileno()), "rb", buffering=0) as stdin, tempfile.TemporaryFile() as err:
        os.lseek(stdin.fileno(), 0, os.SEEK_SET)
        proc = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE, stderr=err, env=scrubbed_env())
        assert proc.stdout is not None
        try:
            while data := proc.stdout.read(CHUNK):
                yield data
            if proc.wait() != 0:
                err.seek(0)
                lines = err.read().decode(errors="replace").strip().splitlines()
                detail = lines[-1] if lines else f"exit status {proc.returncode}"
                raise CorruptInput(f"{path}: corrupt {fmt} data ({os.path.basename(argv[0])}: {detail})")
        finally:
            proc.stdout.close()
            if proc.poll() is None:
                proc.kill()
            proc.wait()


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
