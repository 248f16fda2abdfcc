"""Issue 11, acceptance 4: `dockerify sbom` of the Pi fixture lists every package dpkg-query lists
in the same tree, validates as SPDX 2.3 (spdx-tools), and the attestation dockerify attaches is
accepted by `cosign verify-attestation --type spdxjson`; a changed one is refused by both tools.
Also the reverse: an SBOM attested by cosign verifies with dockerify."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.fixtures import fixture
from tests.integration import test_cosign_support as cs
from tests.integration.test_cosign_support import (
    SIGN_FLAGS,
    VERIFY_FLAGS,
    KeyPair,
    cosign,
    dockerify,
    manifest,
    push_blob,
    put,
    sig_tag,
)
from tests.integration.test_registry_support import unique

pytestmark = [pytest.mark.registry, pytest.mark.fixtures]
cosign_bin = cs.cosign_bin
key_pairs = cs.key_pairs
other_keys = cs.other_keys
SPDX = "https://spdx.dev/Document"


@pytest.fixture(scope="session")
def pi_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("images") / "pi"
    dockerify("build", str(fixture("pi-arm64.img")), "--output", f"oci:{out}:v1", "-q")
    return out


def dpkg_query(root: Path) -> set[tuple[str, str, str]]:
    require_tool("dpkg-query")
    out = subprocess.run(
        [
            "dpkg-query",
            f"--admindir={root}/var/lib/dpkg",
            "-W",
            "-f",
            "${Package}\t${Version}\t${Architecture}\n",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {tuple(line.split("\t")) for line in out.splitlines()}  # type: ignore[misc]


def packages(doc: dict) -> set[tuple[str, str, str]]:
    out = set()
    for p in doc["packages"]:
        if p["SPDXID"] == "SPDXRef-OperatingSystem":
            continue
        purl = next(r["referenceLocator"] for r in p["externalRefs"] if r["referenceType"] == "purl")
        arch = purl.split("?arch=")[1].split("&")[0]
        out.add((p["name"], p["versionInfo"], arch))
    return out


def validate_spdx(path: Path) -> None:
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    messages = validate_full_spdx_document(parse_file(str(path)), "SPDX-2.3")
    assert not messages, [m.validation_message for m in messages]


def test_sbom_lists_what_dpkg_query_lists(pi_image: Path, tmp_path: Path) -> None:
    # the tree as it comes out of the image, unpacked by GNU tar
    tarball = tmp_path / "root.tar"
    dockerify("export", f"oci:{pi_image}:v1", "--format", "rootfs-tar", "-o", str(tarball), "-q")
    tree = tmp_path / "tree"
    tree.mkdir()
    subprocess.run(["tar", "-xf", str(tarball), "-C", str(tree), "var/lib/dpkg"], check=True)
    expected = dpkg_query(tree)
    assert len(expected) >= 4  # busybox-static, hello, libc6, netbase

    for source in (str(fixture("pi-arm64.img")), f"oci:{pi_image}:v1"):
        out = tmp_path / "sbom.json"
        dockerify("sbom", source, "-o", str(out))
        doc = json.loads(out.read_text())
        assert doc["spdxVersion"] == "SPDX-2.3"
        assert packages(doc) == expected
        validate_spdx(out)
        by_name = {p["name"]: p for p in doc["packages"]}
        # source package, license from a machine-readable copyright, owned files with checksums
        assert by_name["busybox-static"]["sourceInfo"] == "built package from: busybox 1:1.35.0-4+deb12u1"
        assert by_name["netbase"]["licenseDeclared"] == "GPL-2.0-only"
        assert by_name["hello"]["licenseDeclared"] == "NOASSERTION"  # its copyright is free-form
        files = {f["SPDXID"]: f for f in doc["files"]}
        hello = [files[i]["fileName"] for i in by_name["hello"]["hasFiles"]]
        assert "./usr/bin/hello" in hello
        sha = next(
            c for c in files[by_name["hello"]["hasFiles"][0]]["checksums"] if c["algorithm"] == "SHA256"
        )
        assert len(sha["checksumValue"]) == 64


def test_sbom_of_a_tree_without_dpkg_is_refused(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    r = dockerify("sbom", str(tmp_path), check=False)
    assert r.returncode != 0 and "no /var/lib/dpkg/status" in r.stderr and "Traceback" not in r.stderr


def test_attestation_verifies_with_cosign_and_a_changed_one_is_refused(
    registry: str, key_pairs: dict[str, KeyPair], other_keys: KeyPair, pi_image: Path, tmp_path: Path
) -> None:
    keys = key_pairs["dockerify-cosign"]
    repo = unique("cosign-sbom")
    ref = f"{registry}/{repo}:v1"
    digest = dockerify("push", f"oci:{pi_image}:v1", ref, "-q").stdout.strip()
    dockerify("sbom", ref, "--attest", "--key", str(keys.key), "-q")
    dockerify("sbom", ref, "--attest", "--key", str(keys.key), "-q")  # idempotent
    att = manifest(registry, repo, sig_tag(digest, "att"))
    assert att is not None and len(att["layers"]) == 1
    layer = att["layers"][0]
    assert layer["mediaType"] == "application/vnd.dsse.envelope.v1+json"
    assert layer["annotations"]["predicateType"] == SPDX

    # cosign accepts it, and what it verified is dockerify's SBOM of this image
    out = cosign(
        "verify-attestation", "--key", str(keys.pub), "--type", "spdxjson", *VERIFY_FLAGS, ref
    ).stdout
    statement = json.loads(base64.b64decode(json.loads(out.splitlines()[0])["payload"]))
    assert statement["_type"] == "https://in-toto.io/Statement/v0.1" and statement["predicateType"] == SPDX
    assert statement["subject"][0]["digest"] == {"sha256": digest.removeprefix("sha256:")}
    local = tmp_path / "local.json"
    dockerify("sbom", f"oci:{pi_image}:v1", "-o", str(local))
    assert packages(statement["predicate"]) == packages(json.loads(local.read_text()))
    verified = json.loads(dockerify("verify-attestation", ref, "--key", str(keys.pub), "--json").stdout)
    assert verified[0]["digest"] == digest and verified[0]["predicateType"] == SPDX

    # the wrong key fails in both tools
    r = cosign(
        "verify-attestation",
        "--key",
        str(other_keys.pub),
        "--type",
        "spdxjson",
        *VERIFY_FLAGS,
        ref,
        check=False,
    )
    assert r.returncode != 0
    r = dockerify("verify-attestation", ref, "--key", str(other_keys.pub), check=False)
    assert r.returncode != 0 and "does not verify" in r.stderr

    # a changed attestation: the same envelope with one package version altered
    blob_url = f"http://{registry}/v2/{repo}/blobs/{layer['digest']}"
    envelope = json.loads(cs.get(blob_url, "*/*")[1])
    changed = json.loads(base64.b64decode(envelope["payload"]))
    for p in changed["predicate"]["packages"]:
        if p["name"] == "hello":
            p["versionInfo"] = "9.99-1"
    envelope["payload"] = base64.b64encode(json.dumps(changed).encode()).decode()
    new_blob = json.dumps(envelope).encode()
    new_digest = push_blob(registry, repo, new_blob)
    att["layers"][0] = {**layer, "digest": new_digest, "size": len(new_blob)}
    put(
        f"http://{registry}/v2/{repo}/manifests/{sig_tag(digest, 'att')}",
        json.dumps(att).encode(),
        "application/vnd.oci.image.manifest.v1+json",
    )
    r = dockerify("verify-attestation", ref, "--key", str(keys.pub), check=False)
    assert r.returncode != 0 and "does not verify" in r.stderr and "Traceback" not in r.stderr
    r = cosign(
        "verify-attestation", "--key", str(keys.pub), "--type", "spdxjson", *VERIFY_FLAGS, ref, check=False
    )
    assert r.returncode != 0


def test_cosign_attested_sbom_verifies_with_dockerify(
    registry: str, key_pairs: dict[str, KeyPair], pi_image: Path, tmp_path: Path
) -> None:
    keys = key_pairs["cosign"]
    repo = unique("cosign-attest")
    ref = f"{registry}/{repo}:v1"
    digest = dockerify("push", f"oci:{pi_image}:v1", ref, "-q").stdout.strip()
    sbom = tmp_path / "sbom.json"
    dockerify("sbom", ref, "-o", str(sbom))
    cosign("attest", "--key", str(keys.key), "--type", "spdxjson", "--predicate", str(sbom), *SIGN_FLAGS, ref)
    verified = json.loads(dockerify("verify-attestation", ref, "--key", str(keys.pub), "--json").stdout)
    assert verified[0]["digest"] == digest
    assert packages(verified[0]["predicates"][0]) == packages(json.loads(sbom.read_text()))
    # another predicate type is not what was attested
    r = dockerify("verify-attestation", ref, "--key", str(keys.pub), "--type", "cyclonedx", check=False)
    assert r.returncode != 0 and "of type https://spdx.dev/Document" in r.stderr
