"""Local layouts with signatures, both ways: a `cosign save` directory verifies with dockerify,
and an oci: layout dockerify signed and attested loads with `cosign load` and verifies with cosign."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.integration import test_cosign_support as cs
from tests.integration import test_registry_support as support
from tests.integration.test_cosign_support import SIGN_FLAGS, VERIFY_FLAGS, KeyPair, cosign, dockerify
from tests.integration.test_registry_support import unique

pytestmark = pytest.mark.registry
busybox_dirs = support.busybox_dirs
single_image = support.single_image
cosign_bin = cs.cosign_bin
key_pairs = cs.key_pairs
other_keys = cs.other_keys
SPDX = "https://spdx.dev/Document"


def sbom_tree(tmp_path: Path) -> Path:
    """A small image with a dpkg database, so it can be attested."""
    tree = support.busybox_tree(tmp_path / "tree", Path("/bin/busybox"), "layouts")
    admin = tree / "var/lib/dpkg"
    (admin / "info").mkdir(parents=True)
    (admin / "status").write_text(
        "Package: busybox-static\nStatus: install ok installed\nArchitecture: amd64\n"
        "Version: 1:1.35.0-4\nMaintainer: Debian <debian@example.org>\nDescription: busybox\n"
    )
    (admin / "info/busybox-static.list").write_text("/.\n/bin\n/bin/busybox\n")
    out = tmp_path / "img"
    dockerify("build", str(tree), "--output", f"oci:{out}:v1", "-q")
    return out


def test_cosign_save_layout_verifies_with_dockerify(
    registry: str, key_pairs: dict[str, KeyPair], other_keys: KeyPair, tmp_path: Path
) -> None:
    keys = key_pairs["cosign"]
    ref = f"{registry}/{unique('cosign-save')}:v1"
    digest = dockerify("push", f"oci:{sbom_tree(tmp_path)}:v1", ref, "-q").stdout.strip()
    cosign("sign", "--key", str(keys.key), *SIGN_FLAGS, ref)
    dockerify("sbom", ref, "--attest", "--key", str(keys.key), "-q")
    saved = tmp_path / "saved"
    cosign("save", "--dir", str(saved), ref)
    kinds = [m["annotations"]["kind"] for m in json.loads((saved / "index.json").read_text())["manifests"]]
    assert kinds == [
        "dev.cosignproject.cosign/image",
        "dev.cosignproject.cosign/sigs",
        "dev.cosignproject.cosign/atts",
    ]
    got = json.loads(dockerify("verify", f"oci:{saved}", "--key", str(keys.pub), "--json").stdout)
    assert [v["digest"] for v in got] == [digest]
    att = json.loads(dockerify("verify-attestation", f"oci:{saved}", "--key", str(keys.pub), "--json").stdout)
    assert att[0]["predicateType"] == SPDX
    r = dockerify("verify", f"oci:{saved}", "--key", str(other_keys.pub), check=False)
    assert r.returncode != 0 and "does not verify" in r.stderr


def test_dockerify_layout_loads_with_cosign(
    registry: str, key_pairs: dict[str, KeyPair], other_keys: KeyPair, tmp_path: Path
) -> None:
    keys = key_pairs["dockerify-cosign"]
    layout = tmp_path / "signed"
    shutil.copytree(sbom_tree(tmp_path), layout)
    dockerify("sign", f"oci:{layout}", "--key", str(keys.key), "-q")
    dockerify("sbom", f"oci:{layout}", "--attest", "--key", str(keys.key), "-q")
    ref = f"{registry}/{unique('cosign-load')}:v1"
    cosign("load", "--dir", str(layout), ref)
    cosign("verify", "--key", str(keys.pub), *VERIFY_FLAGS, ref)
    cosign("verify-attestation", "--key", str(keys.pub), "--type", "spdxjson", *VERIFY_FLAGS, ref)
    r = cosign("verify", "--key", str(other_keys.pub), *VERIFY_FLAGS, ref, check=False)
    assert r.returncode != 0
    # the layout still reads as one image to dockerify, and verifies there too
    dockerify("verify", f"oci:{layout}", "--key", str(keys.pub))
    dockerify("verify-attestation", f"oci:{layout}", "--key", str(keys.pub))
