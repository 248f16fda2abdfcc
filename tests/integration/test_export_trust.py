"""export --verify-key refuses unsigned or wrongly signed images; export --push sends the SD
card to a registry as an OCI artifact that comes back byte-identical."""

from __future__ import annotations

import json
import subprocess

from tests.conftest import dockerify, require_tool
from tests.fixtures import FIXTURES_DIR, entry

PASSWORD = {"DOCKERIFY_KEY_PASSWORD": "export trust"}


def _export_verified(layout, out, key, check: bool = True):
    return dockerify(
        "export",
        f"oci:{layout}:t",
        "--format",
        "rootfs-tar",
        "-o",
        str(out),
        "--verify-key",
        str(key),
        check=check,
    )


def test_export_verify_key(tmp_path) -> None:
    entry("rootfs-amd64.tar.gz")
    layout = tmp_path / "l"
    dockerify("build", "-q", str(FIXTURES_DIR / "rootfs-amd64.tar.gz"), "--output", f"oci:{layout}:t")
    for name in ("good", "other"):
        dockerify("keygen", "--output-key-prefix", str(tmp_path / name), env=PASSWORD)
    out = tmp_path / "rootfs.tar"
    unsigned = _export_verified(layout, out, tmp_path / "good.pub", check=False)
    assert unsigned.returncode != 0 and "Traceback" not in unsigned.stderr and not out.exists()
    dockerify("sign", f"oci:{layout}:t", "--key", str(tmp_path / "good.key"), env=PASSWORD)
    wrong = _export_verified(layout, out, tmp_path / "other.pub", check=False)
    assert wrong.returncode != 0 and not out.exists()
    _export_verified(layout, out, tmp_path / "good.pub")
    assert out.stat().st_size > 0


def test_export_sdcard_push(tmp_path, registry) -> None:
    require_tool("skopeo")
    entry("pi-arm64.img")
    layout = tmp_path / "l"
    dockerify("build", "-q", str(FIXTURES_DIR / "pi-arm64.img"), "--output", f"oci:{layout}:t")
    card = tmp_path / "card.img"
    ref = f"{registry}/dockerify-test/card:export"
    dockerify("export", "-q", f"oci:{layout}:t", "--format", "sdcard", "-o", str(card), "--push", ref)
    back = tmp_path / "back.img"
    dockerify("pull-artifact", ref, str(back))
    assert back.read_bytes() == card.read_bytes()
    raw = json.loads(
        subprocess.run(
            ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
            capture_output=True,
            check=True,
        ).stdout
    )
    assert raw["artifactType"] == "application/vnd.dockerify.sdcard.v1"
    assert raw["layers"][0]["annotations"]["org.opencontainers.image.title"] == "card.img"
