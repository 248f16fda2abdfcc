"""Issue 8: every command is a thin call of an SDK function: what `dockerify CMD --json` prints
(in a fresh process) is the `to_json()` of the result the SDK function returns for the same
arguments (in this one). Commands that write are run twice, into two places that start the same."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from dockerify import sdk
from tests.integration import test_registry_support as support
from tests.integration.test_cosign_layouts import sbom_tree
from tests.integration.test_registry_support import run_cli, unique

pytestmark = pytest.mark.registry
busybox_dirs = support.busybox_dirs
single_image = support.single_image
PASSWORD = "correct horse"
ENV = {**os.environ, "DOCKERIFY_KEY_PASSWORD": PASSWORD}
EPOCH = "1700000000"


def cli_json(command: str, *args: str, check: bool = True) -> Any:
    """`dockerify COMMAND --json -q ARGS...` in a fresh process (the flags first: `run` takes
    everything after the image as the command)."""
    proc = run_cli(command, "--json", "-q", *args, env={**ENV, "SOURCE_DATE_EPOCH": EPOCH}, check=check)
    return json.loads(proc.stdout)


@pytest.fixture(autouse=True)
def same_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fresh process has SOURCE_DATE_EPOCH; so does this one: the same digests both ways."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)


@pytest.fixture
def keys(tmp_path: Path) -> tuple[str, str]:
    got = cli_json("keygen", "--output-key-prefix", str(tmp_path / "k"))
    return got["key"], got["pub"]


def test_build_inspect_diff_copy(busybox_dirs: dict[str, Path], tmp_path: Path) -> None:
    tree = busybox_dirs["amd64"]
    built = cli_json("build", str(tree), "--output", f"oci:{tmp_path}/cli:v1", "--label", "a=b")
    result = sdk.build(tree, output=f"oci:{tmp_path}/sdk:v1", labels={"a": "b"})
    assert built == result.to_json()

    ref = f"oci:{tmp_path}/cli:v1"
    assert cli_json("inspect", ref) == sdk.inspect(ref).to_json()
    assert cli_json("inspect", str(tree)) == sdk.inspect(tree).to_json()

    other = tmp_path / "other"
    shutil.copytree(tree, other, symlinks=True)
    (other / "etc/new").write_text("new\n")
    differs = cli_json("diff", ref, str(other), check=False)
    assert differs == sdk.diff(ref, other).to_json() and differs["differences"]

    copied = cli_json("copy", ref, f"oci-archive:{tmp_path}/cli.tar")
    assert copied == sdk.copy(ref, f"oci-archive:{tmp_path}/sdk.tar").to_json()


def test_push_pull_and_artifacts(registry: str, single_image: Path, tmp_path: Path) -> None:
    src = f"oci:{single_image}:v1"
    a, b = f"{registry}/{unique('json-push')}:v1", f"{registry}/{unique('json-push')}:v1"
    assert cli_json("push", src, a) == sdk.push(src, b).to_json()
    assert cli_json("pull", a, f"oci:{tmp_path}/cli:v1") == sdk.pull(a, f"oci:{tmp_path}/sdk:v1").to_json()

    card = tmp_path / "card.bin"
    card.write_bytes(b"not a disk image\n" * 100)
    a, b = f"{registry}/{unique('json-artifact')}:v1", f"{registry}/{unique('json-artifact')}:v1"
    pushed = cli_json("push-artifact", str(card), a, "--annotation", "k=v")
    assert pushed == sdk.push_artifact(card, b, annotations={"k": "v"}).to_json()
    pulled = cli_json("pull-artifact", a, str(tmp_path / "cli.bin"))
    assert pulled == {
        **sdk.pull_artifact(a, tmp_path / "sdk.bin").to_json(),
        "path": str(tmp_path / "cli.bin"),
    }
    assert (tmp_path / "cli.bin").read_bytes() == card.read_bytes()


def test_keygen_sign_verify_and_attestations(
    single_image: Path, tmp_path: Path, keys: tuple[str, str]
) -> None:
    key, pub = keys
    made = cli_json("keygen", "--output-key-prefix", str(tmp_path / "cli"), "--format", "pkcs8")
    want = sdk.keygen(tmp_path / "sdk", password=PASSWORD, format="pkcs8").to_json()
    assert made == {**want, "key": str(tmp_path / "cli.key"), "pub": str(tmp_path / "cli.pub")}

    # two copies of one layout, under the same name (the default identity is the directory's name)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    image = sbom_tree(tmp_path)  # with a dpkg database, to attest its SBOM
    shutil.copytree(image, tmp_path / "a/image")
    shutil.copytree(image, tmp_path / "b/image")
    signed = cli_json("sign", f"oci:{tmp_path}/a/image:v1", "--key", key)
    assert signed == sdk.sign(f"oci:{tmp_path}/b/image:v1", key, password=PASSWORD).to_json()
    ref = f"oci:{tmp_path}/a/image:v1"
    assert cli_json("verify", ref, "--key", pub) == sdk.verify(ref, pub).to_json()

    run_cli("sbom", ref, "--attest", "--key", key, "-q", env=ENV)
    attested = cli_json("verify-attestation", ref, "--key", pub)
    assert attested == sdk.verify_attestation(ref, pub).to_json()
    assert attested[0]["predicateType"] == "https://spdx.dev/Document"


def test_sbom_writes_what_the_sdk_returns(tmp_path: Path) -> None:
    ref = f"oci:{sbom_tree(tmp_path)}:v1"
    printed = run_cli("sbom", ref, env={**ENV, "SOURCE_DATE_EPOCH": EPOCH}).stdout
    result = sdk.sbom(ref, tmp_path / "sbom.json")
    assert json.loads(printed) == result.to_json()
    assert (tmp_path / "sbom.json").read_bytes() == result.data


def test_run_and_binfmt(docker_daemon: str, single_image: Path) -> None:
    name = f"results-json-{uuid.uuid4().hex[:8]}:v1"
    sdk.copy(f"oci:{single_image}:v1", f"docker-daemon:{name}")
    try:
        ran = cli_json("run", "--no-interactive", name, "/bin/busybox", "echo", "hi", check=False)
        assert ran == sdk.run(name, ["/bin/busybox", "echo", "hi"]).to_json()
        assert ran["exit_code"] == 0 and ran["output"].strip() == "hi"
    finally:
        subprocess.run(["docker", "rmi", name], capture_output=True)
    assert cli_json("binfmt", check=False) == sdk.binfmt_status().to_json()
