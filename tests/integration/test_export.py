"""Issue 3 acceptance, part 1: `dockerify export` to rootfs tarballs and directories (point 6) and to
initramfs images booted by real kernels under real QEMU (point 4), and refusals (point 7).

Judges: `dockerify build`'s layer digests, the kernel's view of an extracted tree (tests/oracle.py),
GNU cpio, and Debian's kernels booting the result in qemu-system-x86_64 / qemu-system-aarch64."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from tests import oracle
from tests.conftest import dockerify, require_tool
from tests.fixtures import FIXTURES_DIR, load_manifest
from tests.integration.test_export_support import (
    as_nobody,
    boot,
    build_image,
    busybox_tree,
    kernel,
    layer_digests,
    nobody_work,
    open_up,
    qemu_command,
    require_init,
    scratch_tree,
    special,
)

__all__ = ["nobody_work", "special"]  # fixtures, used by name

# ---------------------------------------------------------------- rootfs (acceptance 6)


@pytest.mark.parametrize("name", ["rootfs.tar", "rootfs.tar.zst"])
def test_rootfs_tar_rebuilds_to_the_same_layer(special, tmp_path, name) -> None:
    _root, ref, layout = special
    out = tmp_path / name
    dockerify("export", ref, "--format", "rootfs-tar", "-o", str(out))
    again = tmp_path / "again"
    build_image(out, again, "linux/amd64", "--cmd", '["/bin/tool"]')
    assert layer_digests(again) == layer_digests(layout)
    proc = dockerify("diff", ref, f"oci:{again}:t", check=False)
    assert proc.returncode == 0, proc.stdout
    # GNU tar reads it too, holes, capabilities and all.
    if name == "rootfs.tar":
        listing = subprocess.run(
            ["tar", "--xattrs", "-tvf", str(out)], capture_output=True, text=True, check=True
        )
        assert "bin/tool-link1 link to bin/tool" in listing.stdout
        # Reproducible: the same bytes a second time.
        second = tmp_path / "second.tar"
        dockerify("export", ref, "--format", "rootfs-tar", "-o", str(second))
        assert second.read_bytes() == out.read_bytes()


def test_rootfs_tar_of_a_pi_image_round_trips_with_its_fixups(tmp_path) -> None:
    load_manifest()
    layout = tmp_path / "pi"
    dockerify("build", "-q", str(FIXTURES_DIR / "pi-arm64.img"), "--output", f"oci:{layout}:t")
    tar = tmp_path / "pi.tar.gz"
    dockerify("export", f"oci:{layout}:t", "--format", "rootfs-tar", "-o", str(tar))
    # The export restores what the builder changed for emulation (libarmmem in ld.so.preload) ...
    listing = subprocess.run(["tar", "-xOzf", str(tar), "etc/ld.so.preload"], capture_output=True, check=True)
    assert listing.stdout.startswith(b"/usr/lib/arm-linux-gnueabihf/libarmmem")
    # ... and building it again applies the same fixup, giving the very same layer.
    again = tmp_path / "again"
    dockerify("build", "-q", str(tar), "--output", f"oci:{again}:t", "--platform", "linux/arm64")
    assert layer_digests(again) == layer_digests(layout)


def test_rootfs_dir_is_faithful(special, tmp_path) -> None:
    root, ref, _layout = special
    out = tmp_path / "tree"
    dockerify("export", ref, "--format", "rootfs-dir", "-o", str(out))
    diffs = oracle.differences(oracle.snapshot(root), oracle.snapshot(out))
    assert not diffs, "\n".join(diffs)
    proc = dockerify("diff", ref, str(out), check=False)
    assert proc.returncode == 0, proc.stdout


def test_rootfs_dir_as_an_ordinary_user_warns_what_it_cannot_keep(special, nobody_work) -> None:
    _root, ref, layout = special
    work = nobody_work
    copy = work / "layout"
    shutil.copytree(layout, copy)
    open_up(work)
    proc = as_nobody(
        work, "export", f"oci:{copy}:t", "--format", "rootfs-dir", "-o", str(work / "out" / "tree")
    )
    assert proc.returncode == 0, proc.stderr
    assert "ownership needs root, files are owned by the current user: /bin/abs-link (0:0)" in proc.stderr
    assert (
        "extended attributes not accepted by this filesystem or user: /bin/ping security.capability"
        in proc.stderr
    )
    assert "device nodes need root" in proc.stderr and "/dev/null (1,3)" in proc.stderr
    tree = work / "out" / "tree"
    assert tree.stat().st_uid == 65534
    assert (tree / "bin" / "tool").stat().st_ino == (tree / "private" / "tool-link2").stat().st_ino
    assert (tree / "sparse").stat().st_blocks * 512 < (1 << 20)
    assert stat.S_IMODE((tree / "bin" / "tool").stat().st_mode) == 0o4755


# ---------------------------------------------------------------- initramfs contents


def test_initramfs_holds_the_tree(special, tmp_path) -> None:
    require_init()
    require_tool("cpio")
    root, ref, _layout = special
    out = tmp_path / "initrd.cpio"
    proc = dockerify("export", ref, "--format", "initramfs", "--compress", "none", "-o", str(out))
    assert "newc cpio has no extended attributes" in proc.stderr and "security.capability" in proc.stderr
    x = tmp_path / "x"
    x.mkdir()
    subprocess.run(["cpio", "-idm", "--quiet", "--no-absolute-filenames", "-F", str(out)], cwd=x, check=True)
    got = oracle.snapshot(x)
    want = oracle.snapshot(root)
    for extra in (b"init", b"dockerify-init.conf", b"dev/console"):
        assert extra in got
        del got[extra]
    xattrs = 8  # index of the xattrs field in oracle.snapshot
    drop = {p: v[:xattrs] + ((),) + v[xattrs + 1 :] for p, v in want.items()}

    # GNU cpio -i sets no mtime on symlinks and updates directories it writes into; the kernel's
    # unpacker (judged by the boot tests) does neither, so compare without those two.
    def norm(snap: dict) -> dict:
        return {
            p: v[:4] + ((0,) if stat.S_ISLNK(v[0]) or stat.S_ISDIR(v[0]) else (v[4],)) + v[5:]
            for p, v in snap.items()
        }

    diffs = oracle.differences(norm(drop), norm(got))
    assert not diffs, "\n".join(diffs)
    conf = (x / "dockerify-init.conf").read_bytes().split(b"\0")
    assert conf[:2] == [b"dockerify-init", b"1"] and b"/bin/tool" in conf


def test_initramfs_is_reproducible(special, tmp_path) -> None:
    require_init()
    _root, ref, _layout = special
    a, b = tmp_path / "a.cpio.gz", tmp_path / "b.cpio.gz"
    dockerify("export", ref, "--format", "initramfs", "-o", str(a))
    dockerify("export", ref, "--format", "initramfs", "-o", str(b))
    assert a.read_bytes() == b.read_bytes() and a.read_bytes()[:2] == b"\x1f\x8b"


# ---------------------------------------------------------------- boot (acceptance 4)

BUSYBOX_SCRIPT = (
    'echo "ARGS $0 $*"; echo "GREETING=$GREETING"; echo "HOME=$HOME"; echo "CWD=$(pwd)"; '
    'echo "IDS=$(id -u):$(id -g) GROUPS=$(id -G)"; (sleep 0.1 &); sleep 0.5; '
    'echo "ZOMBIES=$(ps -o stat | grep -c ^Z)"; exit 3'
)


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_busybox_initramfs_boots(tmp_path, arch) -> None:
    require_init()
    root = busybox_tree(tmp_path / "root", arch)
    ref = build_image(
        root,
        tmp_path / "img",
        f"linux/{arch}",
        "--entrypoint",
        json.dumps(["/bin/sh", "-c", BUSYBOX_SCRIPT, "script"]),
        "--cmd",
        json.dumps(["one", "two"]),
        "--env",
        "GREETING=hello from the image",
        "--workdir",
        "/srv",
        "--user",
        "app",
    )
    initrd = tmp_path / "initrd.img"
    dockerify("export", ref, "--format", "initramfs", "-o", str(initrd))
    result = boot(qemu_command(arch, kernel(arch), initrd))
    console = result.console
    assert "ARGS script one two" in console, console[-3000:]  # Entrypoint + Cmd
    assert "GREETING=hello from the image" in console  # Env
    assert "HOME=/home/app" in console
    assert "CWD=/srv" in console  # WorkingDir
    assert "IDS=1000:1000 GROUPS=1000 44" in console  # User, with its supplementary group
    assert "ZOMBIES=0" in console  # the orphaned sleep was reaped by PID 1
    assert "dockerify-init: exit status 3" in console
    assert result.returncode == 0  # QEMU exited by itself (power off)


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_scratch_initramfs_boots(tmp_path, arch) -> None:
    require_init()
    root = scratch_tree(tmp_path / "root", arch, tmp_path)
    ref = build_image(
        root,
        tmp_path / "img",
        f"linux/{arch}",
        "--entrypoint",
        '["/hello", "from-entrypoint"]',
        "--cmd",
        '["from-cmd", "9"]',
        "--env",
        "GREETING=scratch",
        "--workdir",
        "/data/work",
        "--user",
        "4242:4343",
    )
    initrd = tmp_path / "initrd.zst"
    dockerify("export", ref, "--format", "initramfs", "-o", str(initrd), "--cmd", '["overridden", "7"]')
    result = boot(qemu_command(arch, kernel(arch), initrd))
    console = result.console
    assert "ARGV [/hello] [from-entrypoint] [overridden] [7]" in console, console[-3000:]
    assert "GREETING=scratch" in console and "HOME=/" in console
    assert "CWD=/data/work" in console  # created by the init, as Docker does
    assert "IDS=4242:4343" in console
    assert "PID1=parent ZOMBIES=0" in console
    assert re.search(r"dockerify-init: exit status 7\b", console)
    assert result.returncode == 0


# ---------------------------------------------------------------- refusals (acceptance 7)


def _refused(args: list[str], output: Path, *words: str) -> str:
    proc = dockerify("export", *args, "-o", str(output), check=False)
    assert proc.returncode != 0, proc.stderr
    assert not proc.stderr.startswith("Traceback") and "internal error" not in proc.stderr, proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr
    assert not output.exists(), "partial output left behind"
    leftovers = [p.name for p in output.parent.iterdir() if p.name.startswith(f".{output.name}.")]
    assert not leftovers, leftovers
    return proc.stderr


def test_missing_image(tmp_path) -> None:
    _refused(
        [f"oci:{tmp_path}/nothing:t", "--format", "rootfs-tar"], tmp_path / "out.tar", "no such directory"
    )
    _refused(
        ["docker-archive:/nonexistent.tar", "--format", "initramfs"], tmp_path / "out.cpio", "no such file"
    )


def test_platform_not_in_index(tmp_path) -> None:
    a = busybox_tree(tmp_path / "a", "amd64")
    b = busybox_tree(tmp_path / "b", "arm64")
    layout = tmp_path / "multi"
    dockerify("build", "-q", f"linux/amd64={a}", f"linux/arm64={b}", "--output", f"oci:{layout}:t")
    err = _refused(
        [f"oci:{layout}:t", "--format", "rootfs-tar", "--platform", "linux/riscv64"],
        tmp_path / "out.tar",
        "no image for platform linux/riscv64",
        "linux/amd64",
        "linux/arm64",
    )
    assert "available" in err
    _refused([f"oci:{layout}:t", "--format", "rootfs-tar"], tmp_path / "out.tar", "--platform")
    dockerify(
        "export",
        f"oci:{layout}:t",
        "--format",
        "rootfs-tar",
        "--platform",
        "linux/arm64",
        "-o",
        str(tmp_path / "ok.tar"),
    )


def test_initramfs_refuses_a_4gib_file(tmp_path) -> None:
    require_init()
    root = tmp_path / "root"
    root.mkdir()
    (root / "small").write_text("x")
    with open(root / "huge", "wb") as f:
        f.truncate(4 << 30)  # a hole: cheap to build, still 4 GiB to a cpio
    ref = build_image(root, tmp_path / "img", "linux/amd64", "--cmd", '["/small"]')
    _refused([ref, "--format", "initramfs"], tmp_path / "out.cpio.gz", "/huge", "4 GiB")


def test_initramfs_without_a_command(tmp_path) -> None:
    require_init()
    root = tmp_path / "root"
    root.mkdir()
    (root / "file").write_text("x")
    ref = build_image(root, tmp_path / "img", "linux/amd64")
    _refused([ref, "--format", "initramfs"], tmp_path / "out.cpio.gz", "no Entrypoint or Cmd", "--cmd")


def test_initramfs_warns_when_larger_than_half_the_memory(tmp_path) -> None:
    require_init()
    root = tmp_path / "root"
    root.mkdir()
    (root / "blob").write_bytes(os.urandom(3 << 20))
    ref = build_image(root, tmp_path / "img", "linux/amd64", "--cmd", '["/blob"]')
    proc = dockerify("export", ref, "--format", "initramfs", "--memory", "4M", "-o", str(tmp_path / "i.gz"))
    assert "more than half of --memory" in proc.stderr and "at least 8 MiB" in proc.stderr


def test_option_for_another_format_is_an_error(special, tmp_path) -> None:
    _root, ref, _layout = special
    _refused(
        [ref, "--format", "rootfs-tar", "--root-size", "1G"], tmp_path / "x.tar", "--root-size", "sdcard"
    )


def test_daemon_and_archive_transports(tmp_path, docker_daemon) -> None:
    """The same tree comes out whichever transport names the image. (A plain tree: Docker 20.10
    cannot save an image whose layer holds GNU sparse members or non-UTF-8 names; it fails to
    verify its own copy of the layer.)"""
    root = busybox_tree(tmp_path / "root", "amd64")
    ref = build_image(root, tmp_path / "img", "linux/amd64")
    name = "dockerify-export-test:transports"
    dockerify("build", "-q", str(root), "--output", f"docker-daemon:{name}", "--platform", "linux/amd64")
    try:
        archive = tmp_path / "saved.tar"
        subprocess.run(["docker", "save", "-o", str(archive), name], check=True, capture_output=True)
        for source in (f"docker-daemon:{name}", f"docker-archive:{archive}", f"oci:{tmp_path / 'img'}:t"):
            out = tmp_path / "rootfs.tar"
            dockerify("export", source, "--format", "rootfs-tar", "-o", str(out))
            proc = dockerify("diff", ref, str(out), check=False)
            assert proc.returncode == 0, f"{source}: {proc.stdout}"
            out.unlink()
    finally:
        subprocess.run(["docker", "rmi", "-f", name], capture_output=True)
