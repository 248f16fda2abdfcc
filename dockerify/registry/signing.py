"""Signatures and attestations in cosign's format (sigstore/cosign specs/SIGNATURE_SPEC.md), with
local keys (dockerify.trust.keys: cosign's encrypted keys and PKCS#8).

- The signed payload is a "simple signing" document naming the manifest digest:
  {"critical":{"identity":{"docker-reference":R},"image":{"docker-manifest-digest":D},
   "type":"cosign container image signature"},"optional":null}
  serialised exactly as cosign's Go code does (that field order, no spaces).
- The signature (see trust.keys for the algorithms) is base64 in the layer annotation
  `dev.cosignproject.cosign/signature`; the payload is a layer of media type
  application/vnd.dev.cosign.simplesigning.v1+json. Several signatures are several layers.
- Two places to keep them, as cosign does:
  * tags (default): an OCI image manifest tagged `sha256-<hex>.sig` next to the image
    (`.att` for attestations); in a local OCI layout the same manifest is tagged in index.json;
  * OCI 1.1 referrers (`--referrers`, cosign's `--registry-referrers-mode=oci-1-1`): a manifest
    whose `subject` is the image, config media type and artifactType
    application/vnd.dev.cosign.artifact.sig.v1+json (`.att.` for attestations), pushed by
    digest and found through `GET /v2/<name>/referrers/<digest>`, or, where the registry has no
    referrers API (Debian's docker-registry 2.8), through the fallback index tagged
    `sha256-<hex>` that the writer keeps up to date (the distribution spec's referrers tag schema).
  Verification looks in both places.
- Signing is idempotent, like cosign's duplicate detection: a layer with the same payload whose
  signature verifies with the signing key already counts, and no second layer is added.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from dockerify.errors import CorruptInput, DockerifyError, NotFound
from dockerify.oci.archive import is_compressed, oci_archive_stream, safe_extract, write_stream
from dockerify.oci.layout import Layout
from dockerify.oci.mediatype import document_media_type, is_index
from dockerify.oci.model import (
    DOCKER_MANIFEST_LIST as DOCKER_INDEX,
)
from dockerify.oci.model import (
    OCI_CONFIG,
    OCI_INDEX,
    OCI_MANIFEST,
    REF_NAME,
    Descriptor,
    canonical_json,
    sha256_digest,
)
from dockerify.oci.refs import ImageRef, image_ref
from dockerify.registry.client import Options, RegistryClient
from dockerify.registry.reference import Reference, parse_reference
from dockerify.trust.keys import (
    Algorithm,
    KeyFormat,
    PrivateKey,
    PublicKey,
    generate_keypair,
    keygen,
    load_public_key,
)
from dockerify.trust.keys import (
    load_private_key as _load_private_key,
)

log = logging.getLogger("dockerify")

SIMPLESIGNING_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
DSSE_TYPE = "application/vnd.dsse.envelope.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
PREDICATE_ANNOTATION = "predicateType"
COSIGN_SIGNATURE_TYPE = "cosign container image signature"
PASSWORD_ENV = "DOCKERIFY_KEY_PASSWORD"
_PASSWORD_ENVS = (PASSWORD_ENV, "COSIGN_PASSWORD")
_SIG_TAG = re.compile(r"^sha256-[0-9a-f]{64}\.(sig|att|sbom)$")
_FALLBACK_TAG = re.compile(r"^sha256-[0-9a-f]{64}$")

__all__ = [
    "Algorithm",
    "KeyFormat",
    "PrivateKey",
    "PublicKey",
    "generate_keypair",
    "keygen",
    "load_public_key",
]


class VerificationError(DockerifyError):
    """An image's signature is missing or does not verify."""


def artifact_type(kind: str) -> str:
    """cosign's OCI 1.1 artifactType for `sig` and `att` referrers."""
    return f"application/vnd.dev.cosign.artifact.{kind}.v1+json"


# ---------------------------------------------------------------- format


def signature_tag(digest: str, kind: str = "sig") -> str:
    """`sha256:abc...` -> `sha256-abc....sig` (cosign's tag-based discovery)."""
    algorithm, _, hexpart = digest.partition(":")
    return f"{algorithm}-{hexpart}.{kind}"


def fallback_tag(digest: str) -> str:
    """`sha256:abc...` -> `sha256-abc...`: the referrers index of a registry without the API."""
    return digest.replace(":", "-", 1)


def is_signature_tag(tag: str) -> bool:
    return bool(_SIG_TAG.match(tag)) or bool(_FALLBACK_TAG.match(tag))


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


def signature_manifest(
    layers: list[Descriptor], subject: Descriptor | None = None, kind: str = "sig"
) -> tuple[bytes, bytes]:
    """(manifest bytes, config bytes) of a signature manifest holding these layers: for the tag
    scheme, or with `subject` the OCI 1.1 referrer cosign writes (the config's media type is the
    artifactType)."""
    config = _signature_config(layers)
    config_type = OCI_CONFIG if subject is None else artifact_type(kind)
    manifest: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": config_type, "size": len(config), "digest": sha256_digest(config)},
        "layers": [d.to_json() for d in layers],
    }
    if subject is not None:
        manifest["artifactType"] = artifact_type(kind)
        manifest["subject"] = Descriptor(subject.media_type, subject.digest, subject.size).to_json()
    return canonical_json(manifest), config


# ---------------------------------------------------------------- keys


def read_password(purpose: str, confirm: bool = False) -> bytes:
    """The key password from DOCKERIFY_KEY_PASSWORD (or COSIGN_PASSWORD, as cosign reads it),
    else a prompt."""
    for name in _PASSWORD_ENVS:
        if name in os.environ:
            return os.environ[name].encode()
    if not sys.stdin.isatty():
        raise DockerifyError(
            f"a password is needed {purpose} and there is no terminal to ask for it",
            hint=f"set {PASSWORD_ENV} (or COSIGN_PASSWORD)",
        )
    first = getpass.getpass(f"Password {purpose}: ")
    if confirm and getpass.getpass("Password again: ") != first:
        raise DockerifyError("the two passwords differ")
    return first.encode()


def load_private_key(path: str | Path, password: Callable[[], bytes] | None = None) -> PrivateKey:
    return _load_private_key(path, password or (lambda: read_password(f"for {path}")))


def sign_payload(key: PrivateKey, payload: bytes) -> str:
    return key.sign_b64(payload)


def verify_payload(key: PublicKey, payload: bytes, signature: str) -> bool:
    return key.verify_b64(payload, signature)


# ---------------------------------------------------------------- where signatures live

Fetch = Callable[[Descriptor], bytes]


@dataclass(frozen=True)
class Found:
    """One signature (or attestation) manifest and how to read its blobs."""

    where: str  # the tag or digest it was found under, for messages
    manifest: dict[str, Any]
    fetch: Fetch


class SignatureStore(Protocol):
    where: str
    docker_reference: str

    def resolve(self) -> Descriptor: ...
    def manifest_bytes(self, desc: Descriptor) -> bytes: ...

    def tagged(self, digest: str, kind: str) -> Found | None: ...
    def referrers(self, digest: str, kind: str) -> list[Found]: ...

    def write(self, digest: str, manifest: bytes, blobs: list[bytes], kind: str = "sig") -> None: ...
    def write_referrer(self, subject: Descriptor, manifest: bytes, blobs: list[bytes], kind: str) -> None: ...


def _parse_manifest(data: bytes, where: str) -> dict[str, Any]:
    try:
        body = json.loads(data)
    except ValueError:
        raise CorruptInput(f"{where}: signature manifest is not JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("layers", []), list):
        raise CorruptInput(f"{where}: signature manifest is not an image manifest")
    return body


def _referrer_matches(entry: dict[str, Any], kind: str) -> bool:
    return isinstance(entry, dict) and entry.get("artifactType") == artifact_type(kind)


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

    def _fetch(self, d: Descriptor) -> bytes:
        return self.client.fetch_blob_bytes(d.digest, d.size)

    def tagged(self, digest: str, kind: str) -> Found | None:
        tag = signature_tag(digest, kind)
        try:
            data, _, _ = self.client.get_manifest_bytes(tag)
        except NotFound:
            return None
        return Found(tag, _parse_manifest(data, f"{self.where}:{tag}"), self._fetch)

    def referrers(self, digest: str, kind: str) -> list[Found]:
        out = []
        for entry in self.client.referrers(digest):
            if not _referrer_matches(entry, kind) or not isinstance(entry.get("digest"), str):
                continue
            try:
                data, _, _ = self.client.get_manifest_bytes(entry["digest"])
            except NotFound:
                continue  # a fallback index may name a referrer that was deleted since
            body = _parse_manifest(data, f"{self.where}@{entry['digest']}")
            if (body.get("subject") or {}).get("digest") != digest:
                continue  # an index entry whose manifest names another subject is not evidence
            out.append(Found(entry["digest"], body, self._fetch))
        return out

    def write(self, digest: str, manifest: bytes, blobs: list[bytes], kind: str = "sig") -> None:
        for blob in blobs:
            self.client.push_blob_bytes(blob)
        self.client.put_manifest_bytes(manifest, OCI_MANIFEST, signature_tag(digest, kind))

    def write_referrer(self, subject: Descriptor, manifest: bytes, blobs: list[bytes], kind: str) -> None:
        for blob in blobs:
            self.client.push_blob_bytes(blob)
        self.client.put_referrer(manifest, subject.digest, artifact_type(kind))


def _media_type(data: bytes) -> str:
    try:
        body = json.loads(data)
    except ValueError:
        return OCI_MANIFEST
    return document_media_type("", body) if isinstance(body, dict) else OCI_MANIFEST


def resolve_local(layout: Layout, tag: str | None, where: str) -> Descriptor:
    """Layout.resolve, but signature tags (and cosign save's signature entries) do not count as images."""
    if tag is not None:
        return layout.resolve(tag)
    images = [
        d
        for d in layout.manifests()
        if not is_signature_tag(d.annotations.get(REF_NAME, ""))
        and d.annotations.get(COSIGN_KIND, "") not in (COSIGN_SIGS, COSIGN_ATTS)
        and d.artifact_type not in (artifact_type("sig"), artifact_type("att"))
    ]
    if len(images) == 1:
        return images[0]
    if not images:
        raise NotFound(f"{where}: the layout holds no image")
    tags = [d.annotations.get(REF_NAME, "?") for d in images]
    raise NotFound(f"{where}: several images in the layout; name one", hint="tags: " + ", ".join(tags))


# `cosign save` marks the entries of its layout's index.json with these instead of tags.
COSIGN_KIND = "kind"
COSIGN_IMAGE = ("dev.cosignproject.cosign/image", "dev.cosignproject.cosign/imageIndex")
COSIGN_SIGS = "dev.cosignproject.cosign/sigs"
COSIGN_ATTS = "dev.cosignproject.cosign/atts"


def local_signatures(layout: Layout) -> dict[str, Descriptor]:
    """Signature and attestation manifests of a layout by tag (`sha256-<hex>.sig`/`.att`)."""
    out = {}
    for d in layout.manifests():
        tag = d.annotations.get(REF_NAME, "")
        if _SIG_TAG.match(tag):
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
        return self._fetch(desc)

    def _fetch(self, d: Descriptor) -> bytes:
        data = self.layout.blobs.read(d.digest)
        if len(data) != d.size:
            raise CorruptInput(
                f"{self.where}: blob {d.digest} is {len(data)} bytes, its descriptor says {d.size}"
            )
        return data

    def tagged(self, digest: str, kind: str) -> Found | None:
        tag = signature_tag(digest, kind)
        desc = local_signatures(self.layout).get(tag)
        if desc is None:
            desc = self._cosign_saved(digest, kind)
            if desc is None:
                return None
        return Found(tag, _parse_manifest(self._fetch(desc), f"{self.where}:{tag}"), self._fetch)

    def _cosign_saved(self, digest: str, kind: str) -> Descriptor | None:
        """The signatures of a `cosign save` layout: one image entry, one `sigs` (`atts`) entry."""
        entries = self.layout.manifests()
        images = [d for d in entries if d.annotations.get(COSIGN_KIND) in COSIGN_IMAGE]
        if len(images) != 1 or images[0].digest != digest:
            return None
        wanted = COSIGN_SIGS if kind == "sig" else COSIGN_ATTS
        return next((d for d in entries if d.annotations.get(COSIGN_KIND) == wanted), None)

    def referrers(self, digest: str, kind: str) -> list[Found]:
        out = []
        for d in self.layout.manifests():
            if d.artifact_type != artifact_type(kind):
                continue
            body = _parse_manifest(self._fetch(d), f"{self.where}@{d.digest}")
            if (body.get("subject") or {}).get("digest") == digest:
                out.append(Found(d.digest, body, self._fetch))
        return out

    def write(self, digest: str, manifest: bytes, blobs: list[bytes], kind: str = "sig") -> None:
        for blob in blobs:
            self.layout.blobs.put(blob)
        desc = Descriptor(OCI_MANIFEST, self.layout.blobs.put(manifest), len(manifest))
        self.layout.tag(desc, signature_tag(digest, kind))
        self._mark_for_cosign(digest, desc.digest, kind)

    def _mark_for_cosign(self, image: str, sig: str, kind: str) -> None:
        """Give the layout `cosign save`'s shape too (a `kind` annotation on the image and on its
        signature and attestation manifests), so `cosign load --dir` takes it. cosign keeps one
        image per layout: only a layout holding one image is marked."""
        try:
            root = self.resolve()
        except NotFound:
            return
        if root.digest != image:
            return
        image_kind = COSIGN_IMAGE[1] if root.media_type in (OCI_INDEX, DOCKER_INDEX) else COSIGN_IMAGE[0]
        wanted = {image: image_kind, sig: COSIGN_SIGS if kind == "sig" else COSIGN_ATTS}
        entries = []
        for d in self.layout.manifests():
            if d.digest in wanted:
                d = Descriptor(
                    d.media_type,
                    d.digest,
                    d.size,
                    d.platform,
                    {**d.annotations, COSIGN_KIND: wanted[d.digest]},
                    d.artifact_type,
                )
            entries.append(d)
        self.layout.write_index(entries)

    def write_referrer(self, subject: Descriptor, manifest: bytes, blobs: list[bytes], kind: str) -> None:
        # The image layout spec lists referrers in index.json, untagged, with their artifactType.
        for blob in blobs:
            self.layout.blobs.put(blob)
        desc = Descriptor(
            OCI_MANIFEST, self.layout.blobs.put(manifest), len(manifest), artifact_type=artifact_type(kind)
        )
        entries = [d for d in self.layout.manifests() if d.digest != desc.digest]
        self.layout.write_index([*entries, desc])


# Docker's two stores hold images as a config and its layers (a `docker save` manifest.json, the
# daemon's image store), never OCI manifests: the manifest digest a signature names is made anew
# each time the image is read or pushed (a push compresses the layers again), and a signature
# manifest has nowhere to go.
_DOCKER_STORES = ("docker-archive", "docker-daemon")


def check_signable(text: str | ImageRef, what: str) -> ImageRef:
    """The reference, or a refusal (before any key is read) of a store that cannot hold signatures."""
    ref = image_ref(text) if isinstance(text, str) else text
    if ref.transport in _DOCKER_STORES:
        raise DockerifyError(
            f"{ref}: a {ref.transport} image cannot hold signatures: Docker keeps a config and "
            "layers per image, not the manifest a signature names (its digest is made anew on every "
            "save or push), and has no place for a signature manifest",
            hint=f"copy it to a layout or a registry first (dockerify copy {ref} oci:DIR) and {what} that",
        )
    return ref


@contextlib.contextmanager
def open_store(
    text: str | ImageRef, options: Options | None = None, writable: bool = False, identity: str | None = None
) -> Iterator[SignatureStore]:
    """The signature store of an image reference: a registry, an oci: layout or an oci-archive
    (extracted; when writable, the archive is replaced, atomically, only if something was added)."""
    ref = check_signable(text, "sign" if writable else "verify")
    if ref.transport == "registry":
        r = parse_reference(ref.path)
        store = RegistryStore(RegistryClient(r, options), r)
        if identity:
            store.docker_reference = identity
        yield store
    elif ref.transport == "oci":
        yield LayoutStore(Layout.open(ref.path), ref.tag, str(ref), identity)
    elif ref.transport == "oci-archive":
        with _archive_store(ref, writable, identity) as archived:
            yield archived
    else:
        raise DockerifyError(
            f"{ref}: a {ref.transport} image cannot hold signatures",
            hint="sign and verify a registry reference, an oci:DIR layout or an oci-archive:FILE",
        )


@contextlib.contextmanager
def _archive_store(ref: ImageRef, writable: bool, identity: str | None) -> Iterator[LayoutStore]:
    path = Path(ref.path)
    if not path.is_file():
        raise NotFound(f"{ref}: no such file" if not path.exists() else f"{ref}: {path} is not a file")
    if writable and is_compressed(str(path)):
        raise DockerifyError(
            f"{ref}: the archive is compressed; signing rewrites it and would drop the compression",
            hint=f"decompress it first, or sign a layout: dockerify copy {ref} oci:DIR",
        )
    # Extract beside the archive when writing: the new archive is renamed over the old one.
    where = path.resolve().parent if writable else None
    with tempfile.TemporaryDirectory(
        prefix=".dockerify-sign-" if writable else "dockerify-verify-", dir=where
    ) as tmp:
        safe_extract(str(path), Path(tmp))
        layout = Layout.open(tmp)
        before = (layout.root / "index.json").read_bytes()
        store = LayoutStore(layout, ref.tag, str(ref), identity)
        if identity is None:  # the archive's name, not the temporary directory's
            store.docker_reference = _local_identity(str(path.with_suffix("")))
        yield store
        if writable and (layout.root / "index.json").read_bytes() != before:
            mode = path.stat().st_mode & 0o7777
            tmp_archive = path.with_name(f".{path.name}.tmp-{os.getpid()}")
            write_stream(oci_archive_stream(layout), tmp_archive)
            try:
                os.chmod(tmp_archive, mode)
                os.replace(tmp_archive, path)
            except BaseException:
                tmp_archive.unlink(missing_ok=True)
                raise


# ---------------------------------------------------------------- attaching layers


def targets(store: SignatureStore, root: Descriptor, recursive: bool) -> list[Descriptor]:
    out = [root]
    if recursive:
        body = json.loads(store.manifest_bytes(root))
        if is_index(root.media_type, body):
            out += [Descriptor.from_json(d) for d in body.get("manifests", [])]
    return out


def _layers(found: Found) -> list[Descriptor]:
    out = []
    for raw in found.manifest.get("layers", []):
        with contextlib.suppress(KeyError, TypeError, ValueError):
            out.append(Descriptor.from_json(raw))
    return out


def find_all(store: SignatureStore, digest: str, kind: str) -> list[Found]:
    """Every signature (attestation) manifest of `digest`: the tag first, then referrers."""
    found = [f for f in [store.tagged(digest, kind)] if f is not None]
    return found + store.referrers(digest, kind)


def attach(
    store: SignatureStore,
    subject: Descriptor,
    layer: Descriptor,
    blob: bytes,
    is_duplicate: Callable[[Descriptor, Fetch], bool],
    kind: str = "sig",
    referrers: bool = False,
) -> bool:
    """Add one signature (attestation) layer for `subject`, unless an equal one is there already
    (`is_duplicate`); True when it was added."""
    tagged = store.tagged(subject.digest, kind)
    places = [tagged] if tagged is not None else []
    if referrers:
        places = store.referrers(subject.digest, kind)
    for found in places:
        if any(is_duplicate(old, found.fetch) for old in _layers(found)):
            return False
    if referrers:
        manifest, config = signature_manifest([layer], subject, kind)
        store.write_referrer(subject, manifest, [blob, config], kind)
        return True
    # Layers with the same payload signed by other keys stay: each is another signer's signature.
    manifest, config = signature_manifest([*(_layers(tagged) if tagged else []), layer])
    store.write(subject.digest, manifest, [blob, config], kind)
    return True


# ---------------------------------------------------------------- sign and verify


@dataclass(frozen=True)
class Signed:
    digest: str
    added: bool  # False when an equal signature was already there


def sign_store(
    store: SignatureStore, key: PrivateKey, recursive: bool = False, referrers: bool = False
) -> list[Signed]:
    root = store.resolve()
    public = key.public()
    out = []
    for target in targets(store, root, recursive):
        payload = simple_signing_payload(store.docker_reference, target.digest)
        layer = Descriptor(
            SIMPLESIGNING_TYPE,
            sha256_digest(payload),
            len(payload),
            annotations={SIGNATURE_ANNOTATION: key.sign_b64(payload)},
        )

        def same(old: Descriptor, fetch: Fetch, payload: bytes = payload) -> bool:
            if old.media_type != SIMPLESIGNING_TYPE or old.digest != sha256_digest(payload):
                return False
            return public.verify_b64(payload, old.annotations.get(SIGNATURE_ANNOTATION, ""))

        added = attach(store, target, layer, payload, same, "sig", referrers)
        out.append(Signed(target.digest, added))
    return out


@dataclass
class Verified:
    digest: str
    docker_reference: str
    signatures: int  # how many of the stored signatures verified


def verify_digest(store: SignatureStore, digest: str, key: PublicKey, key_name: str) -> Verified:
    """Check that a signature made with `key` names `digest`; raise VerificationError if none does."""
    found = find_all(store, digest, "sig")
    if not found:
        raise VerificationError(
            f"{store.where}: no signature for {digest} (no {signature_tag(digest)} manifest and no "
            "signature referrer)",
            hint="sign the image with `dockerify sign`, or check that this is the image you meant",
        )
    reasons: list[str] = []
    good = 0
    reference = ""
    for place in found:
        for raw in place.manifest.get("layers", []):
            try:
                layer = Descriptor.from_json(raw)
            except (KeyError, TypeError, ValueError):
                reasons.append("a malformed layer descriptor")
                continue
            signature = layer.annotations.get(SIGNATURE_ANNOTATION)
            if layer.media_type != SIMPLESIGNING_TYPE or not signature:
                continue
            payload = place.fetch(layer)
            if not key.verify_b64(payload, signature):
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
    referrers: bool = False,
) -> list[Signed]:
    """Sign the image `text` names (registry reference, oci:DIR[:TAG] or oci-archive:FILE[:TAG]);
    return the signed digests, each saying whether a signature was added or an equal one was
    already there."""
    check_signable(text, "sign")  # before a password is asked for
    key = load_private_key(key_path, password)
    with open_store(text, options, writable=True, identity=identity) as store:
        return sign_store(store, key, recursive, referrers)


def verify(
    text: str, key_path: str, recursive: bool = False, options: Options | None = None
) -> list[Verified]:
    """Verify the image `text` names (and with `recursive` each platform manifest of its index)."""
    check_signable(text, "verify")
    key = load_public_key(key_path)
    with open_store(text, options) as store:
        root = store.resolve()
        return [verify_digest(store, t.digest, key, key_path) for t in targets(store, root, recursive)]
