"""Journal recovery on read: images copied from a live mount, while the journal still holds
committed transactions that were not checkpointed, read exactly like the kernel's mount of
another copy (the kernel replays the journal when it mounts). The input is never written.

Each image is made by the kernel itself: a loop mount, file operations, fsync (which commits
the running transaction but does not write the metadata in place), then a byte copy of the
image while it is still mounted. The test checks that the copy really needs recovery and
that reading it without the journal gives a different tree.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import re
import shutil
import struct
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dockerify.errors import CorruptInput
from dockerify.sources.ext4 import Ext4Reader
from dockerify.sources.jbd2 import JournalReport
from dockerify.sources.options import ReadOptions
from tests.conftest import dockerify
from tests.unit.test_ext4 import HAVE_TOOLS, compare, record, run

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not HAVE_TOOLS, reason="needs e2fsprogs (mke2fs, debugfs, dumpe2fs)"),
]

MiB = 1 << 20
JBD2_MAGIC = struct.pack(">I", 0xC03B3998)


@contextlib.contextmanager
def live_mount(image: Path, options: str = "") -> Iterator[bytes]:
    mnt = image.with_name(image.name + ".mnt")
    mnt.mkdir(exist_ok=True)
    opts = "rw,loop" + (f",{options}" if options else "")
    subprocess.run(["mount", "-o", opts, str(image), str(mnt)], check=True, capture_output=True)
    try:
        yield os.fsencode(mnt)
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
        mnt.rmdir()


def _fsync(path: bytes) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write(path: bytes, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def needs_recovery(image: Path) -> bool:
    header = run("dumpe2fs", "-h", image)
    start = re.search(r"^Journal start:\s+(\d+)", header, re.M)
    return "needs_recovery" in header and start is not None and start.group(1) != "0"


def unrecovered(
    tmp_path: Path,
    mkfs: tuple[str, ...],
    work: Callable[[bytes], None],
    mount: str = "",
    commit: bool = True,
    size: str = "64M",
) -> Path:
    """A copy of a mounted filesystem whose journal holds what `work` did."""
    for attempt in range(3):
        live = tmp_path / f"live{attempt}.img"
        run("mke2fs", "-q", "-F", *mkfs, live, size)
        copy = tmp_path / "unrecovered.img"
        with live_mount(live, mount) as mnt:
            work(mnt)
            if commit:
                _fsync(mnt)  # commits the last transaction; checkpointing waits for writeback
            shutil.copyfile(live, copy)
        if needs_recovery(copy):
            return copy
    pytest.fail("the kernel checkpointed the journal before the copy every time: no recovery to test")


def kernel_view(image: Path, tmp_path: Path) -> Iterator[bytes]:
    """The kernel's tree of a throwaway copy: mounting replays its journal (and writes it)."""
    throwaway = tmp_path / "kernel.img"
    shutil.copyfile(image, throwaway)
    return live_mount(throwaway)


def as_card(fs: Path, disk: Path) -> Path:
    """An MBR disk image holding `fs` as its one partition, at 1 MiB."""
    with open(disk, "wb") as f:
        f.truncate(MiB + fs.stat().st_size)
    subprocess.run(["sfdisk", "-q", str(disk)], input="start=2048, type=83\n", text=True, check=True)
    with open(disk, "r+b") as f, open(fs, "rb") as src:
        f.seek(MiB)
        shutil.copyfileobj(src, f)
    return disk


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_tree(image: Path, options: ReadOptions | None = None) -> tuple[list[dict], JournalReport]:
    with open(image, "rb") as f:
        reader = Ext4Reader(f, name=image.name, options=options)
        return [record(e) for e in reader.entries()], reader.journal


# --- what the tests do on the live mount ------------------------------------------------------


def several_transactions(mnt: bytes) -> None:
    """Creates, rewrites, renames and deletes, each step committed as its own transaction."""
    j = os.path.join
    os.mkdir(j(mnt, b"etc"))
    for i in range(40):
        _write(j(mnt, b"etc/conf%02d" % i), b"setting %d\n" % i * (i + 1))
    _fsync(j(mnt, b"etc"))
    os.rename(j(mnt, b"etc/conf00"), j(mnt, b"etc/renamed"))
    os.unlink(j(mnt, b"etc/conf01"))
    os.symlink(b"renamed", j(mnt, b"etc/link"))
    os.chmod(j(mnt, b"etc/conf02"), 0o4711)
    os.setxattr(j(mnt, b"etc/conf03"), "user.note", b"journaled xattr")
    _fsync(j(mnt, b"etc"))
    _write(j(mnt, b"etc/conf04"), os.urandom(3 * 4096 + 17))  # rewritten: new blocks, new size
    os.mkdir(j(mnt, b"var"))
    _write(j(mnt, b"var/log"), b"last words\n")
    _fsync(j(mnt, b"var"))


def revoked_directory(mnt: bytes) -> None:
    """A directory's blocks are journaled metadata; deleting it revokes them in a later transaction."""
    j = os.path.join
    os.mkdir(j(mnt, b"spool"))
    for i in range(400):  # several directory blocks, all in one transaction
        os.close(os.open(j(mnt, b"spool/message-with-a-long-name-%04d" % i), os.O_CREAT | os.O_WRONLY))
    _fsync(j(mnt, b"spool"))
    for i in range(400):
        os.unlink(j(mnt, b"spool/message-with-a-long-name-%04d" % i))
    os.rmdir(j(mnt, b"spool"))
    _fsync(mnt)
    os.mkdir(j(mnt, b"after"))  # reuses freed blocks in a transaction after the revoke
    for i in range(100):
        os.symlink(b"target-%d" % i, j(mnt, b"after/n%03d" % i))
    _fsync(j(mnt, b"after"))


def journaled_data(mnt: bytes) -> None:
    """data=journal: file contents go through the journal, including a block that starts with
    the journal's magic number, which jbd2 logs escaped."""
    j = os.path.join
    _write(j(mnt, b"escaped"), JBD2_MAGIC + b"\0\0\0\1" + os.urandom(4096 - 8) + JBD2_MAGIC + b"tail")
    _write(j(mnt, b"plain"), os.urandom(5 * 4096))
    _fsync(mnt)
    _write(j(mnt, b"plain"), b"overwritten\n")
    _fsync(mnt)


def many_transactions(mnt: bytes) -> None:
    """More transactions than a 1024-block journal holds: the log wraps past its end."""
    os.mkdir(os.path.join(mnt, b"log"))
    for i in range(600):
        _write(os.path.join(mnt, b"log/entry%03d" % i), b"%d\n" % i)
        if i % 3 == 0:
            os.unlink(os.path.join(mnt, b"log/entry%03d" % (i // 2)))


CASES = {
    # mke2fs's defaults on Debian 12: 64bit and metadata_csum, so jbd2 checksum v3 and 64-bit tags.
    "ext4-csum-v3": (("-t", "ext4", "-b", "4096"), "", several_transactions),
    "ext4-32bit-no-csum": (
        ("-t", "ext4", "-b", "4096", "-O", "^64bit,^metadata_csum"),
        "",
        several_transactions,
    ),
    "ext3": (("-t", "ext3", "-b", "4096"), "", several_transactions),
    "ext4-1k-blocks": (("-t", "ext4", "-b", "1024"), "", several_transactions),
    "revoke": (("-t", "ext4", "-b", "4096"), "", revoked_directory),
    "data-journal": (("-t", "ext4", "-b", "4096"), "data=journal", journaled_data),
    "wrapped-log": (("-t", "ext4", "-b", "1024", "-J", "size=1"), "", many_transactions),
}


@pytest.mark.parametrize("case", list(CASES))
def test_replay_matches_kernel(root_user: None, tmp_path: Path, case: str) -> None:
    mkfs, mount, work = CASES[case]
    image = unrecovered(tmp_path, mkfs, work, mount)
    before = sha256(image)
    with open(image, "rb") as f:
        reader = Ext4Reader(f, name=image.name)
        assert reader.journal.needed and reader.journal.replayed, reader.journal
        assert reader.journal.transactions >= 1 and reader.journal.blocks >= 1
        assert "needs_recovery" not in reader.info.features
        with kernel_view(image, tmp_path) as mnt:
            got = compare(reader, mnt)
    assert sha256(image) == before, "reading must not change the input"
    try:
        unrecovered_tree, report = read_tree(image, ReadOptions(journal=False))
    except CorruptInput as e:
        # The state before recovery can be inconsistent (a dirent whose inode is not written yet).
        assert "unrecovered.img: inode" in str(e)
    else:
        assert report.needed and not report.replayed
        assert unrecovered_tree != got, "the copy's on-disk state already was the recovered one"
    if case == "revoke":
        _, report = read_tree(image)
        assert report.revoked > 0, report
        assert b"spool" not in {r["path"] for r in got}
    if case == "data-journal":
        _, report = read_tree(image)
        assert report.escaped > 0, report
        escaped = next(r for r in got if r["path"] == b"escaped")
        assert escaped["size"] == 4096 + 8


def test_cli_inspect_diff_and_no_journal(root_user: None, tmp_path: Path) -> None:
    """The acceptance path: a card image (MBR + ext4) that needs recovery, through the CLI."""
    fs = unrecovered(tmp_path, ("-t", "ext4"), several_transactions)
    disk = as_card(fs, tmp_path / "card.img")
    before = sha256(disk)

    info = json.loads(dockerify("inspect", "--json", str(disk)).stdout)
    journal = info["journal"]
    assert journal["needs_recovery"] and journal["replayed"] and journal["transactions"] >= 3, journal
    text = dockerify("inspect", str(disk)).stdout
    assert re.search(r"journal:\s+replayed \d+ transactions? \(\d+ blocks, ", text), text
    skipped = json.loads(dockerify("inspect", "--json", "--no-journal", str(disk)).stdout)["journal"]
    assert skipped["needs_recovery"] and not skipped["replayed"], skipped

    with kernel_view(fs, tmp_path) as mnt:
        # The disk source leaves lost+found out; so must the kernel's side.
        stat = os.stat(mnt)
        os.rmdir(os.path.join(mnt, b"lost+found"))
        os.utime(mnt, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        same = dockerify("diff", str(disk), os.fsdecode(mnt), check=False)
        assert same.returncode == 0, same.stdout + same.stderr
        differs = dockerify("diff", "--no-journal", str(disk), os.fsdecode(mnt), check=False)
        assert differs.returncode == 1 and "etc/renamed" in differs.stdout, differs.stdout + differs.stderr
        assert "not cleanly unmounted" in differs.stderr
    out = tmp_path / "oci"
    dockerify("build", str(disk), "--platform", "linux/amd64", "--output", f"oci:{out}:t", "-q")
    assert sha256(disk) == before, "reading must not change the input"


def test_corrupt_journal_block_is_refused(root_user: None, tmp_path: Path) -> None:
    """A logged block whose checksum (v3) is wrong fails the recovery, as it does in the kernel."""
    image = unrecovered(tmp_path, ("-t", "ext4", "-b", "4096"), several_transactions)
    journal_start = int(run("debugfs", "-R", "bmap <8> 0", image).split()[0])
    start = re.search(r"^Journal start:\s+(\d+)", run("dumpe2fs", "-h", image), re.M)
    assert start
    with open(image, "r+b") as f:
        # The first descriptor block of the log; the block after it is its first logged copy.
        block = journal_start + int(start.group(1))
        while True:
            f.seek(block * 4096)
            if f.read(8) == JBD2_MAGIC + struct.pack(">I", 1):
                break
            block += 1
        f.seek((block + 1) * 4096 + 100)
        byte = f.read(1)
        f.seek((block + 1) * 4096 + 100)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(
        CorruptInput, match=r"journal: transaction \d+: the logged copy of block \d+ has a bad"
    ):
        read_tree(image)
    tree, report = read_tree(image, ReadOptions(verify_checksums=False))
    assert tree and report.replayed
    throwaway = tmp_path / "kernel.img"
    shutil.copyfile(image, throwaway)
    mnt = tmp_path / "kmnt"
    mnt.mkdir()
    kernel = subprocess.run(["mount", "-o", "loop", str(throwaway), str(mnt)], capture_output=True, text=True)
    if kernel.returncode == 0:
        subprocess.run(["umount", str(mnt)], check=True)
    assert kernel.returncode != 0, "the kernel mounted a journal with a corrupt logged block"


def test_pending_fast_commits_are_refused(root_user: None, tmp_path: Path) -> None:
    """fsync on a fast_commit filesystem logs inode changes, not blocks, in the fast-commit area;
    they are not replayed, so the journal is refused, naming them."""

    def fsync_files(mnt: bytes) -> None:
        os.mkdir(os.path.join(mnt, b"d"))
        _fsync(os.path.join(mnt, b"d"))
        for i in range(5):
            _write(os.path.join(mnt, b"d/f%d" % i), b"x" * (1000 * i + 1))

    image = unrecovered(
        tmp_path, ("-t", "ext4", "-b", "4096", "-O", "fast_commit"), fsync_files, commit=False
    )
    with pytest.raises(CorruptInput) as err:
        read_tree(image)
    message = str(err.value)
    assert re.search(r"journal: the fast-commit area holds changes of transaction \d+", message), message
    assert re.search(r"\(inodes \d+(, \d+)+; names 'f0', 'f1', 'f2', 'f3', 'f4'\)", message), message
    assert "--no-journal" in (err.value.hint or "")
    tree, report = read_tree(image, ReadOptions(journal=False))
    assert tree and report.needed and not report.replayed


def test_external_journal_is_refused(tmp_path: Path) -> None:
    image = tmp_path / "extjournal.img"
    run("mke2fs", "-q", "-F", "-t", "ext4", image, "16M")
    # What a filesystem with its journal on another device looks like after a crash.
    run("debugfs", "-w", "-R", "ssv journal_inum 0", image)
    run("debugfs", "-w", "-R", "feature needs_recovery", image)
    with pytest.raises(CorruptInput, match=r"needs recovery from an external journal device \(journal_dev\)"):
        read_tree(image)
    tree, report = read_tree(image, ReadOptions(journal=False))
    assert [r["path"] for r in tree] == [b".", b"lost+found"] and report.needed


def test_random_journal_corruption_only_raises_corrupt_input(root_user: None, tmp_path: Path) -> None:
    """Flip random bits of the log: a replay may stop early or refuse, never crash or hang."""
    image = unrecovered(tmp_path, ("-t", "ext4", "-b", "1024"), several_transactions, size="8M")
    journal = int(run("debugfs", "-R", "bmap <8> 0", image).split()[0])
    start = re.search(r"^Journal start:\s+(\d+)", run("dumpe2fs", "-h", image), re.M)
    assert start
    original = image.read_bytes()
    first = (journal + int(start.group(1))) * 1024
    rng = random.Random(7)
    outcomes: dict[str, int] = {}
    for _ in range(120):
        data = bytearray(original)
        for _ in range(rng.randint(1, 3)):
            data[first + rng.randrange(64 * 1024)] ^= 1 << rng.randrange(8)
        try:
            reader = Ext4Reader(io.BytesIO(bytes(data)), name="fuzz")
            for entry in reader.entries():
                for _ in entry.chunks():
                    pass
            outcomes["read"] = outcomes.get("read", 0) + 1
        except CorruptInput as e:
            assert str(e).startswith("fuzz: ") and "\n" not in str(e)
            outcomes["refused"] = outcomes.get("refused", 0) + 1
    assert outcomes.get("refused", 0) > 5 and outcomes.get("read", 0) > 5, outcomes


def test_overlay_patches_only_the_replayed_blocks() -> None:
    """Pure: reads that cover replayed blocks partly or wholly get the logged copies, escaped
    copies get their magic number back, and other bytes are left alone."""
    from dockerify.sources.jbd2 import Overlay

    bs = 16
    disk = bytes(range(256)) * 2  # 32 blocks of 16 bytes
    overlay = Overlay(bs, {2: (20, False), 3: (21, True)})
    overlay.freeze()

    def read(pos: int, n: int) -> bytes:
        return disk[pos : pos + n]

    def want(pos: int, n: int) -> bytes:
        patched = bytearray(disk)
        patched[2 * bs : 3 * bs] = disk[20 * bs : 21 * bs]
        patched[3 * bs : 4 * bs] = JBD2_MAGIC + disk[21 * bs + 4 : 22 * bs]
        return bytes(patched[pos : pos + n])

    for pos, n in ((0, 32), (0, 64), (35, 3), (40, 20), (50, 100), (64, 16), (1, 511)):
        assert overlay.patch(pos, read(pos, n), read) == want(pos, n), (pos, n)
