"""Issue 8: sign and verify work on an oci-archive too (the archive is replaced atomically, and
only when a signature was added; cosign verifies the result), and Docker's stores are refused
with one line saying why, before any key is read, nothing written."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest

from tests.integration import test_cosign_support as cs
from tests.integration import test_registry_support as support
from tests.integration.test_cosign_support import KeyPair, cosign, dockerify

busybox_dirs = support.busybox_dirs
single_image = support.single_image
cosign_bin = cs.cosign_bin
key_pairs = cs.key_pairs
other_keys = cs.other_keys
NO_PASSWORD = {k: v for k, v in os.environ.items() if k not in ("DOCKERIFY_KEY_PASSWORD", "COSIGN_PASSWORD")}
REFUSAL = "cannot hold signatures: Docker keeps a config and layers per image, not the manifest"


def digest_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def archive_of(layout: Path, out: Path) -> Path:
    dockerify("copy", f"oci:{layout}:v1", f"oci-archive:{out}", "-q")
    return out


def listing(directory: Path) -> dict[str, str]:
    return {p.name: digest_of(p) for p in sorted(directory.iterdir()) if p.is_file()}


def test_sign_an_oci_archive_and_verify_it_with_dockerify_and_cosign(
    single_image: Path, key_pairs: dict[str, KeyPair], other_keys: KeyPair, tmp_path: Path
) -> None:
    keys = key_pairs["dockerify-cosign"]
    archive = archive_of(single_image, tmp_path / "image.tar")
    archive.chmod(0o640)
    root = json.loads(dockerify("inspect", f"oci-archive:{archive}", "--json").stdout)["digest"]
    r = dockerify("verify", f"oci-archive:{archive}", "--key", str(keys.pub), check=False)
    assert r.returncode != 0 and "no signature" in r.stderr

    signed = json.loads(dockerify("sign", f"oci-archive:{archive}", "--key", str(keys.key), "--json").stdout)
    assert signed == [{"digest": root, "added": True, "stored": f"sha256-{root[7:]}.sig"}]
    assert archive.stat().st_mode & 0o777 == 0o640  # replaced, keeping its mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image.tar"]  # no temporary left beside it
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
    names = [d.get("annotations", {}).get("org.opencontainers.image.ref.name") for d in index["manifests"]]
    assert f"sha256-{root[7:]}.sig" in names
    # the image itself is untouched: same root digest, and it still reads as one image
    got = json.loads(dockerify("verify", f"oci-archive:{archive}", "--key", str(keys.pub), "--json").stdout)
    assert got == [{"digest": root, "docker-reference": "localhost/image", "signatures": 1}]
    assert json.loads(dockerify("inspect", f"oci-archive:{archive}", "--json").stdout)["digest"] == root

    # signing again adds nothing and leaves the archive byte for byte as it was
    before = digest_of(archive)
    again = json.loads(dockerify("sign", f"oci-archive:{archive}", "--key", str(keys.key), "--json").stdout)
    assert again[0]["added"] is False and digest_of(archive) == before

    # cosign reads a layout (`--local-image`), not an archive: extract it and let cosign judge
    layout = tmp_path / "extracted"
    layout.mkdir()
    subprocess.run(["tar", "-xf", str(archive), "-C", str(layout)], check=True)
    ok = cosign("verify", "--key", str(keys.pub), "--local-image", "--insecure-ignore-tlog", str(layout))
    assert root in ok.stdout
    bad = cosign(
        "verify",
        "--key",
        str(other_keys.pub),
        "--local-image",
        "--insecure-ignore-tlog",
        str(layout),
        check=False,
    )
    assert bad.returncode != 0


def test_a_failed_sign_leaves_the_archive_as_it_was(
    single_image: Path, key_pairs: dict[str, KeyPair], tmp_path: Path
) -> None:
    keys = key_pairs["dockerify-cosign"]
    archive = archive_of(single_image, tmp_path / "image.tar")
    before = listing(tmp_path)
    # a wrong password: refused after the archive was found, nothing rewritten
    r = support.run_cli(
        "sign",
        f"oci-archive:{archive}",
        "--key",
        str(keys.key),
        env={**cs.ENV, "DOCKERIFY_KEY_PASSWORD": "wrong", "COSIGN_PASSWORD": "wrong"},
        check=False,
    )
    assert r.returncode != 0 and "Traceback" not in r.stderr
    # a tag the archive does not hold: refused after extraction, nothing rewritten
    r = dockerify("sign", f"oci-archive:{archive}:nosuchtag", "--key", str(keys.key), check=False)
    assert r.returncode != 0 and "nosuchtag" in r.stderr and "Traceback" not in r.stderr
    assert listing(tmp_path) == before


@pytest.mark.parametrize("command", ["sign", "verify"])
def test_docker_archive_is_refused_with_the_reason(
    command: str, single_image: Path, key_pairs: dict[str, KeyPair], tmp_path: Path
) -> None:
    keys = key_pairs["dockerify-cosign"]
    archive = tmp_path / "docker.tar"
    dockerify("copy", f"oci:{single_image}:v1", f"docker-archive:{archive}", "-q")
    before = listing(tmp_path)
    key = keys.key if command == "sign" else keys.pub
    # no password in the environment: the refusal comes before the key is read
    r = support.run_cli(command, f"docker-archive:{archive}", "--key", str(key), env=NO_PASSWORD, check=False)
    assert r.returncode == 1, r.stderr
    lines = r.stderr.splitlines()
    assert lines[0].startswith(
        f"dockerify: error: docker-archive:{archive}: a docker-archive image {REFUSAL}"
    )
    assert lines[1].startswith("hint: copy it to a layout or a registry first") and len(lines) == 2
    assert r.stdout == ""
    assert listing(tmp_path) == before


@pytest.mark.parametrize("command", ["sign", "verify"])
def test_docker_daemon_is_refused_with_the_reason(
    command: str, docker_daemon: str, single_image: Path, key_pairs: dict[str, KeyPair]
) -> None:
    keys = key_pairs["dockerify-cosign"]
    name = f"results-sign-{uuid.uuid4().hex[:8]}:v1"
    dockerify("copy", f"oci:{single_image}:v1", f"docker-daemon:{name}", "-q")
    try:
        # the daemon is shared: look at this test's repository only
        images = ["docker", "images", "--no-trunc", "--format", "{{.Tag}} {{.ID}}", name.split(":")[0]]
        before = subprocess.run(images, capture_output=True, text=True, check=True).stdout
        key = keys.key if command == "sign" else keys.pub
        r = support.run_cli(command, f"docker-daemon:{name}", "--key", str(key), env=NO_PASSWORD, check=False)
        assert r.returncode == 1, r.stderr
        first = r.stderr.splitlines()[0]
        assert first.startswith(f"dockerify: error: docker-daemon:{name}: a docker-daemon image {REFUSAL}")
        assert r.stdout == ""
        after = subprocess.run(images, capture_output=True, text=True, check=True).stdout
        assert after == before and before.startswith("v1 sha256:")
    finally:
        subprocess.run(["docker", "rmi", name], capture_output=True)
