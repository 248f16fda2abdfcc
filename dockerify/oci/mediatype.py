"""The media types an image is made of, and what each one is: index, manifest, config or layer,
and with which compression (OCI and Docker v2 spellings alike)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any


class Kind(enum.Enum):
    INDEX = "index"
    MANIFEST = "manifest"
    CONFIG = "config"
    LAYER = "layer"


class Compression(enum.Enum):
    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"


class MediaType(enum.Enum):
    OCI_INDEX = "application/vnd.oci.image.index.v1+json"
    OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
    OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
    OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
    OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
    OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
    OCI_LAYER_NONDIST = "application/vnd.oci.image.layer.nondistributable.v1.tar"
    OCI_LAYER_NONDIST_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
    OCI_LAYER_NONDIST_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
    DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
    DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
    DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
    DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
    DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    DOCKER_LAYER_ZSTD = "application/vnd.docker.image.rootfs.diff.tar.zstd"
    DOCKER_FOREIGN_LAYER_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

    @classmethod
    def lookup(cls, text: object) -> MediaType | None:
        """The member for a media type string; None for anything else (artifacts, typos, "")."""
        if not isinstance(text, str):
            return None
        try:
            return cls(text)
        except ValueError:
            return None

    @property
    def kind(self) -> Kind:
        return _KINDS[self]

    @property
    def compression(self) -> Compression | None:
        """How a layer is compressed; None for what is not a layer."""
        if self.kind is not Kind.LAYER:
            return None
        if self.value.endswith(("+gzip", ".gzip")):
            return Compression.GZIP
        if self.value.endswith(("+zstd", ".zstd")):
            return Compression.ZSTD
        return Compression.NONE

    @property
    def is_docker(self) -> bool:
        return self.value.startswith("application/vnd.docker.")

    @classmethod
    def layer(cls, compression: Compression, docker: bool = False) -> MediaType:
        """The layer type of a compression in either family."""
        if docker:
            return {
                Compression.NONE: cls.DOCKER_LAYER,
                Compression.GZIP: cls.DOCKER_LAYER_GZIP,
                Compression.ZSTD: cls.DOCKER_LAYER_ZSTD,
            }[compression]
        return {
            Compression.NONE: cls.OCI_LAYER,
            Compression.GZIP: cls.OCI_LAYER_GZIP,
            Compression.ZSTD: cls.OCI_LAYER_ZSTD,
        }[compression]


_KINDS = {
    m: (
        Kind.INDEX
        if m in (MediaType.OCI_INDEX, MediaType.DOCKER_MANIFEST_LIST)
        else Kind.MANIFEST
        if m in (MediaType.OCI_MANIFEST, MediaType.DOCKER_MANIFEST)
        else Kind.CONFIG
        if m in (MediaType.OCI_CONFIG, MediaType.DOCKER_CONFIG)
        else Kind.LAYER
    )
    for m in MediaType
}


def document_kind(media_type: str, body: Mapping[str, Any]) -> Kind:
    """Whether a manifest document is an index or an image manifest: the one answer.

    The descriptor's (or the transport's) media type decides, then the document's own
    `mediaType`; documents that name neither (older OCI writers) are told by their shape."""
    for text in (media_type, body.get("mediaType")):
        known = MediaType.lookup(text)
        if known is not None and known.kind in (Kind.INDEX, Kind.MANIFEST):
            return known.kind
    return Kind.INDEX if "manifests" in body and "layers" not in body else Kind.MANIFEST


def is_index(media_type: str, body: Mapping[str, Any]) -> bool:
    return document_kind(media_type, body) is Kind.INDEX


def document_media_type(media_type: str, body: Mapping[str, Any]) -> str:
    """The media type to send a manifest document under: the one it was given or names,
    else the OCI type of its kind."""
    if media_type:
        return media_type
    if isinstance(body.get("mediaType"), str) and body["mediaType"]:
        return str(body["mediaType"])
    return str((MediaType.OCI_INDEX if is_index("", body) else MediaType.OCI_MANIFEST).value)
