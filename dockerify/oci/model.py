"""OCI descriptors, media types and canonical JSON."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dockerify.errors import CorruptInput
from dockerify.oci.mediatype import Kind, MediaType, document_kind
from dockerify.platform import Platform

OCI_MANIFEST = MediaType.OCI_MANIFEST.value
OCI_INDEX = MediaType.OCI_INDEX.value
OCI_CONFIG = MediaType.OCI_CONFIG.value
OCI_LAYER = MediaType.OCI_LAYER.value
DOCKER_MANIFEST = MediaType.DOCKER_MANIFEST.value
DOCKER_MANIFEST_LIST = MediaType.DOCKER_MANIFEST_LIST.value
DOCKER_CONFIG = MediaType.DOCKER_CONFIG.value
DOCKER_LAYER = MediaType.DOCKER_LAYER_GZIP.value
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

    @property
    def known_type(self) -> MediaType | None:
        return MediaType.lookup(self.media_type)


def _descriptor(raw: object, where: str) -> Descriptor:
    if not isinstance(raw, dict):
        raise CorruptInput(f"{where}: a descriptor that is not a JSON object")
    try:
        return Descriptor.from_json(raw)
    except (KeyError, TypeError, ValueError, AttributeError):
        raise CorruptInput(f"{where}: a descriptor without a valid digest and size") from None


def _descriptors(raw: object, where: str) -> tuple[Descriptor, ...]:
    if not isinstance(raw, list):
        raise CorruptInput(f"{where}: not a list of descriptors")
    return tuple(_descriptor(d, where) for d in raw)


def _strings(raw: object, where: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise CorruptInput(f"{where}: annotations are not a map of strings")
    return dict(raw)


# Keys the typed documents own; anything else a document holds is kept as it came (`extra`)
# so that serialising what was parsed gives the same canonical bytes.
_MANIFEST_KEYS = ("schemaVersion", "mediaType", "artifactType", "config", "layers", "subject", "annotations")
_INDEX_KEYS = ("schemaVersion", "mediaType", "artifactType", "manifests", "subject", "annotations")


def _common(obj: Mapping[str, Any], where: str, keys: tuple[str, ...]) -> dict[str, Any]:
    if obj.get("schemaVersion") != 2:
        raise CorruptInput(f"{where}: schemaVersion {obj.get('schemaVersion')!r}; only 2 is read")
    media_type = obj.get("mediaType")
    if media_type is not None and not isinstance(media_type, str):
        raise CorruptInput(f"{where}: mediaType is not a string")
    subject = obj.get("subject")
    return {
        "media_type": media_type,
        "artifact_type": str(obj.get("artifactType") or ""),
        "subject": _descriptor(subject, where) if subject is not None else None,
        "annotations": _strings(obj.get("annotations"), where),
        "extra": {k: v for k, v in obj.items() if k not in keys},
    }


def _common_json(doc: Manifest | Index) -> dict[str, Any]:
    d: dict[str, Any] = {"schemaVersion": 2}
    if doc.media_type is not None:
        d["mediaType"] = doc.media_type
    if doc.artifact_type:
        d["artifactType"] = doc.artifact_type
    if doc.subject is not None:
        d["subject"] = doc.subject.to_json()
    if doc.annotations:
        d["annotations"] = dict(doc.annotations)
    d.update(doc.extra)
    return d


@dataclass(frozen=True)
class Manifest:
    """An image manifest (OCI or Docker v2). `media_type` is None when the document names none."""

    config: Descriptor
    layers: tuple[Descriptor, ...]
    media_type: str | None = OCI_MANIFEST
    artifact_type: str = ""
    subject: Descriptor | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, data: bytes, where: str) -> Manifest:
        return cls.from_json(parse_json_object(data, where), where)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], where: str) -> Manifest:
        common = _common(obj, where, _MANIFEST_KEYS)
        if document_kind("", obj) is not Kind.MANIFEST:
            raise CorruptInput(f"{where}: an index, not an image manifest")
        if "config" not in obj:
            raise CorruptInput(f"{where}: an image manifest without a config")
        return cls(
            config=_descriptor(obj["config"], where),
            layers=_descriptors(obj.get("layers", []), where),
            **common,
        )

    def to_json(self) -> dict[str, Any]:
        d = _common_json(self)
        d["config"] = self.config.to_json()
        d["layers"] = [layer.to_json() for layer in self.layers]
        return d

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_json())


@dataclass(frozen=True)
class Index:
    """An image index (OCI) or manifest list (Docker v2)."""

    manifests: tuple[Descriptor, ...]
    media_type: str | None = OCI_INDEX
    artifact_type: str = ""
    subject: Descriptor | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, data: bytes, where: str) -> Index:
        return cls.from_json(parse_json_object(data, where), where)

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], where: str) -> Index:
        common = _common(obj, where, _INDEX_KEYS)
        if document_kind("", obj) is not Kind.INDEX:
            raise CorruptInput(f"{where}: an image manifest, not an index")
        return cls(manifests=_descriptors(obj.get("manifests", []), where), **common)

    def to_json(self) -> dict[str, Any]:
        d = _common_json(self)
        d["manifests"] = [m.to_json() for m in self.manifests]
        return d

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_json())


def parse_document(data: bytes, media_type: str, where: str) -> Manifest | Index:
    """A manifest or an index, whichever the media type (or the document) says it is."""
    obj = parse_json_object(data, where)
    if document_kind(media_type, obj) is Kind.INDEX:
        return Index.from_json(obj, where)
    return Manifest.from_json(obj, where)


@dataclass(frozen=True)
class ImageConfig:
    """An image config as read from a blob: the platform, the layers' diff_ids, the runtime
    config (Env, Cmd, Labels ...) and whatever else it holds, kept for the serialiser."""

    platform: Platform
    diff_ids: tuple[str, ...]
    config: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    platform_keys: tuple[str, ...] = ("architecture", "os")
    has_config: bool = True

    @classmethod
    def parse(cls, data: bytes, where: str) -> ImageConfig:
        obj = parse_json_object(data, where)
        rootfs = obj.get("rootfs")
        diff_ids = rootfs.get("diff_ids", []) if isinstance(rootfs, dict) else []
        if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
            raise CorruptInput(f"{where}: rootfs.diff_ids is not a list of digests")
        config = obj.get("config")
        if config is None:
            config = {}
        if not isinstance(config, dict):
            raise CorruptInput(f"{where}: config is not a JSON object")
        keys = tuple(k for k in ("architecture", "os", "variant") if k in obj)
        for k in keys:
            if not isinstance(obj[k], str):
                raise CorruptInput(f"{where}: {k} is not a string")
        return cls(
            platform=Platform.from_oci(obj),
            diff_ids=tuple(diff_ids),
            config=config,
            extra={k: v for k, v in obj.items() if k not in ("architecture", "os", "variant", "config")},
            platform_keys=keys,
            has_config="config" in obj,
        )

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.config.get("Labels") or {})

    def to_json(self) -> dict[str, Any]:
        plat = {
            "architecture": self.platform.architecture,
            "os": self.platform.os,
            "variant": self.platform.variant,
        }
        d: dict[str, Any] = {k: plat[k] for k in self.platform_keys}
        d.update(self.extra)
        if self.has_config or self.config:
            d["config"] = self.config
        return d

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_json())
