"""The typed OCI model: media types know their kind, and parse -> serialise gives the bytes the
code writes today (digests of existing builds must not change)."""

import pytest

from dockerify.errors import CorruptInput
from dockerify.oci.image import ImageConfig as ConfigBuilder
from dockerify.oci.image import ImageOptions, index_json, manifest_json
from dockerify.oci.mediatype import Compression, Kind, MediaType, document_kind, is_index
from dockerify.oci.model import (
    OCI_CONFIG,
    Descriptor,
    ImageConfig,
    Index,
    Manifest,
    canonical_json,
    parse_document,
    sha256_digest,
)
from dockerify.platform import Platform


def _d(n: int, media_type: str = "application/vnd.oci.image.layer.v1.tar+gzip", **kw) -> Descriptor:
    return Descriptor(media_type, "sha256:" + f"{n:064x}", 100 + n, **kw)


def test_media_types_know_their_kind_and_compression() -> None:
    assert MediaType.OCI_INDEX.kind is Kind.INDEX
    assert MediaType.DOCKER_MANIFEST_LIST.kind is Kind.INDEX
    assert MediaType.DOCKER_MANIFEST.kind is Kind.MANIFEST
    assert MediaType.DOCKER_CONFIG.kind is Kind.CONFIG
    assert MediaType.OCI_LAYER_ZSTD.compression is Compression.ZSTD
    assert MediaType.DOCKER_LAYER_GZIP.compression is Compression.GZIP
    assert MediaType.OCI_LAYER.compression is Compression.NONE
    assert MediaType.OCI_CONFIG.compression is None
    assert MediaType.DOCKER_LAYER_GZIP.is_docker and not MediaType.OCI_LAYER_GZIP.is_docker
    assert MediaType.layer(Compression.GZIP, docker=True) is MediaType.DOCKER_LAYER_GZIP
    assert MediaType.lookup("application/vnd.dockerify.sdcard.v1") is None


def test_one_answer_to_is_this_an_index() -> None:
    assert is_index(MediaType.OCI_INDEX.value, {})
    assert is_index("", {"mediaType": MediaType.DOCKER_MANIFEST_LIST.value})
    assert is_index("", {"schemaVersion": 2, "manifests": []})  # an older writer naming no type
    assert not is_index("", {"manifests": [], "layers": []})
    assert document_kind(MediaType.OCI_MANIFEST.value, {"manifests": []}) is Kind.MANIFEST


def _written_documents() -> list[bytes]:
    """Manifests and indexes as build, --chunked, multi-platform builds and signing write them."""
    cfg = _d(1, OCI_CONFIG)
    layers = [_d(2), _d(3, annotations={"io.dockerify.chunk": "libc6"})]
    single = canonical_json(manifest_json(cfg, layers))
    annotated = canonical_json(manifest_json(cfg, layers, {"org.opencontainers.image.created": "x"}))
    arm = Platform("linux", "arm", "v7")
    index = canonical_json(
        index_json(
            [
                Descriptor(MediaType.OCI_MANIFEST.value, sha256_digest(single), len(single), arm),
                Descriptor(
                    MediaType.OCI_MANIFEST.value,
                    sha256_digest(annotated),
                    len(annotated),
                    Platform("linux", "unknown", ""),
                    {"vnd.docker.reference.type": "attestation-manifest"},
                ),
            ],
            {"org.opencontainers.image.ref.name": "v1"},
        )
    )
    referrer = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MediaType.OCI_MANIFEST.value,
            "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json",
            "config": _d(9, "application/vnd.oci.empty.v1+json").to_json(),
            "layers": [_d(10, "application/vnd.dev.cosign.simplesigning.v1+json").to_json()],
            "subject": _d(11, MediaType.OCI_MANIFEST.value).to_json(),
        }
    )
    return [single, annotated, index, referrer]


@pytest.mark.parametrize("data", _written_documents())
def test_parse_then_serialise_is_byte_identical(data: bytes) -> None:
    doc = parse_document(data, "", "test")
    assert doc.to_bytes() == data


def test_foreign_keys_survive_and_docker_types_parse() -> None:
    data = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MediaType.DOCKER_MANIFEST.value,
            "config": _d(1, MediaType.DOCKER_CONFIG.value).to_json(),
            "layers": [_d(2, MediaType.DOCKER_LAYER_GZIP.value).to_json()],
            "x-vendor": {"k": [1, 2]},
        }
    )
    m = Manifest.parse(data, "test")
    assert m.layers[0].known_type is MediaType.DOCKER_LAYER_GZIP
    assert m.to_bytes() == data
    with pytest.raises(CorruptInput, match="an image manifest, not an index"):
        Index.parse(data, "test")


def test_image_config_round_trip() -> None:
    builder = ConfigBuilder(
        Platform("linux", "arm", "v6"), ["sha256:" + "a" * 64], 0, ImageOptions(labels=(("a", "b"),))
    )
    data = canonical_json(builder.to_json())
    config = ImageConfig.parse(data, "test")
    assert config.platform == Platform("linux", "arm", "v6")
    assert config.labels == {"a": "b"}
    assert config.to_bytes() == data


@pytest.mark.parametrize(
    "data, message",
    [
        (b"[]", "not a JSON object"),
        (b'{"schemaVersion": 1, "layers": []}', "schemaVersion 1"),
        (b'{"schemaVersion": 2, "layers": []}', "without a config"),
        (b'{"schemaVersion": 2, "config": {"digest": 3}, "layers": []}', "descriptor"),
        (b'{"schemaVersion": 2, "manifests": {}}', "not a list of descriptors"),
    ],
)
def test_malformed_documents_are_refused_by_name(data: bytes, message: str) -> None:
    with pytest.raises(CorruptInput, match=message):
        parse_document(data, "", "test")
