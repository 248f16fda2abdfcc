"""What the SDK's functions return: frozen dataclasses, each with `to_json()`, the document the
matching command prints with `--json` (so the two cannot drift apart).

Every type here is plain data; the functions that make them are in dockerify/sdk.py."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockerify import build, runner
from dockerify.counts import TransferCounts
from dockerify.inspect import render
from dockerify.jsonable import Result

__all__ = [
    "ArtifactPulled",
    "ArtifactPushed",
    "AttestResult",
    "AttestationVerifyResult",
    "AttestedDigest",
    "BinfmtResult",
    "BuildResult",
    "DiffResult",
    "InspectResult",
    "KeygenResult",
    "LoginResult",
    "LogoutResult",
    "PullResult",
    "PushResult",
    "RunResult",
    "SbomResult",
    "SignResult",
    "SignedDigest",
    "TransferCounts",
    "VerifiedAttestation",
    "VerifiedDigest",
    "VerifyResult",
]


# ---------------------------------------------------------------- build, inspect, diff


@dataclass(frozen=True)
class BuildResult(build.BuildResult, Result):
    """The root digest (the index of several platforms, else the manifest), each platform's
    manifest digest, and where the image went."""

    output: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"digest": self.digest, "manifests": [{"platform": p, "digest": d} for p, d in self.manifests]}


@dataclass(frozen=True)
class InspectResult(Result):
    """What `dockerify inspect` finds: `info` is what `--json` prints, `text` what it shows."""

    target: str
    info: Mapping[str, Any]

    @property
    def text(self) -> str:
        return render(dict(self.info))

    def to_json(self) -> dict[str, Any]:
        return dict(self.info)


@dataclass(frozen=True)
class DiffResult(Result):
    """`lines` are `dockerify diff`'s lines, one per difference; `entries` counts each tree."""

    a: str
    b: str
    lines: tuple[str, ...]
    entries: tuple[int, int]

    @property
    def identical(self) -> bool:
        return not self.lines

    def to_json(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "entries": list(self.entries), "differences": list(self.lines)}


# ---------------------------------------------------------------- push and pull


@dataclass(frozen=True)
class PushResult(Result):
    digest: str
    media_type: str
    size: int
    transfer: TransferCounts

    def to_json(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "mediaType": self.media_type,
            "size": self.size,
            **self.transfer.to_json(),
        }


@dataclass(frozen=True)
class PullResult(Result):
    digest: str
    manifests: tuple[tuple[str, str], ...]  # (platform, manifest digest)
    transfer: TransferCounts

    def to_json(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "manifests": [{"platform": p, "digest": d} for p, d in self.manifests],
            **self.transfer.to_json(),
        }


@dataclass(frozen=True)
class ArtifactPushed(Result):
    """The artifact manifest pushed: its digest and artifactType."""

    digest: str
    artifact_type: str

    def to_json(self) -> dict[str, Any]:
        return {"digest": self.digest, "artifactType": self.artifact_type}


@dataclass(frozen=True)
class ArtifactPulled(Result):
    """The file written (only once its digest checked out) and the artifact's type."""

    path: Path
    artifact_type: str

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "artifactType": self.artifact_type}


@dataclass(frozen=True)
class LoginResult(Result):
    """Where a login went: the registry (normalised: docker.io for Docker Hub), the file written,
    the credential helper keeping the secret (if any), and whether an identity token was kept."""

    registry: str
    path: Path
    helper: str | None
    identity_token: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "registry": self.registry,
            "path": str(self.path),
            "helper": self.helper,
            "identity_token": self.identity_token,
        }


@dataclass(frozen=True)
class LogoutResult(Result):
    registry: str
    removed: bool  # False when there was no login to remove

    def to_json(self) -> dict[str, Any]:
        return {"registry": self.registry, "removed": self.removed}


# ---------------------------------------------------------------- keys, signatures, attestations


@dataclass(frozen=True)
class KeygenResult(Result):
    key: Path  # the private key, mode 0600, encrypted with the password
    pub: Path
    format: str
    algorithm: str

    def to_json(self) -> dict[str, Any]:
        return {
            "key": str(self.key),
            "pub": str(self.pub),
            "format": self.format,
            "algorithm": self.algorithm,
        }


@dataclass(frozen=True)
class _StoredFor(Result):
    """A signature or attestation written for one manifest digest."""

    digest: str
    added: bool  # False when an equal one (same key) was already there
    stored: str = ""  # its tag (sha256-<hex>.sig / .att), or "a referrer"

    def to_json(self) -> dict[str, Any]:
        return {"digest": self.digest, "added": self.added, "stored": self.stored}


@dataclass(frozen=True)
class SignedDigest(_StoredFor):
    """A signature written for one manifest digest."""


@dataclass(frozen=True)
class SignResult(Result):
    signed: tuple[SignedDigest, ...]

    @property
    def digests(self) -> tuple[str, ...]:
        return tuple(s.digest for s in self.signed)

    def to_json(self) -> list[dict[str, Any]]:
        return [s.to_json() for s in self.signed]


@dataclass(frozen=True)
class VerifiedDigest(Result):
    digest: str
    docker_reference: str
    signatures: int  # how many of the stored signatures verified

    def to_json(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "docker-reference": self.docker_reference,
            "signatures": self.signatures,
        }


@dataclass(frozen=True)
class VerifyResult(Result):
    verified: tuple[VerifiedDigest, ...]

    @property
    def digests(self) -> tuple[str, ...]:
        return tuple(v.digest for v in self.verified)

    def to_json(self) -> list[dict[str, Any]]:
        return [v.to_json() for v in self.verified]


@dataclass(frozen=True)
class SbomResult(Result):
    """An SPDX 2.3 document of a tree's dpkg database: `data` its bytes (as written), `output`
    the file written, if any."""

    data: bytes
    output: Path | None = None

    @property
    def document(self) -> dict[str, Any]:
        doc = json.loads(self.data)
        assert isinstance(doc, dict)
        return doc

    def to_json(self) -> dict[str, Any]:
        return self.document


@dataclass(frozen=True)
class AttestedDigest(_StoredFor):
    """An SBOM attestation written for one manifest digest."""


@dataclass(frozen=True)
class AttestResult(Result):
    attested: tuple[AttestedDigest, ...]

    @property
    def digests(self) -> tuple[str, ...]:
        return tuple(a.digest for a in self.attested)

    def to_json(self) -> list[dict[str, Any]]:
        return [a.to_json() for a in self.attested]


@dataclass(frozen=True)
class VerifiedAttestation(Result):
    digest: str
    predicate_type: str
    predicates: tuple[Any, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "predicateType": self.predicate_type,
            "predicates": list(self.predicates),
        }


@dataclass(frozen=True)
class AttestationVerifyResult(Result):
    verified: tuple[VerifiedAttestation, ...]

    @property
    def digests(self) -> tuple[str, ...]:
        return tuple(v.digest for v in self.verified)

    def to_json(self) -> list[dict[str, Any]]:
        return [v.to_json() for v in self.verified]


# ---------------------------------------------------------------- run and binfmt


@dataclass(frozen=True)
class RunResult(runner.RunResult, Result):
    """The image run (the daemon's name for it), its platform, the command's exit status and,
    captured, its output."""

    def to_json(self) -> dict[str, Any]:
        return {
            "image": self.image,
            "platform": self.platform,
            "exit_code": self.exit_code,
            "output": self.output,
            "errors": self.errors,
        }


@dataclass(frozen=True)
class BinfmtResult(Result):
    """Which foreign architectures the kernel can run through qemu-user; `ok` when the Pi's
    (arm64 and arm) can."""

    handlers: Mapping[str, bool] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(self.handlers.get(a, False) for a in ("arm64", "arm"))

    def to_json(self) -> dict[str, Any]:
        return {"handlers": dict(self.handlers), "ok": self.ok}
