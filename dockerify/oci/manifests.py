"""Questions about manifests the registry and local stores both ask: which media type a body has,
whether it is an index, and which child of an index is for a platform."""

from __future__ import annotations

from typing import Any

from dockerify.errors import DockerifyError, NotFound
from dockerify.oci.model import INDEX_TYPES, OCI_INDEX, OCI_MANIFEST, Descriptor
from dockerify.platform import Platform


def media_type_of(desc: Descriptor, body: dict[str, Any]) -> str:
    if desc.media_type:
        return desc.media_type
    if body.get("mediaType"):
        return str(body["mediaType"])
    return OCI_INDEX if "manifests" in body else OCI_MANIFEST


def is_index_body(media_type: str, body: dict[str, Any]) -> bool:
    return media_type in INDEX_TYPES or ("manifests" in body and "layers" not in body)


def same_platform(a: Platform | None, b: Platform) -> bool:
    if a is None:
        return False

    def norm(p: Platform) -> Platform:
        try:
            return Platform.parse(str(p))
        except DockerifyError:
            return p

    return norm(a) == norm(b)


def choose_platform(children: list[Descriptor], platform: Platform, where: str) -> Descriptor:
    for child in children:
        if same_platform(child.platform, platform):
            return child
    available = [str(c.platform) for c in children if c.platform and c.platform.architecture != "unknown"]
    raise NotFound(
        f"{where}: no image for platform {platform}", hint="available: " + (", ".join(available) or "none")
    )
