"""A registry repository as an image store (REGISTRY/REPO[:TAG|@DIGEST]), through
registry/client.py; options (TLS, credentials, retries) come from DOCKERIFY_* variables."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from dockerify.errors import CorruptInput, DockerifyError
from dockerify.oci.blobcheck import METADATA_LIMIT
from dockerify.oci.mediatype import document_media_type
from dockerify.oci.model import Descriptor, parse_json_object
from dockerify.registry.client import Options, RegistryClient
from dockerify.registry.reference import Reference, parse_reference

log = logging.getLogger("dockerify")
_SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)


def parse_manifest(data: bytes, media_type: str, where: str) -> dict[str, Any]:
    """A manifest document a registry sent, refusing Docker's schema 1."""
    if media_type in _SCHEMA1:
        raise DockerifyError(f"{where}: a Docker schema 1 manifest, which dockerify does not read")
    body = parse_json_object(data, f"{where}: the manifest")
    if body.get("schemaVersion") == 1:
        raise DockerifyError(f"{where}: a Docker schema 1 manifest, which dockerify does not read")
    return body


class RegistryStore:
    single_image = False
    keeps_manifests = True

    def __init__(
        self,
        reference: str | Reference,
        options: Options | None = None,
        client: RegistryClient | None = None,
    ) -> None:
        self.ref = parse_reference(reference) if isinstance(reference, str) else reference
        self.where = str(self.ref)
        self._options = options
        self._client = client
        self._read: dict[str, tuple[bytes, str]] = {}

    def remember(self, desc: Descriptor, data: bytes, media_type: str) -> None:
        """A manifest document already fetched (and checked), so reading it again asks nothing."""
        self._read[desc.digest] = (data, media_type)

    @property
    def client(self) -> RegistryClient:
        if self._client is None:  # connecting probes the registry: only when used
            self._client = RegistryClient(self.ref, self._options or Options.from_env())
        return self._client

    def resolve(self, tag: str | None = None) -> Descriptor:
        data, media_type, digest = self.client.get_manifest_bytes(tag or self.ref.reference)
        body = parse_json_object(data, f"{self.where}: the manifest")
        return Descriptor(document_media_type(media_type, body), digest, len(data))

    def tags(self) -> list[str]:
        return list(self.client.tags())

    def read_manifest(self, desc: Descriptor) -> tuple[bytes, str]:
        if desc.digest in self._read:
            return self._read[desc.digest]
        data, media_type, _ = self.client.get_manifest_bytes(desc.digest)
        if len(data) != desc.size:
            raise CorruptInput(
                f"{self.where}: manifest {desc.digest} is {len(data)} bytes, the index says {desc.size}"
            )
        parse_manifest(data, media_type, f"{self.where}@{desc.digest}")
        return data, media_type

    def read_blob(self, desc: Descriptor) -> bytes:
        # Counted, bounded and hashed by oci/blobcheck.py, as every store's reads are.
        return self.client.fetch_blob_bytes(desc.digest, desc.size, METADATA_LIMIT)

    def has_blob(self, desc: Descriptor) -> bool:
        return self.client.has_blob(desc.digest)

    def fetch_blob(
        self, desc: Descriptor, dest: Path, progress: Callable[[int], object] | None = None
    ) -> None:
        self.client.fetch_blob_to(desc.digest, desc.size, dest, progress)

    def blob_path(self, desc: Descriptor) -> Path | None:
        return None

    def mount_blob(self, desc: Descriptor, repositories: Sequence[str]) -> bool:
        for repository in repositories:
            if repository != self.ref.repository and self.client.mount_blob(desc.digest, repository):
                log.debug("%s: mounted %s from %s", self.where, desc.digest, repository)
                return True
        return False

    def write_blob(
        self,
        desc: Descriptor,
        src: Path,
        progress: Callable[[int], object] | None = None,
        take: bool = False,
    ) -> bool:
        told = 0

        def tell(n: int) -> None:
            nonlocal told
            told += n
            if progress is not None:
                progress(n)

        sent = self.client.push_blob_file(src, desc.digest, desc.size, tell)
        if desc.size > told:  # small blobs go in one request, without progress
            tell(desc.size - told)
        return sent

    def write_manifest(self, desc: Descriptor, data: bytes) -> None:
        body = parse_json_object(data, f"{self.where}: manifest {desc.digest}")
        self.client.put_manifest_bytes(data, document_media_type(desc.media_type, body), desc.digest)

    def write_tag(self, desc: Descriptor, tag: str | None = None, data: bytes | None = None) -> None:
        """With `data` (not yet written), one PUT under the tag; without, the manifest is read back."""
        media_type = ""
        if data is None:
            data, media_type = self.read_manifest(desc)
        body = parse_json_object(data, f"{self.where}: manifest {desc.digest}")
        self.client.put_manifest_bytes(
            data, document_media_type(desc.media_type or media_type, body), tag or self.ref.tag or "latest"
        )

    def __enter__(self) -> RegistryStore:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        pass
