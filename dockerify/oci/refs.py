"""Image references with skopeo-style transport prefixes."""

from __future__ import annotations

from dataclasses import dataclass

from dockerify.errors import DockerifyError

TRANSPORTS = ("oci", "oci-archive", "docker-archive", "docker-daemon")


@dataclass(frozen=True)
class ImageRef:
    transport: str  # one of TRANSPORTS, or "registry"
    path: str  # directory / file / daemon image name / registry reference
    tag: str | None = None

    def __str__(self) -> str:
        if self.transport == "registry":
            return self.path
        return f"{self.transport}:{self.path}" + (f":{self.tag}" if self.tag else "")


def _split_tag(rest: str) -> tuple[str, str | None]:
    # oci:DIR:TAG; a colon inside the last path component separates the tag.
    head, sep, tail = rest.rpartition(":")
    if sep and head and "/" not in tail:
        return head, tail
    return rest, None


def parse_ref(text: str) -> ImageRef:
    transport, sep, rest = text.partition(":")
    if sep and transport in TRANSPORTS:
        if not rest:
            raise DockerifyError(f"image reference {text!r} names no {transport} location")
        if transport in ("oci", "oci-archive"):
            path, tag = _split_tag(rest)
            return ImageRef(transport, path, tag)
        return ImageRef(transport, rest)
    if "/" in text or ":" in text or "." in text:
        return ImageRef("registry", text)
    raise DockerifyError(
        f"image reference {text!r} has no transport",
        hint="use oci:DIR[:TAG], oci-archive:FILE, docker-archive:FILE, docker-daemon:NAME or REGISTRY/REPO:TAG",
    )
