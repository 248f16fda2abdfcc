"""`dockerify diff`: every difference between two trees, in the attributes promise 1 lists."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

from dockerify.entry import Entry, FileType, path_key


@dataclass(frozen=True)
class Record:
    type: str
    mode: int
    uid: int
    gid: int
    mtime: int
    size: int
    target: bytes
    device: tuple[int, int]
    xattrs: tuple[tuple[str, bytes], ...]
    digest: str
    sparse: bool
    link_group: bytes  # first path of the hard-link group, b"" when alone


FIELDS = (
    "type",
    "mode",
    "uid",
    "gid",
    "mtime",
    "size",
    "target",
    "device",
    "xattrs",
    "digest",
    "sparse",
    "link_group",
)


def _digest(entry: Entry) -> str:
    h = hashlib.sha256()
    for data in entry.dense_chunks():
        h.update(data)
    return h.hexdigest()


def records(entries: Iterator[Entry]) -> dict[bytes, Record]:
    out: dict[bytes, Record] = {}
    linked: set[bytes] = set()
    for e in entries:
        if e.type is FileType.HARDLINK:
            first = out.get(e.linkname)
            if first is None:
                out[e.path] = Record(
                    "hardlink-to-missing",
                    e.mode,
                    e.uid,
                    e.gid,
                    e.mtime,
                    0,
                    e.linkname,
                    (0, 0),
                    (),
                    "",
                    False,
                    e.linkname,
                )
                continue
            linked.add(e.linkname)
            out[e.path] = Record(**{**first.__dict__, "link_group": e.linkname})
            continue
        out[e.path] = Record(
            type=e.type.value,
            mode=e.mode,
            uid=e.uid,
            gid=e.gid,
            mtime=e.mtime,
            size=e.size if e.type is FileType.REG else 0,
            target=e.linkname if e.type is FileType.SYMLINK else b"",
            device=(e.devmajor, e.devminor) if e.type in (FileType.CHAR, FileType.BLOCK) else (0, 0),
            xattrs=tuple(sorted(e.xattrs.items())),
            digest=_digest(e) if e.type is FileType.REG else "",
            sparse=e.sparse is not None and sum(n for _, n in e.sparse) < e.size,
            link_group=b"",
        )
    # A group is named by its first member in path order, not in stream order: a flattened
    # image gives a hard link after its target even when the link's path sorts first.
    groups: dict[bytes, list[bytes]] = {first: [first] for first in linked}
    for path, rec in out.items():
        if rec.link_group in groups and path != rec.link_group:
            groups[rec.link_group].append(path)
    for members in groups.values():
        name = min(members, key=path_key)
        for path in members:
            out[path] = Record(**{**out[path].__dict__, "link_group": name})
    return out


def _show(field: str, value: object) -> str:
    if field == "mode":
        return f"{value:04o}"
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if field == "xattrs":
        return "{" + ", ".join(f"{k}" for k, _ in value) + "}"  # type: ignore[attr-defined]
    return str(value)


def compare(a: dict[bytes, Record], b: dict[bytes, Record]) -> list[str]:
    lines = []
    for path in sorted(set(a) | set(b), key=path_key):
        name = "/" + path.decode(errors="replace") if path != b"." else "/"
        if path == b"." and (path not in a or path not in b):
            # Layers need not carry the root directory (BuildKit's and Docker's never do): a
            # tree without one says nothing about it, so there is nothing to compare.
            continue
        if path not in b:
            lines.append(f"- {name}  (only in the first)")
            continue
        if path not in a:
            lines.append(f"+ {name}  (only in the second)")
            continue
        ra, rb = a[path], b[path]
        if ra == rb:
            continue
        for field in FIELDS:
            va, vb = getattr(ra, field), getattr(rb, field)
            if va != vb:
                if field == "xattrs":
                    da, db = dict(va), dict(vb)
                    changed = sorted(k for k in set(da) | set(db) if da.get(k) != db.get(k))
                    lines.append(f"M {name}  xattrs differ: {', '.join(changed)}")
                else:
                    lines.append(f"M {name}  {field}: {_show(field, va)} -> {_show(field, vb)}")
    return lines
