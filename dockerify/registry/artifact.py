"""Files as OCI artifacts: an SD-card image (compressed or not) pushed as one layer of an OCI
1.1 image manifest with `artifactType`, an empty config, and annotations for its title,
platform and size; pulled back byte for byte."""

from __future__ import annotations

import bz2
import contextlib
import gzip
import hashlib
import json
import lzma
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zstandard

from dockerify import umask
from dockerify.errors import CorruptInput, DockerifyError, NotFound
from dockerify.oci.image import rfc3339
from dockerify.oci.model import OCI_MANIFEST, SDCARD_ARTIFACT_TYPE, Descriptor, canonical_json
from dockerify.paths import require_file
from dockerify.platform import Platform
from dockerify.progress import Progress
from dockerify.registry.client import Options, RegistryClient
from dockerify.registry.reference import Reference, parse_reference

SDCARD_LAYER_TYPE = "application/vnd.dockerify.sdcard.image.v1"
EMPTY_CONFIG_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_CONFIG = b"{}"
TITLE = "org.opencontainers.image.title"
CREATED = "org.opencontainers.image.created"
PLATFORM = "io.dockerify.artifact.platform"
SIZE = "io.dockerify.artifact.size"

# Leading bytes of the compressions SD-card images ship in, and the media type suffix for each.
_MAGIC = (
    (b"\xfd7zXZ\x00", "+xz"),
    (b"\x28\xb5\x2f\xfd", "+zstd"),
    (b"\x1f\x8b", "+gzip"),
    (b"BZh", "+bzip2"),
    (b"PK\x03\x04", "+zip"),
)


FILE_ARTIFACT_TYPE = "application/vnd.dockerify.file.v1"
_OPENERS: dict[str, Callable[[Path], Any]] = {
    "+xz": lzma.open,
    "+gzip": gzip.open,
    "+bzip2": bz2.open,  # binary mode is these openers' default
    "+zstd": lambda p: zstandard.ZstdDecompressor().stream_reader(open(p, "rb"), closefd=True),
}


def _compression(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(8)
    return next((suffix for magic, suffix in _MAGIC if head.startswith(magic)), "")


def _content_head(path: Path, suffix: str, size: int = 4096) -> bytes:
    """The first bytes of the file's content, decompressed; b"" where they cannot be read."""
    try:
        if suffix == "+zip":
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
                return z.open(names[0]).read(size) if names else b""
        with _OPENERS[suffix](path) if suffix else open(path, "rb") as f:
            return bytes(f.read(size))
    except (OSError, EOFError, ValueError, lzma.LZMAError, zipfile.BadZipFile, zstandard.ZstdError):
        return b""


def content_types(path: Path) -> tuple[str, str]:
    """(layer media type, artifact type) from what the file holds: a disk image (an MBR or GPT)
    is an SD card; a cpio archive, a tar or anything else is named as what it is. The layer
    type carries the compression as a suffix (+xz, +gzip, ...)."""
    suffix = _compression(path)
    head = _content_head(path, suffix)
    if head[510:512] == b"\x55\xaa" or head[512:520] == b"EFI PART":
        return SDCARD_LAYER_TYPE + suffix, SDCARD_ARTIFACT_TYPE
    if head[:6] in (b"070701", b"070702", b"070707"):
        return "application/x-cpio" + suffix, FILE_ARTIFACT_TYPE
    if head[257:262] == b"ustar":
        return "application/x-tar" + suffix, FILE_ARTIFACT_TYPE
    return "application/octet-stream" + suffix, FILE_ARTIFACT_TYPE


def layer_media_type(path: Path) -> str:
    return content_types(path)[0]


def _hash_file(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
            size += len(block)
    return "sha256:" + h.hexdigest(), size


def artifact_manifest(
    layer: Descriptor,
    artifact_type: str,
    annotations: dict[str, str],
    subject: Descriptor | None = None,
) -> bytes:
    config = Descriptor(
        EMPTY_CONFIG_TYPE, "sha256:" + hashlib.sha256(EMPTY_CONFIG).hexdigest(), len(EMPTY_CONFIG)
    )
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {**config.to_json(), "data": "e30="},
        "layers": [layer.to_json()],
    }
    if annotations:
        manifest["annotations"] = dict(annotations)
    if subject is not None:
        manifest["subject"] = Descriptor(subject.media_type, subject.digest, subject.size).to_json()
    return canonical_json(manifest)


def push_artifact(
    path: str | Path,
    reference: str | Reference,
    artifact_type: str | None = None,
    annotations: dict[str, str] | None = None,
    platform: Platform | None = None,
    media_type: str | None = None,
    title: str | None = None,
    subject: Descriptor | None = None,
    options: Options | None = None,
    progress: Progress | None = None,
) -> Descriptor:
    """Push one file as an artifact; return the manifest's descriptor (with artifactType)."""
    path = Path(path)
    ref = parse_reference(reference) if isinstance(reference, str) else reference
    require_file(path, str(path))
    detected_layer, detected_type = content_types(path)
    artifact_type = artifact_type or detected_type
    if "/" not in artifact_type:
        raise DockerifyError(
            f"--artifact-type {artifact_type!r} is not a media type", hint=f"e.g. {SDCARD_ARTIFACT_TYPE}"
        )
    digest, size = _hash_file(path)
    name = title or path.name
    layer = Descriptor(media_type or detected_layer, digest, size, annotations={TITLE: name})
    notes = {TITLE: name, SIZE: str(size)}
    if platform is not None:
        notes[PLATFORM] = str(platform)
    if os.environ.get("SOURCE_DATE_EPOCH", "").isdigit():
        notes[CREATED] = rfc3339(int(os.environ["SOURCE_DATE_EPOCH"]))
    notes.update(annotations or {})
    manifest = artifact_manifest(layer, artifact_type, notes, subject)
    client = RegistryClient(ref, options)
    progress = progress or Progress(quiet=True)
    with progress.task(f"pushing {path.name}", total=size) as advance:
        client.push_blob_file(path, digest, size, advance)
    client.push_blob_bytes(EMPTY_CONFIG)
    stored = client.put_manifest_bytes(manifest, OCI_MANIFEST, ref.digest or ref.tag or "latest")
    return Descriptor(OCI_MANIFEST, stored, len(manifest), platform, notes, artifact_type)


def _safe_name(title: str) -> str | None:
    name = os.path.basename(title.replace("\\", "/"))
    if not name or name in (".", "..") or name != title:
        return None
    return name


def pull_artifact(
    reference: str | Reference,
    dest: str | Path,
    options: Options | None = None,
    progress: Progress | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Fetch an artifact's file into `dest` (a file name, or a directory to take the title as the
    name); return the path written and the manifest. The file appears only once verified."""
    ref = parse_reference(reference) if isinstance(reference, str) else reference
    client = RegistryClient(ref, options)
    data, _, _ = client.get_manifest_bytes(ref.reference)
    try:
        manifest = json.loads(data)
    except ValueError:
        raise CorruptInput(f"{ref}: the manifest is not JSON") from None
    if not isinstance(manifest, dict) or "layers" not in manifest:
        raise DockerifyError(
            f"{ref}: not an artifact manifest (an index?)", hint="name one artifact manifest"
        )
    layers = [Descriptor.from_json(d) for d in manifest.get("layers", [])]
    if len(layers) != 1:
        raise DockerifyError(
            f"{ref}: the artifact has {len(layers)} files; pull-artifact takes one-file artifacts"
        )
    layer = layers[0]
    dest = Path(dest)
    if dest.is_dir():
        title = layer.annotations.get(TITLE) or (manifest.get("annotations") or {}).get(TITLE, "")
        name = _safe_name(title)
        if name is None:
            raise CorruptInput(
                f"{ref}: the artifact's title {title!r} is not a plain file name",
                hint="pull to an explicit file name",
            )
        dest = dest / name
    if not dest.parent.is_dir():
        raise NotFound(f"{dest.parent}: no such directory")
    fd, tmp = umask.mkstemp(dir=dest.parent, prefix=f".{dest.name}.tmp-")
    os.close(fd)
    progress = progress or Progress(quiet=True)
    try:
        with progress.task(f"pulling {dest.name}", total=layer.size) as advance:
            client.fetch_blob_to(layer.digest, layer.size, Path(tmp), advance, sparse=True)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return dest, manifest
