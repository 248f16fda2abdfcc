"""OCI descriptors, media types and canonical JSON."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from dockerify.errors import CorruptInput
from dockerify.platform import Platform

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)
REF_NAME = "org.opencontainers.image.ref.name"
# artifactType of SD-card images pushed as OCI artifacts.
SDCARD_ARTIFACT_TYPE = "application/vnd.dockerify.sdcard.v1"


def canonical_json(obj: Any) -> bytes:
    """Sorted keys, no insignificant whitespace: equal content gives equal digests."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def parse_json_object(data: bytes, where: str) -> dict[str, Any]:
    """A manifest, index or config: JSON whose top level is an object."""

    try:
        obj = json.loads(data)
    except ValueError:
        raise CorruptInput(f"{where} is not JSON") from None
    if not isinstance(obj, dict):
        raise CorruptInput(f"{where} is not a JSON object")
    return obj


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    artifact_type: str = ""

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.platform is not None:
            d["platform"] = self.platform.to_oci()
        if self.annotations:
            d["annotations"] = dict(self.annotations)
        if self.artifact_type:
            d["artifactType"] = self.artifact_type
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Descriptor:
        plat = d.get("platform")
        return cls(
            media_type=d.get("mediaType", ""),
            digest=d["digest"],
            size=int(d["size"]),
            platform=Platform.from_oci(plat) if plat else None,
            annotations=dict(d.get("annotations") or {}),
            artifact_type=d.get("artifactType", ""),
        )

    @property
    def hex(self) -> str:
        return self.digest.split(":", 1)[1]
