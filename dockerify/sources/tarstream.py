"""Entries from a tar stream (rootfs tarballs, OCI layers), read forward-only and checked for
hostile names: absolute paths, `..`, links that leave the archive, writes through symlinks."""

from __future__ import annotations

import base64
import binascii
import logging
import urllib.parse
from collections.abc import Iterator
from typing import BinaryIO

from dockerify.entry import ChunkReader, Entry, FileType
from dockerify.errors import CorruptInput
from dockerify.sources import posixacl
from dockerify.sources.tarheader import Member, TarReader

log = logging.getLogger("dockerify")

_TYPES = {
    b"0": FileType.REG,
    b"\x00": FileType.REG,
    b"7": FileType.REG,  # contiguous file: a regular file everywhere but on Masscomp
    b"S": FileType.REG,  # old GNU sparse
    b"1": FileType.HARDLINK,
    b"2": FileType.SYMLINK,
    b"3": FileType.CHAR,
    b"4": FileType.BLOCK,
    b"5": FileType.DIR,
    b"D": FileType.DIR,  # GNU dumpdir: a directory whose content lists its entries
    b"6": FileType.FIFO,
}

#: PAX records that say something a layer cannot hold: dropped with one warning per kind.
_LOST = {
    "SCHILY.fflags": "file flags (chflags/chattr, SCHILY.fflags)",
    "LIBARCHIVE.creationtime": "creation times (LIBARCHIVE.creationtime)",
    "SCHILY.acl.ace": "NFSv4 ACLs (SCHILY.acl.ace)",
}


def show(name: bytes) -> str:
    return repr(name.decode("utf-8", "backslashreplace"))


def normalize(name: bytes, where: str, what: str = "member") -> bytes:
    """A member name as a clean relative path; the archive root is b'.'."""
    if name.startswith(b"/"):
        raise CorruptInput(
            f"{where}: {what} {show(name)} has an absolute name", hint="rootfs tarballs hold relative names"
        )
    parts = [p for p in name.split(b"/") if p not in (b"", b".")]
    if b".." in parts:
        raise CorruptInput(f"{where}: {what} {show(name)} climbs out of the archive with '..'")
    return b"/".join(parts) or b"."


class _Notes:
    """Warnings gathered over one archive, one line per kind at the end."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.kinds: dict[str, list[bytes]] = {}

    def add(self, kind: str, name: bytes) -> None:
        self.kinds.setdefault(kind, []).append(name)

    def report(self) -> None:
        for kind, names in self.kinds.items():
            more = f" and {len(names) - 1} more" if len(names) > 1 else ""
            log.warning("warning: %s: %s: %s%s", self.where, kind, show(names[0]), more)


def _xattrs(member: Member, reader: TarReader, notes: _Notes) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for key, value in member.pax.items():
        if key.startswith("SCHILY.xattr."):
            out[key[len("SCHILY.xattr.") :]] = value
        elif key.startswith("LIBARCHIVE.xattr."):
            # libarchive: the name is URL-encoded, the value base64 (padding optional).
            name = urllib.parse.unquote_to_bytes(key[len("LIBARCHIVE.xattr.") :])
            try:
                out[name.decode("utf-8", "surrogateescape")] = base64.b64decode(
                    value + b"=" * (-len(value) % 4), validate=True
                )
            except binascii.Error:
                raise reader.error(member.offset, f"PAX record {key} is not base64", member.name) from None
        elif key in _LOST:
            notes.add(_LOST[key] + " not kept", member.name)
    return out


def _apply_acls(member: Member, is_dir: bool, mode: int, xattrs: dict[str, bytes], notes: _Notes) -> int:
    """Set the xattrs and mode the kernel would after GNU tar --acls set these ACLs."""
    for key, xattr in (
        ("SCHILY.acl.access", posixacl.ACCESS_XATTR),
        ("SCHILY.acl.default", posixacl.DEFAULT_XATTR),
    ):
        text = member.pax.get(key)
        if text is None:
            continue
        xattrs.pop(xattr, None)
        if not text.strip():
            continue
        try:
            entries = posixacl.parse(text.decode("utf-8", "surrogateescape"))
        except posixacl.AclError as e:
            notes.add(f"ACLs that cannot be set, left out ({e})", member.name)
            continue
        if xattr == posixacl.ACCESS_XATTR:
            mode = posixacl.apply_to_mode(entries, mode)
            if posixacl.minimal(entries):
                continue  # the mode says it all: the kernel keeps no xattr
        elif not is_dir:
            continue  # only directories have default ACLs
        xattrs[xattr] = posixacl.to_xattr(entries)
    return mode


def tar_entries(fileobj: BinaryIO, where: str, *, check_links: bool = True) -> Iterator[Entry]:
    """Entries of an uncompressed tar stream. `check_links=False` for OCI layers, where a hard
    link may name a file of a lower layer."""
    files: set[bytes] = set()
    symlinks: set[bytes] = set()
    reader = TarReader(fileobj, where)
    notes = _Notes(where)
    for member in reader:
        ftype = _TYPES.get(member.typeflag)
        if member.typeflag == b"V":
            notes.add("volume header skipped", member.name)
            continue
        if member.typeflag == b"M":
            raise reader.error(
                member.offset,
                "continues a file from another volume (multi-volume archives are not read)",
                member.name,
            )
        if ftype is None:
            # GNU tar extracts members of unknown type as regular files, with a warning.
            notes.add(
                f"unknown file type {member.typeflag.decode('latin-1')!r}, read as a regular file",
                member.name,
            )
            ftype = FileType.REG
        if ftype is FileType.REG and member.name.endswith(b"/") and member.typeflag in (b"0", b"\x00", b"7"):
            ftype = FileType.DIR  # old archives mark directories by the slash alone, and GNU tar agrees
        path = normalize(member.name, where)
        _check_parents(path, symlinks, where)
        linkname = member.linkname
        if ftype is FileType.HARDLINK:
            linkname = normalize(linkname, where, f"hard link {show(path)} -> target")
            if check_links and linkname not in files:
                raise CorruptInput(
                    f"{where}: member {show(path)} is a hard link to {show(member.linkname)}, "
                    "which is not a file earlier in the archive"
                )
        xattrs = _xattrs(member, reader, notes)
        mode = member.mode
        if ftype not in (FileType.SYMLINK, FileType.HARDLINK):  # GNU tar sets no ACL on either
            mode = _apply_acls(member, ftype is FileType.DIR, mode, xattrs, notes)
        is_reg = ftype is FileType.REG
        entry = Entry(
            path=path,
            type=ftype,
            mode=mode,
            uid=member.uid,
            gid=member.gid,
            mtime=member.mtime,
            mtime_nsec=member.mtime_nsec,
            size=member.size if is_reg else 0,
            linkname=linkname if ftype in (FileType.SYMLINK, FileType.HARDLINK) else b"",
            devmajor=member.devmajor,
            devminor=member.devminor,
            xattrs=xattrs,
            sparse=member.sparse if is_reg else None,
        )
        if is_reg:
            entry.reader = _reader(reader, member)
            files.add(path)
        elif ftype is FileType.SYMLINK:
            symlinks.add(path)
        else:
            symlinks.discard(path)
        yield entry
    notes.report()
    if reader.lone_zero_block is not None:
        log.warning(
            "warning: %s: a lone zero block at byte %d ends the archive; what follows is not read (as in GNU tar)",
            where,
            reader.lone_zero_block,
        )


def _reader(reader: TarReader, member: Member) -> ChunkReader:
    def read() -> Iterator[tuple[int, bytes]]:
        return reader.content(member)

    return read


def _check_parents(path: bytes, symlinks: set[bytes], where: str) -> None:
    if not symlinks or path == b".":
        return
    parts = path.split(b"/")
    for i in range(1, len(parts)):
        parent = b"/".join(parts[:i])
        if parent in symlinks:
            raise CorruptInput(
                f"{where}: member {show(path)} is written through the symlink {show(parent)}",
                hint="a tarball that does this could write outside the tree when unpacked",
            )
