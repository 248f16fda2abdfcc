"""The one walk of an image's manifest graph: an index's children, each manifest's config and
layers. Every store (a layout, a registry, a daemon's archive) walks with it; only how a
manifest document is fetched differs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dockerify.oci.mediatype import Kind, document_kind, document_media_type
from dockerify.oci.model import Descriptor

# Fetch one manifest document: its exact bytes, the media type the transport gave ("" when it
# gives none) and the parsed object. The fetcher checks digest and size.
Fetch = Callable[[Descriptor], tuple[bytes, str, dict[str, Any]]]
# Children of an index that are not to be followed (e.g. another platform's manifest).
Skip = Callable[[Descriptor], bool]


@dataclass
class Graph:
    """What an image consists of: manifest documents children first (each with its bytes and
    the media type it travels under), the image manifests among them in index order (with
    the descriptors their parents give), and the blobs (configs and layers) they name."""

    manifests: list[tuple[Descriptor, bytes]] = field(default_factory=list)
    images: list[tuple[Descriptor, dict[str, Any]]] = field(default_factory=list)
    blobs: dict[str, Descriptor] = field(default_factory=dict)

    @property
    def root(self) -> Descriptor:
        return self.manifests[-1][0]


def walk(root: Descriptor, fetch: Fetch, skip: Skip | None = None) -> Graph:
    graph = Graph()
    seen: set[str] = set()

    def visit(desc: Descriptor) -> None:
        if desc.digest in seen:
            return
        seen.add(desc.digest)
        data, content_type, body = fetch(desc)
        media_type = document_media_type(desc.media_type or content_type, body)
        typed = Descriptor(media_type, desc.digest, desc.size, desc.platform)
        if document_kind(media_type, body) is Kind.INDEX:
            for raw in body.get("manifests", []):
                child = Descriptor.from_json(raw)
                if skip is None or not skip(child):
                    visit(child)
        else:
            graph.images.append((desc, body))
            for raw in [body.get("config"), *body.get("layers", [])]:
                if isinstance(raw, dict):
                    blob = Descriptor.from_json(raw)
                    graph.blobs.setdefault(blob.digest, blob)
        graph.manifests.append((typed, data))

    visit(root)
    return graph
