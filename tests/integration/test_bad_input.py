"""Issue 2 acceptance 7: hostile or broken input gives one clear line naming the input and what
is wrong, a non-zero exit, no traceback, no output left behind, nothing written elsewhere."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.conftest import dockerify, require_tool
from tests.fixtures import FIXTURES_DIR, entry


def _expect_refusal(tmp_path: Path, source: Path, *words: str, extra: tuple[str, ...] = ()) -> str:
    out_dir = tmp_path / "out"
    out_dir.mkdir(exist_ok=True)
    scratch = tmp_path / "tmp"
    scratch.mkdir(exist_ok=True)
    proc = dockerify(
        "build",
        "-q",
        str(source),
        "--output",
        f"oci:{out_dir / 'image'}",
        *extra,
        check=False,
        env={"TMPDIR": str(scratch)},
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, proc.stderr
    assert str(source) in errors[0], errors[0]
    for word in words:
        assert word in errors[0].lower(), errors[0]
    assert list(out_dir.iterdir()) == [], "partial output left behind"
    assert list(scratch.iterdir()) == [], "temporary files left behind"
    return errors[0]


def _small_disk(tmp_path: Path, fs_image: Path) -> Path:
    """An MBR disk with one Linux partition at 1 MiB holding `fs_image`."""
    disk = tmp_path / "disk.img"
    size = fs_image.stat().st_size
    with open(disk, "wb") as f:
        f.truncate((1 << 20) + size)
    subprocess.run(
        ["sfdisk", "-q", str(disk)],
        input=f"label: dos\nstart=2048, size={size // 512}, type=83\n",
        text=True,
        check=True,
        capture_output=True,
    )
    subprocess.run(
        ["dd", f"if={fs_image}", f"of={disk}", "bs=1M", "seek=1", "conv=notrunc,sparse", "status=none"],
        check=True,
    )
    return disk


def _ext_image(tmp_path: Path, fstype: str = "ext4") -> Path:
    require_tool("mke2fs", "debugfs", "sfdisk")
    tree = tmp_path / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "a" / "file").write_bytes(b"x" * 10000)
    (tree / "bin").mkdir()
    img = tmp_path / "fs.img"
    subprocess.run(["mke2fs", "-q", "-F", "-t", fstype, "-d", str(tree), str(img), "8M"], check=True)
    return img


def test_zero_byte_file(tmp_path) -> None:
    empty = tmp_path / "empty.img"
    empty.touch()
    _expect_refusal(tmp_path, empty, "empty")


def test_truncated_image(tmp_path) -> None:
    entry("pi-arm64.img")
    cut = tmp_path / "cut.img"
    with open(FIXTURES_DIR / "pi-arm64.img", "rb") as src, open(cut, "wb") as dst:
        dst.write(src.read(80 << 20))
    _expect_refusal(tmp_path, cut, "partition 2")


def test_corrupt_partition_table(tmp_path) -> None:
    entry("pi-arm64.img")
    bad = tmp_path / "bad.img"
    shutil.copy(FIXTURES_DIR / "pi-arm64.img", bad)
    with open(bad, "r+b") as f:
        f.seek(446 + 16 + 8)  # partition 2's start LBA: make it overlap partition 1
        f.write((8200).to_bytes(4, "little"))
    _expect_refusal(tmp_path, bad, "overlap")


def test_wrong_ext4_magic(tmp_path) -> None:
    disk = _small_disk(tmp_path, _ext_image(tmp_path))
    with open(disk, "r+b") as f:
        f.seek((1 << 20) + 1080)
        f.write(b"\x00\x00")
    _expect_refusal(tmp_path, disk, "no ext2/3/4 partition")


def test_directory_loop_in_ext4(tmp_path) -> None:
    img = _ext_image(tmp_path)
    subprocess.run(["debugfs", "-w", "-R", "link /a /a/b/loop", str(img)], check=True, capture_output=True)
    _expect_refusal(tmp_path, _small_disk(tmp_path, img), "loop")


def test_out_of_range_block_in_ext2(tmp_path) -> None:
    img = _ext_image(tmp_path, "ext2")
    subprocess.run(
        ["debugfs", "-w", "-R", "set_inode_field /a/file block[1] 0x7ffffff0", str(img)],
        check=True,
        capture_output=True,
    )
    _expect_refusal(tmp_path, _small_disk(tmp_path, img), "beyond")


def _tarball(tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes]], name: str = "bad.tar.gz") -> Path:
    path = tmp_path / name
    with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def _file(name: str) -> tarfile.TarInfo:
    return tarfile.TarInfo(name)


def _link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


@pytest.mark.parametrize(
    ("members", "word"),
    [
        ([(_file("etc/ok"), b"1"), (_file("../../evil"), b"x")], ".."),
        ([(_file("/etc/evil"), b"x")], "absolute"),
        ([(_link("etc", "/tmp", tarfile.SYMTYPE), b""), (_file("etc/passwd"), b"x")], "symlink"),
        ([(_link("bin/sh", "../../../../etc/shadow", tarfile.LNKTYPE), b"")], "hard link"),
    ],
)
def test_hostile_tarballs(tmp_path, members, word) -> None:
    _expect_refusal(tmp_path, _tarball(tmp_path, members), word)


def test_gzip_trailing_garbage(tmp_path) -> None:
    good = _tarball(tmp_path, [(_file("etc/ok"), b"1")], "good.tar.gz")
    bad = tmp_path / "garbage.tar.gz"
    bad.write_bytes(good.read_bytes() + b"this is not gzip")
    _expect_refusal(tmp_path, bad, "garbage")


def test_decompression_bomb_and_the_limit_option(tmp_path) -> None:
    bomb = tmp_path / "bomb.tar.gz"
    with gzip.open(bomb, "wb", compresslevel=1) as f:
        info = tarfile.TarInfo("zeros")
        info.size = 300 << 20
        f.write(info.tobuf(tarfile.PAX_FORMAT))
        chunk = bytes(1 << 20)
        for _ in range(300):
            f.write(chunk)
        f.write(bytes(1024))
    message = _expect_refusal(tmp_path, bomb, "limit", extra=("--max-size", "100M"))
    assert "bomb" in message.lower() or "exceeds" in message.lower()
    ok = dockerify(
        "build",
        "-q",
        str(bomb),
        "--platform",
        "linux/amd64",
        "--max-size",
        "1G",
        "--output",
        f"oci:{tmp_path / 'fine'}",
        check=False,
    )
    assert ok.returncode == 0, ok.stderr


def test_missing_input_and_bad_output(tmp_path) -> None:
    proc = dockerify(
        "build", "-q", str(tmp_path / "nope.img"), "--output", f"oci:{tmp_path / 'o'}", check=False
    )
    assert proc.returncode != 0 and "no such file" in proc.stderr and "Traceback" not in proc.stderr
    not_layout = tmp_path / "full"
    not_layout.mkdir()
    (not_layout / "x").write_text("keep me")
    entry("rootfs-amd64.tar.gz")
    proc = dockerify(
        "build", "-q", str(FIXTURES_DIR / "rootfs-amd64.tar.gz"), "--output", f"oci:{not_layout}", check=False
    )
    assert proc.returncode != 0 and "not an OCI layout" in proc.stderr
    assert os.listdir(not_layout) == ["x"]
