"""Image references with skopeo-style transport prefixes."""

from __future__ import annotations

import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

from dockerify.errors import DockerifyError, NotFound

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


# A registry reference names its host first: a dot or port in the first component, or localhost
# (as docker reads `NAME[:TAG]`); anything else is a name in the local Docker daemon.
_NAME = re.compile(
    r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*(?::[\w][\w.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$"
)


def _has_registry_host(text: str) -> bool:
    first, sep, _ = text.partition("/")
    return bool(sep) and ("." in first or ":" in first or first == "localhost")


def resolve_ref(text: str) -> ImageRef | None:
    """What an image argument names, by one rule for every command:

    1. a transport prefix (oci:, oci-archive:, docker-archive:, docker-daemon:) always wins;
    2. an existing local path is read as what it is: a directory holding `oci-layout` is an OCI
       layout, a tar holding `oci-layout` an OCI archive, one holding `manifest.json` a Docker
       archive; any other path is a source (disk image, tarball, directory): None;
    3. else HOST/REPO[:TAG] (HOST with a dot or a port, or localhost) is a registry image, and
       any other NAME[:TAG] an image in the Docker daemon (where `dockerify build` puts it)."""
    transport, sep, _ = text.partition(":")
    if sep and transport in TRANSPORTS:
        return parse_ref(text)
    if os.path.lexists(text):
        return _local(Path(text))
    if _has_registry_host(text):
        return ImageRef("registry", text)
    if _NAME.match(text):
        return ImageRef("docker-daemon", text)
    raise NotFound(
        f"{text}: no such file, and not an image name",
        hint="name a local file or directory, NAME[:TAG] for the Docker daemon, HOST/REPO[:TAG] for a "
        "registry, or use a prefix: oci:DIR[:TAG], oci-archive:FILE, docker-archive:FILE",
    )


def _local(path: Path) -> ImageRef | None:
    if path.is_dir():
        return ImageRef("oci", str(path)) if (path / "oci-layout").is_file() else None
    kind = _archive_kind(path)
    return ImageRef(kind, str(path)) if kind else None


def _archive_kind(path: Path, look: int = 4096) -> str | None:
    """oci-archive or docker-archive for an uncompressed tar of an image, else None. Only member
    names are read (tarfile seeks over the data), and a tree's tarball stops the look early."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
        if len(head) < 512 or head[257:262] != b"ustar":
            return None
        with tarfile.open(path, "r:") as tar:
            for index, member in enumerate(tar):
                name = member.name.removeprefix("./")
                if name == "oci-layout":
                    return "oci-archive"
                if name == "manifest.json":
                    return "docker-archive"
                if index >= look or name.split("/", 1)[0] in _TREE_TOPS:
                    return None
    except (OSError, tarfile.TarError):
        return None
    return None


_TREE_TOPS = {"bin", "boot", "dev", "etc", "home", "lib", "opt", "root", "sbin", "usr", "var"}


def image_ref(text: str) -> ImageRef:
    """`resolve_ref` for commands that need an image, not a tree."""
    ref = resolve_ref(text)
    if ref is None:
        raise DockerifyError(
            f"{text}: a disk image, tarball or directory, not an image",
            hint=f"build an image of it first (dockerify build {text} --output oci:DIR), or name an "
            "image: oci:DIR[:TAG], oci-archive:FILE, docker-archive:FILE, NAME[:TAG] or HOST/REPO[:TAG]",
        )
    return ref
