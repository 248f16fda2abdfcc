"""Acceptance 5: an SD-card image pushed as an OCI artifact and pulled back is byte-identical;
its manifest carries the artifactType and the title/platform/size annotations (checked with
`skopeo inspect --raw`)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.integration.test_registry_support import run_cli, unique

pytestmark = pytest.mark.registry
SDCARD = "application/vnd.dockerify.sdcard.v1"


def sd_image(path: Path, size: int = 3 << 20) -> Path:
    """A small disk image: an MBR with one partition entry, random data, and sparse holes."""
    with open(path, "wb") as f:
        f.truncate(size)
        mbr = bytearray(512)
        mbr[446:462] = (
            bytes([0x00, 0, 0, 0, 0x0C, 0, 0, 0])
            + (2048).to_bytes(4, "little")
            + (4096).to_bytes(4, "little")
        )
        mbr[510:512] = b"\x55\xaa"
        f.write(mbr)
        f.seek(1 << 20)
        f.write(os.urandom(256 << 10))
    return path


def skopeo_raw(ref: str) -> dict:
    require_tool("skopeo")
    proc = subprocess.run(
        ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("compression", ["", "xz"])
def test_sdcard_artifact_round_trip(registry: str, tmp_path: Path, compression: str) -> None:
    img = sd_image(tmp_path / "pi.img")
    if compression:
        require_tool(compression)
        subprocess.run([compression, "-k", "-0", str(img)], check=True)
        img = tmp_path / f"pi.img.{compression}"
    ref = f"{registry}/{unique('sdcard')}:bookworm"
    digest = run_cli(
        "push-artifact",
        str(img),
        ref,
        "--artifact-type",
        SDCARD,
        "--platform",
        "linux/arm64",
        "--annotation",
        "org.opencontainers.image.description=test card",
    ).stdout.strip()
    manifest = skopeo_raw(ref)
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["artifactType"] == SDCARD
    assert manifest["config"]["mediaType"] == "application/vnd.oci.empty.v1+json"
    notes = manifest["annotations"]
    assert notes["org.opencontainers.image.title"] == img.name
    assert notes["io.dockerify.artifact.platform"] == "linux/arm64"
    assert notes["io.dockerify.artifact.size"] == str(img.stat().st_size)
    assert notes["org.opencontainers.image.description"] == "test card"
    (layer,) = manifest["layers"]
    assert layer["size"] == img.stat().st_size
    assert layer["mediaType"] == "application/vnd.dockerify.sdcard.image.v1" + (
        f"+{compression}" if compression else ""
    )
    assert layer["annotations"]["org.opencontainers.image.title"] == img.name

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    got = Path(run_cli("pull-artifact", f"{ref.rsplit(':', 1)[0]}@{digest}", str(out_dir)).stdout.strip())
    assert got == out_dir / img.name
    assert got.read_bytes() == img.read_bytes()
    named = tmp_path / "named.img"
    run_cli("pull-artifact", ref, str(named))
    assert named.read_bytes() == img.read_bytes()


def test_artifact_title_cannot_escape(registry: str, tmp_path: Path) -> None:
    img = sd_image(tmp_path / "card.img", 1 << 20)
    ref = f"{registry}/{unique('evil')}:v1"
    run_cli("push-artifact", str(img), ref, "--title", "../../escaped.img")
    out = tmp_path / "out"
    out.mkdir()
    r = run_cli("pull-artifact", ref, str(out), check=False)
    assert r.returncode != 0 and "not a plain file name" in r.stderr
    assert list(out.iterdir()) == [] and not (tmp_path.parent / "escaped.img").exists()
