"""Issue 10, point 1: an initramfs runs the image's Entrypoint + Cmd by default, whatever the image
holds at /init, with no extra kernel argument; `--init image` boots the image's own init.

Judges: Debian's kernel booting the archive under QEMU (KVM where it works, else TCG), busybox's
own init reading the image's /etc/inittab, and GNU cpio listing the archive."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.conftest import dockerify, require_tool
from tests.integration.test_export_support import (
    boot,
    build_image,
    busybox_tree,
    kernel,
    qemu_command,
    require_init,
)

SCRIPT = 'echo "the image command ran in $(pwd)"; exit 5'
INITTAB = "::sysinit:/bin/echo busybox init read the inittab\n::sysinit:/bin/busybox poweroff -f\n"


def openlinux_tree(root: Path, arch: str) -> Path:
    """An openlinux-style tree: busybox, its own `/init -> /bin/busybox` and an /etc/inittab."""
    busybox_tree(root, arch)
    os.symlink("/bin/busybox", root / "init")
    (root / "etc" / "inittab").write_text(INITTAB)
    return root


def _image(tmp_path: Path, arch: str = "amd64") -> str:
    root = openlinux_tree(tmp_path / "root", arch)
    return build_image(
        root, tmp_path / "img", f"linux/{arch}", "--cmd", json.dumps(["/bin/sh", "-c", SCRIPT])
    )


def _listing(archive: Path) -> dict[str, str]:
    require_tool("cpio")
    proc = subprocess.run(
        ["cpio", "-itv", "--quiet", "-F", str(archive)], capture_output=True, text=True, check=True
    )
    out = {}
    for line in proc.stdout.splitlines():
        name = line.split(None, 8)[8]
        path, _, target = name.partition(" -> ")
        out[path] = target
    return out


def test_image_command_runs_whatever_the_image_has_at_init(tmp_path) -> None:
    require_init()
    ref = _image(tmp_path)
    initrd = tmp_path / "initrd.cpio.gz"
    proc = dockerify("export", ref, "--format", "initramfs", "-o", str(initrd), "--json")
    summary = json.loads(proc.stdout)
    assert summary["init"] == "/init" and summary["image_init"] == "/init.image"
    assert "rdinit" not in proc.stderr  # no warning to boot with a kernel argument
    assert "/init.image" in proc.stderr  # the listing says where the image's own /init went
    result = boot(qemu_command("amd64", kernel("amd64"), initrd))  # no extra kernel argument
    assert "the image command ran in /" in result.console, result.console[-3000:]
    assert "dockerify-init: exit status 5" in result.console
    assert "busybox init read the inittab" not in result.console
    assert result.returncode == 0

    plain = tmp_path / "initrd.cpio"
    dockerify("export", ref, "--format", "initramfs", "-o", str(plain))
    listing = _listing(plain)
    assert listing["init.image"] == "/bin/busybox"  # the image's own, kept under its own name
    assert listing["init"] == ""  # ours, a regular file
    assert "dockerify-init" not in listing


def test_init_image_boots_the_images_own_init(tmp_path) -> None:
    require_init()
    ref = _image(tmp_path)
    initrd = tmp_path / "initrd.cpio.gz"
    proc = dockerify("export", ref, "--format", "initramfs", "--init", "image", "-o", str(initrd), "--json")
    summary = json.loads(proc.stdout)
    assert summary["init"] == "/init" and summary["image_init"] == "/init"
    result = boot(qemu_command("amd64", kernel("amd64"), initrd))
    assert "busybox init read the inittab" in result.console, result.console[-3000:]
    assert "the image command ran" not in result.console
    assert result.returncode == 0


def test_init_image_without_an_init_is_refused(tmp_path) -> None:
    require_init()
    root = busybox_tree(tmp_path / "root", "amd64")
    ref = build_image(root, tmp_path / "img", "linux/amd64", "--cmd", '["/bin/sh"]')
    out = tmp_path / "initrd.gz"
    proc = dockerify("export", ref, "--format", "initramfs", "--init", "image", "-o", str(out), check=False)
    assert proc.returncode != 0 and "has no /init" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".initrd.gz.")]
