"""ext4 features the kernel mounts and the reader must read too: ea_inode (large xattr values in
inodes of their own), fs-verity files, and the encrypt feature on a filesystem whose
directories are not encrypted; an encrypted directory is refused by name.

The oracle is the kernel's read-only loop mount, attribute by attribute, and `dockerify diff`
of a card image holding the filesystem against that mount.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from dockerify.errors import DockerifyError
from dockerify.sources.ext4 import Ext4Reader
from tests.conftest import dockerify
from tests.oracle import snapshot
from tests.unit.test_ext4 import HAVE_TOOLS, compare, mounted, run
from tests.unit.test_ext4_journal import as_card, live_mount

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not HAVE_TOOLS, reason="needs e2fsprogs (mke2fs, debugfs, dumpe2fs)"),
]

MiB = 1 << 20


def _tree(root: Path) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("pi\n")
    (root / "bin").mkdir()
    (root / "bin" / "tool").write_bytes(os.urandom(70000))
    os.symlink("tool", root / "bin" / "alias")
    return root


def _image(tmp_path: Path, features: str) -> Path:
    image = tmp_path / "fs.img"
    run(
        "mke2fs",
        "-q",
        "-F",
        "-t",
        "ext4",
        "-b",
        "4096",
        "-O",
        features,
        "-d",
        _tree(tmp_path / "tree"),
        image,
        "32M",
    )
    return image


def _diff_against_kernel(image: Path, tmp_path: Path) -> None:
    """`dockerify diff` of a card holding the filesystem against the kernel's read-only mount."""
    # The disk source leaves lost+found out, and a read-only mount cannot remove it.
    run("debugfs", "-w", "-R", "rmdir /lost+found", image)
    card = as_card(image, tmp_path / "card.img")
    with mounted(image) as mnt:
        proc = dockerify("diff", str(card), os.fsdecode(mnt), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ea_inode_values(root_user: None, tmp_path: Path) -> None:
    image = _image(tmp_path, "ea_inode")
    values = {"user.big": os.urandom(65536), "user.mid": os.urandom(6000), "user.small": b"small"}
    with live_mount(image) as mnt:
        for name, value in values.items():
            os.setxattr(os.path.join(mnt, b"bin/tool"), name, value)
        os.setxattr(os.path.join(mnt, b"etc"), "trusted.big", values["user.big"][::-1])
    assert subprocess.run(["e2fsck", "-fn", str(image)], capture_output=True).returncode == 0
    # Values bigger than a block live in inodes of their own, flagged EA_INODE (0x200000).
    commands = tmp_path / "stat-inodes"
    commands.write_text("".join(f"stat <{n}>\n" for n in range(12, 40)))
    flags = re.findall(r"Flags: (0x[0-9a-f]+)", run("debugfs", "-f", commands, image))
    assert sum(1 for f in flags if int(f, 16) & 0x200000) == 3, flags
    with open(image, "rb") as f, mounted(image) as mnt:
        got = {r["path"]: r for r in compare(Ext4Reader(f, name=image.name), mnt)}
    assert got[b"bin/tool"]["xattrs"] == values
    assert got[b"etc"]["xattrs"] == {"trusted.big": values["user.big"][::-1]}
    _diff_against_kernel(image, tmp_path)


def test_verity_file_reads_with_one_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An fs-verity file keeps its Merkle tree in blocks past i_size; the tree holds the file only.

    This kernel has no CONFIG_FS_VERITY and the fsverity tool needs it, so the verity files are
    made the way ext4 lays them out: blocks past the end of the file, and the inode flag."""
    image = _image(tmp_path, "verity")
    merkle = tmp_path / "merkle"
    tool = (tmp_path / "tree" / "bin" / "tool").read_bytes()
    merkle.write_bytes(tool + bytes(65536 - len(tool) % 65536) + os.urandom(2 * 4096))
    run("debugfs", "-w", "-R", f"write {merkle} /bin/verity", image)
    run("debugfs", "-w", "-R", f"sif /bin/verity size {len(tool)}", image)
    for path in ("/bin/verity", "/bin/tool"):
        run("debugfs", "-w", "-R", f"sif {path} flags 0x180000", image)  # EXTENTS | VERITY
    with caplog.at_level(logging.WARNING, logger="dockerify"), open(image, "rb") as f:
        entries = {e.path: e for e in Ext4Reader(f, name=image.name).entries()}
        contents = {p: e.read_all() for p, e in entries.items() if e.type.name == "REG"}
    assert contents[b"bin/verity"] == tool and contents[b"bin/tool"] == tool
    warnings = [r.getMessage() for r in caplog.records if "fs-verity" in r.getMessage()]
    assert len(warnings) == 1 and "Merkle tree" in warnings[0], warnings
    if os.geteuid() != 0:
        return
    # Without verity support this kernel cannot open the files, but it shows everything else.
    with mounted(image) as mnt:
        kernel = snapshot(os.fsdecode(mnt), contents=False)
    mine = {
        e.path: (e.mode, e.uid, e.gid, e.mtime, e.size if e.type.name == "REG" else 0)
        for e in entries.values()
        if e.path != b"." and not e.path.startswith(b"lost+found")
    }
    assert {p: (k[1], k[2], k[3], k[4], k[5]) for p, k in kernel.items()} == mine
    card = as_card(image, tmp_path / "card.img")
    built = dockerify(
        "build", str(card), "--platform", "linux/amd64", "--output", f"oci:{tmp_path / 'oci'}:t"
    )
    assert built.stderr.count("fs-verity") == 1, built.stderr


def test_encrypt_feature_without_encrypted_directories(root_user: None, tmp_path: Path) -> None:
    image = _image(tmp_path, "encrypt")
    assert "encrypt" in run("dumpe2fs", "-h", image)
    with open(image, "rb") as f, mounted(image) as mnt:
        compare(Ext4Reader(f, name=image.name), mnt)
    _diff_against_kernel(image, tmp_path)


def test_encrypted_directory_is_refused_by_name(root_user: None, tmp_path: Path) -> None:
    image = _image(tmp_path, "encrypt")
    encrypted = False
    with live_mount(image) as mnt:
        secret = os.path.join(mnt, b"etc/secret")
        os.mkdir(secret)
        if shutil.which("e4crypt"):  # e2fsprogs' tool: a v1 policy from a passphrase
            added = subprocess.run(
                ["e4crypt", "add_key", os.fsdecode(secret)], input="a passphrase for the test", text=True,
                capture_output=True,
            )  # fmt: skip
            encrypted = added.returncode == 0
            if encrypted:
                with open(os.path.join(secret, b"file"), "w") as f:
                    f.write("encrypted")
    if not encrypted:
        # No fscrypt in this kernel or no e4crypt: the inode flag alone marks the directory.
        run("debugfs", "-w", "-R", "sif /etc/secret flags 0x80800", image)  # EXTENTS | ENCRYPT
    flags = re.search(r"Flags: (0x[0-9a-f]+)", run("debugfs", "-R", "stat /etc/secret", image))
    assert flags and int(flags.group(1), 16) & 0x800
    with open(image, "rb") as f, pytest.raises(DockerifyError) as err:
        for _ in Ext4Reader(f, name="card.img partition 2").entries():
            pass
    assert re.fullmatch(
        r"card\.img partition 2: inode \d+ \(/etc/secret\): the directory is encrypted \(fscrypt\); "
        r"its names and contents cannot be read without the key",
        str(err.value),
    ), str(err.value)
