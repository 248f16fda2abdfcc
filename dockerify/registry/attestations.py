"""SBOM attestations attached to images the way `cosign attest --type spdxjson` attaches them:
a layer of media type application/vnd.dsse.envelope.v1+json (annotations: an empty
`dev.cosignproject.cosign/signature` and `predicateType`) in the manifest tagged
`sha256-<hex>.att`, or with `referrers` an OCI 1.1 referrer of artifactType
application/vnd.dev.cosign.artifact.att.v1+json; see signing.py for both places."""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dockerify.errors import NotFound
from dockerify.fixups import restore_tree
from dockerify.limits import DEFAULT_MAX_SIZE
from dockerify.oci.flatten import flatten
from dockerify.oci.model import Descriptor, sha256_digest
from dockerify.oci.refs import image_ref
from dockerify.oci.select import images
from dockerify.registry.client import Options
from dockerify.registry.signing import (
    DSSE_TYPE,
    PREDICATE_ANNOTATION,
    SIGNATURE_ANNOTATION,
    Fetch,
    VerificationError,
    attach,
    check_signable,
    find_all,
    load_private_key,
    load_public_key,
    open_store,
    signature_tag,
    targets,
)
from dockerify.stores import open_layout
from dockerify.trust.attest import BadEnvelope, envelope, names_digest, open_envelope, statement
from dockerify.trust.keys import PrivateKey, PublicKey
from dockerify.trust.sbom import PREDICATE_SPDX, sbom_of_entries

log = logging.getLogger("dockerify")

# cosign's --type names and the predicate types they stand for.
PREDICATE_TYPES = {
    "spdxjson": PREDICATE_SPDX,
    "spdx": PREDICATE_SPDX,
    "cyclonedx": "https://cyclonedx.org/bom",
    "slsaprovenance": "https://slsa.dev/provenance/v0.2",
    "slsaprovenance1": "https://slsa.dev/provenance/v1",
    "vuln": "https://cosign.sigstore.dev/attestation/vuln/v1",
    "custom": "https://cosign.sigstore.dev/attestation/v1",
}


def predicate_type(name: str) -> str:
    return PREDICATE_TYPES.get(name, name)


@dataclass(frozen=True)
class Attested:
    digest: str
    added: bool


def sboms(
    text: str, platform: Any = None, max_size: int = DEFAULT_MAX_SIZE
) -> tuple[Descriptor, list[tuple[Descriptor, dict[str, Any]]]]:
    """The image's root, and (platform manifest, SPDX document) for each platform of it."""
    ref = image_ref(text)
    out = []
    with open_layout(ref, max_size) as (layout, root):
        for image in images(layout, root, text):
            if platform is not None and image.platform != platform:
                continue
            entries = restore_tree(flatten(image, max_size=max_size), image.labels)
            name = f"{text} ({image.platform})"
            doc = sbom_of_entries(name, entries, str(ref), str(image.config.get("created") or ""))
            out.append((image.descriptor, doc))
    if not out:
        raise NotFound(f"{text}: no image for platform {platform}")
    return root, out


def attest_sboms(
    text: str,
    key_path: str,
    platform: Any = None,
    options: Options | None = None,
    referrers: bool = False,
    max_size: int = DEFAULT_MAX_SIZE,
    password: Callable[[], bytes] | None = None,
) -> list[Attested]:
    """Make each platform's SBOM and attach it to that platform's manifest, and to the root
    (an index gets one attestation layer per platform)."""
    check_signable(text, "attest")
    key = load_private_key(key_path, password)  # fail on a bad key or password before the long part
    root, docs = sboms(text, platform, max_size)
    done = []
    for desc, doc in docs:
        subjects = [desc.digest] if desc.digest == root.digest else [desc.digest, root.digest]
        done += attest(text, doc, key_path, subjects, PREDICATE_SPDX, options, referrers, lambda: b"", key)
    return done


def attest(
    text: str,
    predicate: Any,
    key_path: str,
    subject_digests: list[str] | None = None,
    kind: str = PREDICATE_SPDX,
    options: Options | None = None,
    referrers: bool = False,
    password: Callable[[], bytes] | None = None,
    key: PrivateKey | None = None,
) -> list[Attested]:
    """Attach `predicate` as a signed attestation to the image `text` names (its root, or the
    manifests `subject_digests` lists); skip where an equal attestation with this key is there."""
    check_signable(text, "attest")
    key = key or load_private_key(key_path, password)
    public = key.public()
    out = []
    with open_store(text, options, writable=True) as store:
        root = store.resolve()
        wanted = set(subject_digests or [root.digest])
        for subject in targets(store, root, recursive=True):
            if subject.digest not in wanted:
                continue
            payload = statement(kind, predicate, store.docker_reference, subject.digest)
            blob = envelope(key, payload)
            layer = Descriptor(
                DSSE_TYPE,
                sha256_digest(blob),
                len(blob),
                annotations={SIGNATURE_ANNOTATION: "", PREDICATE_ANNOTATION: kind},
            )

            def same(old: Descriptor, fetch: Fetch, payload: bytes = payload) -> bool:
                if old.media_type != DSSE_TYPE or old.annotations.get(PREDICATE_ANNOTATION) != kind:
                    return False
                try:
                    env = json.loads(fetch(old))
                    if base64.b64decode(env["payload"]) != payload:
                        return False
                except (ValueError, KeyError, TypeError, binascii.Error):
                    return False
                return _verifies(old, fetch, public)

            out.append(Attested(subject.digest, attach(store, subject, layer, blob, same, "att", referrers)))
    return out


def _verifies(layer: Descriptor, fetch: Fetch, key: PublicKey) -> bool:
    try:
        open_envelope(fetch(layer), key)
        return True
    except BadEnvelope:
        return False


@dataclass(frozen=True)
class VerifiedAttestation:
    digest: str
    predicate_type: str
    predicates: list[Any]


def verify_attestation(
    text: str,
    key_path: str,
    kind: str = PREDICATE_SPDX,
    recursive: bool = False,
    options: Options | None = None,
) -> list[VerifiedAttestation]:
    """The predicates of `kind` attested for the image `text` names, each in an envelope that
    verifies with the public key and whose statement names the image's digest."""
    check_signable(text, "verify")
    key = load_public_key(key_path)
    out = []
    with open_store(text, options) as store:
        root = store.resolve()
        for target in targets(store, root, recursive):
            found = find_all(store, target.digest, "att")
            if not found:
                raise VerificationError(
                    f"{store.where}: no attestation for {target.digest} (no "
                    f"{signature_tag(target.digest, 'att')} manifest and no attestation referrer)",
                    hint="attach one with `dockerify sbom --attest`",
                )
            predicates: list[Any] = []
            reasons: list[str] = []
            for place in found:
                for raw in place.manifest.get("layers", []):
                    try:
                        layer = Descriptor.from_json(raw)
                    except (KeyError, TypeError, ValueError):
                        reasons.append("a malformed layer descriptor")
                        continue
                    if layer.media_type != DSSE_TYPE:
                        continue
                    try:
                        checked = open_envelope(place.fetch(layer), key)
                    except BadEnvelope as e:
                        reasons.append(str(e))
                        continue
                    if checked.predicate_type != kind:
                        reasons.append(f"an attestation of type {checked.predicate_type}")
                        continue
                    if not names_digest(checked, target.digest):
                        reasons.append(f"an attestation whose subject is not {target.digest}")
                        continue
                    predicates.append(checked.predicate)
            if not predicates:
                raise VerificationError(
                    f"{store.where}: no {kind} attestation on {target.digest} verifies with {key_path}: "
                    + ("; ".join(dict.fromkeys(reasons)) or "no DSSE envelope"),
                    hint="the attestation or the image changed since it was attested, or another key signed it",
                )
            out.append(VerifiedAttestation(target.digest, kind, predicates))
    return out
