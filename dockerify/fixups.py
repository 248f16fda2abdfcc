"""Raspberry Pi OS fixups: changes that make an image usable under qemu-user, recorded in the
image so the SD-card export can undo them.

/etc/ld.so.preload names libarmmem, an ARMv6/v7 memcpy replacement that qemu-user cannot preload
for every process (each command prints an error or fails). pi-gen renames the file while building
and restores it on export; we comment the line out and keep the original bytes in a label."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator

from dockerify.entry import Entry, FileType, bytes_reader

PRELOAD = b"etc/ld.so.preload"
PRELOAD_LABEL = "io.dockerify.pi-fixups.ld-so-preload"
_MARK = b"#dockerify-disabled: "


def neutralise_preload(entry: Entry) -> tuple[Entry, str] | None:
    """The fixed entry and the label value holding the original, or None if nothing to fix."""
    if entry.path != PRELOAD or entry.type is not FileType.REG or entry.size > 65536:
        return None
    original = entry.read_all()
    lines = original.split(b"\n")
    if not any(b"libarmmem" in line and not line.lstrip().startswith(b"#") for line in lines):
        return None
    fixed = b"\n".join(
        _MARK + line if b"libarmmem" in line and not line.lstrip().startswith(b"#") else line
        for line in lines
    )
    return entry.with_(size=len(fixed), reader=bytes_reader(fixed), sparse=None), base64.b64encode(
        original
    ).decode()


def restore_preload(entry: Entry, labels: dict[str, str]) -> Entry:
    value = labels.get(PRELOAD_LABEL)
    if value is None or entry.path != PRELOAD or entry.type is not FileType.REG:
        return entry
    original = base64.b64decode(value)
    return entry.with_(size=len(original), reader=bytes_reader(original), sparse=None)


def restore_tree(entries: Iterable[Entry], labels: dict[str, str]) -> Iterator[Entry]:
    """An image's tree with the builder's changes undone: the source tree again."""
    for entry in entries:
        yield restore_preload(entry, labels)
