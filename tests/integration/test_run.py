"""`dockerify run` / `pi`: images run in the daemon with the current directory at /mnt/host, and
`--verify-key` runs only what a signature vouches for."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import dockerify
from tests.fixtures import FIXTURES_DIR, entry

PASSWORD = {"DOCKERIFY_KEY_PASSWORD": "correct horse"}


def test_run_mounts_cwd_and_keeps_arm_variant(tmp_path, docker_daemon, binfmt) -> None:
    entry("debian-armhf.img")
    dockerify(
        "build",
        "-q",
        str(FIXTURES_DIR / "debian-armhf.img"),
        "--output",
        "docker-daemon:dockerify-test/run:armhf",
    )
    (tmp_path / "marker.txt").write_text("from the host\n")
    proc = dockerify(
        "run",
        "--no-interactive",
        "dockerify-test/run:armhf",
        "sh",
        "-c",
        "uname -m; pwd; cat marker.txt",
        cwd=tmp_path,
    )
    assert proc.stdout.split() == ["armv7l", "/mnt/host", "from", "the", "host"]
    failing = dockerify(
        "run", "--no-interactive", "dockerify-test/run:armhf", "sh", "-c", "exit 3", check=False, cwd=tmp_path
    )
    assert failing.returncode == 3
    pi = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from dockerify.cli import pi_main; sys.exit(pi_main())",
            "--no-interactive",
            "dockerify-test/run:armhf",
            "echo",
            "pi-ok",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert pi.returncode == 0 and pi.stdout.strip() == "pi-ok", pi.stderr


def test_run_verify_key(tmp_path, docker_daemon) -> None:
    entry("rootfs-amd64.tar.gz")
    layout = tmp_path / "layout"
    dockerify("build", "-q", str(FIXTURES_DIR / "rootfs-amd64.tar.gz"), "--output", f"oci:{layout}:v1")
    dockerify("keygen", "--output-key-prefix", str(tmp_path / "good"), env=PASSWORD)
    dockerify("keygen", "--output-key-prefix", str(tmp_path / "other"), env=PASSWORD)
    unsigned = dockerify(
        "run",
        "--no-interactive",
        "--verify-key",
        str(tmp_path / "good.pub"),
        f"oci:{layout}:v1",
        "echo",
        "ran",
        check=False,
        cwd=tmp_path,
    )
    assert unsigned.returncode != 0 and "ran" not in unsigned.stdout and "Traceback" not in unsigned.stderr
    dockerify("sign", f"oci:{layout}:v1", "--key", str(tmp_path / "good.key"), env=PASSWORD)
    wrong = dockerify(
        "run",
        "--no-interactive",
        "--verify-key",
        str(tmp_path / "other.pub"),
        f"oci:{layout}:v1",
        "echo",
        "ran",
        check=False,
        cwd=tmp_path,
    )
    assert wrong.returncode != 0 and "ran" not in wrong.stdout
    good = dockerify(
        "run",
        "--no-interactive",
        "--verify-key",
        str(tmp_path / "good.pub"),
        f"oci:{layout}:v1",
        "echo",
        "ran",
        cwd=tmp_path,
    )
    assert good.stdout.strip() == "ran"
