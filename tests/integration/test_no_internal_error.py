"""Issue 7 acceptance 6: no input makes dockerify fail with an "internal error" (exit 70) or a
traceback, or hang. Every input of the project's own hostile corpus (test_bad_input.py) and a
bounded, seeded set of damaged copies of the fixtures (truncated at ten offsets; bytes flipped in
the partition tables, FAT boot sector and table, ext superblock, group descriptors, inode table
and root directory; truncated and flipped tarballs and compressed images) go through
`dockerify build --output oci:` and `dockerify inspect`. A refusal is fine; a crash is not.
The regions are located with sfdisk's, dumpe2fs's and debugfs's view, not dockerify's."""

from __future__ import annotations

import functools
import random
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.conftest import dockerify, require_tool
from tests.fixtures import FIXTURES_DIR, entry
from tests.integration import test_bad_input as bad

TIMEOUT = 300  # a hang is a failure too


def _check(tmp_path: Path, source: Path) -> None:
    out = tmp_path / "out"
    for args in (
        ("build", "-q", str(source), "--output", f"oci:{out}"),
        ("inspect", "--json", str(source)),
    ):
        try:
            proc = dockerify(*args, check=False, timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"dockerify {args[0]} {source.name}: no answer in {TIMEOUT} s")
        text = proc.stdout + proc.stderr
        assert proc.returncode != 70, f"dockerify {args[0]} {source.name}:\n{proc.stderr}"
        assert "internal error" not in text and "Traceback" not in text, proc.stderr
        if proc.returncode != 0:
            errors = [line for line in proc.stderr.splitlines() if "error:" in line]
            assert len(errors) == 1 and str(source) in errors[0], proc.stderr
        shutil.rmtree(out, ignore_errors=True)


# ---------------------------------------------------------------- the hostile corpus


def _corpus(tmp_path: Path, case: str) -> Path:
    if case == "empty":
        path = tmp_path / "empty.img"
        path.touch()
        return path
    if case == "wrong-ext4-magic":
        disk = bad._small_disk(tmp_path, bad._ext_image(tmp_path))
        with open(disk, "r+b") as f:
            f.seek((1 << 20) + 1080)
            f.write(b"\x00\x00")
        return disk
    if case == "directory-loop":
        img = bad._ext_image(tmp_path)
        subprocess.run(
            ["debugfs", "-w", "-R", "link /a /a/b/loop", str(img)], check=True, capture_output=True
        )
        return bad._small_disk(tmp_path, img)
    if case == "out-of-range-block":
        img = bad._ext_image(tmp_path, "ext2")
        cmd = "set_inode_field /a/file block[1] 0x7ffffff0"
        subprocess.run(["debugfs", "-w", "-R", cmd, str(img)], check=True, capture_output=True)
        return bad._small_disk(tmp_path, img)
    if case == "bare-ext-out-of-range":
        img = bad._ext_image(tmp_path, "ext2")
        cmd = "set_inode_field /a/file block[1] 0x7ffffff0"
        subprocess.run(["debugfs", "-w", "-R", cmd, str(img)], check=True, capture_output=True)
        return img
    if case.startswith("tar-"):
        members = {
            "tar-traversal": [(bad._file("etc/ok"), b"1"), (bad._file("../../evil"), b"x")],
            "tar-absolute": [(bad._file("/etc/evil"), b"x")],
            "tar-symlink-escape": [
                (bad._link("etc", "/tmp", tarfile.SYMTYPE), b""),
                (bad._file("etc/passwd"), b"x"),
            ],
            "tar-hardlink-escape": [(bad._link("bin/sh", "../../../../etc/shadow", tarfile.LNKTYPE), b"")],
        }[case]
        return bad._tarball(tmp_path, members)
    if case == "gzip-garbage":
        good = bad._tarball(tmp_path, [(bad._file("etc/ok"), b"1")], "good.tar.gz")
        path = tmp_path / "garbage.tar.gz"
        path.write_bytes(good.read_bytes() + b"this is not gzip")
        return path
    raise AssertionError(case)


CORPUS = [
    "empty",
    "wrong-ext4-magic",
    "directory-loop",
    "out-of-range-block",
    "bare-ext-out-of-range",
    "tar-traversal",
    "tar-absolute",
    "tar-symlink-escape",
    "tar-hardlink-escape",
    "gzip-garbage",
]


@pytest.mark.parametrize("case", CORPUS)
def test_hostile_corpus(tmp_path, case) -> None:
    require_tool("mke2fs", "debugfs", "sfdisk")
    _check(tmp_path, _corpus(tmp_path, case))


# ---------------------------------------------------------------- damaged fixtures


@functools.cache
def _regions(name: str) -> dict[str, tuple[int, int]]:
    """Region name -> (offset, length) in the disk image, found with e2fsprogs and the BPB."""
    fx = entry(name)
    parts = {p["number"]: p for p in fx["partitions"]}
    boot, root = parts[fx["boot_partition"]], parts[fx["root_partition"]]
    out = (
        {"mbr": (446, 64)} if fx["table"] == "dos" else {"gpt-header": (512, 92), "gpt-entries": (1024, 256)}
    )
    with open(FIXTURES_DIR / boot["image"], "rb") as f:
        bpb = f.read(512)
    sector, reserved = int.from_bytes(bpb[11:13], "little"), int.from_bytes(bpb[14:16], "little")
    out["fat-boot-sector"] = (boot["start"], 90)
    out["fat-table"] = (boot["start"] + reserved * sector, 4096)
    part_image = str(FIXTURES_DIR / root["image"])
    head = subprocess.run(["dumpe2fs", part_image], capture_output=True, text=True, check=True).stdout
    block = int(re.search(r"Block size:\s+(\d+)", head).group(1))  # type: ignore[union-attr]
    inode = int(re.search(r"Inode size:\s+(\d+)", head).group(1))  # type: ignore[union-attr]
    first = int(re.search(r"First block:\s+(\d+)", head).group(1))  # type: ignore[union-attr]
    table = int(re.search(r"Inode table at (\d+)", head).group(1))  # type: ignore[union-attr]
    out["ext-superblock"] = (root["start"] + 1024, 256)
    out["ext-group-descriptors"] = (root["start"] + (first + 1) * block, 64)
    out["ext-inode-table"] = (root["start"] + table * block, 16 * inode)
    blocks = subprocess.run(
        ["debugfs", "-R", "blocks /", part_image], capture_output=True, text=True
    ).stdout.split()
    if blocks:
        out["ext-root-directory"] = (root["start"] + int(blocks[0]) * block, block)
    return out


def _copy(name: str, dest: Path) -> Path:
    entry(name)
    subprocess.run(["cp", "--sparse=always", str(FIXTURES_DIR / name), str(dest)], check=True)
    return dest


def _flip(path: Path, offset: int, length: int, seed: str, count: int = 4) -> None:
    rng = random.Random(seed)
    with open(path, "r+b") as f:
        for _ in range(count):
            pos = offset + rng.randrange(length)
            f.seek(pos)
            old = f.read(1) or b"\0"
            f.seek(pos)
            f.write(bytes([old[0] ^ rng.randrange(1, 256)]))


FLIPS = [
    (image, region, seed)
    for image, regions in (
        (
            "pi-arm64-ext2.img",
            ["mbr", "fat-boot-sector", "fat-table", "ext-superblock", "ext-group-descriptors"]
            + ["ext-inode-table", "ext-root-directory"],
        ),
        ("pi-arm64-inline.img", ["ext-superblock", "ext-inode-table", "ext-root-directory"]),
        ("pi-arm64-ext3.img", ["ext-superblock", "ext-group-descriptors", "ext-inode-table"]),
        ("debian-armhf.img", ["gpt-header", "gpt-entries"]),
    )
    for region in regions
    for seed in ("a", "b")
]


@pytest.mark.parametrize(("image", "region", "seed"), FLIPS)
def test_flipped_bytes(tmp_path, image, region, seed) -> None:
    require_tool("dumpe2fs", "debugfs")
    regions = _regions(image)
    copy = _copy(image, tmp_path / image)
    _flip(copy, *regions[region], seed=f"{image}/{region}/{seed}")
    _check(tmp_path, copy)


def _truncation_offsets(name: str, n: int) -> list[int]:
    """n cut points: the table, both filesystems' metadata, and seeded points in between."""
    fx = entry(name)
    parts = {p["number"]: p for p in fx["partitions"]}
    root = parts[fx["root_partition"]]
    fixed = [
        300,
        4096,
        parts[fx["boot_partition"]]["start"] + 512,
        root["start"] + 1500,
        root["start"] + (1 << 20),
    ]
    rng = random.Random(name)
    return fixed + sorted(rng.randrange(root["start"], fx["size"]) for _ in range(n - len(fixed)))


@pytest.mark.parametrize("index", range(10))
def test_truncated_disk_image(tmp_path, index) -> None:
    name = "pi-arm64-ext2.img"
    cut = _truncation_offsets(name, 10)[index]
    copy = _copy(name, tmp_path / name)
    with open(copy, "r+b") as f:
        f.truncate(cut)
    _check(tmp_path, copy)


TAR_CASES = [
    ("rootfs-amd64.tar", "truncate", 700),
    ("rootfs-amd64.tar", "truncate", 10_000),
    ("rootfs-amd64.tar", "truncate", 200_000),
    ("rootfs-amd64.tar", "flip", 0),
    ("rootfs-amd64.tar", "flip", 512),
    ("rootfs-amd64.tar.gz", "truncate", 5000),
    ("rootfs-amd64.tar.gz", "flip", 2000),
    ("rootfs-amd64.tar.zst", "truncate", 5000),
    ("pi-arm64.img.xz", "truncate", 100_000),
    ("pi-arm64.img.xz", "flip", 50_000),
    ("pi-arm64.zip", "truncate", 100_000),
]


@pytest.mark.parametrize(("name", "how", "offset"), TAR_CASES)
def test_damaged_tarballs_and_compressed_images(tmp_path, name, how, offset) -> None:
    copy = _copy(name, tmp_path / name)
    if how == "truncate":
        with open(copy, "r+b") as f:
            f.truncate(offset)
    else:
        _flip(copy, offset, 512, seed=f"{name}/{offset}", count=8)
    _check(tmp_path, copy)


BARE_CASES = [
    ("parts/pi-arm64-ext2.p2.ext2", "flip", 1024),  # the superblock
    ("parts/pi-arm64-ext2.p2.ext2", "flip", 2048),  # the group descriptors
    ("parts/pi-arm64-ext2.p2.ext2", "truncate", 3000),
    ("parts/pi-arm64-ext2.p2.ext2", "truncate", 1 << 20),
    ("parts/pi-arm64-inline.p2.ext4", "flip", 1024),
    ("parts/pi-arm64-inline.p2.ext4", "truncate", 2 << 20),
    ("parts/pi-arm64.p1.vfat", "flip", 0),  # the boot sector and BPB
    ("parts/pi-arm64.p1.vfat", "truncate", 600),
    ("parts/pi-arm64.p1.vfat", "truncate", 1 << 20),
]


@pytest.mark.parametrize(("name", "how", "offset"), BARE_CASES)
def test_damaged_bare_filesystems(tmp_path, name, how, offset) -> None:
    """The partition images of the fixtures, as bare filesystem images, damaged."""
    entry("pi-arm64.img")
    copy = tmp_path / Path(name).name
    subprocess.run(["cp", "--sparse=always", str(FIXTURES_DIR / name), str(copy)], check=True)
    if how == "truncate":
        with open(copy, "r+b") as f:
            f.truncate(offset)
    else:
        _flip(copy, offset, 90 if offset == 0 else 256, seed=f"{name}/{offset}", count=8)
    _check(tmp_path, copy)
