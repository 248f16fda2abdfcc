"""Issue 8, point 4: a layer that inflates past `--max-size` is refused, from any store.

The image is crafted here: a small normal layer under a gzip bomb (a few KiB that inflate to
8 MiB), in an OCI layout, an oci-archive and on the real loopback registry. Every command that
reads layers (export, diff, sbom) runs as a user would, in a fresh process, with --max-size 1M:
one line names the image and the layer digest, the exit status is 1, nothing is written."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import uuid
from pathlib import Path

import pytest

from tests.conftest import REGISTRY, dockerify

BOMB_SIZE = 8 << 20
LIMIT = "1M"


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _blob(root: Path, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (root / "blobs" / "sha256" / digest.removeprefix("sha256:")).write_bytes(data)
    return digest


def bomb_layout(root: Path) -> str:
    """An OCI layout (tag v1) of a linux/amd64 image whose second layer is a gzip bomb; returns
    the bomb layer's digest."""
    (root / "blobs" / "sha256").mkdir(parents=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    tars = [_tar({"etc/hostname": b"bomb\n"}), _tar({"zeros": bytes(BOMB_SIZE)})]
    layers = [gzip.compress(t, compresslevel=9, mtime=0) for t in tars]
    assert len(layers[1]) < 64 << 10  # small on disk, big inflated: that is the point
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {
                "type": "layers",
                "diff_ids": ["sha256:" + hashlib.sha256(t).hexdigest() for t in tars],
            },
        }
    ).encode()
    layer_descs = [
        {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": _blob(root, b), "size": len(b)}
        for b in layers
    ]
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": _blob(root, config),
                "size": len(config),
            },
            "layers": layer_descs,
        }
    ).encode()
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": _blob(root, manifest),
                "size": len(manifest),
                "annotations": {"org.opencontainers.image.ref.name": "v1"},
            }
        ],
    }
    (root / "index.json").write_text(json.dumps(index))
    return str(layer_descs[1]["digest"])


def assert_refused(proc, image: str, digest: str) -> None:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("dockerify: error:")]
    assert errors == [
        f"dockerify: error: {image}: layer {digest}: decompressed data exceeds the limit of "
        f"{1 << 20} bytes (a decompression bomb?)"
    ], proc.stderr
    assert "hint: raise it with --max-size" in proc.stderr


@pytest.fixture
def bomb(tmp_path: Path) -> tuple[Path, str]:
    layout = tmp_path / "layout"
    return layout, bomb_layout(layout)


EXPORTS = [("rootfs-tar", "root.tar"), ("rootfs-dir", "rootfs"), ("sdcard", "card.img")]


def _refused_everywhere(image: str, digest: str, tmp_path: Path, env: dict[str, str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    for fmt, name in EXPORTS:
        proc = dockerify(
            "export", image, "--format", fmt, "-o", str(out / name), "--max-size", LIMIT, check=False, env=env
        )
        assert_refused(proc, image, digest)
        assert os.listdir(out) == [], f"{fmt}: {os.listdir(out)}"
    other = tmp_path / "empty-tree"
    other.mkdir()
    assert_refused(
        dockerify("diff", image, str(other), "--max-size", LIMIT, check=False, env=env), image, digest
    )
    sbom = out / "sbom.json"
    proc = dockerify("sbom", image, "-o", str(sbom), "--max-size", LIMIT, check=False, env=env)
    assert_refused(proc, image, digest)
    assert os.listdir(out) == []


def test_gzip_bomb_layer_in_an_oci_layout_is_refused(bomb, tmp_path: Path) -> None:
    layout, digest = bomb
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    _refused_everywhere(f"oci:{layout}:v1", digest, tmp_path, {"TMPDIR": str(tmpdir)})
    assert os.listdir(tmpdir) == []
    # The same image under the default limit reads fine: only the limit refused it.
    proc = dockerify("export", f"oci:{layout}:v1", "--format", "rootfs-tar", "-o", str(tmp_path / "ok.tar"))
    assert proc.returncode == 0
    with tarfile.open(tmp_path / "ok.tar") as tar:
        assert tar.getmember("zeros").size == BOMB_SIZE


def test_gzip_bomb_layer_in_an_oci_archive_is_refused(bomb, tmp_path: Path) -> None:
    layout, digest = bomb
    archive = tmp_path / "bomb.tar"
    with tarfile.open(archive, "w") as tar:
        for name in sorted(os.listdir(layout)):
            tar.add(layout / name, arcname=name)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    image = f"oci-archive:{archive}:v1"
    proc = dockerify(
        "export", image, "--format", "rootfs-tar", "-o", str(tmp_path / "r.tar"), "--max-size", LIMIT,
        check=False, env={"TMPDIR": str(tmpdir)},
    )  # fmt: skip
    assert_refused(proc, image, digest)
    assert not (tmp_path / "r.tar").exists() and os.listdir(tmpdir) == []


def test_gzip_bomb_layer_from_the_registry_is_refused(registry, bomb, tmp_path: Path) -> None:
    layout, digest = bomb
    ref = f"{REGISTRY}/lint/bomb-{uuid.uuid4().hex[:8]}:v1"
    dockerify("push", "-q", f"oci:{layout}:v1", ref)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    _refused_everywhere(ref, digest, tmp_path, {"TMPDIR": str(tmpdir)})
    assert os.listdir(tmpdir) == []  # the temporary pull is gone too
