"""Registry references: REGISTRY/REPOSITORY[:TAG][@DIGEST], as Docker and skopeo read them."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, replace

from dockerify.errors import DockerifyError

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
# The name cosign and go-containerregistry give Docker Hub repositories.
DOCKER_HUB_NAME = "index.docker.io"

_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_HOST = re.compile(r"^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::[0-9]{1,5})?$")
_HINT = "write REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST], e.g. 127.0.0.1:5000/pi/os:bookworm"


@dataclass(frozen=True)
class Reference:
    registry: str  # host[:port] as written ("docker.io" for Docker Hub)
    repository: str  # path inside the registry ("library/debian" on Docker Hub)
    tag: str | None = None
    digest: str | None = None

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    @property
    def api_host(self) -> str:
        """The host[:port] the HTTP API lives on."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def name(self) -> str:
        """REGISTRY/REPOSITORY as cosign writes it in `docker-reference`."""
        host = DOCKER_HUB_NAME if self.registry == DOCKER_HUB else self.registry
        return f"{host}/{self.repository}"

    @property
    def reference(self) -> str:
        """What goes after /manifests/: the digest when there is one, else the tag."""
        return self.digest or self.tag or "latest"

    def with_tag(self, tag: str) -> Reference:
        return replace(self, tag=tag, digest=None)

    def with_digest(self, digest: str) -> Reference:
        return replace(self, tag=None, digest=digest)

    @property
    def loopback(self) -> bool:
        return is_loopback(self.registry)


def split_host(host: str) -> str:
    """The host part of host[:port] (brackets of an IPv6 literal removed)."""
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_loopback(host: str) -> bool:
    name = split_host(host).lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def looks_like_registry(component: str) -> bool:
    return "." in component or ":" in component or component == "localhost" or component.startswith("[")


def parse_reference(text: str) -> Reference:
    """Parse a registry reference; raise a DockerifyError naming the bad part."""
    original = text
    text = text.strip()
    if text.startswith("docker://"):
        text = text[len("docker://") :]
    if not text:
        raise DockerifyError("empty registry reference", hint=_HINT)
    digest = None
    if "@" in text:
        text, digest = text.split("@", 1)
        if not _DIGEST.match(digest):
            raise DockerifyError(
                f"{original}: invalid digest {digest!r}", hint="digests read sha256:<64 hex>"
            )
    first, sep, rest = text.partition("/")
    if sep and looks_like_registry(first):
        registry, path = first, rest
        if not _HOST.match(registry):
            raise DockerifyError(f"{original}: invalid registry host {registry!r}", hint=_HINT)
    else:
        registry, path = DOCKER_HUB, text
    tag = None
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        path, tag = path.rsplit(":", 1)
        if not _TAG.match(tag):
            raise DockerifyError(
                f"{original}: invalid tag {tag!r}", hint="tags are [A-Za-z0-9_.-], at most 128"
            )
    if registry in (DOCKER_HUB, DOCKER_HUB_NAME, DOCKER_HUB_API):
        registry = DOCKER_HUB
        if "/" not in path:
            path = "library/" + path
    components = path.split("/")
    for part in components:
        if not _COMPONENT.match(part):
            raise DockerifyError(
                f"{original}: invalid repository name component {part!r}",
                hint="repository names are lowercase letters, digits and separators (. _ __ -)",
            )
    if tag is None and digest is None:
        tag = "latest"
    return Reference(registry, path, tag, digest)
