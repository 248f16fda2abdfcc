"""Entries from a tar stream (rootfs tarballs, OCI layers), read forward-only and checked for
hostile names: absolute paths, `..`, links that leave the archive, writes through symlinks."""

from __future__ import annotations

import base64
import tarfile
from collections.abc import Iterator
from typing import BinaryIO

from dockerify.entry import CHUNK, Entry, FileType
from dockerify.errors import CorruptInput

_TYPES = {
    tarfile.REGTYPE: FileType.REG,
    tarfile.AREGTYPE: FileType.REG,
    tarfile.CONTTYPE: FileType.REG,
    tarfile.GNUTYPE_SPARSE: FileType.REG,
    tarfile.DIRTYPE: FileType.DIR,
    tarfile.SYMTYPE: FileType.SYMLINK,
    tarfile.LNKTYPE: FileType.HARDLINK,
    tarfile.CHRTYPE: FileType.CHAR,
    tarfile.BLKTYPE: FileType.BLOCK,
    tarfile.FIFOTYPE: FileType.FIFO,
}


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


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


def _xattrs(member: tarfile.TarInfo) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for key, value in member.pax_headers.items():
        if key.startswith("SCHILY.xattr."):
            out[key[len("SCHILY.xattr.") :]] = _raw(value)
        elif key.startswith("LIBARCHIVE.xattr."):
            name = base64.urlsafe_b64decode(key[len("LIBARCHIVE.xattr.") :] + "==").decode(
                "utf-8", "surrogateescape"
            )
            out[name] = base64.b64decode(value)
    return out


def _reader(tar: tarfile.TarFile, member: tarfile.TarInfo, regions: tuple[tuple[int, int], ...] | None):
    def read() -> Iterator[tuple[int, bytes]]:
        f = tar.extractfile(member)
        assert f is not None
        # In stream mode the buffered wrapper cannot seek, but the raw member view can skip
        # holes by position (the underlying stream only ever moves forward).
        f = getattr(f, "raw", f)
        spans = regions if regions is not None else ((0, member.size),)
        for offset, length in spans:
            f.seek(offset)
            done = 0
            while done < length:
                data = f.read(min(CHUNK, length - done))
                if not data:
                    raise CorruptInput(f"{member.name}: content ends early")
                yield offset + done, data
                done += len(data)

    return read


def tar_entries(fileobj: BinaryIO, where: str, *, check_links: bool = True) -> Iterator[Entry]:
    """Entries of an uncompressed tar stream. `check_links=False` for OCI layers, where a hard
    link may name a file of a lower layer."""
    files: set[bytes] = set()
    symlinks: set[bytes] = set()
    try:
        tar = tarfile.open(fileobj=fileobj, mode="r|", encoding="utf-8", errors="surrogateescape")
        for member in tar:
            ftype = _TYPES.get(member.type)
            path = normalize(_raw(member.name), where)
            if ftype is None:
                raise CorruptInput(f"{where}: member {member.name!r} has unsupported type {member.type!r}")
            _check_parents(path, symlinks, where)
            linkname = _raw(member.linkname)
            if ftype is FileType.HARDLINK:
                linkname = normalize(linkname, where, f"hard link {show(path)} -> target")
                if check_links and linkname not in files:
                    raise CorruptInput(
                        f"{where}: member {show(path)} is a hard link to {member.linkname!r}, "
                        "which is not a file earlier in the archive"
                    )
            regions = None
            sparse_map: list[tuple[int, int]] | None = getattr(member, "sparse", None)
            if sparse_map is not None:
                regions = tuple((o, n) for o, n in sparse_map if n > 0)
            entry = Entry(
                path=path,
                type=ftype,
                mode=member.mode & 0o7777,
                uid=member.uid,
                gid=member.gid,
                mtime=int(member.mtime),
                size=member.size if ftype is FileType.REG else 0,
                linkname=linkname if ftype in (FileType.SYMLINK, FileType.HARDLINK) else b"",
                devmajor=member.devmajor if ftype in (FileType.CHAR, FileType.BLOCK) else 0,
                devminor=member.devminor if ftype in (FileType.CHAR, FileType.BLOCK) else 0,
                xattrs=_xattrs(member),
                sparse=regions,
            )
            if ftype is FileType.REG:
                entry.reader = _reader(tar, member, regions)
                files.add(path)
            elif ftype is FileType.SYMLINK:
                symlinks.add(path)
            else:
                symlinks.discard(path)
            yield entry
    except tarfile.TarError as e:
        raise CorruptInput(f"{where}: not a valid tar stream: {e}") from None
    except EOFError:
        raise CorruptInput(f"{where}: tar stream ends early (truncated?)") from None


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
