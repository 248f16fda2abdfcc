"""Issue 7 acceptance 4 (bare filesystems, sockets): a bare ext2/3/4 image (Yocto's and
Buildroot's rootfs.ext4, made here with mke2fs -d) and a bare FAT image (mkfs.vfat on a plain
file, files put in with mcopy) build, plain and compressed; the layout label records the
filesystem; a Unix socket in any source is left out with one warning naming it. Judged by
dumpe2fs, mtools, umoci and the kernel's loop mount."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path

import pytest

from tests import oracle
from tests.conftest import dockerify, require_tool

EPOCH = 1_700_000_000


def _staging(root: Path, with_socket: bool = False) -> Path:
    """A small tree with the kinds a rootfs holds; fixed mtimes so a diff against it is exact."""
    (root / "etc").mkdir(parents=True)
    (root / "usr/bin").mkdir(parents=True)
    (root / "etc/hostname").write_text("bare\n")
    (root / "usr/bin/tool").write_bytes(b"#!/bin/sh\necho tool\n" * 500)
    (root / "usr/bin/tool").chmod(0o4755)
    os.symlink("../usr/bin/tool", root / "etc/link")
    os.link(root / "etc/hostname", root / "etc/hostname.bak")
    os.mkfifo(root / "etc/fifo")
    os.setxattr(root / "etc/hostname", "user.bare", b"yes")
    with open(root / "usr/bin/sparse", "wb") as f:
        f.seek(8 << 20)
        f.write(b"end")
    if with_socket:
        (root / "run/postfix").mkdir(parents=True)
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(root / "run/postfix/public.sock"))
        sock.close()
    for dirpath, dirs, files in os.walk(root, topdown=False):
        for name in files + dirs:
            os.utime(os.path.join(dirpath, name), (EPOCH, EPOCH), follow_symlinks=False)
    os.utime(root, (EPOCH, EPOCH))
    return root


def _mke2fs(tmp_path: Path, staging: Path, fstype: str, name: str = "rootfs.ext4") -> Path:
    require_tool("mke2fs", "dumpe2fs")
    image = tmp_path / name
    cmd = ["mke2fs", "-q", "-F", "-t", fstype, "-L", "rootfs", "-U", "1c3e5a7b-0000-4000-8000-00000000beef"]
    subprocess.run(
        [*cmd, "-d", str(staging), str(image), "32M"],
        check=True,
        capture_output=True,
        env={**os.environ, "E2FSPROGS_FAKE_TIME": str(EPOCH)},
    )
    return image


def _build(source: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return dockerify("build", str(source), "--platform", "linux/amd64", "--output", f"oci:{out}:t", *extra)


def _labels(layout: Path) -> dict[str, str]:
    raw = subprocess.run(
        ["skopeo", "inspect", "--config", f"oci:{layout}:t"], capture_output=True, check=True
    )
    return json.loads(raw.stdout)["config"]["Labels"]


@pytest.mark.parametrize("fstype", ["ext2", "ext3", "ext4"])
def test_bare_ext_image_builds_and_diffs_clean(tmp_path, fstype) -> None:
    require_tool("skopeo")
    staging = _staging(tmp_path / "staging")
    image = _mke2fs(tmp_path, staging, fstype, f"rootfs.{fstype}")
    layout = tmp_path / "layout"
    _build(image, layout)
    diff = dockerify("diff", str(image), str(staging), check=False)
    assert diff.returncode == 0, diff.stdout
    diff = dockerify("diff", f"oci:{layout}:t", str(staging), check=False)
    assert diff.returncode == 0, diff.stdout
    # The layout label records the filesystem as dumpe2fs sees it.
    recorded = json.loads(_labels(layout)["io.dockerify.disk-layout"])
    assert recorded["table_type"] == "none"
    (part,) = recorded["partitions"]
    head = subprocess.run(["dumpe2fs", "-h", str(image)], capture_output=True, text=True, check=True).stdout
    fields = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in head.splitlines())}
    assert part["fs"]["uuid"] == fields["Filesystem UUID"]
    assert part["fs"]["label"] == fields["Filesystem volume name"] == "rootfs"
    assert sorted(part["fs"]["features"]) == sorted(fields["Filesystem features"].split())
    assert part["mountpoint"] == "/" and part["start"] == 0


def test_bare_ext4_kernel_view_matches(tmp_path, root_user) -> None:
    require_tool("umoci")
    image = _mke2fs(tmp_path, _staging(tmp_path / "staging"), "ext4")
    layout = tmp_path / "layout"
    _build(image, layout)
    unpacked = oracle.snapshot(oracle.umoci_unpack(layout, "t", tmp_path / "bundle"))
    with oracle.loop_mount(image, 0, image.stat().st_size) as mnt:
        kernel = oracle.snapshot(mnt)
    assert oracle.differences(kernel, unpacked) == []


@pytest.mark.parametrize(("tool", "suffix"), [("gzip", ".gz"), ("xz", ".xz"), ("zstd", ".zst")])
def test_compressed_bare_ext4(tmp_path, tool, suffix) -> None:
    require_tool(tool)
    staging = _staging(tmp_path / "staging")
    image = _mke2fs(tmp_path, staging, "ext4")
    packed = image.with_name(image.name + suffix)
    with open(packed, "wb") as f:
        subprocess.run([tool, "-c", str(image)], stdout=f, check=True)
    info = json.loads(dockerify("inspect", "--json", str(packed)).stdout)
    assert info["kind"] == "filesystem" and info["disk"]["table_type"] == "none"
    diff = dockerify("diff", str(packed), str(staging), check=False)
    assert diff.returncode == 0, diff.stdout


def _fat_image(tmp_path: Path) -> tuple[Path, Path]:
    require_tool("mkfs.vfat", "mcopy", "mmd")
    files = tmp_path / "fatfiles"
    (files / "overlays").mkdir(parents=True)
    (files / "config.txt").write_text("arm_64bit=1\nenable_uart=1\n")
    (files / "cmdline.txt").write_text("console=serial0,115200 root=/dev/mmcblk0p2\n")
    (files / "overlays/README").write_bytes(os.urandom(70_000))
    image = tmp_path / "boot.vfat"
    with open(image, "wb") as f:
        f.truncate(64 << 20)
    subprocess.run(
        ["mkfs.vfat", "-F", "32", "-s", "1", "-n", "BOOTFS", "-i", "5DF2A7C1", str(image)],
        check=True,
        capture_output=True,
    )
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    subprocess.run(["mmd", "-i", str(image), "::overlays"], check=True, env=env)
    for rel in ("config.txt", "cmdline.txt", "overlays/README"):
        subprocess.run(["mcopy", "-i", str(image), str(files / rel), f"::{rel}"], check=True, env=env)
    return image, files


def test_bare_fat_image_builds_with_its_files(tmp_path) -> None:
    require_tool("umoci", "skopeo")
    image, _files = _fat_image(tmp_path)
    info = json.loads(dockerify("inspect", "--json", str(image)).stdout)
    assert info["kind"] == "filesystem"
    assert info["platform"] == "linux/arm64"  # no ELF files: config.txt's arm_64bit=1 is the hint
    assert info["platform_evidence"]["decided_by"] == "boot-config"
    fs = info["disk"]["partitions"][0]["fs"]
    assert fs["type"] == "fat32" and fs["volume_id"] == "5DF2A7C1" and fs["label"] == "BOOTFS"
    layout = tmp_path / "layout"
    dockerify("build", str(image), "--output", f"oci:{layout}:t")
    rootfs = oracle.umoci_unpack(layout, "t", tmp_path / "bundle")
    # mtools is the judge of what the FAT image holds.
    mtools = oracle.mtools_copy(image, 0, tmp_path / "mtools")
    assert oracle.file_contents(rootfs) == oracle.file_contents(mtools)
    assert set(oracle.file_contents(rootfs)) == {"config.txt", "cmdline.txt", "overlays/README"}
    assert json.loads(_labels(layout)["io.dockerify.disk-layout"])["partitions"][0]["fs"]["type"] == "fat32"


def test_sdcard_export_of_a_bare_ext4_keeps_its_ids(tmp_path) -> None:
    require_tool("sfdisk", "blkid")
    image = _mke2fs(tmp_path, _staging(tmp_path / "staging"), "ext4")
    layout = tmp_path / "layout"
    _build(image, layout)
    card = tmp_path / "card.img"
    proc = dockerify("export", f"oci:{layout}:t", "--format", "sdcard", "-o", str(card))
    assert "bare filesystem" in proc.stderr
    table = json.loads(
        subprocess.run(["sfdisk", "--json", str(card)], capture_output=True, check=True).stdout
    )
    root = table["partitiontable"]["partitions"][1]
    part = tmp_path / "p2"
    with open(card, "rb") as src, open(part, "wb") as dst:
        src.seek(root["start"] * 512)
        dst.write(src.read(root["size"] * 512))
    probe = subprocess.run(["blkid", "-p", "-o", "export", str(part)], capture_output=True, text=True).stdout
    assert "UUID=1c3e5a7b-0000-4000-8000-00000000beef" in probe and "LABEL=rootfs" in probe


# ---------------------------------------------------------------- sockets


def _socket_warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "socket ignored" in line]


def test_socket_in_an_ext4_image_is_left_out_with_one_warning(tmp_path) -> None:
    require_tool("debugfs")
    staging = _staging(tmp_path / "staging", with_socket=True)
    image = _mke2fs(tmp_path, staging, "ext4")
    ls = subprocess.run(
        ["debugfs", "-R", "stat /run/postfix/public.sock", str(image)], capture_output=True, text=True
    ).stdout
    assert "Type: socket" in ls  # mke2fs -d copied it as a socket
    layout = tmp_path / "layout"
    proc = _build(image, layout)
    warnings = _socket_warnings(proc.stderr)
    assert len(warnings) == 1 and "/run/postfix/public.sock" in warnings[0] and str(image) in warnings[0]
    assert "internal error" not in proc.stderr
    diff = dockerify("diff", f"oci:{layout}:t", str(staging), check=False).stdout.splitlines()
    assert diff == ["+ /run/postfix/public.sock  (only in the second)"]


def test_socket_in_a_partitioned_disk_and_a_directory(tmp_path) -> None:
    require_tool("sfdisk")
    staging = _staging(tmp_path / "staging", with_socket=True)
    fs = _mke2fs(tmp_path, staging, "ext4")
    disk = tmp_path / "disk.img"
    with open(disk, "wb") as f:
        f.truncate((1 << 20) + fs.stat().st_size)
    subprocess.run(
        ["sfdisk", "-q", str(disk)],
        input=f"label: dos\nstart=2048, size={fs.stat().st_size // 512}, type=83\n",
        text=True,
        check=True,
        capture_output=True,
    )
    with open(fs, "rb") as src, open(disk, "r+b") as dst:
        dst.seek(1 << 20)
        dst.write(src.read())
    for source in (disk, staging):
        proc = _build(source, tmp_path / f"layout-{source.name}")
        warnings = _socket_warnings(proc.stderr)
        assert len(warnings) == 1 and "/run/postfix/public.sock" in warnings[0], proc.stderr
