"""metadata_csum: every checksum the reader meets is verified, and a wrong one is refused with
the inode and the path it was met at; --ignore-checksums reads on with one warning per kind.

Each case corrupts one checksum of a real `mke2fs -d` image (4 KiB blocks, 64bit,
metadata_csum), at an offset found through debugfs, and checks that e2fsck calls the image
corrupt too.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from dockerify.errors import CorruptInput
from dockerify.sources.ext4 import Ext4Reader
from dockerify.sources.options import ReadOptions
from tests.conftest import dockerify
from tests.unit.test_ext4 import (
    HAVE_TOOLS,
    _first_block,
    _inode_offset,
    _small_tree,
    _xattr_block,
    make_image,
    run,
)

pytestmark = pytest.mark.skipif(not HAVE_TOOLS, reason="needs e2fsprogs (mke2fs, debugfs, dumpe2fs)")

BS = 4096
MiB = 1 << 20


@pytest.fixture
def csum_image(tmp_path: Path) -> Path:
    tree = _small_tree(tmp_path / "tree")
    (tree / "big_dir").mkdir()
    for i in range(600):
        (tree / "big_dir" / f"a-long-file-name-to-fill-blocks-{i:04d}").write_bytes(b"")
    image = make_image(
        tmp_path / "csum.img", os.fsencode(tree), "-t", "ext4", "-b", str(BS), "-O", "64bit,metadata_csum",
        size="16M",
    )  # fmt: skip
    # mke2fs -d writes linear directories; e2fsck -D indexes the big one (an htree).
    subprocess.run(["e2fsck", "-fyD", str(image)], capture_output=True)
    flags = re.search(r"Flags: (0x[0-9a-f]+)", run("debugfs", "-R", "stat /big_dir", image))
    assert flags and int(flags.group(1), 16) & 0x1000, "big_dir must be hash-indexed"
    assert subprocess.run(["e2fsck", "-fn", str(image)], capture_output=True).returncode == 0
    return image


def _flip(image: Path, offset: int) -> None:
    with open(image, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0x5A]))


def _u16(image: Path, offset: int) -> int:
    with open(image, "rb") as f:
        f.seek(offset)
        return int(struct.unpack("<H", f.read(2))[0])


def _extent_tail(image: Path) -> int:
    """The et_checksum of the first leaf of /deep_extents (a tree of depth 1)."""
    with open(image, "rb") as f:
        f.seek(_inode_offset(image, "/deep_extents") + 0x28 + 12 + 4)
        (leaf,) = struct.unpack("<I", f.read(4))
    eh_max = _u16(image, leaf * BS + 4)
    return leaf * BS + 12 + 12 * eh_max


def _dx_tail(image: Path) -> int:
    """The dt_checksum of the htree root of /big_dir: after dx_root_info, limit entries of 8 bytes."""
    root = _first_block(image, "/big_dir") * BS
    with open(image, "rb") as f:
        f.seek(root + 0x1D)
        info_length = f.read(1)[0]
    count_offset = 0x18 + info_length
    limit = _u16(image, root + count_offset)
    return root + count_offset + limit * 8 + 4


# kind -> (where the checksum is, the message expected)
CASES: dict[str, tuple[Callable[[Path], int], str]] = {
    "superblock": (lambda image: 1024 + 0x3FC, r"^card\.img partition 2: superblock checksum mismatch"),
    "group descriptor": (lambda image: BS + 0x1E, r"inode 2 \(/\): group descriptor of group 0 checksum mismatch"),
    "inode": (lambda image: _inode_offset(image, "/a/b/file") + 0x7C, r"inode \d+ \(/a/b/file\): inode checksum mismatch"),
    "inode hi": (lambda image: _inode_offset(image, "/a/b/file") + 0x82, r"inode \d+ \(/a/b/file\): inode checksum mismatch"),
    "extent tree block": (_extent_tail, r"inode \d+ \(/deep_extents\): extent tree block checksum mismatch"),
    "directory block": (lambda image: _first_block(image, "/dir") * BS + BS - 4, r"inode \d+ \(/dir\): directory block 0 checksum mismatch"),
    "htree node": (_dx_tail, r"inode \d+ \(/big_dir\): htree node 0 checksum mismatch"),
    "xattr block": (lambda image: _xattr_block(image, "/legacy") + 0x10, r"inode \d+ \(/legacy\): xattr block \d+ checksum mismatch"),
}  # fmt: skip


def _read_everything(image: Path, options: ReadOptions | None = None) -> int:
    with open(image, "rb") as f:
        n = 0
        for entry in Ext4Reader(f, name="card.img partition 2", options=options).entries():
            n += 1
            for _ in entry.chunks():
                pass
        return n


@pytest.mark.parametrize("kind", list(CASES))
def test_bad_checksum_is_refused(csum_image: Path, kind: str, caplog: pytest.LogCaptureFixture) -> None:
    where, pattern = CASES[kind]
    entries = _read_everything(csum_image)
    _flip(csum_image, where(csum_image))
    with pytest.raises(CorruptInput) as err:
        _read_everything(csum_image)
    message = str(err.value)
    assert re.search(pattern, message) and "\n" not in message, message
    assert "--ignore-checksums" in (err.value.hint or "")
    fsck = subprocess.run(["e2fsck", "-fn", str(csum_image)], capture_output=True, text=True)
    # e2fsck -n reports a bad descriptor checksum but exits 0 (the kernel mounts it read-only only).
    found = fsck.returncode != 0 or (
        kind == "group descriptor" and "descriptor checksums are invalid" in fsck.stdout
    )
    assert found, f"e2fsck finds the {kind} image clean:\n{fsck.stdout}"

    with caplog.at_level(logging.WARNING, logger="dockerify"):
        assert _read_everything(csum_image, ReadOptions(verify_checksums=False)) == entries
    warnings = [r.getMessage() for r in caplog.records if "checksum mismatch" in r.getMessage()]
    assert len(warnings) == 1 and "--ignore-checksums" in warnings[0], warnings


def test_one_warning_per_kind(csum_image: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Two bad inodes and a bad directory block: two warnings, one per kind."""
    for fs_path in ("/a/b/file", "/legacy"):
        _flip(csum_image, _inode_offset(csum_image, fs_path) + 0x7C)
    _flip(csum_image, _first_block(csum_image, "/dir") * BS + BS - 4)
    with caplog.at_level(logging.WARNING, logger="dockerify"):
        _read_everything(csum_image, ReadOptions(verify_checksums=False))
    kinds = sorted(re.sub(r".*\): (.*) checksum mismatch.*", r"\1", r.getMessage()) for r in caplog.records)
    assert kinds == ["directory block 0", "inode"], kinds


def test_cli_refuses_and_ignores(csum_image: Path, tmp_path: Path) -> None:
    """Through the command line, on a card image: one line naming the input, inode and path."""
    from tests.unit.test_ext4_journal import as_card

    _flip(csum_image, _inode_offset(csum_image, "/a/b/file") + 0x7C)
    card = as_card(csum_image, tmp_path / "card.img")
    refused = dockerify("inspect", str(card), check=False)
    assert refused.returncode == 1, refused.stderr
    first = refused.stderr.splitlines()[0]
    assert re.search(r"card\.img partition 1: inode \d+ \(/a/b/file\): inode checksum mismatch", first), first
    assert "Traceback" not in refused.stderr
    read = dockerify("inspect", "--json", "--ignore-checksums", str(card))
    assert "inode checksum mismatch" in read.stderr and "--ignore-checksums" in read.stderr


def test_crc_is_the_kernels_raw_crc32c() -> None:
    """The kernel's crc32c(~0, data) is the standard CRC-32C without its final inversion."""
    from dockerify.sources.ext4csum import crc

    assert crc(0xFFFFFFFF, b"123456789") ^ 0xFFFFFFFF == 0xE3069283  # the CRC-32C check value
    assert crc(crc(0xFFFFFFFF, b"1234"), b"56789") == crc(0xFFFFFFFF, b"123456789")
