"""From a layout's root descriptor (index or manifest) to the image(s) of each platform."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dockerify.errors import CorruptInput, NotFound
from dockerify.oci.layout import Layout, is_index, is_manifest
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
    if not is_manifest(desc, manifest):
        raise CorruptInput(f"{layout.root}: {desc.digest} is not an image manifest")
    config = layout.read_json(Descriptor.from_json(manifest["config"]))
    return Image(layout, desc, manifest, config, name)


def images(layout: Layout, root: Descriptor, name: str = "") -> list[Image]:
    body = layout.read_json(root)
    if is_index(root, body):
        out = []
        for d in body.get("manifests", []):
            desc = Descriptor.from_json(d)
            # Attestations and signatures sit in indexes too; only real platforms count.
            if desc.platform is not None and desc.platform.architecture == "unknown":
                continue
            out.extend(images(layout, desc, name))
        return out
    return [load_image(layout, root, name)]


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
