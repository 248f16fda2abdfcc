"""Issue 11, acceptance 5 and 6: `oras pull` of an SD-card artifact dockerify pushed gives the
identical file under its title; a key file in any refused format gives one line naming the file
and the format (and a hint), never a traceback, from every command that reads keys."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.fixtures import fixture
from tests.integration import test_cosign_support as cs
from tests.integration import test_registry_support as support
from tests.integration.test_cosign_support import dockerify, oras
from tests.integration.test_registry_support import unique
from tests.unit.test_cosign_keys import refused_private

pytestmark = pytest.mark.registry
oras_bin = cs.oras_bin
busybox_dirs = support.busybox_dirs


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.fixtures
@pytest.mark.parametrize("name", ["pi-arm64.img.xz", "pi-arm64.img"])
def test_oras_pulls_what_dockerify_pushed(registry: str, oras_bin: str, tmp_path: Path, name: str) -> None:
    card = fixture(name)
    ref = f"{registry}/{unique('cosign-oras')}:card"
    dockerify("push-artifact", str(card), ref, "--platform", "linux/arm64", "-q")
    out = tmp_path / "pulled"
    out.mkdir()
    oras("pull", "--plain-http", ref, "-o", str(out))
    pulled = sorted(p.name for p in out.iterdir())
    assert pulled == [card.name]
    assert sha256(out / card.name) == sha256(card)


def one_line_error(stderr: str, path: Path) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr
    errors = [line for line in lines if line.startswith("dockerify: error: ")]
    assert len(errors) == 1 and str(path) in errors[0], stderr
    assert all(line.startswith(("dockerify: error: ", "hint: ")) for line in lines), stderr
    return errors[0]


def test_refused_key_files_give_one_line(tmp_path: Path) -> None:
    layout = tmp_path / "img"
    dockerify(
        "build",
        str(support.busybox_tree(tmp_path / "t", Path("/bin/busybox"), "k")),
        "-o",
        f"oci:{layout}:v1",
        "-q",
    )
    for name, (data, words) in refused_private(tmp_path).items():
        path = tmp_path / f"{name}.key"
        path.write_bytes(data)
        for args in (
            ("sign", f"oci:{layout}:v1", "--key", str(path)),
            ("sbom", f"oci:{layout}:v1", "--attest", "--key", str(path)),
        ):
            r = dockerify(*args, check=False)
            assert r.returncode != 0, (name, args)
            line = one_line_error(r.stderr, path)
            assert words in line, (name, line)
    # public keys in a refused format, for every command that verifies
    bad_pub = tmp_path / "ssh.pub"
    bad_pub.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGk4 user@host\n")
    for args in (
        ("verify", f"oci:{layout}:v1", "--key", str(bad_pub)),
        ("verify-attestation", f"oci:{layout}:v1", "--key", str(bad_pub)),
        ("pull", "127.0.0.1:5000/none/none:v1", f"oci:{tmp_path / 'p'}", "--verify-key", str(bad_pub)),
    ):
        r = dockerify(*args, check=False)
        assert r.returncode != 0
        assert "an OpenSSH public key" in one_line_error(r.stderr, bad_pub)
    missing = tmp_path / "missing.key"
    r = dockerify("sign", f"oci:{layout}:v1", "--key", str(missing), check=False)
    assert "no such key file" in one_line_error(r.stderr, missing)
