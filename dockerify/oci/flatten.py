"""An image's layers applied in order, as one stream of entries (whiteouts, opaque
directories, files replacing directories and back, hard links into lower layers honoured),
without unpacking anything to disk.

One pass over the layers from the top finds, for every path, which layer's version survives;
a second pass merges the layers' survivors into one stream in path order, parents before
children (every layer open at once), as a one-layer image of the same tree would give it.
Memory holds paths, never content."""

from __future__ import annotations

import heapq
from collections.abc import Iterator

from dockerify.entry import Entry, FileType, path_key
from dockerify.limits import DEFAULT_MAX_SIZE
from dockerify.oci.compress import decompressing_reader
from dockerify.oci.model import Descriptor
from dockerify.oci.select import Image
from dockerify.sources.tarstream import tar_entries

WHITEOUT = b".wh."
OPAQUE = b".wh..wh..opq"


def _layer_entries(image: Image, desc: Descriptor, max_size: int) -> Iterator[Entry]:
    where = f"{image.name}: layer {desc.digest}" if image.name else f"layer {desc.digest}"
    with (
        image.layout.blobs.open(desc.digest) as f,
        decompressing_reader(f, desc.media_type, max_size=max_size, where=where) as tar,
    ):
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


class Survivors:
    """For each layer, the paths whose version in that layer is the one the image shows, and
    whether every layer lists its entries parents first in byte order (then the layers can be
    merged into one sorted stream)."""

    def __init__(self, image: Image, max_size: int = DEFAULT_MAX_SIZE) -> None:
        layers = image.layers
        self.keep: list[set[bytes]] = [set() for _ in layers]
        self.sorted = True
        present: list[set[bytes]] = [set() for _ in layers]
        links: list[tuple[int, bytes, bytes]] = []  # surviving hard links: (layer, path, target)
        seen: set[bytes] = set()
        deleted: set[bytes] = set()
        opaque: set[bytes] = set()
        for index in range(len(layers) - 1, -1, -1):
            new_deleted: set[bytes] = set()
            new_opaque: set[bytes] = set()
            last: tuple[bytes, ...] | None = None
            for entry in _layer_entries(image, layers[index], max_size):
                key = path_key(entry.path)
                if last is not None and key < last:
                    self.sorted = False
                last = key
                parent, base = _split(entry.path)
                if base == OPAQUE:
                    new_opaque.add(parent or b".")
                    continue
                if base.startswith(WHITEOUT):
                    new_deleted.add((parent + b"/" if parent else b"") + base[len(WHITEOUT) :])
                    continue
                present[index].add(entry.path)
                if entry.type is not FileType.DIR:
                    # A file over a directory replaces it: the lower layers' children are gone
                    # even if a still higher layer makes it a directory again.
                    new_opaque.add(entry.path)
                if entry.path in seen or _hidden(entry.path, deleted, opaque):
                    continue
                seen.add(entry.path)
                self.keep[index].add(entry.path)
                if entry.type is FileType.HARDLINK:
                    links.append((index, entry.path, entry.linkname))
            deleted |= new_deleted
            opaque |= new_opaque
        # A hard link made when its layer was applied keeps the file it was made to even if a
        # higher layer later deletes or replaces that path: such a link is given as the old
        # file itself (from the layer that held it), under the link's name.
        self.orphans: list[dict[bytes, list[bytes]]] = [{} for _ in layers]
        for index, path, target in links:
            below = next((j for j in range(index, -1, -1) if target in present[j]), None)
            if below is None or target in self.keep[below]:
                continue
            self.keep[index].discard(path)
            self.orphans[below].setdefault(target, []).append(path)


def survivors(image: Image) -> list[set[bytes]]:
    return Survivors(image).keep


def _kept(
    image: Image,
    index: int,
    keep: set[bytes],
    max_size: int,
    orphans: dict[bytes, list[bytes]] | None = None,
) -> Iterator[Entry]:
    for entry in _layer_entries(image, image.layers[index], max_size):
        if entry.path in keep:
            yield entry
        elif orphans and entry.path in orphans and entry.type is FileType.REG:
            first, *rest = sorted(orphans[entry.path], key=path_key)
            yield entry.with_(path=first)
            for other in rest:
                yield entry.with_(
                    path=other, type=FileType.HARDLINK, linkname=first, size=0, reader=None, sparse=None
                )


def _merged(image: Image, found: Survivors, max_size: int) -> Iterator[Entry]:
    """The survivors of sorted layers as one stream sorted parents first, every layer open at
    once (an entry's content is read before its layer moves on). A hard link whose target comes
    later in that order (it is in another layer) waits until the target has been given."""
    keep = found.keep
    streams = [_kept(image, i, k, max_size, found.orphans[i]) for i, k in enumerate(keep)]
    heap: list[tuple[tuple[bytes, ...], int, Entry]] = []

    def advance(i: int) -> None:
        entry = next(streams[i], None)
        if entry is not None:
            heapq.heappush(heap, (path_key(entry.path), i, entry))

    for i in range(len(streams)):
        advance(i)
    given: set[bytes] = set()
    waiting: dict[bytes, list[Entry]] = {}
    survivors = set().union(*keep, *(p for o in found.orphans for links in o.values() for p in links))
    while heap:
        _, i, entry = heapq.heappop(heap)
        if entry.type is FileType.HARDLINK and entry.linkname not in given and entry.linkname in survivors:
            waiting.setdefault(entry.linkname, []).append(entry)
        else:
            yield entry
            given.add(entry.path)
            yield from _release(entry.path, waiting, given)
        advance(i)
    for links in waiting.values():  # targets that never came: let the writers report them
        yield from links


def _release(path: bytes, waiting: dict[bytes, list[Entry]], given: set[bytes]) -> Iterator[Entry]:
    for link in waiting.pop(path, []):
        yield link
        given.add(link.path)
        yield from _release(link.path, waiting, given)


def flatten(image: Image, *, max_size: int = DEFAULT_MAX_SIZE) -> Iterator[Entry]:
    """The image's root filesystem, parents before children, as the layers hold it (the changes
    the builder made for emulation are undone by `dockerify.fixups.restore_tree`). A layer that
    inflates past `max_size` bytes is refused (`DecompressionLimit`, naming its digest)."""
    layers = image.layers
    if len(layers) == 1:
        stream: Iterator[Entry] = (
            e
            for e in _layer_entries(image, layers[0], max_size)
            if not _split(e.path)[1].startswith(WHITEOUT)
        )
    else:
        found = Survivors(image, max_size)
        if found.sorted:
            stream = _merged(image, found, max_size)
        else:
            # Layers in no particular order (some tools write them so): layer by layer, with the
            # surviving directories first so that parents still come before children.
            stream = _unsorted(image, found, max_size)
    yield from stream


def _unsorted(image: Image, found: Survivors, max_size: int) -> Iterator[Entry]:
    keep = found.keep
    dirs: list[Entry] = []
    for index in range(len(keep)):
        dirs += [e for e in _kept(image, index, keep[index], max_size) if e.type is FileType.DIR]
    dirs.sort(key=lambda e: path_key(e.path))
    yield from dirs
    for index in range(len(keep)):
        for entry in _kept(image, index, keep[index], max_size, found.orphans[index]):
            if entry.type is not FileType.DIR:
                yield entry
