"""The disk layout a build records in the image (label `io.dockerify.disk-layout`), so that
`export --format sdcard` can give back the card it came from: the partition table, each
partition's place and ids, and the boot and root filesystems' ids and geometry.

One parser (`DiskLayout.from_json`) validates the label strictly: it comes from an image, so
anyone may have written it, and a wrong type must be refused with the field named rather than
fail deep in the exporter. One serialiser (`to_json`) gives exactly the dict builds have always
recorded (canonical JSON of it is the label), so the digests of rebuilt images do not move."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

from dockerify.errors import CorruptInput

LAYOUT_LABEL = "io.dockerify.disk-layout"
#: `table_type` of the layout of a bare filesystem image (no partition table around it).
BARE = "none"
TABLE_TYPES = ("dos", "gpt", BARE)
EXT_TYPES = ("ext2", "ext3", "ext4")
FAT_TYPES = ("fat12", "fat16", "fat32")
_HINT = (
    f"{LAYOUT_LABEL} is what `dockerify build` records of a partitioned card; rebuild the image "
    "from the card, or export --format rootfs-tar"
)


@dataclass(frozen=True)
class ExtRecord:
    """An ext2/3/4 filesystem as recorded: what mkfs needs to make the same one again."""

    type: str
    uuid: str
    label: str
    features: tuple[str, ...]
    block_size: int
    inode_size: int
    size: int

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "uuid": self.uuid,
            "label": self.label,
            "features": list(self.features),
            "block_size": self.block_size,
            "inode_size": self.inode_size,
            "size": self.size,
        }


@dataclass(frozen=True)
class FatRecord:
    """A FAT boot filesystem as recorded."""

    type: str
    volume_id: str
    label: str
    cluster_size: int
    size: int

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "volume_id": self.volume_id,
            "label": self.label,
            "cluster_size": self.cluster_size,
            "size": self.size,
        }


Filesystem = ExtRecord | FatRecord


@dataclass(frozen=True)
class PartitionRecord:
    number: int
    start: int
    size: int
    type: str
    partuuid: str
    name: str
    bootable: bool
    #: The filesystem dockerify read there (the boot and root partitions), else None.
    fs: Filesystem | None = None
    mountpoint: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "start": self.start,
            "size": self.size,
            "type": self.type,
            "partuuid": self.partuuid,
            "name": self.name,
            "bootable": self.bootable,
            "fs": self.fs.to_json() if self.fs is not None else {},
            "mountpoint": self.mountpoint,
        }


@dataclass(frozen=True)
class DiskLayout:
    table_type: str  # one of TABLE_TYPES
    disk_id: str
    size: int
    partitions: tuple[PartitionRecord, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "table_type": self.table_type,
            "disk_id": self.disk_id,
            "size": self.size,
            "partitions": [p.to_json() for p in self.partitions],
        }

    @classmethod
    def from_json(cls, data: str | bytes | Mapping[str, Any], where: str = LAYOUT_LABEL) -> DiskLayout:
        """The layout in `data` (the label's text, or its decoded object), checked field by
        field; anything else is refused with `CorruptInput` naming `where` and the field."""
        if isinstance(data, str | bytes):
            try:
                data = json.loads(data)
            except ValueError as e:
                raise CorruptInput(f"{where}: not valid JSON ({e})", hint=_HINT) from None
        top = _Fields(data, where, "")
        table_type = top.text("table_type")
        if table_type not in TABLE_TYPES:
            top.fail(
                "table_type", f"unknown partition table type {table_type!r} (not {', '.join(TABLE_TYPES)})"
            )
        items = top.get("partitions", list, "a list")
        partitions = tuple(
            _partition(_Fields(item, where, f"partitions[{i}]"), f"partitions[{i}]")
            for i, item in enumerate(items)
        )
        layout = cls(table_type, top.text("disk_id"), top.count("size"), partitions)
        top.done()
        return layout


def _partition(f: _Fields, at: str) -> PartitionRecord:
    number, start, size = f.count("number"), f.count("start"), f.count("size")
    kind, partuuid, name = f.text("type"), f.text("partuuid"), f.text("name")
    bootable = f.get("bootable", bool, "true or false")
    fs_fields = _Fields(f.get("fs", dict, "an object"), f.where, f"{at}.fs")
    fs = _filesystem(fs_fields) if fs_fields.data else None
    record = PartitionRecord(number, start, size, kind, partuuid, name, bootable, fs, f.text("mountpoint"))
    f.done()
    return record


def _filesystem(f: _Fields) -> Filesystem:
    kind = f.text("type")
    fs: Filesystem
    if kind in EXT_TYPES:
        features = f.get("features", list, "a list of strings")
        if not all(isinstance(x, str) for x in features):
            f.fail("features", "expected a list of strings")
        fs = ExtRecord(
            kind,
            f.text("uuid"),
            f.text("label"),
            tuple(features),
            f.count("block_size", positive=True),
            f.count("inode_size", positive=True),
            f.count("size"),
        )
    elif kind in FAT_TYPES:
        fs = FatRecord(
            kind,
            f.text("volume_id"),
            f.text("label"),
            f.count("cluster_size", positive=True),
            f.count("size"),
        )
    else:
        f.fail("type", f"unknown filesystem type {kind!r} (not {', '.join(EXT_TYPES + FAT_TYPES)})")
    f.done()
    return fs


_T = TypeVar("_T")


class _Fields:
    """One JSON object being read: every key must be known and of its type."""

    def __init__(self, data: object, where: str, at: str) -> None:
        self.where, self.at = where, at
        if not isinstance(data, dict):
            raise CorruptInput(
                f"{where}: {at or 'the layout'}: expected a JSON object, got {_kind(data)}", hint=_HINT
            )
        self.data: dict[str, Any] = data
        self._seen: set[str] = set()

    def fail(self, key: str, problem: str) -> NoReturn:
        name = f"{self.at}.{key}" if self.at else key
        raise CorruptInput(f"{self.where}: {name}: {problem}", hint=_HINT)

    def get(self, key: str, kind: type[_T], what: str) -> _T:
        self._seen.add(key)
        if key not in self.data:
            self.fail(key, "missing")
        value: _T = self.data[key]
        # bool is an int to Python, never to the layout: True is no size, 1 is no flag.
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            self.fail(key, f"expected {what}, got {_kind(value)}")
        return value

    def text(self, key: str) -> str:
        return self.get(key, str, "a string")

    def count(self, key: str, positive: bool = False) -> int:
        value = self.get(key, int, "an integer")
        if value < (1 if positive else 0):
            self.fail(key, f"{value} is {'not positive' if positive else 'negative'}")
        return value

    def done(self) -> None:
        unknown = sorted(set(self.data) - self._seen)
        if unknown:
            self.fail(unknown[0], "unknown field")


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number"}.get(
        type(value), type(value).__name__
    ) + (f" ({value!r})" if isinstance(value, int | float | str) else "")
