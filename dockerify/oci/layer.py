"""Writing a stream of entries as one OCI layer blob: tar -> compressor -> digest, in one pass."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from dockerify.entry import Entry, skip_sockets
from dockerify.oci.blobs import BlobStore
from dockerify.oci.compress import MEDIA_SUFFIX, make_compressor
from dockerify.oci.model import OCI_LAYER, Descriptor
from dockerify.oci.tarwriter import END_OF_ARCHIVE, entry_blocks

_FLUSH = 1 << 20


@dataclass(frozen=True)
class LayerResult:
    descriptor: Descriptor
    diff_id: str
    tar_size: int


def clamp(mtime: int, epoch: int | None) -> int:
    return mtime if epoch is None else min(mtime, epoch)


def write_layer(
    entries: Iterable[Entry],
    store: BlobStore,
    *,
    compression: str = "gzip",
    epoch: int | None = None,
    progress: Callable[[int], object] | None = None,
    where: str = "layer",
) -> LayerResult:
    """`where` names the input in warnings (sockets left out)."""
    blob = store.writer()
    try:
        comp = make_compressor(compression, blob.write)
        # An uncompressed blob's digest is its diff_id: hash the stream once, not twice.
        diff = None if compression == "none" else hashlib.sha256()
        size = 0
        pending: list[bytes] = []
        pending_len = 0

        def flush() -> None:
            nonlocal pending, pending_len
            if pending:
                data = b"".join(pending)
                if diff is not None:
                    diff.update(data)
                comp.write(data)
                if progress:
                    progress(len(data))
                pending, pending_len = [], 0

        for entry in skip_sockets(entries, where):
            for block in entry_blocks(entry, mtime=clamp(entry.mtime, epoch)):
                # Small header blocks are batched so the compressor sees large writes.
                pending.append(block)
                pending_len += len(block)
                size += len(block)
                if pending_len >= _FLUSH:
                    flush()
        pending.append(END_OF_ARCHIVE)
        size += len(END_OF_ARCHIVE)
        flush()
        comp.close()
        digest = blob.commit()
    except BaseException:
        blob.abort()
        raise
    media = OCI_LAYER + MEDIA_SUFFIX[compression]
    diff_id = digest if diff is None else "sha256:" + diff.hexdigest()
    return LayerResult(Descriptor(media, digest, blob.size), diff_id, size)
