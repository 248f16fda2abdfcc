"""An OCI layout's image (one manifest or a whole index) to a registry.

Manifests and blobs travel as the exact bytes the layout holds, so digests do not change:
blobs first (in parallel, each skipped when the registry has it), then child manifests by
digest, then the root under the tag. Signatures the layout holds for the pushed manifests
(`sha256-<hex>.sig` tags) go along."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dockerify.errors import CorruptInput, DockerifyError, NotFound
from dockerify.oci.graph import Graph, walk
from dockerify.oci.layout import Layout
from dockerify.oci.manifests import choose_platform
from dockerify.oci.mediatype import is_index
from dockerify.oci.model import Descriptor
from dockerify.platform import Platform
from dockerify.progress import Progress
from dockerify.registry.client import Options, RegistryClient
from dockerify.registry.reference import Reference, parse_reference
from dockerify.registry.signing import local_signatures, signature_tag
from dockerify.registry.transfer import TransferStats

log = logging.getLogger("dockerify")


def layout_graph(layout: Layout, root: Descriptor) -> Graph:
    def fetch(desc: Descriptor) -> tuple[bytes, str, dict[str, Any]]:
        data, body = layout.read_json_raw(desc)
        return data, "", body

    return walk(root, fetch)


def _upload_blobs(
    client: RegistryClient,
    layout: Layout,
    blobs: list[Descriptor],
    advance: Callable[[int], object],
    stats: TransferStats | None = None,
    mount_from: tuple[str, ...] = (),
) -> None:
    lock = threading.Lock()

    def one(d: Descriptor) -> None:
        path = layout.blobs.path(d.digest)
        if not path.is_file():
            raise NotFound(f"{layout.root}: blob {d.digest} is missing from the layout")
        if path.stat().st_size != d.size:
            raise CorruptInput(
                f"{layout.root}: blob {d.digest} has {path.stat().st_size} bytes, its descriptor says {d.size}"
            )

        def progress(n: int) -> None:
            with lock:
                advance(n)

        if client.has_blob(d.digest):
            log.debug("%s: blob %s exists; not uploading", client.where, d.digest)
            if stats:
                stats.skipped(d.size)
            return
        for repository in mount_from:
            if repository != client.ref.repository and client.mount_blob(d.digest, repository):
                log.debug("%s: mounted %s from %s", client.where, d.digest, repository)
                if stats:
                    stats.skipped(d.size, mounted=True)
                return
        sent = client.push_blob_file(path, d.digest, d.size, progress)
        if stats:
            if sent:
                stats.moved(d.size)
            else:
                stats.skipped(d.size)

    if not blobs:
        return
    with ThreadPoolExecutor(max_workers=max(1, min(client.options.jobs, len(blobs)))) as pool:
        for future in [pool.submit(one, d) for d in sorted(blobs, key=lambda d: -d.size)]:
            future.result()


def push_graph(
    client: RegistryClient,
    layout: Layout,
    root: Descriptor,
    tag: str | None,
    progress: Progress | None = None,
    stats: TransferStats | None = None,
    mount_from: tuple[str, ...] = (),
) -> Descriptor:
    graph = layout_graph(layout, root)
    progress = progress or Progress(quiet=True)
    total = sum(d.size for d in graph.blobs.values())
    with progress.task(f"pushing {client.where}", total=total) as advance:
        _upload_blobs(client, layout, list(graph.blobs.values()), advance, stats, mount_from)
    for desc, data in graph.manifests:
        is_root = desc.digest == root.digest
        client.put_manifest_bytes(data, desc.media_type, tag if is_root and tag else desc.digest)
    return Descriptor(graph.manifests[-1][0].media_type, root.digest, root.size, root.platform)


def push_layout(
    layout: Layout,
    root: Descriptor,
    reference: str | Reference,
    options: Options | None = None,
    progress: Progress | None = None,
    platform: Platform | None = None,
    stats: TransferStats | None = None,
    mount_from: tuple[str, ...] = (),
) -> Descriptor:
    """Push the image `root` names in `layout` to `reference`; return the pushed root descriptor.

    With `platform`, only that platform's manifest of an index is pushed. Blobs the registry
    has are skipped; with `mount_from`, blobs those repositories of the same registry hold are
    mounted instead of uploaded. `stats` counts what moved."""
    ref = parse_reference(reference) if isinstance(reference, str) else reference
    client = RegistryClient(ref, options)
    if platform is not None:
        _, body = layout.read_json_raw(root)
        if is_index(root.media_type, body):
            root = choose_platform(
                [Descriptor.from_json(d) for d in body.get("manifests", [])], platform, str(layout.root)
            )
    if ref.digest and ref.digest != root.digest:
        raise DockerifyError(
            f"{ref}: the image to push has digest {root.digest}, not the one the reference names",
            hint="push to a tag, or name the digest the image has",
        )
    tag = None if ref.digest else (ref.tag or "latest")
    pushed = push_graph(client, layout, root, tag, progress, stats, mount_from)
    _push_signatures(client, layout, pushed)
    return pushed


def _push_signatures(client: RegistryClient, layout: Layout, root: Descriptor) -> None:
    sigs = local_signatures(layout)
    if not sigs:
        return
    digests = [d for d, _ in layout_graph(layout, root).manifests] if sigs else []
    for desc in digests:
        for kind in ("sig", "att"):
            tag = signature_tag(desc.digest, kind)
            sig = sigs.get(tag)
            if sig is not None:
                log.info("pushing %s %s", "signature" if kind == "sig" else "attestation", tag)
                push_graph(client, layout, sig, tag)
