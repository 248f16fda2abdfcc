"""Writing one stream of entries as several layer blobs at once: each entry is routed to the
layer a plan names, every layer with its own tar -> compressor -> digest pipeline.

The source is read once; layers are opened when their first entry arrives, so a plan's empty
layers cost nothing. Each layer sees its entries in the source's order, so it is as
reproducible as a one-layer build."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from dockerify.entry import Entry, skip_sockets
from dockerify.oci.blobs import BlobStore, BlobWriter
from dockerify.oci.compress import MEDIA_SUFFIX, Compressor, make_compressor
from dockerify.oci.layer import LayerResult, clamp
from dockerify.oci.model import OCI_LAYER, Descriptor
from dockerify.oci.tarwriter import END_OF_ARCHIVE, entry_blocks

_FLUSH = 256 << 10  # smaller than write_layer's: many layers are open at once


class _Open:
    def __init__(self, store: BlobStore, compression: str) -> None:
        self.blob: BlobWriter = store.writer()
        self.comp: Compressor = make_compressor(compression, self.blob.write)
        self.diff = None if compression == "none" else hashlib.sha256()
        self.size = 0
        self.pending: list[bytes] = []
        self.pending_len = 0

    def add(self, block: bytes) -> int:
        self.pending.append(block)
        self.pending_len += len(block)
        self.size += len(block)
        return self.flush() if self.pending_len >= _FLUSH else 0

    def flush(self) -> int:
        if not self.pending:
            return 0
        data = b"".join(self.pending)
        if self.diff is not None:
            self.diff.update(data)
        self.comp.write(data)
        self.pending, self.pending_len = [], 0
        return len(data)


@dataclass(frozen=True)
class Routed:
    index: int
    layer: LayerResult


def write_layers(
    entries: Iterable[Entry],
    route: Callable[[Entry], int],
    store: BlobStore,
    *,
    compression: str = "gzip",
    epoch: int | None = None,
    progress: Callable[[int], object] | None = None,
    where: str = "layer",
) -> list[Routed]:
    """The layers the entries fill, in index order (indexes no entry was routed to are left out)."""
    open_: dict[int, _Open] = {}
    try:
        for entry in skip_sockets(entries, where):
            index = route(entry)
            layer = open_.get(index)
            if layer is None:
                layer = open_[index] = _Open(store, compression)
            for block in entry_blocks(entry, mtime=clamp(entry.mtime, epoch)):
                n = layer.add(block)
                if n and progress:
                    progress(n)
        out: list[Routed] = []
        for index in sorted(open_):
            layer = open_[index]
            layer.pending.append(END_OF_ARCHIVE)
            layer.size += len(END_OF_ARCHIVE)
            n = layer.flush()
            if progress:
                progress(n)
            layer.comp.close()
            digest = layer.blob.commit()
            media = OCI_LAYER + MEDIA_SUFFIX[compression]
            diff_id = digest if layer.diff is None else "sha256:" + layer.diff.hexdigest()
            out.append(
                Routed(index, LayerResult(Descriptor(media, digest, layer.blob.size), diff_id, layer.size))
            )
            del open_[index]
        return out
    except BaseException:
        for layer in open_.values():
            layer.blob.abort()
        raise
