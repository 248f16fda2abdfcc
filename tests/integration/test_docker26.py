"""The daemon outputs, `run` and `pi` against Docker 26 with the containerd image store (the second
daemon of scripts/start-buildx-daemon.sh), the same checks the Docker 20.10 tests make: dockerify
reaches whichever daemon DOCKER_HOST names, and runs the docker CLI DOCKERIFY_DOCKER names."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import BuildxDaemon, dockerify, require_tool
from tests.fixtures import FIXTURES_DIR, entry, staging


def _env(daemon: BuildxDaemon) -> dict[str, str]:
    return {**daemon.env, "DOCKERIFY_DOCKER": daemon.docker}


def _docker(daemon: BuildxDaemon, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [daemon.docker, *args], env=daemon.environ(), capture_output=True, text=True, timeout=300
    )
    if check:
        assert proc.returncode == 0, f"docker {' '.join(args)}: {proc.stderr}"
    return proc


def _platform(daemon: BuildxDaemon, name: str) -> tuple[str, str, str | None]:
    info = json.loads(_docker(daemon, "image", "inspect", name).stdout)[0]
    return info["Os"], info["Architecture"], info.get("Variant") or None


@pytest.mark.parametrize(
    ("name", "platform", "machine"),
    [("pi-arm64.img", "linux/arm64", "aarch64"), ("debian-armhf.img", "linux/arm/v7", "armv7l")],
)
def test_docker_daemon_output_runs(name, platform, machine, buildx_daemon: BuildxDaemon, binfmt) -> None:
    entry(name)
    tag = f"buildx-test/{name.split('.')[0]}:daemon"
    dockerify(
        "build", "-q", str(FIXTURES_DIR / name), "--output", f"docker-daemon:{tag}", env=_env(buildx_daemon)
    )
    os_, arch, *variant = platform.split("/")
    assert _platform(buildx_daemon, tag) == (os_, arch, variant[0] if variant else None)
    assert _docker(buildx_daemon, "run", "--rm", tag, "uname", "-m").stdout.strip() == machine
    hello = _docker(buildx_daemon, "run", "--rm", "--platform", platform, tag, "/usr/bin/hello")
    assert "Hello" in hello.stdout and "ld.so" not in hello.stderr


def test_docker_save_of_daemon_output_reads_back(tmp_path: Path, buildx_daemon: BuildxDaemon) -> None:
    """What was loaded saves again, and dockerify reads it back from the daemon: the same tree,
    only the holes written out (daemon outputs are dense on purpose, for Docker 20.10's store)."""
    entry("pi-arm64.img")
    tag = "buildx-test/pi-arm64:save"
    dockerify(
        "build",
        "-q",
        str(FIXTURES_DIR / "pi-arm64.img"),
        "--output",
        f"docker-daemon:{tag}",
        env=_env(buildx_daemon),
    )
    _docker(buildx_daemon, "save", tag, "-o", str(tmp_path / "saved.tar"))
    diff = dockerify(
        "diff",
        str(FIXTURES_DIR / "pi-arm64.img"),
        f"docker-daemon:{tag}",
        check=False,
        env=_env(buildx_daemon),
    )
    assert diff.returncode in (0, 1), diff.stderr
    changes = [line for line in diff.stdout.splitlines() if line.startswith(("A ", "D ", "M "))]
    assert changes and all(
        line.startswith("M ") and line.endswith("sparse: True -> False") for line in changes
    ), diff.stdout


def test_sparse_layer_survives_containerd_store(tmp_path: Path, buildx_daemon: BuildxDaemon, binfmt) -> None:
    """The containerd image store keeps a layer blob as it was given: an OCI archive with GNU sparse
    members loads, runs (the holes read back as zeros) and saves back unchanged, holes included,
    unlike Docker 20.10's layer store, which cannot reassemble such members."""
    entry("pi-arm64.img")
    archive = tmp_path / "sparse.oci.tar"
    dockerify("build", "-q", str(FIXTURES_DIR / "pi-arm64.img"), "--output", f"oci-archive:{archive}:sparse")
    _docker(buildx_daemon, "load", "-i", str(archive))
    # The image id in the containerd store is the manifest digest; tag by it (Docker 26 names an
    # image loaded from an OCI archive after the bare ref.name annotation, here just "sparse").
    manifest = json.loads(
        subprocess.run(["tar", "-xOf", str(archive), "index.json"], capture_output=True, check=True).stdout
    )["manifests"][0]["digest"]
    tag = "buildx-test/pi-arm64:sparse"
    _docker(buildx_daemon, "tag", manifest, tag)
    inside = _docker(
        buildx_daemon, "run", "--rm", tag, "busybox", "sha256sum", "/srv/special/sparse"
    ).stdout.split()[0]
    assert inside == hashlib.sha256((staging("pi-arm64.img") / "srv/special/sparse").read_bytes()).hexdigest()
    saved = tmp_path / "saved.tar"
    _docker(buildx_daemon, "save", tag, "-o", str(saved))
    diff = dockerify("diff", str(FIXTURES_DIR / "pi-arm64.img"), f"docker-archive:{saved}", check=False)
    # No difference at all, the sparse flags included (the dense daemon outputs show each one).
    assert diff.returncode == 0 and "no differences" in diff.stderr, diff.stdout + diff.stderr


def test_docker_archive_output_loads(tmp_path: Path, buildx_daemon: BuildxDaemon) -> None:
    require_tool("skopeo")
    entry("debian-armhf.img")
    archive = tmp_path / "armhf.docker.tar"
    tag = "buildx-test/debian-armhf:archive"
    dockerify(
        "build",
        "-q",
        str(FIXTURES_DIR / "debian-armhf.img"),
        "-t",
        tag,
        "--output",
        f"docker-archive:{archive}",
    )
    loaded = _docker(buildx_daemon, "load", "-i", str(archive))
    assert f"Loaded image: {tag}" in loaded.stdout
    assert _platform(buildx_daemon, tag) == ("linux", "arm", "v7")


def test_run_and_pi(tmp_path: Path, buildx_daemon: BuildxDaemon, binfmt) -> None:
    entry("debian-armhf.img")
    tag = "buildx-test/debian-armhf:run"
    env = _env(buildx_daemon)
    dockerify(
        "build", "-q", str(FIXTURES_DIR / "debian-armhf.img"), "--output", f"docker-daemon:{tag}", env=env
    )
    (tmp_path / "marker.txt").write_text("from the host\n")
    proc = dockerify(
        "run", "--no-interactive", tag, "sh", "-c", "uname -m; pwd; cat marker.txt", cwd=tmp_path, env=env
    )
    assert proc.stdout.split() == ["armv7l", "/mnt/host", "from", "the", "host"]
    failing = dockerify(
        "run", "--no-interactive", tag, "sh", "-c", "exit 3", check=False, cwd=tmp_path, env=env
    )
    assert failing.returncode == 3
    # The image is in the Docker 26 daemon only: the 20.10 one must not be what answered.
    missing = dockerify("run", "--no-interactive", tag, "true", check=False, cwd=tmp_path)
    assert missing.returncode != 0 and "no such image" in missing.stderr, missing.stderr
    pi = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from dockerify.cli import pi_main; sys.exit(pi_main())",
            "--no-interactive",
            tag,
            "echo",
            "pi-ok",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**buildx_daemon.environ(), **env},
    )
    assert pi.returncode == 0 and pi.stdout.strip() == "pi-ok", pi.stderr


def test_unreachable_daemon_is_named(tmp_path: Path) -> None:
    require_tool("docker")
    entry("rootfs-amd64.tar.gz")
    env = {"DOCKER_HOST": f"unix://{tmp_path}/none.sock"}
    build = dockerify(
        "build",
        "-q",
        str(FIXTURES_DIR / "rootfs-amd64.tar.gz"),
        "--output",
        "docker-daemon:buildx-test/x:y",
        check=False,
        env=env,
    )
    assert build.returncode != 0 and f"unix://{tmp_path}/none.sock" in build.stderr, build.stderr
    assert "Traceback" not in build.stderr
    run = dockerify("run", "--no-interactive", "buildx-test/x:y", "true", check=False, env=env)
    assert run.returncode != 0 and f"unix://{tmp_path}/none.sock" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr
