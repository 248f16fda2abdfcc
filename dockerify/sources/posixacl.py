"""POSIX ACL text (the form GNU tar, bsdtar and star store in `SCHILY.acl.access` and
`SCHILY.acl.default`) turned into the `system.posix_acl_*` xattr values the kernel keeps, and the
mode bits the kernel derives from an access ACL.

The xattr format is the kernel's posix_acl_xattr (version 2): a little-endian u32 version, then
(u16 tag, u16 permissions, u32 id) entries ordered by tag and id, as libacl's acl_set_file orders
them. Named users and groups are resolved the way GNU tar resolves them when extracting: a
numeric qualifier (or star's and libarchive's trailing numeric id) is used as is, a name goes
through this machine's user database.
"""

from __future__ import annotations

import enum
import grp
import pwd
import struct
from dataclasses import dataclass

ACCESS_XATTR = "system.posix_acl_access"
DEFAULT_XATTR = "system.posix_acl_default"

VERSION = 2
UNDEFINED_ID = 0xFFFFFFFF


class Tag(enum.IntEnum):
    USER_OBJ = 0x01
    USER = 0x02
    GROUP_OBJ = 0x04
    GROUP = 0x08
    MASK = 0x10
    OTHER = 0x20


_TAGS = {
    "user": (Tag.USER_OBJ, Tag.USER),
    "u": (Tag.USER_OBJ, Tag.USER),
    "group": (Tag.GROUP_OBJ, Tag.GROUP),
    "g": (Tag.GROUP_OBJ, Tag.GROUP),
    "mask": (Tag.MASK, None),
    "m": (Tag.MASK, None),
    "other": (Tag.OTHER, None),
    "o": (Tag.OTHER, None),
}


class AclError(ValueError):
    """The text is not an ACL the kernel would accept (the message says why)."""


@dataclass(frozen=True, order=True)
class AclEntry:
    tag: Tag
    id: int
    perm: int  # r=4, w=2, x=1


def _perm(text: str) -> int:
    perm = 0
    for ch in text:
        bit = {"r": 4, "w": 2, "x": 1, "-": 0}.get(ch)
        if bit is None:
            raise AclError(f"bad permissions {text!r}")
        perm |= bit
    return perm


def _resolve(qualifier: str, extra: str | None, is_user: bool) -> int:
    for candidate in (extra, qualifier):
        if candidate is not None and candidate.isdigit():
            return int(candidate)
    try:
        return pwd.getpwnam(qualifier).pw_uid if is_user else grp.getgrnam(qualifier).gr_gid
    except KeyError:
        raise AclError(f"unknown {'user' if is_user else 'group'} {qualifier!r}") from None


def parse(text: str) -> list[AclEntry]:
    """ACL entries from `tag:qualifier:perms[:id]` items separated by commas or newlines."""
    entries = []
    for item in text.replace("\n", ",").split(","):
        item = item.split("#", 1)[0].strip()  # getfacl-style comments ("#effective:r--")
        if not item:
            continue
        parts = item.split(":")
        if len(parts) not in (3, 4) or parts[0] not in _TAGS:
            raise AclError(f"bad entry {item!r}")
        obj_tag, named_tag = _TAGS[parts[0]]
        qualifier, perm = parts[1], _perm(parts[2])
        extra = parts[3] if len(parts) == 4 else None
        if not qualifier:
            entries.append(AclEntry(obj_tag, UNDEFINED_ID, perm))
        elif named_tag is None:
            raise AclError(f"{parts[0]} entries take no qualifier: {item!r}")
        else:
            entries.append(AclEntry(named_tag, _resolve(qualifier, extra, named_tag is Tag.USER), perm))
    _validate(entries)
    return sorted(entries)


def _validate(entries: list[AclEntry]) -> None:
    """The rules of the kernel's posix_acl_valid."""
    seen: set[tuple[Tag, int]] = set()
    for e in entries:
        if (e.tag, e.id) in seen:
            raise AclError(f"duplicate entry for {e.tag.name.lower()} {e.id if e.id != UNDEFINED_ID else ''}")
        seen.add((e.tag, e.id))
    tags = {e.tag for e in entries}
    for needed in (Tag.USER_OBJ, Tag.GROUP_OBJ, Tag.OTHER):
        if needed not in tags:
            raise AclError(f"no {needed.name.lower()} entry")
    if tags & {Tag.USER, Tag.GROUP} and Tag.MASK not in tags:
        raise AclError("named entries without a mask entry")


def minimal(entries: list[AclEntry]) -> bool:
    """True when the ACL says no more than the mode bits (the kernel then stores no xattr)."""
    return {e.tag for e in entries} <= {Tag.USER_OBJ, Tag.GROUP_OBJ, Tag.OTHER}


def to_xattr(entries: list[AclEntry]) -> bytes:
    return struct.pack("<I", VERSION) + b"".join(struct.pack("<HHI", e.tag, e.perm, e.id) for e in entries)


def apply_to_mode(entries: list[AclEntry], mode: int) -> int:
    """The mode after setting an access ACL: owner and other from their entries, group from the
    mask when there is one (else from the owning group), as posix_acl_equiv_mode/update_mode do."""
    by_tag = {e.tag: e.perm for e in entries if e.tag in (Tag.USER_OBJ, Tag.GROUP_OBJ, Tag.MASK, Tag.OTHER)}
    group = by_tag.get(Tag.MASK, by_tag[Tag.GROUP_OBJ])
    return (mode & ~0o777) | by_tag[Tag.USER_OBJ] << 6 | group << 3 | by_tag[Tag.OTHER]
