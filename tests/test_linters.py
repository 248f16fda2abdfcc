"""Linters and the type checker are part of the test suite (issue 8, point 5): ruff's lint and
format check, mypy --strict on the library, shellcheck on the scripts and on the `run` script the
stage0 exporter generates."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dockerify.exporters.stage0 import _hostfwd, run_script
from tests.conftest import REPO, dockerify, require_tool
from tests.fixtures import require
from tests.integration.test_export_support import build_image, busybox_tree, kernel, require_init

PYTHON_TREES = ["dockerify", "tests", "scripts", "bench"]


def _ruff() -> None:
    require(shutil.which("ruff"), "ruff is not installed (pip install -e .[test])")


def test_ruff() -> None:
    _ruff()
    proc = subprocess.run(["ruff", "check", *PYTHON_TREES], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_format() -> None:
    _ruff()
    proc = subprocess.run(
        ["ruff", "format", "--check", *PYTHON_TREES], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy_strict() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "dockerify"], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _shellcheck(*paths: Path) -> None:
    require_tool("shellcheck")
    proc = subprocess.run(["shellcheck", *map(str, paths)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_shellcheck_scripts() -> None:
    # scripts/ (setup, daemons, fixtures, kernels), the frontend image's and the builder's.
    scripts = sorted(p for d in ("scripts", "frontend", "builder") for p in (REPO / d).glob("*.sh"))
    assert REPO / "scripts" / "setup.sh" in scripts
    _shellcheck(*scripts)


def test_shellcheck_generated_stage0_run(tmp_path: Path) -> None:
    require_init()
    ref = build_image(
        busybox_tree(tmp_path / "root", "amd64"), tmp_path / "img", "linux/amd64", "--expose", "8080"
    )
    bundle = tmp_path / "bundle"
    dockerify("export", ref, "--format", "stage0", "-o", str(bundle), "--kernel", str(kernel("amd64")))
    _shellcheck(bundle / "run")


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
@pytest.mark.parametrize("ports", [(), ("8080/tcp", "53/udp")])
def test_shellcheck_every_stage0_run_variant(tmp_path: Path, arch: str, ports: tuple[str, ...]) -> None:
    """The variants a real export of each kind would write (arm64 has no legacy contract;
    published ports add the network), without building an image for each."""
    script = tmp_path / "run"
    script.write_text(run_script(arch, "vmlinuz", "initramfs.cpio.gz", 512, _hostfwd(ports), "auto"))
    _shellcheck(script)
