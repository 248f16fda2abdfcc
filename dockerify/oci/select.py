"""From a layout's root descriptor (index or manifest) to the image(s) of each platform."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dockerify.errors import CorruptInput, NotFound
from dockerify.oci.graph import walk
from dockerify.oci.layout import Layout
from dockerify.oci.mediatype import is_index
from dockerify.oci.model import Descriptor
from dockerify.platform import Platform


@dataclass
class Image:
    layout: Layout
    descriptor: Descriptor
    manifest: dict[str, Any]
    config: dict[str, Any]
    #: The reference the image was opened as, for messages ("" when not known).
    name: str = ""

    @property
    def platform(self) -> Platform:
        return Platform.from_oci(self.config)

    @property
    def layers(self) -> list[Descriptor]:
        return [Descriptor.from_json(d) for d in self.manifest.get("layers", [])]

    @property
    def labels(self) -> dict[str, str]:
        return dict((self.config.get("config") or {}).get("Labels") or {})

    @property
    def config_descriptor(self) -> Descriptor:
        return Descriptor.from_json(self.manifest["config"])


def load_image(layout: Layout, desc: Descriptor, name: str = "") -> Image:
    manifest = layout.read_json(desc)
    if is_index(desc.media_type, manifest) or "config" not in manifest:
        raise CorruptInput(f"{layout.root}: {desc.digest} is not an image manifest")
    config = layout.read_json(Descriptor.from_json(manifest["config"]))
    return Image(layout, desc, manifest, config, name)


def images(layout: Layout, root: Descriptor, name: str = "") -> list[Image]:
    def fetch(desc: Descriptor) -> tuple[bytes, str, dict[str, Any]]:
        data, body = layout.read_json_raw(desc)
        return data, "", body

    def not_an_image(desc: Descriptor) -> bool:
        # Attestations and signatures sit in indexes too; only real platforms count.
        return desc.platform is not None and desc.platform.architecture == "unknown"

    graph = walk(root, fetch, skip=not_an_image)
    return [load_image(layout, desc, name) for desc, _ in graph.images]


def select(layout: Layout, root: Descriptor, platform: Platform | None, where: str) -> Image:
    found = images(layout, root, where)
    if not found:
        raise NotFound(f"{where}: no image manifests")
    if platform is None:
        if len(found) == 1:
            return found[0]
        raise NotFound(
            f"{where}: holds several platforms; choose one with --platform",
            hint="available: " + ", ".join(str(i.platform) for i in found),
        )
    for image in found:
        if image.platform == platform:
            return image
    raise NotFound(
        f"{where}: no image for platform {platform}",
        hint="available: " + ", ".join(str(i.platform) for i in found),
    )
