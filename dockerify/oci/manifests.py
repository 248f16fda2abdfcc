"""Which child of an index is for a platform: the question the registry and local stores both ask
(what a body is, index or manifest, is answered by mediatype.py alone)."""

from __future__ import annotations

from dockerify.errors import DockerifyError, NotFound
from dockerify.oci.model import Descriptor
from dockerify.platform import Platform


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
