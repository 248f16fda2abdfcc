"""The OCI image layout on disk: `oci-layout`, `index.json`, `blobs/sha256/...`."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from dockerify import umask
from dockerify.errors import CorruptInput, NotFound
from dockerify.oci.blobs import BlobStore
from dockerify.oci.model import (
    OCI_INDEX,
    REF_NAME,
    Descriptor,
    canonical_json,
    parse_json_object,
)
from dockerify.platform import Platform

LAYOUT_FILE = b'{"imageLayoutVersion":"1.0.0"}'
_SIDECAR = re.compile(r"^sha256-[0-9a-f]{64}\.(sig|att|sbom)$")


def atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = umask.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


class Layout:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.blobs = BlobStore(self.root)

    @classmethod
    def create(cls, root: str | Path) -> Layout:
        Path(root).mkdir(parents=True, exist_ok=True)
        layout = cls(root)
        if not (layout.root / "oci-layout").exists():
            atomic_write(layout.root / "oci-layout", LAYOUT_FILE)
        if not (layout.root / "index.json").exists():
            layout.write_index([])
        return layout

    @classmethod
    def open(cls, root: str | Path) -> Layout:
        root = Path(root)
        if not (root / "index.json").is_file() or not (root / "oci-layout").is_file():
            raise NotFound(f"{root}: not an OCI image layout (no index.json / oci-layout)")
        return cls(root)

    # -- index.json
    def index(self) -> dict[str, Any]:
        try:
            data = json.loads((self.root / "index.json").read_bytes())
        except (OSError, ValueError) as e:
            raise CorruptInput(f"{self.root}/index.json: cannot read: {e}") from None
        if not isinstance(data, dict) or not isinstance(data.get("manifests", []), list):
            raise CorruptInput(f"{self.root}/index.json: not an OCI index")
        return data

    def manifests(self) -> list[Descriptor]:
        return [Descriptor.from_json(d) for d in self.index().get("manifests", [])]

    def write_index(self, manifests: list[Descriptor]) -> None:
        body = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [d.to_json() for d in manifests]}
        atomic_write(self.root / "index.json", canonical_json(body))

    def tag(self, desc: Descriptor, tag: str) -> None:
        """Point `tag` at `desc`, replacing whatever it named before."""
        kept = [d for d in self.manifests() if d.annotations.get(REF_NAME) != tag]
        annotations = dict(desc.annotations)
        annotations[REF_NAME] = tag
        kept.append(Descriptor(desc.media_type, desc.digest, desc.size, desc.platform, annotations))
        self.write_index(kept)

    def resolve(self, tag: str | None) -> Descriptor:
        manifests = self.manifests()
        if tag is None:
            # Signatures and attestations (sha256-<hex>.sig/.att/.sbom) are not images to pick.
            manifests = [d for d in manifests if not _SIDECAR.match(d.annotations.get(REF_NAME, ""))]
            if len(manifests) == 1:
                return manifests[0]
            tags = [d.annotations.get(REF_NAME, "?") for d in manifests]
            if not manifests:
                raise NotFound(f"{self.root}: the layout holds no image")
            raise NotFound(
                f"{self.root}: several images in the layout; name one", hint="tags: " + ", ".join(tags)
            )
        for d in manifests:
            if d.annotations.get(REF_NAME) == tag:
                return d
        tags = [d.annotations.get(REF_NAME, "") for d in manifests]
        raise NotFound(
            f"{self.root}: no image tagged {tag!r}",
            hint="tags here: " + (", ".join(t for t in tags if t) or "none"),
        )

    # -- JSON blobs
    def put_json(self, obj: Any, media_type: str, platform: Platform | None = None) -> Descriptor:
        data = canonical_json(obj)
        return Descriptor(media_type, self.blobs.put(data), len(data), platform)

    def read_json_raw(self, desc: Descriptor) -> tuple[bytes, dict[str, Any]]:
        """The exact bytes of a JSON blob (digest and size checked) and its parsed object."""
        data = self.blobs.read(desc.digest)
        if len(data) != desc.size:
            raise CorruptInput(
                f"{self.root}: blob {desc.digest} has {len(data)} bytes, its descriptor says {desc.size}"
            )
        return data, parse_json_object(data, f"{self.root}: blob {desc.digest}")

    def read_json(self, desc: Descriptor) -> dict[str, Any]:
        return self.read_json_raw(desc)[1]
