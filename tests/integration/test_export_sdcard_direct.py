"""Issue 10: the SD card's root filesystem written directly from the entries (ext4populate.py).

Judges: e2fsck -fn and fsck.vfat -n, a read-only loop mount of the root partition (the kernel's
view) against the image's tree, sha256 of two exports. The path taken is read from the --debug
log: the direct writer for ext4 with extents, the staging tree + mke2fs -d for what it does not
lay out (inline_data)."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from pathlib import Path

import pytest

from tests import oracle
from tests.conftest import dockerify
from tests.fixtures import FIXTURES_DIR, entry
from tests.integration.test_export_sdcard import check_filesystems, compare_card_with_image, table, tools
from tests.integration.test_export_support import EPOCH, build_image, make_special_tree

DIRECT = "root filesystem: written directly"
STAGED = "root filesystem: staged tree and mke2fs -d"
NAMES = ["pi-arm64.img", "debian-armhf.img", "amd64-gpt.img"]


def export(ref: str, card: Path, *extra: str) -> tuple[dict, str]:
    proc = dockerify("export", "--debug", ref, "--format", "sdcard", "-o", str(card), "--json", *extra)
    return json.loads(proc.stdout), proc.stderr


@pytest.fixture(scope="module")
def layouts(tmp_path_factory) -> dict[str, Path]:
    tools()
    out = {}
    for name in [*NAMES, "pi-arm64-inline.img"]:
        entry(name)
        layout = tmp_path_factory.mktemp("img") / "layout"
        dockerify("build", "-q", str(FIXTURES_DIR / name), "--output", f"oci:{layout}:t")
        out[name] = layout
    return out


@pytest.mark.parametrize("name", NAMES)
def test_direct_cards_are_clean_and_equal_the_image(layouts, tmp_path, name, root_user) -> None:
    card = tmp_path / "card.img"
    summary, log = export(f"oci:{layouts[name]}:t", card)
    assert DIRECT in log and STAGED not in log, log[-2000:]
    assert summary["warnings"] == []
    check_filesystems(card, tmp_path)
    compare_card_with_image(card, layouts[name], name, tmp_path)


def test_inline_data_takes_the_staging_path(layouts, tmp_path) -> None:
    card = tmp_path / "card.img"
    _, log = export(f"oci:{layouts['pi-arm64-inline.img']}:t", card)
    assert STAGED in log and "inline_data" in log and DIRECT not in log, log[-2000:]
    _, ext = check_filesystems(card, tmp_path)
    assert "inline_data" in ext["Filesystem features"]


def _hard_tree(root: Path) -> Path:
    """The special tree plus what stresses the writer: a directory of 3000 entries (many blocks),
    a sparse file of 600 data regions (an extent tree with leaf blocks), many small xattrs (in the
    inode) and a large one (an xattr block), long and short symlinks, a file of several MiB."""
    make_special_tree(root)
    many = root / "many"
    many.mkdir()
    for i in range(3000):
        (many / f"entry-{i:05d}-{'x' * (i % 40)}").write_bytes(b"%d\n" % i)
    with open(root / "fragmented", "wb") as f:
        for i in range(600):
            f.seek(i * 3 * 4096 + 100)
            f.write(b"region %d" % i)
        f.truncate(600 * 3 * 4096 + 5000)
    (root / "small-xattrs").write_text("x\n")
    for i in range(3):
        os.setxattr(root / "small-xattrs", f"user.s{i}", b"v%d" % i)
    (root / "big-xattrs").write_text("y\n")
    for i in range(20):
        os.setxattr(root / "big-xattrs", f"user.attribute-{i:02d}", bytes([i]) * 100)
    os.symlink("t" * 59, root / "link-59")
    os.symlink("/" + "long/" * 60 + "target", root / "link-long")
    (root / "big").write_bytes(os.urandom(1 << 20) * 5)
    os.mkfifo(root / "many" / "fifo", 0o600)
    for p in [*root.rglob("*"), root]:
        os.utime(p, (EPOCH, EPOCH), follow_symlinks=False)
    return root


@pytest.fixture(scope="module")
def hard(tmp_path_factory, root_user) -> tuple[Path, str]:
    tools()
    base = tmp_path_factory.mktemp("hard")
    root = _hard_tree(base / "root")
    return root, build_image(root, base / "layout", "linux/arm64")


def test_special_tree_on_the_direct_path(hard, tmp_path) -> None:
    root, ref = hard
    card = tmp_path / "card.img"
    summary, log = export(ref, card)
    assert DIRECT in log, log[-2000:]
    check_filesystems(card, tmp_path)
    want = oracle.snapshot(root)
    part = table(card)["partitions"][1]
    with oracle.loop_mount(card, part["start"] * 512, part["size"] * 512) as mnt:
        got = oracle.snapshot(mnt)
        fragmented = os.stat(mnt / "fragmented")
    # The boot partition's mount point is made on the root (the tree has none).
    assert summary["boot"]["mountpoint"] == "/boot" and stat.S_ISDIR(got.pop(b"boot")[0])
    diffs = oracle.differences(want, got)
    assert not diffs, "\n".join(diffs)
    assert fragmented.st_blocks * 512 < 600 * 2 * 4096  # the holes stay holes


def test_direct_card_is_bit_reproducible(hard, layouts, tmp_path) -> None:
    for ref in (hard[1], f"oci:{layouts['pi-arm64.img']}:t"):
        digests = []
        for name in ("first", "second"):
            where = tmp_path / name
            where.mkdir(exist_ok=True)
            card = where / "card.img"
            _, log = export(ref, card)
            assert DIRECT in log
            digests.append(hashlib.sha256(card.read_bytes()).hexdigest())
            card.unlink()
            time.sleep(2)
        assert digests[0] == digests[1], ref


def _entries_for_layouts() -> list:
    from dockerify.entry import Entry, FileType, file_entry

    regions = tuple((i * 3 * 4096, 100) for i in range(200))
    return [
        Entry(path=b".", type=FileType.DIR, mode=0o755, mtime=EPOCH),
        Entry(path=b"d", type=FileType.DIR, mode=0o750, uid=5, gid=6, mtime=EPOCH, mtime_nsec=5),
        *(file_entry(b"d/f%03d" % i, b"%d" % i * i, mtime=EPOCH) for i in range(300)),
        Entry(path=b"d/link", type=FileType.HARDLINK, linkname=b"d/f007"),
        Entry(path=b"d/long", type=FileType.SYMLINK, linkname=b"x" * 300),
        Entry(path=b"d/null", type=FileType.CHAR, devmajor=1, devminor=3, mode=0o666),
        Entry(path=b"d/big-minor", type=FileType.BLOCK, devmajor=259, devminor=70000),
        Entry(path=b"d/xattrs", type=FileType.REG, xattrs={f"user.k{i}": bytes(60) for i in range(8)}),
        Entry(
            path=b"d/sparse",
            type=FileType.REG,
            size=600 * 4096 * 3,
            sparse=regions,
            reader=lambda: iter([(off, b"r" * n) for off, n in regions]),
        ),
        Entry(path=b"lost+found", type=FileType.DIR, mode=0o700, mtime=EPOCH),
    ]


@pytest.mark.parametrize(
    "options",
    [
        ["-b", "4096"],
        ["-b", "1024"],  # first data block 1, small extent leaves
        ["-b", "4096", "-O", "^metadata_csum,^64bit"],  # no checksums, 32-byte descriptors
        ["-b", "4096", "-I", "512", "-O", "orphan_file,metadata_csum_seed"],
    ],
    ids=["4k", "1k", "no-csum", "orphan-seed"],
)
def test_direct_writer_on_other_layouts(tmp_path, options) -> None:
    """ext4populate on the mke2fs layouts a recorded card may ask for, judged by e2fsck -fn."""
    import subprocess

    from dockerify.exporters.ext4populate import populate

    tools()
    image = tmp_path / "fs.img"
    offset = 1 << 20
    with open(image, "wb") as f:
        f.truncate(offset + (64 << 20))
    subprocess.run(
        ["mke2fs", "-q", "-F", "-t", "ext4", *options, "-E", f"offset={offset}", str(image), "65536k"],
        check=True,
    )
    result = populate(str(image), offset, [(e, None) for e in _entries_for_layouts()])
    assert result.files == 305
    fsck = subprocess.run(["e2fsck", "-fn", f"{image}?offset={offset}"], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr

    def debugfs(request: str) -> str:
        argv = ["debugfs", "-R", request, f"{image}?offset={offset}"]
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout

    assert " 1/ 1 " in debugfs("ex /d/sparse")  # an index in the inode, 200 extents in leaf blocks
    assert "Device major/minor number: 259:70000" in debugfs("stat /d/big-minor")
    assert "Links: 2" in debugfs("stat /d/f007")
    assert "File ACL: 0" not in debugfs("stat /d/xattrs")  # 8 x 60 bytes: an xattr block
