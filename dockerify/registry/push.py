"""An OCI layout's image (one manifest or a whole index) to a registry.

A copy (oci/copy.py) from the layout's store to the registry's: manifests and blobs travel as
the exact bytes the layout holds, so digests do not change: blobs first (in parallel, each
skipped when the registry has it), then child manifests by digest, then the root under the tag. Signatures the layout holds for the pushed manifests
(`sha256-<hex>.sig` tags) go along."""

from __future__ import annotations

import logging
from typing import Any

from dockerify.errors import DockerifyError
from dockerify.oci.copy import copy
from dockerify.oci.graph import Graph, walk
from dockerify.oci.layout import Layout
from dockerify.oci.manifests import choose_platform
from dockerify.oci.mediatype import is_index
from dockerify.oci.model import Descriptor
from dockerify.oci.store import LayoutStore
from dockerify.platform import Platform
from dockerify.progress import Progress
from dockerify.registry.client import Options, RegistryClient
from dockerify.registry.reference import Reference, parse_reference
from dockerify.registry.signing import local_signatures, signature_tag
from dockerify.registry.store import RegistryStore
from dockerify.registry.transfer import TransferStats

log = logging.getLogger("dockerify")


def layout_graph(layout: Layout, root: Descriptor) -> Graph:
    def fetch(desc: Descriptor) -> tuple[bytes, str, dict[str, Any]]:
        data, body = layout.read_json_raw(desc)
        return data, "", body

    return walk(root, fetch)


def push_graph(
    client: RegistryClient,
    layout: Layout,
    root: Descriptor,
    tag: str | None,
    progress: Progress | None = None,
    stats: TransferStats | None = None,
    mount_from: tuple[str, ...] = (),
) -> Descriptor:
    """A copy from the layout to the registry (oci/copy.py): blobs the registry has are skipped
    (HEAD), `mount_from` repositories are asked before a blob is sent, manifests go children
    first and the root under `tag` (None: by digest) last."""
    with LayoutStore.of(layout, str(layout.root)) as src:
        result = copy(
            src,
            RegistryStore(client.ref, client=client),
            tag=tag or root.digest,
            progress=progress,
            jobs=client.options.jobs,
            root=root,
            mount_from=mount_from,
            stats=stats,
            label=f"pushing {client.where}",
        )
    return Descriptor(result.root.media_type, root.digest, root.size, root.platform)


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
