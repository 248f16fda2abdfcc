"""Signatures in cosign's format (sigstore/cosign specs/SIGNATURE_SPEC.md), with local keys.

- The signed payload is a "simple signing" document naming the manifest digest:
  {"critical":{"identity":{"docker-reference":R},"image":{"docker-manifest-digest":D},
   "type":"cosign container image signature"},"optional":null}
  serialised exactly as cosign's Go code does (that field order, no spaces).
- The signature is ECDSA P-256 over SHA-256 of the payload bytes, ASN.1 DER, base64.
- Both live in an OCI image manifest tagged `sha256-<hex>.sig` next to the image: the payload is
  a layer of media type application/vnd.dev.cosign.simplesigning.v1+json whose annotation
  `dev.cosignproject.cosign/signature` holds the signature. Several signatures are several layers.
- In a local OCI layout the same manifest is stored and tagged `sha256-<hex>.sig` in index.json.

Keys: `keygen` writes an ECDSA P-256 key pair as PEM, the private key PKCS#8 encrypted with a
password (from a prompt or DOCKERIFY_KEY_PASSWORD); the public key is PKIX PEM, which cosign's
`verify --key` reads.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import getpass
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from dockerify.errors import CorruptInput, DockerifyError, NotFound
from dockerify.oci.layout import Layout, is_index
from dockerify.oci.model import OCI_CONFIG, OCI_MANIFEST, REF_NAME, Descriptor, canonical_json, sha256_digest
from dockerify.oci.refs import ImageRef, parse_ref
from dockerify.registry.client import Options, RegistryClient
from dockerify.registry.reference import Reference, parse_reference

SIMPLESIGNING_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
COSIGN_SIGNATURE_TYPE = "cosign container image signature"
PASSWORD_ENV = "DOCKERIFY_KEY_PASSWORD"
_PASSWORD_ENVS = (PASSWORD_ENV, "COSIGN_PASSWORD")
_SIG_TAG = re.compile(r"^sha256-[0-9a-f]{64}\.(sig|att|sbom)$")


class VerificationError(DockerifyError):
    """An image's signature is missing or does not verify."""


# ---------------------------------------------------------------- format


def signature_tag(digest: str) -> str:
    """`sha256:abc...` -> `sha256-abc....sig` (cosign's tag-based discovery)."""
    algorithm, _, hexpart = digest.partition(":")
    return f"{algorithm}-{hexpart}.sig"


def is_signature_tag(tag: str) -> bool:
    return bool(_SIG_TAG.match(tag))


def simple_signing_payload(docker_reference: str, digest: str) -> bytes:
    """The payload cosign signs, byte for byte as Go's encoding/json writes cosign's payload type."""
    doc = {
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": digest},
            "type": COSIGN_SIGNATURE_TYPE,
        },
        "optional": None,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def _signature_config(layers: list[Descriptor]) -> bytes:
    """The small image config cosign gives its signature manifests (go-containerregistry's empty
    image with the payload layers appended)."""
    config = {
        "architecture": "",
        "config": {},
        "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"} for _ in layers],
        "os": "",
        "rootfs": {"diff_ids": [d.digest for d in layers], "type": "layers"},
    }
    return json.dumps(config, separators=(",", ":")).encode()


def signature_manifest(layers: list[Descriptor]) -> tuple[bytes, bytes]:
    """(manifest bytes, config bytes) of a `.sig` manifest holding these payload layers."""
    config = _signature_config(layers)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "size": len(config), "digest": sha256_digest(config)},
        "layers": [d.to_json() for d in layers],
    }
    return canonical_json(manifest), config


# ---------------------------------------------------------------- keys


def read_password(purpose: str, confirm: bool = False) -> bytes:
    """The key password from DOCKERIFY_KEY_PASSWORD (or COSIGN_PASSWORD), else a prompt."""
    for name in _PASSWORD_ENVS:
        if name in os.environ:
            return os.environ[name].encode()
    if not sys.stdin.isatty():
        raise DockerifyError(
            f"a password is needed {purpose} and there is no terminal to ask for it",
            hint=f"set {PASSWORD_ENV}",
        )
    first = getpass.getpass(f"Password {purpose}: ")
    if confirm and getpass.getpass("Password again: ") != first:
        raise DockerifyError("the two passwords differ")
    return first.encode()


def generate_keypair(password: bytes) -> tuple[bytes, bytes]:
    """(private key PEM, PKCS#8 encrypted with `password`; public key PEM)."""
    if not password:
        raise DockerifyError(
            "an empty password would leave the private key unencrypted", hint=f"set {PASSWORD_ENV}"
        )
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


def _write_new(path: Path, data: bytes, mode: int, force: bool) -> None:
    if path.exists() and not force:
        raise DockerifyError(f"{path}: already exists", hint="choose another --output-key-prefix, or --force")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def keygen(prefix: str | Path, password: bytes, force: bool = False) -> tuple[Path, Path]:
    """Write PREFIX.key (mode 0600) and PREFIX.pub; return their paths."""
    prefix = Path(prefix)
    key_path, pub_path = prefix.with_name(prefix.name + ".key"), prefix.with_name(prefix.name + ".pub")
    if not key_path.parent.is_dir():
        raise NotFound(f"{key_path.parent}: no such directory")
    private, public = generate_keypair(password)
    _write_new(key_path, private, 0o600, force)
    _write_new(pub_path, public, 0o644, force)
    return key_path, pub_path


def load_private_key(path: str | Path, password: Callable[[], bytes]) -> ec.EllipticCurvePrivateKey:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise NotFound(f"{path}: no such key file") from None
    if b"SIGSTORE PRIVATE KEY" in data or b"COSIGN PRIVATE KEY" in data:
        raise DockerifyError(
            f"{path}: a key in cosign's own encrypted format, which dockerify does not read",
            hint="make a key with `dockerify keygen` (cosign verifies its signatures with the .pub)",
        )
    if b"PRIVATE KEY" not in data:
        raise DockerifyError(
            f"{path}: not a PEM private key", hint="pass the .key file `dockerify keygen` wrote"
        )
    secret = password() if b"ENCRYPTED" in data else None
    try:
        key = serialization.load_pem_private_key(data, secret)
    except (ValueError, TypeError):
        raise DockerifyError(
            f"{path}: cannot decrypt the private key (wrong password?)", hint=f"check {PASSWORD_ENV}"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise DockerifyError(f"{path}: not an ECDSA P-256 key")
    return key


def load_public_key(path: str | Path) -> ec.EllipticCurvePublicKey:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise NotFound(f"{path}: no such key file") from None
    if b"PRIVATE KEY" in data:
        raise DockerifyError(
            f"{path}: a private key; verification takes the public key", hint="pass the .pub file"
        )
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        raise DockerifyError(f"{path}: not a PEM public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise DockerifyError(f"{path}: not an ECDSA P-256 public key")
    return key


def sign_payload(key: ec.EllipticCurvePrivateKey, payload: bytes) -> str:
    return base64.b64encode(key.sign(payload, ec.ECDSA(hashes.SHA256()))).decode()


def verify_payload(key: ec.EllipticCurvePublicKey, payload: bytes, signature: str) -> bool:
    try:
        raw = base64.b64decode(signature, validate=True)
        key.verify(raw, payload, ec.ECDSA(hashes.SHA256()))
        return True
    except (InvalidSignature, binascii.Error, ValueError):
        return False


# ---------------------------------------------------------------- where signatures live


class SignatureStore(Protocol):
    where: str
    docker_reference: str

    def resolve(self) -> Descriptor: ...

    def manifest_bytes(self, desc: Descriptor) -> bytes: ...

    def signatures(self, digest: str) -> tuple[dict[str, Any], Callable[[Descriptor], bytes]] | None: ...

    def write(self, digest: str, manifest: bytes, blobs: list[bytes]) -> None: ...


def _parse_manifest(data: bytes, where: str) -> dict[str, Any]:
    try:
        body = json.loads(data)
    except ValueError:
        raise CorruptInput(f"{where}: signature manifest is not JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("layers", []), list):
        raise CorruptInput(f"{where}: signature manifest is not an image manifest")
    return body


class RegistryStore:
    def __init__(self, client: RegistryClient, ref: Reference) -> None:
        self.client, self.ref = client, ref
        self.where = str(ref)
        self.docker_reference = ref.name

    def resolve(self) -> Descriptor:
        data, media_type, digest = self.client.get_manifest_bytes(self.ref.reference)
        return Descriptor(media_type or _media_type(data), digest, len(data))

    def manifest_bytes(self, desc: Descriptor) -> bytes:
        data, _, _ = self.client.get_manifest_bytes(desc.digest)
        if len(data) != desc.size:
            raise CorruptInput(
                f"{self.where}: manifest {desc.digest} is {len(data)} bytes, its descriptor says {desc.size}"
            )
        return data

    def signatures(self, digest: str) -> tuple[dict[str, Any], Callable[[Descriptor], bytes]] | None:
        tag = signature_tag(digest)
        try:
            data, _, _ = self.client.get_manifest_bytes(tag)
        except NotFound:
            return None
        return _parse_manifest(data, f"{self.where}:{tag}"), lambda d: self.client.fetch_blob_bytes(
            d.digest, d.size
        )

    def write(self, digest: str, manifest: bytes, blobs: list[bytes]) -> None:
        for blob in blobs:
            self.client.push_blob_bytes(blob)
        self.client.put_manifest_bytes(manifest, OCI_MANIFEST, signature_tag(digest))


def _media_type(data: bytes) -> str:
    try:
        body = json.loads(data)
    except ValueError:
        return OCI_MANIFEST
    if isinstance(body, dict) and body.get("mediaType"):
        return str(body["mediaType"])
    return (
        "application/vnd.oci.image.index.v1+json"
        if isinstance(body, dict) and "manifests" in body
        else OCI_MANIFEST
    )


def resolve_local(layout: Layout, tag: str | None, where: str) -> Descriptor:
    """Layout.resolve, but signature tags do not count as images."""
    if tag is not None:
        return layout.resolve(tag)
    images = [d for d in layout.manifests() if not is_signature_tag(d.annotations.get(REF_NAME, ""))]
    if len(images) == 1:
        return images[0]
    if not images:
        raise NotFound(f"{where}: the layout holds no image")
    tags = [d.annotations.get(REF_NAME, "?") for d in images]
    raise NotFound(f"{where}: several images in the layout; name one", hint="tags: " + ", ".join(tags))


def local_signatures(layout: Layout) -> dict[str, Descriptor]:
    """Signature manifests of a layout by signature tag."""
    out = {}
    for d in layout.manifests():
        tag = d.annotations.get(REF_NAME, "")
        if is_signature_tag(tag):
            out[tag] = d
    return out


def _local_identity(path: str) -> str:
    name = re.sub(r"[^a-z0-9]+", "-", Path(path).resolve().name.lower()).strip("-") or "image"
    return f"localhost/{name}"


class LayoutStore:
    def __init__(self, layout: Layout, tag: str | None, where: str, identity: str | None = None) -> None:
        self.layout, self.tag, self.where = layout, tag, where
        self.docker_reference = identity or _local_identity(str(layout.root))

    def resolve(self) -> Descriptor:
        return resolve_local(self.layout, self.tag, self.where)

    def manifest_bytes(self, desc: Descriptor) -> bytes:
        data = self.layout.blobs.read(desc.digest)
        if len(data) != desc.size:
            raise CorruptInput(
                f"{self.where}: manifest {desc.digest} is {len(data)} bytes, its descriptor says {desc.size}"
            )
        return data

    def signatures(self, digest: str) -> tuple[dict[str, Any], Callable[[Descriptor], bytes]] | None:
        desc = local_signatures(self.layout).get(signature_tag(digest))
        if desc is None:
            return None

        def fetch(d: Descriptor) -> bytes:
            data = self.layout.blobs.read(d.digest)
            if len(data) != d.size:
                raise CorruptInput(
                    f"{self.where}: blob {d.digest} is {len(data)} bytes, its descriptor says {d.size}"
                )
            return data

        return _parse_manifest(fetch(desc), f"{self.where}:{signature_tag(digest)}"), fetch

    def write(self, digest: str, manifest: bytes, blobs: list[bytes]) -> None:
        for blob in blobs:
            self.layout.blobs.put(blob)
        desc = Descriptor(OCI_MANIFEST, self.layout.blobs.put(manifest), len(manifest))
        self.layout.tag(desc, signature_tag(digest))


@contextlib.contextmanager
def open_store(
    text: str | ImageRef, options: Options | None = None, writable: bool = False, identity: str | None = None
) -> Iterator[SignatureStore]:
    """The signature store of an image reference: a registry, an oci: layout, or (read only)
    an oci-archive."""
    ref = parse_ref(text) if isinstance(text, str) else text
    if ref.transport == "registry":
        r = parse_reference(ref.path)
        store = RegistryStore(RegistryClient(r, options), r)
        if identity:
            store.docker_reference = identity
        yield store
    elif ref.transport == "oci":
        yield LayoutStore(Layout.open(ref.path), ref.tag, str(ref), identity)
    elif ref.transport == "oci-archive" and not writable:
        from dockerify.oci.archive import safe_extract

        with tempfile.TemporaryDirectory(prefix="dockerify-verify-") as tmp:
            safe_extract(ref.path, Path(tmp))
            yield LayoutStore(Layout.open(tmp), ref.tag, str(ref), identity)
    else:
        what = "store" if writable else "hold"
        raise DockerifyError(
            f"{ref}: a {ref.transport} image cannot {what} signatures",
            hint="sign and verify a registry reference or an oci:DIR layout"
            + ("" if writable else " (or an oci-archive)"),
        )


# ---------------------------------------------------------------- sign and verify


def _targets(store: SignatureStore, root: Descriptor, recursive: bool) -> list[Descriptor]:
    targets = [root]
    if recursive:
        body = json.loads(store.manifest_bytes(root))
        if is_index(root, body):
            targets += [Descriptor.from_json(d) for d in body.get("manifests", [])]
    return targets


def sign_store(store: SignatureStore, key: ec.EllipticCurvePrivateKey, recursive: bool = False) -> list[str]:
    root = store.resolve()
    signed = []
    for target in _targets(store, root, recursive):
        payload = simple_signing_payload(store.docker_reference, target.digest)
        layer = Descriptor(
            SIMPLESIGNING_TYPE,
            sha256_digest(payload),
            len(payload),
            annotations={SIGNATURE_ANNOTATION: sign_payload(key, payload)},
        )
        layers = []
        existing = store.signatures(target.digest)
        if existing is not None:
            layers = [Descriptor.from_json(d) for d in existing[0].get("layers", [])]
        layers.append(layer)
        manifest, config = signature_manifest(layers)
        store.write(target.digest, manifest, [payload, config])
        signed.append(target.digest)
    return signed


@dataclass
class Verified:
    digest: str
    docker_reference: str
    signatures: int  # how many of the stored signatures verified


def verify_digest(
    store: SignatureStore, digest: str, key: ec.EllipticCurvePublicKey, key_name: str
) -> Verified:
    """Check that a signature made with `key` names `digest`; raise VerificationError if none does."""
    found = store.signatures(digest)
    if found is None:
        raise VerificationError(
            f"{store.where}: no signature for {digest} (no {signature_tag(digest)} manifest)",
            hint="sign the image with `dockerify sign`, or check that this is the image you meant",
        )
    manifest, fetch = found
    reasons: list[str] = []
    good = 0
    reference = ""
    for raw in manifest.get("layers", []):
        try:
            layer = Descriptor.from_json(raw)
        except (KeyError, TypeError, ValueError):
            reasons.append("a malformed layer descriptor")
            continue
        signature = layer.annotations.get(SIGNATURE_ANNOTATION)
        if layer.media_type != SIMPLESIGNING_TYPE or not signature:
            continue
        payload = fetch(layer)
        if not verify_payload(key, payload, signature):
            reasons.append(f"a signature that {key_name} does not verify")
            continue
        try:
            critical = json.loads(payload)["critical"]
            kind, named = critical["type"], critical["image"]["docker-manifest-digest"]
            ref = critical.get("identity", {}).get("docker-reference", "")
        except (ValueError, KeyError, TypeError):
            reasons.append("a signed payload that is not a simple signing document")
            continue
        if kind != COSIGN_SIGNATURE_TYPE:
            reasons.append(f"a signed payload of type {kind!r}")
            continue
        if named != digest:
            reasons.append(f"a signature for {named}, not for {digest}")
            continue
        good += 1
        reference = ref
    if not good:
        raise VerificationError(
            f"{store.where}: no signature on {digest} verifies with {key_name}: "
            + ("; ".join(dict.fromkeys(reasons)) or "the signature manifest holds no cosign signature"),
            hint="the image changed since it was signed, or it was signed with another key",
        )
    return Verified(digest, reference, good)


def sign(
    text: str,
    key_path: str,
    recursive: bool = False,
    options: Options | None = None,
    identity: str | None = None,
    password: Callable[[], bytes] | None = None,
) -> list[str]:
    """Sign the image `text` names (registry reference or oci:DIR[:TAG]); return the signed digests."""
    key = load_private_key(key_path, password or (lambda: read_password(f"for {key_path}")))
    with open_store(text, options, writable=True, identity=identity) as store:
        return sign_store(store, key, recursive)


def verify(
    text: str, key_path: str, recursive: bool = False, options: Options | None = None
) -> list[Verified]:
    """Verify the image `text` names (and with `recursive` each platform manifest of its index)."""
    key = load_public_key(key_path)
    with open_store(text, options) as store:
        root = store.resolve()
        return [verify_digest(store, t.digest, key, key_path) for t in _targets(store, root, recursive)]
