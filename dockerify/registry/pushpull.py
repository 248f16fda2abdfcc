"""Copies with a registry at one end: `pull` (a registry image into any destination) and
`push_source` (any image into a registry). Above both pull.py and push.py and the local stores,
so none of those needs the others."""

from __future__ import annotations

import tempfile
from pathlib import Path

from dockerify.errors import NotFound
from dockerify.oci.layout import Layout
from dockerify.oci.model import Descriptor
from dockerify.oci.refs import ImageRef, image_ref, parse_ref
from dockerify.outputs import write_output
from dockerify.platform import Platform
from dockerify.progress import Progress
from dockerify.registry.client import Options, RegistryClient
from dockerify.registry.pull import fetch_into, move_blobs, staging_layout
from dockerify.registry.push import push_layout
from dockerify.registry.reference import parse_reference
from dockerify.registry.signing import load_public_key, resolve_local
from dockerify.registry.transfer import TransferStats
from dockerify.stores import open_layout


def pull(
    reference: str,
    dest: str | ImageRef,
    platform: Platform | None = None,
    options: Options | None = None,
    progress: Progress | None = None,
    verify_key: str | None = None,
    stats: TransferStats | None = None,
) -> tuple[Descriptor, list[Descriptor]]:
    """Pull `reference` into `dest` (oci:, oci-archive:, docker-archive:, docker-daemon: or
    another registry reference). Nothing is written unless every digest checks out."""
    ref = parse_reference(reference)
    out = parse_ref(dest) if isinstance(dest, str) else dest
    progress = progress or Progress(quiet=True)
    client = RegistryClient(ref, options)
    if verify_key is not None:
        load_public_key(verify_key)  # a bad key file fails before anything is fetched

    def produce(layout: Layout) -> Descriptor:
        with staging_layout(layout.root) as staging:
            root = fetch_into(
                staging, ref, platform, options, progress, verify_key, client, layout.blobs, stats
            )
            move_blobs(staging, layout)
        return root

    name = f"{ref.registry}/{ref.repository}:{ref.tag or 'latest'}"
    return write_output(out, name, produce, progress)


def push_source(
    source: str,
    reference: str,
    platform: Platform | None = None,
    options: Options | None = None,
    progress: Progress | None = None,
    stats: TransferStats | None = None,
    mount_from: tuple[str, ...] = (),
) -> Descriptor:
    """Push any image reference (oci:, oci-archive:, docker-archive:, docker-daemon:, or another
    registry) to `reference`."""
    src = image_ref(source)
    target = parse_reference(reference)
    if src.transport == "oci":
        if not Path(src.path).exists():
            raise NotFound(f"{src}: no such directory")
        layout = Layout.open(src.path)
        return push_layout(
            layout,
            resolve_local(layout, src.tag, str(src)),
            target,
            options,
            progress,
            platform,
            stats,
            mount_from,
        )
    if src.transport == "registry":
        with tempfile.TemporaryDirectory(prefix="dockerify-copy-") as tmp:
            layout = Layout.create(tmp)
            source_ref = parse_reference(src.path)
            if source_ref.registry == target.registry:  # same registry: mount, do not copy
                mount_from = (*mount_from, source_ref.repository)
            root = fetch_into(layout, src.path, platform, options, progress)
            return push_layout(layout, root, target, options, progress, None, stats, mount_from)
    with open_layout(src) as (layout, root):
        return push_layout(layout, root, target, options, progress, platform, stats, mount_from)
