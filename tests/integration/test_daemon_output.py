"""Issue 10, point 5: `--output docker-daemon:` in one pass (dockerify/daemon_stream.py) gives the
image a full `docker load` of the docker-archive gives: the same id (so the same config and
platform), the same layer (the daemon's own digest of what it applied), and no temporary image
left behind.

Judges: the real Docker daemon (`docker load`, `docker image inspect`, `docker run` under
qemu-user's binfmt handler)."""

from __future__ import annotations

import json
import subprocess
import uuid

from tests.conftest import dockerify
from tests.fixtures import FIXTURES_DIR, entry


def _inspect(name: str) -> dict:
    out = subprocess.run(["docker", "image", "inspect", name], capture_output=True, check=True).stdout
    return json.loads(out)[0]


def _imports_of(diff_id: str) -> list[str]:
    """Images the import endpoint made ("Imported from -") that hold exactly this layer."""
    ids = subprocess.run(
        ["docker", "images", "-q", "--no-trunc", "--filter", "dangling=true"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    found = []
    for image_id in ids:
        proc = subprocess.run(["docker", "image", "inspect", image_id], capture_output=True, text=True)
        if proc.returncode != 0:
            continue  # removed meanwhile by another test
        info = json.loads(proc.stdout)[0]
        if info.get("Comment") == "Imported from -" and info["RootFS"].get("Layers") == [diff_id]:
            found.append(image_id)
    return found


def test_one_pass_daemon_output_equals_a_full_load(tmp_path, docker_daemon, binfmt) -> None:
    entry("debian-armhf.img")
    src = FIXTURES_DIR / "debian-armhf.img"
    name = f"dockerify-test/exports-{uuid.uuid4().hex[:8]}"
    archive = tmp_path / "img.tar"
    try:
        dockerify("build", "-q", str(src), "--output", f"docker-daemon:{name}:one-pass")
        dockerify("build", "-q", str(src), "-t", f"{name}:loaded", "--output", f"docker-archive:{archive}")
        subprocess.run(["docker", "load", "-i", str(archive)], check=True, capture_output=True)
        one, full = _inspect(f"{name}:one-pass"), _inspect(f"{name}:loaded")
        assert one["Id"] == full["Id"]  # the id is the config's digest: same config, same platform
        assert (one["Os"], one["Architecture"], one.get("Variant")) == ("linux", "arm", "v7")
        assert one["RootFS"]["Layers"] == full["RootFS"]["Layers"]
        assert _imports_of(one["RootFS"]["Layers"][0]) == []
        run = subprocess.run(
            ["docker", "run", "--rm", "--platform", "linux/arm/v7", f"{name}:one-pass", "uname", "-m"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0 and run.stdout.strip() == "armv7l", run.stderr
    finally:
        subprocess.run(["docker", "rmi", "-f", f"{name}:one-pass", f"{name}:loaded"], capture_output=True)


def test_unreachable_daemon_is_one_clear_error(tmp_path) -> None:
    """A DOCKER_HOST socket with no daemon behind it: one message naming it, nothing imported."""
    entry("pi-arm64.img")
    missing = tmp_path / "no-daemon.sock"
    proc = dockerify(
        "build",
        "-q",
        str(FIXTURES_DIR / "pi-arm64.img"),
        "--output",
        "docker-daemon:dockerify-test/unreachable",
        check=False,
        env={"DOCKER_HOST": f"unix://{missing}"},
    )
    assert proc.returncode == 1, proc.stderr
    assert f"cannot reach the Docker daemon at unix://{missing}" in proc.stderr
    assert "Traceback" not in proc.stderr and "hint:" in proc.stderr
    assert list(tmp_path.iterdir()) == []
