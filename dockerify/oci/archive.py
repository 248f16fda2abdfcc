"""oci-archive and docker-archive: tarballs of a layout, and `docker save`'s format."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from dockerify.errors import CorruptInput, NotFound
from dockerify.limits import DEFAULT_MAX_SIZE
from dockerify.oci.image import index_json
from dockerify.oci.layout import Layout
from dockerify.oci.model import OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST, Descriptor
from dockerify.oci.select import Image
from dockerify.platform import Platform
from dockerify.sources.compression import open_stream, sniff

_CHUNK = 1 << 20


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uid, info.gid = size, 0, 0o644, 0, 0
    return info


def _file_blocks(info: tarfile.TarInfo, f: BinaryIO) -> Iterator[bytes]:
    yield info.tobuf(tarfile.PAX_FORMAT)
    left = info.size
    while left:
        data = f.read(min(_CHUNK, left))
        if not data:
            raise CorruptInput(f"{info.name}: file shrank while archiving")
        yield data
        left -= len(data)
    yield bytes(-info.size % 512)


def _bytes_blocks(name: str, data: bytes) -> Iterator[bytes]:
    info = _tarinfo(name, len(data))
    yield info.tobuf(tarfile.PAX_FORMAT)
    yield data
    yield bytes(-len(data) % 512)


def oci_archive_stream(layout: Layout) -> Iterator[bytes]:
    """A reproducible tar of a whole layout: sorted names, zero mtimes, numeric owners."""
    root = layout.root
    names = ["oci-layout", "index.json"] + sorted(
        "blobs/sha256/" + p.name for p in layout.blobs.root.iterdir() if not p.name.startswith(".")
    )
    for name in names:
        with open(root / name, "rb") as f:
            yield from _file_blocks(_tarinfo(name, os.fstat(f.fileno()).st_size), f)
    yield bytes(1024)


def docker_archive_stream(images: list[tuple[Image, list[str]]]) -> Iterator[bytes]:
    """`docker save` format: manifest.json naming config and layer files (blobs stay compressed;
    `docker load` detects the compression itself)."""
    manifest = []
    seen: set[str] = set()
    for image, tags in images:
        cfg = image.config_descriptor
        entry = {"Config": f"blobs/sha256/{cfg.hex}", "RepoTags": tags, "Layers": []}
        for d in [cfg, *image.layers]:
            if d.digest in seen:
                continue
            seen.add(d.digest)
            with image.layout.blobs.open(d.digest) as f:
                yield from _file_blocks(_tarinfo(f"blobs/sha256/{d.hex}", d.size), f)
        entry["Layers"] = [f"blobs/sha256/{d.hex}" for d in image.layers]
        manifest.append(entry)
    yield from _bytes_blocks("manifest.json", json.dumps(manifest).encode())
    yield bytes(1024)


def write_stream(
    blocks: Iterator[bytes], path: Path, progress: Callable[[int], object] | None = None
) -> None:
    """Write to a temporary name beside `path` and rename at the end: no partial output."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            for block in blocks:
                f.write(block)
                if progress:
                    progress(len(block))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def is_compressed(archive: str) -> bool:
    with open(archive, "rb") as f:
        return sniff(f) != "none"


def safe_extract(archive: str, dest: Path, max_size: int = DEFAULT_MAX_SIZE) -> None:
    """Extract regular files and directories only, refusing names that leave `dest`. A compressed
    archive is read through the bounded decompressor: past `max_size` bytes it is refused."""
    try:
        with contextlib.ExitStack() as stack:
            if is_compressed(archive):
                stream = stack.enter_context(open_stream(archive, max_size))
                tar = stack.enter_context(tarfile.open(fileobj=stream, mode="r|"))
            else:
                tar = stack.enter_context(tarfile.open(archive, "r:"))
            for member in tar:
                name = PurePosixPath(member.name)
                if name.is_absolute() or ".." in name.parts:
                    raise CorruptInput(f"{archive}: member {member.name!r} points outside the archive")
                target = dest.joinpath(*[p for p in name.parts if p != "."])
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                elif member.isfile():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    src = tar.extractfile(member)
                    assert src is not None
                    with open(target, "wb") as out:
                        while data := src.read(_CHUNK):
                            out.write(data)
                elif member.issym() or member.islnk():
                    raise CorruptInput(
                        f"{archive}: member {member.name!r} is a link; image archives hold only files"
                    )
    except tarfile.TarError as e:
        raise CorruptInput(f"{archive}: not a readable tar archive: {e}") from None
    except FileNotFoundError:
        raise NotFound(f"{archive}: no such file") from None


def docker_archive_to_layout(root: Path, where: str) -> tuple[Layout, Descriptor]:
    """Turn an extracted `docker save` archive into an OCI layout in place; return its root."""
    if (
        (root / "index.json").exists()
        and (root / "oci-layout").exists()
        and not (root / "manifest.json").exists()
    ):
        layout = Layout.open(root)
        return layout, layout.resolve(None)
    try:
        entries = json.loads((root / "manifest.json").read_bytes())
    except (OSError, ValueError):
        raise CorruptInput(f"{where}: not a docker-archive (no readable manifest.json)") from None
    layout = Layout.create(root)
    descs = []
    for entry in entries:
        config_data = (root / entry["Config"]).read_bytes()
        cfg = Descriptor(OCI_CONFIG, layout.blobs.put(config_data), len(config_data))
        config = json.loads(config_data)
        layers = []
        for name in entry["Layers"]:
            layers.append(_import_layer(layout, root / name))
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": cfg.to_json(),
            "layers": [d.to_json() for d in layers],
        }
        descs.append(layout.put_json(manifest, OCI_MANIFEST, Platform.from_oci(config)))
    if len(descs) == 1:
        return layout, descs[0]
    return layout, layout.put_json(index_json(descs), OCI_INDEX)


def _import_layer(layout: Layout, path: Path) -> Descriptor:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        head = f.read(4)
        f.seek(0)
        while data := f.read(_CHUNK):
            h.update(data)
        size = f.tell()
    digest = "sha256:" + h.hexdigest()
    target = layout.blobs.path(digest)
    if not target.exists():
        os.link(path, target)
    suffix = "+gzip" if head[:2] == b"\x1f\x8b" else "+zstd" if head == b"\x28\xb5\x2f\xfd" else ""
    return Descriptor(OCI_LAYER + suffix, digest, size)
