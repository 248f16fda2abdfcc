"""Issue 10, point 4: `export`, `inspect` and `diff` read a registry reference directly, pulled
through the verifying client into a temporary store that is gone afterwards.

Judges: the real docker-registry on 127.0.0.1:5000, sfdisk/e2fsck/fsck.vfat on the card, and the
card exported from the local layout (byte-identical: the card is reproducible)."""

from __future__ import annotations

import hashlib
import json
import os
import uuid

from tests.conftest import REGISTRY, dockerify
from tests.fixtures import FIXTURES_DIR, entry
from tests.integration.test_export_sdcard import check_filesystems, tools


def test_export_inspect_and_diff_of_a_registry_reference(registry, tmp_path) -> None:
    tools()
    entry("pi-arm64.img")
    layout = tmp_path / "layout"
    dockerify("build", "-q", str(FIXTURES_DIR / "pi-arm64.img"), "--output", f"oci:{layout}:v1")
    ref = f"{REGISTRY}/exports/pi-{uuid.uuid4().hex[:8]}:v1"
    dockerify("push", "-q", f"oci:{layout}:v1", ref)

    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = {"TMPDIR": str(tmpdir)}
    work = tmp_path / "work"
    work.mkdir()
    card = work / "card.img"
    dockerify("export", ref, "--format", "sdcard", "-o", str(card), env=env, cwd=work)
    assert os.listdir(tmpdir) == [] and sorted(os.listdir(work)) == ["card.img"]
    check_filesystems(card, tmp_path)
    local = tmp_path / "local.img"
    dockerify("export", f"oci:{layout}:v1", "--format", "sdcard", "-o", str(local))
    assert hashlib.sha256(card.read_bytes()).digest() == hashlib.sha256(local.read_bytes()).digest()

    info = json.loads(dockerify("inspect", ref, "--json", env=env, cwd=work).stdout)
    assert "linux/arm64" in json.dumps(info)
    assert os.listdir(tmpdir) == []

    proc = dockerify("diff", ref, f"oci:{layout}:v1", env=env, cwd=work, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert os.listdir(tmpdir) == [] and sorted(os.listdir(work)) == ["card.img"]


def test_missing_registry_image_leaves_nothing(registry, tmp_path) -> None:
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    out = tmp_path / "card.img"
    proc = dockerify(
        "export",
        f"{REGISTRY}/exports/absent-{uuid.uuid4().hex[:8]}:v1",
        "--format",
        "sdcard",
        "-o",
        str(out),
        env={"TMPDIR": str(tmpdir)},
        check=False,
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    assert not out.exists() and os.listdir(tmpdir) == []
