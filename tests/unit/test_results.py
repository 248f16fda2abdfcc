"""Issue 8: every SDK result is a frozen dataclass whose `to_json()` is exactly the document its
command prints with `--json` (the shapes the integration tests read); `dumps()` prints it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from dockerify import results, sdk
from dockerify.jsonable import Result
from dockerify.oci.copy import CopyResult
from dockerify.oci.model import Descriptor

D1, D2, D3 = ("sha256:" + c * 64 for c in "123")
COUNTS = results.TransferCounts(10, 2, 1, 5, 1)
COUNTS_JSON = {
    "bytes_moved": 10,
    "blobs_moved": 2,
    "blobs_skipped": 1,
    "bytes_skipped": 5,
    "blobs_mounted": 1,
}
SBOM = b'{\n  "spdxVersion": "SPDX-2.3"\n}\n'

CASES: list[tuple[Result, Any]] = [
    (
        results.BuildResult(D1, (("linux/arm64", D2), ("linux/arm/v7", D3)), "oci:/tmp/x:v1"),
        {
            "digest": D1,
            "manifests": [
                {"platform": "linux/arm64", "digest": D2},
                {"platform": "linux/arm/v7", "digest": D3},
            ],
        },
    ),
    (
        results.InspectResult("card.img", {"platform": "linux/arm64", "entries": 3}),
        {"platform": "linux/arm64", "entries": 3},
    ),
    (
        results.DiffResult("a", "b", ("+ /g",), (1, 2)),
        {"a": "a", "b": "b", "entries": [1, 2], "differences": ["+ /g"]},
    ),
    (
        CopyResult(
            Descriptor("application/vnd.oci.image.index.v1+json", D1, 300),
            (Descriptor("m", D2, 9),),
            3,
            1,
            99,
        ),
        {
            "digest": D1,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [D2],
            "blobs_copied": 3,
            "blobs_skipped": 1,
            "bytes_copied": 99,
        },
    ),
    (COUNTS, COUNTS_JSON),
    (
        results.PushResult(D1, "application/vnd.oci.image.manifest.v1+json", 42, COUNTS),
        {"digest": D1, "mediaType": "application/vnd.oci.image.manifest.v1+json", "size": 42, **COUNTS_JSON},
    ),
    (
        results.PullResult(D1, (("linux/arm64", D2),), COUNTS),
        {"digest": D1, "manifests": [{"platform": "linux/arm64", "digest": D2}], **COUNTS_JSON},
    ),
    (
        results.ArtifactPushed(D1, "application/vnd.dockerify.sdcard.v1"),
        {"digest": D1, "artifactType": "application/vnd.dockerify.sdcard.v1"},
    ),
    (
        results.ArtifactPulled(Path("/tmp/card.img"), "application/vnd.dockerify.sdcard.v1"),
        {"path": "/tmp/card.img", "artifactType": "application/vnd.dockerify.sdcard.v1"},
    ),
    (
        results.KeygenResult(Path("/tmp/k.key"), Path("/tmp/k.pub"), "cosign", "ecdsa-sha2-256-nistp256"),
        {
            "key": "/tmp/k.key",
            "pub": "/tmp/k.pub",
            "format": "cosign",
            "algorithm": "ecdsa-sha2-256-nistp256",
        },
    ),
    (
        results.SignResult(
            (results.SignedDigest(D1, True, "sha256-1.sig"), results.SignedDigest(D2, False, "a referrer"))
        ),
        [
            {"digest": D1, "added": True, "stored": "sha256-1.sig"},
            {"digest": D2, "added": False, "stored": "a referrer"},
        ],
    ),
    (
        results.VerifyResult((results.VerifiedDigest(D1, "localhost/x", 2),)),
        [{"digest": D1, "docker-reference": "localhost/x", "signatures": 2}],
    ),
    (results.SbomResult(SBOM), {"spdxVersion": "SPDX-2.3"}),
    (
        results.AttestResult((results.AttestedDigest(D1, True, "sha256-1.att"),)),
        [{"digest": D1, "added": True, "stored": "sha256-1.att"}],
    ),
    (
        results.AttestationVerifyResult(
            (results.VerifiedAttestation(D1, "https://spdx.dev/Document", ({"spdxVersion": "SPDX-2.3"},)),)
        ),
        [
            {
                "digest": D1,
                "predicateType": "https://spdx.dev/Document",
                "predicates": [{"spdxVersion": "SPDX-2.3"}],
            }
        ],
    ),
    (
        results.RunResult("pi:latest", "linux/arm64", 3, "out\n", "err\n"),
        {
            "image": "pi:latest",
            "platform": "linux/arm64",
            "exit_code": 3,
            "output": "out\n",
            "errors": "err\n",
        },
    ),
    (
        results.BinfmtResult({"arm64": True, "arm": False, "riscv64": True}),
        {"handlers": {"arm64": True, "arm": False, "riscv64": True}, "ok": False},
    ),
    (
        results.LoginResult("docker.io", Path("/tmp/auth.json"), None, False),
        {"registry": "docker.io", "path": "/tmp/auth.json", "helper": None, "identity_token": False},
    ),
    (results.SignedDigest(D1, True, "a referrer"), {"digest": D1, "added": True, "stored": "a referrer"}),
    (
        results.VerifiedDigest(D1, "h/r", 1),
        {"digest": D1, "docker-reference": "h/r", "signatures": 1},
    ),
    (results.AttestedDigest(D1, False, "a referrer"), {"digest": D1, "added": False, "stored": "a referrer"}),
    (
        results.VerifiedAttestation(D1, "t", ()),
        {"digest": D1, "predicateType": "t", "predicates": []},
    ),
    (results.LogoutResult("127.0.0.1:5000", True), {"registry": "127.0.0.1:5000", "removed": True}),
]


@pytest.mark.parametrize(("result", "expected"), CASES, ids=lambda c: type(c).__name__)
def test_to_json_is_what_the_command_prints(result: Result, expected: Any) -> None:
    assert dataclasses.is_dataclass(result)
    assert type(result).__dataclass_params__.frozen  # type: ignore[attr-defined]
    assert result.to_json() == expected
    assert json.loads(result.dumps()) == expected
    assert "\n" not in result.dumps()
    assert result.dumps(pretty=True) == json.dumps(expected, indent=2, sort_keys=True)


def test_every_result_type_is_covered_and_exported() -> None:
    covered = {type(r) for r, _ in CASES}
    defined = {getattr(results, n) for n in results.__all__} | {CopyResult}
    assert defined == covered
    for cls in defined:
        assert cls.__name__ in sdk.__all__, cls.__name__
        assert getattr(sdk, cls.__name__) is cls


def test_results_extend_the_library_types() -> None:
    from dockerify.build import BuildResult
    from dockerify.runner import RunResult

    assert isinstance(results.BuildResult(D1, ()), BuildResult)
    assert isinstance(results.RunResult("i", "p", 0, "", ""), RunResult)
    assert results.SignResult((results.SignedDigest(D1, True),)).digests == (D1,)
    assert results.AttestationVerifyResult(()).digests == ()
    assert results.SbomResult(SBOM).document == {"spdxVersion": "SPDX-2.3"}
    assert COUNTS.line("pushed") == (
        "pushed 10 bytes in 2 blob(s); 1 blob(s) (5 bytes) already there, 1 mounted"
    )


def test_the_base_refuses_to_guess() -> None:
    with pytest.raises(NotImplementedError):
        Result().to_json()
