"""Layer compression on all cores, with reproducible output.

gzip: blocks of the tar stream are deflated in parallel (zlib releases the GIL), each primed with
the previous block's last 32 KiB as dictionary and ended with a sync flush, like pigz; the header
carries no name and mtime 0, so the bytes depend only on the input and the level.
zstd: the zstandard library's own worker threads; its output does not depend on their number.
"""

from __future__ import annotations

import io
import os
import queue
import struct
import threading
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, BinaryIO, Protocol

import zstandard

from dockerify.errors import CorruptInput
from dockerify.limits import DEFAULT_MAX_SIZE, bounded

_isal: Any
try:  # ISA-L's deflate/inflate: the same formats, several times faster than zlib
    from isal import isal_zlib as _isal
except ImportError:  # an install without the speed-up (Debian's python in the as-nobody tests)
    _isal = None

GZIP_BLOCK = 1 << 20
#: ISA-L's strongest level: on real trees it is both its fastest and its smallest (measured).
FAST_LEVEL = 3
_DICT = 32 * 1024


class Compressor(Protocol):
    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...


def _workers() -> int:
    return max(1, len(os.sched_getaffinity(0)))


class ParallelGzipWriter:
    """Writes a single-member gzip stream to `sink`, deflating blocks on a thread pool."""

    def __init__(
        self,
        sink: Callable[[bytes], object],
        level: int = 6,
        threads: int | None = None,
        fast: bool = False,
    ) -> None:
        self._sink = sink
        self._level = level
        # `fast`: ISA-L's deflate (about 15x zlib's level 6, output ~10 % larger) where the bytes
        # need not match earlier releases (initramfs). Layers keep zlib: their digests stay put.
        self._zlib: Any = zlib
        if fast and _isal is not None:
            self._zlib, self._level = _isal, FAST_LEVEL
        self._pool = ThreadPoolExecutor(max_workers=threads or _workers())
        self._pending: deque[Future[bytes]] = deque()
        self._max_pending = 2 * (threads or _workers())
        self._buf = bytearray()
        self._prev_tail = b""
        self._crc = 0
        self._size = 0
        # Fixed header: no FNAME, MTIME 0, XFL 0, OS 255 (unknown) so digests are reproducible.
        sink(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff")

    def _deflate(self, block: bytes, zdict: bytes, last: bool) -> bytes:
        comp = self._zlib.compressobj(
            self._level, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, *([zdict] if zdict else [])
        )
        out: bytes = comp.compress(block)
        tail: bytes = comp.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)
        return out + tail

    def _submit(self, block: bytes, last: bool) -> None:
        self._crc = zlib.crc32(block, self._crc)
        self._size += len(block)
        self._pending.append(self._pool.submit(self._deflate, block, self._prev_tail, last))
        self._prev_tail = block[-_DICT:]
        while len(self._pending) > self._max_pending:
            self._sink(self._pending.popleft().result())
        # Blocks already deflated go out now (in order, so the stream is the same): with many
        # layers open at once (build --chunked) each would otherwise hold its finished blocks.
        while self._pending and self._pending[0].done():
            self._sink(self._pending.popleft().result())

    def write(self, data: bytes) -> None:
        self._buf += data
        while len(self._buf) > GZIP_BLOCK:
            block = bytes(self._buf[:GZIP_BLOCK])
            del self._buf[:GZIP_BLOCK]
            self._submit(block, last=False)

    def close(self) -> None:
        self._submit(bytes(self._buf), last=True)
        self._buf = bytearray()
        while self._pending:
            self._sink(self._pending.popleft().result())
        self._pool.shutdown()
        self._sink(struct.pack("<II", self._crc & 0xFFFFFFFF, self._size & 0xFFFFFFFF))


class _CallableSink:
    """A file-like face for a write callback (zstandard's stream_writer wants one)."""

    def __init__(self, sink: Callable[[bytes], object]) -> None:
        self._sink = sink

    def write(self, data: bytes) -> int:
        self._sink(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass


class ZstdWriter:
    # stream_writer keeps zstd's worker threads busy; compressobj() measured 40 % slower here.
    def __init__(self, sink: Callable[[bytes], object], level: int = 3, threads: int | None = None) -> None:
        cctx = zstandard.ZstdCompressor(level=level, threads=threads or _workers(), write_checksum=True)
        self._writer = cctx.stream_writer(_CallableSink(sink), closefd=False)  # type: ignore[arg-type]

    def write(self, data: bytes) -> None:
        self._writer.write(data)

    def close(self) -> None:
        self._writer.flush(zstandard.FLUSH_FRAME)


class PlainWriter:
    def __init__(self, sink: Callable[[bytes], object]) -> None:
        self._sink = sink

    def write(self, data: bytes) -> None:
        self._sink(data)

    def close(self) -> None:
        pass


MEDIA_SUFFIX = {"gzip": "+gzip", "zstd": "+zstd", "none": ""}


def make_compressor(
    kind: str, sink: Callable[[bytes], object], level: int | None = None, fast: bool = False
) -> Compressor:
    if kind == "gzip":
        return ParallelGzipWriter(sink, level=6 if level is None else level, fast=fast)
    if kind == "zstd":
        return ZstdWriter(sink, level=3 if level is None else level)
    if kind == "none":
        return PlainWriter(sink)
    raise ValueError(f"unknown compression {kind!r}")


def _gunzip(f: BinaryIO) -> Iterator[bytes]:
    """Every member of a gzip stream, decompressed (by ISA-L where installed: same bytes, faster)."""
    inflate: Any = _isal or zlib
    d = inflate.decompressobj(31)
    while True:
        data = d.unused_data or f.read(_READ)
        if not data:
            break
        if d.eof:
            if not data.strip(b"\0"):
                return  # zero padding after the last member
            d = inflate.decompressobj(31)
        out = d.decompress(data, _READ)
        while out:
            yield out
            out = d.decompress(d.unconsumed_tail, _READ) if d.unconsumed_tail else b""
    if not d.eof:
        raise CorruptInput("layer: gzip data ends early (truncated blob?)")


def _unzstd(f: BinaryIO) -> Iterator[bytes]:
    reader = zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True)
    while data := reader.read(_READ):
        yield data


_READ = 1 << 20
_DONE = object()


class _ThreadedReader(io.RawIOBase):
    """Runs a decompressing generator on its own thread (zlib and zstd release the GIL), so the
    reading side parses tar headers while the next megabytes are inflated. The queue is bounded:
    memory stays at a few chunks whatever the layer size."""

    def __init__(self, produce: Iterator[bytes]) -> None:
        super().__init__()
        self._queue: queue.Queue[object] = queue.Queue(maxsize=8)
        self._buf = memoryview(b"")
        self._done = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(produce,), daemon=True)
        self._thread.start()

    def _run(self, produce: Iterator[bytes]) -> None:
        try:
            for chunk in produce:
                if self._stop.is_set():
                    return
                self._queue.put(chunk)
            self._queue.put(_DONE)
        except BaseException as e:  # handed to the reader, which raises it in its own thread
            self._queue.put(e)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        # Unblock a producer waiting on a full queue, so an abandoned reader leaves no thread.
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get(timeout=0.1)
            except queue.Empty:
                pass
        super().close()

    def readinto(self, b: Any) -> int:
        while not self._buf and not self._done:
            item = self._queue.get()
            if item is _DONE:
                self._done = True
            elif isinstance(item, BaseException):
                self._done = True
                raise item
            else:
                self._buf = memoryview(item)  # type: ignore[arg-type]
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


def decompressing_reader(
    f: BinaryIO, media_type: str, *, max_size: int = DEFAULT_MAX_SIZE, where: str = "layer"
) -> BinaryIO:
    """A forward-only reader of an OCI layer blob's uncompressed tar stream. A compressed blob
    that inflates past `max_size` is refused (`DecompressionLimit` naming `where`); a blob stored
    uncompressed is read as it is, its size being what it takes on disk already."""
    head = f.read(4)
    f.seek(-len(head), 1)
    if media_type.endswith(("+gzip", ".tar.gzip")) or head[:2] == b"\x1f\x8b":
        produce = _gunzip(f)
    elif media_type.endswith("+zstd") or head == b"\x28\xb5\x2f\xfd":
        produce = _unzstd(f)
    else:
        return f
    return io.BufferedReader(_ThreadedReader(bounded(produce, where, max_size)), buffer_size=_READ)
