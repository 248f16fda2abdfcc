"""cosign's signature format, checked against the shape sigstore/cosign specs/SIGNATURE_SPEC.md
documents, and the key handling around it."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from dockerify.errors import DockerifyError
from dockerify.oci.layout import Layout
from dockerify.oci.model import Descriptor, sha256_digest
from dockerify.registry import signing
from dockerify.registry.signing import (
    SIGNATURE_ANNOTATION,
    SIMPLESIGNING_TYPE,
    KeyFormat,
    LayoutStore,
    VerificationError,
    keygen,
    load_private_key,
    load_public_key,
    sign_store,
    signature_manifest,
    signature_tag,
    simple_signing_payload,
    verify_digest,
    verify_payload,
)

DIGEST = "sha256:97fc222cee7991b5b061d4d4afdb5f3428fcb0c9054e1690313786befa1e4e36"


def test_tag_based_discovery_matches_the_spec_example() -> None:
    # SIGNATURE_SPEC.md, "Tag-based Discovery": replace ':' with '-', append '.sig'
    assert (
        signature_tag(DIGEST) == "sha256-97fc222cee7991b5b061d4d4afdb5f3428fcb0c9054e1690313786befa1e4e36.sig"
    )


def test_payload_is_cosigns_simple_signing_document() -> None:
    payload = simple_signing_payload("gcr.io/dlorenc-vmtest2/demo", DIGEST)
    # exactly what Go's encoding/json writes for cosign's payload type (field order, no spaces, null optional)
    assert payload == (
        b'{"critical":{"identity":{"docker-reference":"gcr.io/dlorenc-vmtest2/demo"},'
        b'"image":{"docker-manifest-digest":"' + DIGEST.encode() + b'"},'
        b'"type":"cosign container image signature"},"optional":null}'
    )
    doc = json.loads(payload)
    assert list(doc) == ["critical", "optional"]
    assert list(doc["critical"]) == ["identity", "image", "type"]
    assert doc["critical"]["type"] == "cosign container image signature"


def test_signature_manifest_shape() -> None:
    payload = simple_signing_payload("r/x", DIGEST)
    layer = Descriptor(
        SIMPLESIGNING_TYPE, sha256_digest(payload), len(payload), annotations={SIGNATURE_ANNOTATION: "MEUC"}
    )
    raw, config = signature_manifest([layer])
    m = json.loads(raw)
    assert m["schemaVersion"] == 2 and m["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert m["config"] == {
        "mediaType": "application/vnd.oci.image.config.v1+json",
        "size": len(config),
        "digest": sha256_digest(config),
    }
    assert m["layers"] == [
        {
            "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
            "size": len(payload),
            "digest": sha256_digest(payload),
            "annotations": {"dev.cosignproject.cosign/signature": "MEUC"},
        }
    ]
    assert json.loads(config)["rootfs"] == {"type": "layers", "diff_ids": [sha256_digest(payload)]}


def test_keys_and_signatures(tmp_path: Path) -> None:
    key_path, pub_path = keygen(tmp_path / "k", b"pw", fmt=KeyFormat.PKCS8)
    assert key_path.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert key_path.stat().st_mode & 0o777 == 0o600
    key = load_private_key(key_path, lambda: b"pw")
    pub = load_public_key(pub_path)
    assert isinstance(key.key, ec.EllipticCurvePrivateKey) and isinstance(key.key.curve, ec.SECP256R1)
    payload = simple_signing_payload("r/x", DIGEST)
    sig = signing.sign_payload(key, payload)
    # ECDSA-P256 over SHA-256 of the payload, ASN.1 DER, base64 (std alphabet)
    assert isinstance(pub.key, ec.EllipticCurvePublicKey)
    pub.key.verify(base64.b64decode(sig), payload, ec.ECDSA(hashes.SHA256()))
    assert verify_payload(pub, payload, sig)
    assert not verify_payload(pub, payload + b" ", sig)
    assert not verify_payload(pub, payload, "not base64!")
    with pytest.raises(DockerifyError, match="wrong password"):
        load_private_key(key_path, lambda: b"nope")
    with pytest.raises(DockerifyError, match="private key; verification takes the public key"):
        load_public_key(key_path)
    with pytest.raises(DockerifyError, match="already exists"):
        keygen(tmp_path / "k", b"pw")
    with pytest.raises(DockerifyError, match="empty password"):
        keygen(tmp_path / "k2", b"", fmt=KeyFormat.PKCS8)
    other = ec.generate_private_key(ec.SECP256K1())
    (tmp_path / "k1.pub").write_bytes(
        other.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    with pytest.raises(DockerifyError, match="secp256k1 public key, which cosign does not use"):
        load_public_key(tmp_path / "k1.pub")


def test_layout_sign_and_verify(tmp_path: Path) -> None:
    layout = Layout.create(tmp_path / "l")
    img = layout.put_json(
        {"schemaVersion": 2, "layers": [], "config": {}}, "application/vnd.oci.image.manifest.v1+json"
    )
    layout.tag(img, "v1")
    key_path, pub_path = keygen(tmp_path / "k", b"pw")
    store = LayoutStore(layout, "v1", "oci:test", identity="localhost/test")
    signed = sign_store(store, load_private_key(key_path, lambda: b"pw"))
    assert [(s.digest, s.added) for s in signed] == [(img.digest, True)]
    ok = verify_digest(store, img.digest, load_public_key(pub_path), "k.pub")
    assert ok.docker_reference == "localhost/test" and ok.signatures == 1
    # the signature names this digest only
    with pytest.raises(VerificationError, match="no signature"):
        verify_digest(store, DIGEST, load_public_key(pub_path), "k.pub")
    _, other_pub = keygen(tmp_path / "other", b"pw")
    with pytest.raises(VerificationError, match="does not verify"):
        verify_digest(store, img.digest, load_public_key(other_pub), "other.pub")
    # resolving the image ignores the signature tag
    assert LayoutStore(layout, None, "oci:test").resolve().digest == img.digest
