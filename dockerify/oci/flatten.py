"""An image's layers applied in order, as one stream of entries (whiteouts and opaque
directories honoured), without unpacking anything to disk.

One pass over the layers from the top finds, for every path, which layer's version survives;
a second pass streams the survivors layer by layer. Memory holds paths, never content."""

from __future__ import annotations

from collections.abc import Iterator

from dockerify.entry import Entry
from dockerify.fixups import restore_preload
from dockerify.oci.compress import decompressing_reader
from dockerify.oci.model import Descriptor
from dockerify.oci.select import Image
from dockerify.sources.tarstream import tar_entries

WHITEOUT = b".wh."
OPAQUE = b".wh..wh..opq"


def _layer_entries(image: Image, desc: Descriptor) -> Iterator[Entry]:
    with image.layout.blobs.open(desc.digest) as f, decompressing_reader(f, desc.media_type) as tar:
        yield from tar_entries(tar, f"layer {desc.digest[:19]}", check_links=False)


def _split(path: bytes) -> tuple[bytes, bytes]:
    parent, _, base = path.rpartition(b"/")
    return parent, base


def _hidden(path: bytes, deleted: set[bytes], opaque: set[bytes]) -> bool:
    """True if an upper layer removed `path` or one of its ancestors, or made an ancestor opaque."""
    parts = path.split(b"/")
    for i in range(1, len(parts) + 1):
        prefix = b"/".join(parts[:i])
        if prefix in deleted:
            return True
        if i < len(parts) and prefix in opaque:
            return True
    return b"." in opaque and path != b"."


def survivors(image: Image) -> list[set[bytes]]:
    """For each layer, the paths whose version in that layer is the one the image shows."""
    layers = image.layers
    keep: list[set[bytes]] = [set() for _ in layers]
    seen: set[bytes] = set()
    deleted: set[bytes] = set()
    opaque: set[bytes] = set()
    for index in range(len(layers) - 1, -1, -1):
        new_deleted: set[bytes] = set()
        new_opaque: set[bytes] = set()
        for entry in _layer_entries(image, layers[index]):
            parent, base = _split(entry.path)
            if base == OPAQUE:
                new_opaque.add(parent or b".")
                continue
            if base.startswith(WHITEOUT):
                new_deleted.add((parent + b"/" if parent else b"") + base[len(WHITEOUT) :])
                continue
            if entry.path in seen or _hidden(entry.path, deleted, opaque):
                continue
            seen.add(entry.path)
            keep[index].add(entry.path)
        deleted |= new_deleted
        opaque |= new_opaque
    return keep


def flatten(image: Image, *, restore_fixups: bool = False) -> Iterator[Entry]:
    """The image's root filesystem. With `restore_fixups`, changes the builder made for
    emulation (see fixups.py) are undone, giving back the source tree."""
    layers = image.layers
    keep = survivors(image) if len(layers) > 1 else None
    labels = image.labels
    for index, desc in enumerate(layers):
        for entry in _layer_entries(image, desc):
            _, base = _split(entry.path)
            if base.startswith(WHITEOUT):
                continue
            if keep is not None and entry.path not in keep[index]:
                continue
            if restore_fixups:
                entry = restore_preload(entry, labels)
            yield entry
