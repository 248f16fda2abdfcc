"""Issue 10, point 2: what `pip install` gives works with nothing else. A wheel and an sdist made by
`python -m build` from a copy of the sources, each installed into a fresh venv (no PYTHONPATH, no
compiler needed), export an initramfs and a stage0 bundle, and the initramfs boots under QEMU."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.fixtures import require
from tests.integration.test_export_support import boot, build_image, busybox_tree, kernel, qemu_command

SCRIPT = 'echo "installed from the $KIND"; exit 6'


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> dict[str, Path]:
    proc = subprocess.run([sys.executable, "-m", "build", "--version"], capture_output=True)
    require(
        proc.returncode == 0, "python -m build is not installed (pip install build; the test extra has it)"
    )
    base = tmp_path_factory.mktemp("dist")
    src = base / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "dockerify", src / "dockerify", ignore=shutil.ignore_patterns("__pycache__"))
    out = base / "out"
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(src)], capture_output=True, check=True
    )
    return {"wheel": next(out.glob("*.whl")), "sdist": next(out.glob("*.tar.gz"))}


def _venv(where: Path, dist: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    proc = subprocess.run(
        [str(where / "bin" / "pip"), "install", "-q", str(dist)], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return where / "bin" / "dockerify"


def _installed(tool: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    proc = subprocess.run([str(tool), *args], capture_output=True, text=True, env=env, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_an_installed_package_exports_initramfs_and_stage0(dists, tmp_path, kind) -> None:
    tool = _venv(tmp_path / "venv", dists[kind])
    # The installed package, not the source tree, is what runs.
    where = subprocess.run(
        [
            str(tool.parent / "python"),
            "-c",
            "import dockerify, os; print(os.path.dirname(dockerify.__file__))",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        check=True,
    ).stdout.strip()
    assert where.startswith(str(tmp_path / "venv")), where
    for arch in ("amd64", "arm64", "arm"):
        assert (Path(where) / "exporters" / "init" / f"init-{arch}").is_file()

    root = busybox_tree(tmp_path / "root", "amd64")
    ref = build_image(
        root,
        tmp_path / "img",
        "linux/amd64",
        "--cmd",
        json.dumps(["/bin/sh", "-c", SCRIPT]),
        "--env",
        f"KIND={kind}",
    )
    initrd = tmp_path / "initrd.cpio.gz"
    _installed(tool, tmp_path, "export", ref, "--format", "initramfs", "-o", str(initrd))
    bundle = tmp_path / "bundle"
    _installed(
        tool,
        tmp_path,
        "export",
        ref,
        "--format",
        "stage0",
        "-o",
        str(bundle),
        "--kernel",
        str(kernel("amd64")),
    )
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["files"]["initramfs"]["init"] == "/init"
    result = boot(qemu_command("amd64", kernel("amd64"), initrd))
    assert f"installed from the {kind}" in result.console, result.console[-3000:]
    assert "dockerify-init: exit status 6" in result.console and result.returncode == 0
