"""Issue 8, point 4: a layer that inflates past `--max-size` is refused, from any store.

The image is crafted here: a small normal layer under a gzip bomb (a few KiB that inflate to
8 MiB), in an OCI layout, an oci-archive, on the real loopback registry and in Docker 26's
daemon. Every command that
reads layers (export, diff, sbom) runs as a user would, in a fresh process, with --max-size 1M:
one line names the image and the layer digest, the exit status is 1, nothing is written. A
gzipped oci-archive or docker-archive whose unpacking inflates past the limit is refused the
same way, naming the archive."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
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


def bomb_layout(root: Path, compress: bool = True) -> str:
    """An OCI layout (tag v1) of a linux/amd64 image whose second layer is a gzip bomb (with
    `compress=False`, the same 8 MiB layer stored as plain tar); returns that layer's digest."""
    (root / "blobs" / "sha256").mkdir(parents=True)
    (root / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    tars = [_tar({"etc/hostname": b"bomb\n"}), _tar({"zeros": bytes(BOMB_SIZE)})]
    layers = [gzip.compress(t, compresslevel=9, mtime=0) for t in tars] if compress else tars
    assert len(layers[1]) < 64 << 10 or not compress  # small on disk, big inflated: the point
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
        {
            "mediaType": "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if compress else ""),
            "digest": _blob(root, b),
            "size": len(b),
        }
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
    archive = _archive(layout, tmp_path / "bomb.tar")
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


def _archive(layout: Path, path: Path) -> Path:
    with tarfile.open(path, "w") as tar:
        for name in sorted(os.listdir(layout)):
            tar.add(layout / name, arcname=name)
    return path


@pytest.mark.parametrize("transport", ["oci-archive", "docker-archive"])
def test_compressed_archive_that_inflates_past_the_limit_is_refused(tmp_path: Path, transport: str) -> None:
    """The archive itself gzipped (layers stored plain, the whole inflating to 8 MiB): unpacking
    it is bounded too, and the temporary directory it was going to is gone."""
    layout = tmp_path / "layout"
    bomb_layout(layout, compress=False)
    plain = _archive(layout, tmp_path / "plain.tar")
    # docker-archive reads an archive holding an OCI layout too (what Docker 25+ saves).
    archive = tmp_path / "bomb.tar.gz"
    archive.write_bytes(gzip.compress(plain.read_bytes(), compresslevel=9))
    assert archive.stat().st_size < 256 << 10
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    image = f"{transport}:{archive}" + (":v1" if transport == "oci-archive" else "")
    out = tmp_path / "root.tar"
    proc = dockerify(
        "export", image, "--format", "rootfs-tar", "-o", str(out), "--max-size", LIMIT,
        check=False, env={"TMPDIR": str(tmpdir)},
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("dockerify: error:")]
    assert errors == [
        f"dockerify: error: {archive}: decompressed data exceeds the limit of {1 << 20} bytes (a decompression bomb?)"
    ], proc.stderr
    assert not out.exists() and os.listdir(tmpdir) == []
    # Under the default limit the same archive exports.
    dockerify("export", image, "--format", "rootfs-tar", "-o", str(out), env={"TMPDIR": str(tmpdir)})
    assert out.exists() and os.listdir(tmpdir) == []


def test_gzip_bomb_layer_from_the_docker_26_daemon_is_refused(
    registry, buildx_daemon, bomb, tmp_path
) -> None:
    """Docker 26's containerd image store keeps layers compressed, and `docker save` gives them
    so: the layer read from docker-daemon: is inflated, and bounded, like any other."""
    layout, digest = bomb
    name = f"lint-bomb-{uuid.uuid4().hex[:8]}:v1"
    ref = f"{REGISTRY}/lint/{name}"
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = {**buildx_daemon.env, "TMPDIR": str(tmpdir)}
    dockerify("push", "-q", f"oci:{layout}:v1", ref)
    dockerify("pull", "-q", ref, f"docker-daemon:{name}", env=env)
    try:
        out = tmp_path / "root.tar"
        image = f"docker-daemon:{name}"
        proc = dockerify(
            "export",
            image,
            "--format",
            "rootfs-tar",
            "-o",
            str(out),
            "--max-size",
            LIMIT,
            check=False,
            env=env,
        )
        assert_refused(proc, image, digest)
        assert not out.exists() and os.listdir(tmpdir) == []
    finally:
        subprocess.run([buildx_daemon.docker, "rmi", name], env=buildx_daemon.environ(), capture_output=True)
