"""A blob read against its descriptor, the same way from every store (a layout's file, a
registry's response): the bytes are counted and hashed as they pass, a read stops as soon as it
passes the size the descriptor gives (a damaged or hostile source cannot make a reader take more),
and the digest is checked at the end. Small blobs are read into memory only under a limit."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from dockerify.errors import CorruptInput
from dockerify.oci.blobs import check_digest

#: A blob read into memory (a config, a signature payload) is refused past this many bytes: the
#: OCI distribution spec's recommended manifest limit, which registries already apply.
METADATA_LIMIT = 4 << 20
CHUNK = 1 << 20


def check_size(what: str, size: int, expected: int, hint: str | None = None) -> None:
    """`what` (a blob, named with its place) holds `size` bytes; its descriptor gives `expected`."""
    if size != expected:
        raise CorruptInput(f"{what}: {size} bytes, its descriptor gives {expected}", hint=hint)


class BlobCheck:
    """One blob's bytes as they pass: `update` with each block (it refuses the first byte past
    the descriptor's size), `finish` at the end (it refuses a short blob or a wrong digest)."""

    def __init__(
        self, what: str, digest: str, size: int, hint: str | None = None, limit: int | None = None
    ) -> None:
        check_digest(digest, what)
        if limit is not None and size > limit:
            raise CorruptInput(f"{what}: {size} bytes is too large for a metadata blob")
        self.what = what
        self.digest = digest
        self.size = size
        self.hint = hint
        self.got = 0
        self._hash = hashlib.sha256()

    def restart(self) -> None:
        """Start over from byte 0 (a source that sends the whole blob again)."""
        self.got = 0
        self._hash = hashlib.sha256()

    def update(self, block: bytes) -> None:
        self.got += len(block)
        if self.got > self.size:
            raise CorruptInput(
                f"{self.what}: more than the {self.size} bytes the descriptor gives", self.hint
            )
        self._hash.update(block)

    def finish(self) -> None:
        check_size(self.what, self.got, self.size, self.hint)
        actual = "sha256:" + self._hash.hexdigest()
        if actual != self.digest:
            raise CorruptInput(
                f"{self.what}: digest mismatch: its {self.got} bytes hash to {actual}", self.hint
            )


def read_checked(read: Callable[[int], bytes], check: BlobCheck) -> bytes:
    """The whole blob in memory from `read(n)`, asking at most one byte more than its size."""
    parts: list[bytes] = []
    while block := read(min(CHUNK, check.size - check.got + 1)):
        check.update(block)
        parts.append(block)
    check.finish()
    return b"".join(parts)


def copy_checked(
    read: Callable[[int], bytes],
    write: Callable[[bytes], object],
    check: BlobCheck,
    progress: Callable[[int], object] | None = None,
) -> None:
    """The blob streamed from `read(n)` to `write`, a block at a time; nothing past its size is
    written, and `progress` is told every block."""
    while block := read(CHUNK):
        check.update(block)
        write(block)
        if progress is not None:
            progress(len(block))
    check.finish()
