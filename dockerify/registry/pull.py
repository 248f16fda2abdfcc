"""A registry image (one manifest or a whole index) into an OCI layout, every byte verified.

A copy (oci/copy.py) from the registry's store: manifests are kept as the exact bytes the
registry sent (checked against their digests), blobs stream to temporary files and are renamed
into the layout only after their size and sha256 match the descriptor. `pull` first fetches
everything into a staging layout and moves it into the destination at the end, so a failure
leaves nothing behind."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dockerify.errors import DockerifyError
from dockerify.oci.blobs import BlobStore
from dockerify.oci.copy import copy
from dockerify.oci.layout import Layout
from dockerify.oci.manifests import choose_platform
from dockerify.oci.mediatype import document_media_type, is_index
from dockerify.oci.model import Descriptor, parse_json_object
from dockerify.oci.store import LayoutStore
from dockerify.platform import Platform
from dockerify.progress import Progress
from dockerify.registry.client import Options, RegistryClient
from dockerify.registry.reference import Reference, parse_reference
from dockerify.registry.signing import RegistryStore as SigningStore
from dockerify.registry.signing import load_public_key, verify_digest
from dockerify.registry.store import RegistryStore, parse_manifest
from dockerify.registry.transfer import TransferStats

log = logging.getLogger("dockerify")


def _media_type(media_type: str, body: dict[str, Any]) -> str:
    return document_media_type(media_type, body)


class _Staging(LayoutStore):
    """The layout a pull fills, as copy()'s destination: blobs the final destination already
    holds (`have`) count as there; index.json is left alone (the caller tags)."""

    def __init__(self, layout: Layout, have: BlobStore | None) -> None:
        super().__init__(layout.root, None, str(layout.root))
        self._layout = layout
        self.have = have

    def has_blob(self, desc: Descriptor) -> bool:
        return super().has_blob(desc) or (self.have is not None and self.have.has(desc.digest))

    def write_tag(self, desc: Descriptor, tag: str | None = None, data: bytes | None = None) -> None:
        if data is not None:
            self.write_manifest(desc, data)


def fetch_into(
    layout: Layout,
    reference: str | Reference,
    platform: Platform | None = None,
    options: Options | None = None,
    progress: Progress | None = None,
    verify_key: str | None = None,
    client: RegistryClient | None = None,
    have: BlobStore | None = None,
    stats: TransferStats | None = None,
) -> Descriptor:
    """Fetch the image into `layout`'s blobs (index.json untouched); return its root descriptor.

    A copy (oci/copy.py) from the registry's store to the layout's. With `verify_key`, the
    root's signature is checked before anything else is fetched. Blobs `layout` or `have` (the
    destination, when pulling into a layout that already holds an earlier version) already
    hold are not fetched; `stats` counts what moved."""
    ref = parse_reference(reference) if isinstance(reference, str) else reference
    client = client or RegistryClient(ref, options)
    where = str(ref)
    data, media_type, digest = client.get_manifest_bytes(ref.reference)
    body = parse_manifest(data, media_type, where)
    root = Descriptor(_media_type(media_type, body), digest, len(data))
    src = RegistryStore(ref, client=client)
    if verify_key is not None:
        verified = verify_digest(SigningStore(client, ref), digest, load_public_key(verify_key), verify_key)
        log.info("%s: signature verified (%s)", where, verified.digest)
    if platform is not None and is_index(root.media_type, body):
        child = choose_platform([Descriptor.from_json(d) for d in body.get("manifests", [])], platform, where)
        data, media_type = src.read_manifest(child)
        body = parse_manifest(data, media_type, f"{where}@{child.digest}")
        root = Descriptor(
            child.media_type or _media_type(media_type, body), child.digest, child.size, child.platform
        )
    src.remember(root, data, root.media_type)
    copy(
        src,
        _Staging(layout, have),
        progress=progress,
        jobs=client.options.jobs,
        root=root,
        stats=stats,
        label=f"pulling {where}",
        scratch=layout.blobs.root,
        config_platform=False,
    )
    if root.platform is None and not is_index(root.media_type, body):
        root = Descriptor(root.media_type, root.digest, root.size, _config_platform(layout, body, have))
    return root


def _config_platform(
    layout: Layout, manifest: dict[str, Any], have: BlobStore | None = None
) -> Platform | None:
    """The platform an image config names, for the descriptor of a single-manifest image."""
    try:
        desc = Descriptor.from_json(manifest["config"])
        if have is not None and not layout.blobs.has(desc.digest) and have.has(desc.digest):
            config = parse_json_object(have.read(desc.digest), "the image config")
        else:
            config = layout.read_json(desc)
    except (DockerifyError, KeyError, TypeError, ValueError):
        return None
    if not config.get("architecture") or not config.get("os"):
        return None
    return Platform.from_oci(config)


def pull_to_layout(reference: str, root_dir: str | Path) -> tuple[Layout, Descriptor]:
    """The hook `open_layout` uses for registry references: the whole image into a new layout
    at `root_dir`, its root tagged with the reference's tag. Options come from DOCKERIFY_* variables."""
    ref = parse_reference(reference)
    layout = Layout.create(root_dir)
    root = fetch_into(layout, ref, options=Options.from_env())
    layout.tag(root, ref.tag or "latest")
    return layout, root


def move_blobs(staging: Layout, layout: Layout) -> None:
    for path in staging.blobs.root.iterdir():
        if path.name.startswith("."):
            continue
        target = layout.blobs.root / path.name
        if target.exists():
            continue
        try:
            os.replace(path, target)
        except OSError:  # another filesystem
            tmp = layout.blobs.root / f".tmp-{path.name}"
            shutil.copyfile(path, tmp)
            os.replace(tmp, target)


@contextlib.contextmanager
def staging_layout(parent: Path) -> Iterator[Layout]:
    tmp = tempfile.mkdtemp(dir=parent, prefix=".pull-")
    try:
        yield Layout.create(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
