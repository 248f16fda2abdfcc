"""One interface for every place an image lives, and the stores that need nothing but files:
an OCI layout, an oci-archive and a docker-archive. The Docker daemon (dockerify/stores.py)
and registries (dockerify/registry/store.py) implement the same interface outside oci/;
dockerify/stores.py maps a transport prefix to its store.

A store is opened for one reference (its tag is the default of `resolve` and `write_tag`) and
used as a context manager: stores that write a file or load into a daemon do so on a clean exit
only, so a failed copy leaves nothing behind."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Protocol

from dockerify.errors import CorruptInput, DockerifyError, NotFound
from dockerify.oci.archive import (
    docker_archive_stream,
    docker_archive_to_layout,
    oci_archive_stream,
    safe_extract,
    write_stream,
)
from dockerify.oci.blobcheck import METADATA_LIMIT, BlobCheck, check_size, copy_checked, read_checked
from dockerify.oci.blobs import check_digest
from dockerify.oci.layout import Layout
from dockerify.oci.model import REF_NAME, Descriptor
from dockerify.oci.select import Image, images


class ImageStore(Protocol):
    """Where images live. Manifest documents and blobs are addressed by descriptor; every read
    checks size and digest."""

    where: str
    #: True when the store holds one image manifest per name (docker-archive, docker-daemon):
    #: copies into it choose one platform.
    single_image: bool
    #: True when the store keeps the manifests it is given byte for byte (not the daemon).
    keeps_manifests: bool

    def resolve(self, tag: str | None = None) -> Descriptor:
        """The root (index or manifest) a tag names; None means the store's own reference."""
        ...

    def tags(self) -> list[str]: ...

    def read_manifest(self, desc: Descriptor) -> tuple[bytes, str]:
        """A manifest document's exact bytes and the media type the store gives it ("" if none)."""
        ...

    def read_blob(self, desc: Descriptor) -> bytes:
        """A small blob (a config) in memory."""
        ...

    def has_blob(self, desc: Descriptor) -> bool: ...

    def fetch_blob(
        self, desc: Descriptor, dest: Path, progress: Callable[[int], object] | None = None
    ) -> None:
        """A blob into the file `dest` (created or replaced); `progress` is told every byte."""
        ...

    def blob_path(self, desc: Descriptor) -> Path | None:
        """A file already holding the blob, to read in place (None: fetch it with fetch_blob)."""
        ...

    def mount_blob(self, desc: Descriptor, repositories: Sequence[str]) -> bool:
        """Link a blob one of `repositories` of the same store holds, no bytes moved; True when
        done. Only registries can."""
        ...

    def write_blob(
        self,
        desc: Descriptor,
        src: Path,
        progress: Callable[[int], object] | None = None,
        take: bool = False,
    ) -> bool:
        """The file `src`, which holds exactly the blob `desc` names; True when bytes moved (False:
        the store had it). `progress` is told every byte of the blob, as it goes or at the end.
        With `take`, `src` is a temporary file the store may move into place."""
        ...

    def write_manifest(self, desc: Descriptor, data: bytes) -> None:
        """A manifest document by digest (untagged)."""
        ...

    def write_tag(self, desc: Descriptor, tag: str | None = None, data: bytes | None = None) -> None:
        """Point a tag (None: the store's own reference) at a manifest document: one already
        written, or `data`, written here (a registry puts it under the tag in one request)."""
        ...

    def __enter__(self) -> ImageStore: ...

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None: ...


def _move(src: Path, target: Path) -> bool:
    """A temporary file renamed into place (no second write); False across filesystems."""
    try:
        os.replace(src, target)
    except OSError:
        return False
    return True


class LayoutStore:
    """An OCI image layout directory (oci:DIR[:TAG]), created on the first write."""

    single_image = False
    keeps_manifests = True

    def __init__(self, root: str | Path, tag: str | None = None, where: str | None = None) -> None:
        self.root = Path(root)
        self.tag = tag
        self.where = where or f"oci:{root}"
        self._layout: Layout | None = None
        self._staging: Path | None = None
        self._lock = threading.RLock()

    @classmethod
    def of(cls, layout: Layout, where: str | None = None) -> LayoutStore:
        """The store of a layout already open (read as it is, written in place)."""
        store = cls(layout.root, None, where)
        store._layout = layout
        return store

    @property
    def layout(self) -> Layout:
        if self._layout is None:
            if not self.root.exists():
                raise NotFound(f"{self.where}: no such directory")
            self._layout = Layout.open(self.root)
        return self._layout

    def _writable(self) -> Layout:
        # copy() writes blobs from several threads; the layout is made once.
        with self._lock:
            return self._open_for_write()

    def _open_for_write(self) -> Layout:
        if self._layout is None:
            if self.root.exists() and (self.root / "index.json").exists():
                self._layout = Layout.open(self.root)
                return self._layout
            if self.root.exists() and any(self.root.iterdir()):
                raise DockerifyError(
                    f"{self.where}: the directory exists and is not an OCI layout",
                    hint="name a new or empty directory",
                )
            parent = self.root.resolve().parent
            if not parent.is_dir():
                raise DockerifyError(f"{self.where}: directory {parent} does not exist")
            # A new layout is written beside its name and renamed on a clean exit: a failed copy
            # leaves nothing behind.
            self._staging = Path(tempfile.mkdtemp(prefix=f".{self.root.name}.tmp-", dir=parent))
            self._layout = Layout.create(self._staging)
        return self._layout

    def resolve(self, tag: str | None = None) -> Descriptor:
        tag = tag if tag is not None else self.tag
        if tag is None:
            # Signature tags are not images (cosign's sha256-<hex>.sig next to the image).
            return self.layout.resolve(None)
        return self.layout.resolve(tag)

    def tags(self) -> list[str]:
        return [t for d in self.layout.manifests() if (t := d.annotations.get(REF_NAME, ""))]

    def read_manifest(self, desc: Descriptor) -> tuple[bytes, str]:
        data, _ = self.layout.read_json_raw(desc)
        return data, ""

    def _check(self, desc: Descriptor, limit: int | None = None) -> BlobCheck:
        return BlobCheck(f"{self.where}: blob {desc.digest}", desc.digest, desc.size, limit=limit)

    def read_blob(self, desc: Descriptor) -> bytes:
        check = self._check(desc, METADATA_LIMIT)
        with self.layout.blobs.open(desc.digest) as f:
            return read_checked(f.read, check)

    def has_blob(self, desc: Descriptor) -> bool:
        check_digest(desc.digest, self.where)
        root = self._layout.root if self._layout is not None else self.root
        return (root / "blobs" / "sha256" / desc.hex).is_file()

    def fetch_blob(
        self, desc: Descriptor, dest: Path, progress: Callable[[int], object] | None = None
    ) -> None:
        check = self._check(desc)
        with open(self._blob_file(desc), "rb") as src, open(dest, "wb") as dst:
            copy_checked(src.read, dst.write, check, progress)

    def blob_path(self, desc: Descriptor) -> Path | None:
        return self._blob_file(desc)

    def _blob_file(self, desc: Descriptor) -> Path:
        """The blob's file, its size checked (its digest is checked where it is read whole)."""
        path = self.layout.blobs.path(desc.digest)
        if not path.is_file():
            raise NotFound(f"{self.where}: blob {desc.digest} is missing from the layout")
        check_size(f"{self.where}: blob {desc.digest}", path.stat().st_size, desc.size)
        return path

    def mount_blob(self, desc: Descriptor, repositories: Sequence[str]) -> bool:
        return False

    def write_blob(
        self,
        desc: Descriptor,
        src: Path,
        progress: Callable[[int], object] | None = None,
        take: bool = False,
    ) -> bool:
        layout = self._writable()
        target = layout.blobs.path(desc.digest)
        sent = not target.exists()
        if sent and not (take and _move(src, target)):
            tmp = layout.blobs.root / f".tmp-{desc.hex}-{os.getpid()}"
            shutil.copyfile(src, tmp)
            os.replace(tmp, target)
        if progress is not None:
            progress(desc.size)
        return sent

    def write_manifest(self, desc: Descriptor, data: bytes) -> None:
        if self._writable().blobs.put(data) != desc.digest:
            raise CorruptInput(f"{self.where}: manifest {desc.digest} does not match its bytes")

    def write_tag(self, desc: Descriptor, tag: str | None = None, data: bytes | None = None) -> None:
        if data is not None:
            self.write_manifest(desc, data)
        self._writable().tag(desc, tag or self.tag or "latest")

    def __enter__(self) -> LayoutStore:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        staging, self._staging = self._staging, None
        if staging is None:
            return
        if kind is not None:
            shutil.rmtree(staging, ignore_errors=True)
            return
        if self.root.exists():
            self.root.rmdir()  # empty, checked when the staging began
        staging.rename(self.root)
        self._layout = Layout.open(self.root)


class StagedStore(LayoutStore):
    """A store whose content sits in a temporary layout while open: archives, the daemon.
    `_load` fills it for reading; `_commit` turns a written layout into the real output."""

    def __init__(self, where: str, tag: str | None) -> None:
        self._tmp = Path(tempfile.mkdtemp(prefix="dockerify-store-"))
        super().__init__(self._tmp / "layout", tag, where)
        self._root: Descriptor | None = None
        self._written: list[tuple[Descriptor, str]] = []

    def _load(self, root: Path) -> tuple[Layout, Descriptor | None]:
        raise NotImplementedError

    def _commit(self, layout: Layout) -> None:
        raise NotImplementedError

    @property
    def layout(self) -> Layout:
        with self._lock:  # copy() asks from several threads; the archive is extracted once
            if self._layout is None:
                self.root.mkdir()
                self._layout, self._root = self._load(self.root)
            return self._layout

    def _open_for_write(self) -> Layout:
        if self._layout is None:
            self._layout = Layout.create(self.root)
        return self._layout

    def resolve(self, tag: str | None = None) -> Descriptor:
        self.layout  # noqa: B018 -- loads the archive or the daemon's image
        if self._root is not None:  # a docker-archive's one image, rebuilt as an OCI manifest
            return self._root
        return super().resolve(tag)

    def write_tag(self, desc: Descriptor, tag: str | None = None, data: bytes | None = None) -> None:
        if data is not None:
            self.write_manifest(desc, data)
        self._written.append((desc, tag or self.tag or "latest"))
        self._writable().tag(desc, tag or self.tag or "latest")

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if kind is None and self._written and self._layout is not None:
                self._commit(self._layout)
        finally:
            shutil.rmtree(self._tmp, ignore_errors=True)


def single_image(layout: Layout, root: Descriptor, where: str) -> Image:
    found = images(layout, root)
    if len(found) != 1:
        raise DockerifyError(
            f"{where}: a Docker image holds one platform, but this image has {len(found)}",
            hint="choose one platform, or copy all of them to oci:DIR or oci-archive:FILE",
        )
    return found[0]


class OciArchiveStore(StagedStore):
    """A tar of an OCI layout (oci-archive:FILE[:TAG]); written reproducibly on a clean exit."""

    def __init__(self, path: str, tag: str | None = None) -> None:
        self.path = Path(path)
        super().__init__(f"oci-archive:{path}" + (f":{tag}" if tag else ""), tag)

    def _load(self, root: Path) -> tuple[Layout, Descriptor | None]:
        if not self.path.is_file():
            raise NotFound(f"{self.where}: no such file")
        safe_extract(str(self.path), root)
        return Layout.open(root), None

    def has_blob(self, desc: Descriptor) -> bool:
        if self._layout is None and self.path.is_file():
            self.layout  # noqa: B018 -- an existing archive's blobs count
        return super().has_blob(desc)

    def _open_for_write(self) -> Layout:
        if self._layout is None and self.path.is_file():
            self.layout  # noqa: B018 -- adding to an existing archive keeps what it holds
        if not self.path.resolve().parent.is_dir():
            raise DockerifyError(f"{self.where}: directory {self.path.resolve().parent} does not exist")
        return super()._open_for_write()

    def _commit(self, layout: Layout) -> None:
        write_stream(oci_archive_stream(layout), self.path)


class DockerArchiveStore(StagedStore):
    """`docker save`'s format (docker-archive:FILE): one image manifest per name; read as an OCI
    layout whose manifests are rebuilt from manifest.json (configs and layers kept as they are)."""

    single_image = True
    keeps_manifests = False

    def __init__(self, path: str, name: str | None = None) -> None:
        self.path = Path(path)
        super().__init__(f"docker-archive:{path}", name)

    def _load(self, root: Path) -> tuple[Layout, Descriptor | None]:
        if not self.path.is_file():
            raise NotFound(f"{self.where}: no such file")
        safe_extract(str(self.path), root)
        return docker_archive_to_layout(root, self.where)

    def tags(self) -> list[str]:
        self.layout  # noqa: B018 -- extracts the archive
        try:
            entries = json.loads((self.root / "manifest.json").read_bytes())
            return [str(t) for e in entries for t in e.get("RepoTags") or []]
        except (OSError, ValueError, AttributeError, TypeError):
            raise CorruptInput(f"{self.where}: not a docker-archive (no readable manifest.json)") from None

    def _open_for_write(self) -> Layout:
        if not self.path.resolve().parent.is_dir():
            raise DockerifyError(f"{self.where}: directory {self.path.resolve().parent} does not exist")
        return super()._open_for_write()

    def _commit(self, layout: Layout) -> None:
        entries = [
            (single_image(layout, desc, self.where), [tag] if ":" in tag else [])
            for desc, tag in self._written
        ]
        write_stream(docker_archive_stream(entries), self.path)
