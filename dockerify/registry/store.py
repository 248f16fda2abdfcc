"""A registry repository as an image store (REGISTRY/REPO[:TAG|@DIGEST]), through
registry/client.py; options (TLS, credentials, retries) come from DOCKERIFY_* variables."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

from dockerify.errors import CorruptInput
from dockerify.oci.mediatype import document_media_type
from dockerify.oci.model import Descriptor, parse_json_object
from dockerify.registry.client import MANIFEST_LIMIT, Options, RegistryClient
from dockerify.registry.reference import parse_reference


class RegistryStore:
    single_image = False
    keeps_manifests = True

    def __init__(self, reference: str, options: Options | None = None) -> None:
        self.ref = parse_reference(reference)
        self.where = str(self.ref)
        self._options = options
        self._client: RegistryClient | None = None

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
        data, media_type, _ = self.client.get_manifest_bytes(desc.digest)
        if len(data) != desc.size:
            raise CorruptInput(f"{self.where}: manifest {desc.digest} is {len(data)} bytes, not {desc.size}")
        return data, media_type

    def read_blob(self, desc: Descriptor) -> bytes:
        return self.client.fetch_blob_bytes(desc.digest, desc.size, MANIFEST_LIMIT)

    def has_blob(self, desc: Descriptor) -> bool:
        return self.client.has_blob(desc.digest)

    def fetch_blob(self, desc: Descriptor, dest: Path) -> None:
        self.client.fetch_blob_to(desc.digest, desc.size, dest)

    def write_blob(self, desc: Descriptor, src: Path) -> None:
        self.client.push_blob_file(src, desc.digest, desc.size)

    def write_manifest(self, desc: Descriptor, data: bytes) -> None:
        body = parse_json_object(data, f"{self.where}: manifest {desc.digest}")
        self.client.put_manifest_bytes(data, document_media_type(desc.media_type, body), desc.digest)

    def write_tag(self, desc: Descriptor, tag: str | None = None) -> None:
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
