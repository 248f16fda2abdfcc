"""Attestations as cosign writes them (`cosign attest --type spdxjson`): an in-toto statement
(v0.1, the version cosign 2.x writes) naming the image digest as its subject, in a DSSE envelope
signed with the same keys as signatures.

- statement: {"_type":"https://in-toto.io/Statement/v0.1","predicateType":T,
  "subject":[{"name":REPO,"digest":{"sha256":HEX}}],"predicate":{...}}
- envelope: {"payloadType":"application/vnd.in-toto+json","payload":B64(statement),
  "signatures":[{"keyid":"","sig":B64(sign(PAE(payloadType, statement)))}]}
  with DSSE's pre-authentication encoding
  PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body.
Reading also takes in-toto Statement v1 (https://in-toto.io/Statement/v1).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from dockerify.trust.keys import PrivateKey, PublicKey

INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_V01 = "https://in-toto.io/Statement/v0.1"
STATEMENT_V1 = "https://in-toto.io/Statement/v1"


def pae(payload_type: str, body: bytes) -> bytes:
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(body), body)


def statement(predicate_type: str, predicate: Any, repo: str, digest: str) -> bytes:
    algorithm, _, hexpart = digest.partition(":")
    doc = {
        "_type": STATEMENT_V01,
        "predicateType": predicate_type,
        "subject": [{"name": repo, "digest": {algorithm: hexpart}}],
        "predicate": predicate,
    }
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def envelope(key: PrivateKey, payload: bytes) -> bytes:
    signature = key.sign_b64(pae(INTOTO_PAYLOAD_TYPE, payload))
    doc = {
        "payloadType": INTOTO_PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": "", "sig": signature}],
    }
    return json.dumps(doc, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Checked:
    """What an envelope says, once its signature verified."""

    predicate_type: str
    predicate: Any
    subjects: list[dict[str, Any]]


class BadEnvelope(ValueError):
    """Why an envelope is refused (the message says it)."""


def open_envelope(data: bytes, key: PublicKey) -> Checked:
    """The statement inside a DSSE envelope whose signature verifies with `key`; BadEnvelope
    (with the reason) otherwise."""
    try:
        env = json.loads(data)
        payload_type = env["payloadType"]
        payload = base64.b64decode(env["payload"], validate=True)
        sigs = [s["sig"] for s in env["signatures"] if isinstance(s, dict)]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise BadEnvelope("a layer that is not a DSSE envelope") from None
    if payload_type != INTOTO_PAYLOAD_TYPE:
        raise BadEnvelope(f"an envelope of payload type {payload_type!r}")
    signed = pae(payload_type, payload)
    if not any(isinstance(s, str) and key.verify_b64(signed, s) for s in sigs):
        raise BadEnvelope(f"an attestation that {key.name} does not verify")
    try:
        doc = json.loads(payload)
        kind, predicate_type, subjects = doc["_type"], doc["predicateType"], doc["subject"]
    except (ValueError, KeyError, TypeError):
        raise BadEnvelope("a signed payload that is not an in-toto statement") from None
    if kind not in (STATEMENT_V01, STATEMENT_V1) or not isinstance(subjects, list):
        raise BadEnvelope(f"a signed statement of type {kind!r}")
    return Checked(predicate_type, doc.get("predicate"), subjects)


def names_digest(checked: Checked, digest: str) -> bool:
    algorithm, _, hexpart = digest.partition(":")
    return any(
        isinstance(s, dict) and (s.get("digest") or {}).get(algorithm) == hexpart for s in checked.subjects
    )
