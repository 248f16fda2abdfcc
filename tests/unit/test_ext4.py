"""Tests for the userspace ext2/3/4 reader.

Images are built with `mke2fs -d` from a staging tree that holds every special case; the oracle
is the kernel itself: each image is loop-mounted read-only and every entry the reader yields is
compared with what the mounted filesystem shows. Hostile-input tests patch images by hand (with
locations found through debugfs) and expect a CorruptInput that names the input.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import random
import re
import shutil
import socket
import stat
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dockerify.entry import CHUNK, Entry, FileType, sparse_map_from_chunks
from dockerify.errors import CorruptInput
from dockerify.sources.ext4 import INODE_BASE, Ext4Info, Ext4Reader

MiB = 1 << 20
GiB = 1 << 30
ROOT = os.geteuid() == 0
HAVE_TOOLS = all(shutil.which(t) for t in ("mke2fs", "debugfs", "dumpe2fs"))

pytestmark = pytest.mark.skipif(not HAVE_TOOLS, reason="needs e2fsprogs (mke2fs, debugfs, dumpe2fs)")

# v2 file capability: cap_net_bind_service (bit 10) permitted and effective.
CAPABILITY = bytes.fromhex("01000002") + struct.pack("<IIII", 1 << 10, 0, 0, 0)
# A VFS (version 2) access ACL: user::rw-, user:1000:r--, group::r--, mask::r--, other::r--.
ACL = struct.pack("<I", 2) + b"".join(
    struct.pack("<HHI", tag, perm, qid)
    for tag, perm, qid in ((1, 6, 0xFFFFFFFF), (2, 4, 1000), (4, 4, 0xFFFFFFFF), (0x10, 4, 0xFFFFFFFF),
                           (0x20, 4, 0xFFFFFFFF))
)  # fmt: skip
BIG_XATTR = bytes(range(256)) * 3 + b"x" * 32  # 800 bytes: too big for the inode, fits a 1 KiB block


def run(*cmd: str | os.PathLike[str]) -> str:
    return subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True).stdout


# --- the staging tree -------------------------------------------------------------------------


def _write(path: bytes, data: bytes = b"") -> bytes:
    with open(path, "wb") as f:
        f.write(data)
    return path


def _sparse(path: bytes, pieces: list[tuple[int, bytes]], size: int) -> None:
    with open(path, "wb") as f:
        for offset, data in pieces:
            f.seek(offset)
            f.write(data)
        f.truncate(size)


def build_staging(root: bytes) -> None:
    """Every case the reader must handle, in one tree that mke2fs -d copies into each image."""
    j = os.path.join
    os.mkdir(root)
    rng = random.Random(1234)
    _write(j(root, b"empty"))
    _write(j(root, b"small"), b"hello world\n")
    _write(j(root, b"small100"), bytes(range(100)))  # inline_data: i_block plus system.data
    _write(j(root, b"big"), rng.randbytes(3 * MiB + 123))
    _write(j(root, b"modes"), b"x")
    for name, mode in ((b"setuid", 0o4755), (b"setgid", 0o2711), (b"sticky", 0o1777), (b"none", 0)):
        os.chmod(_write(j(root, name), name), mode)
    os.chown(_write(j(root, b"owned"), b"owned"), 100000, 200000)
    os.lchown(_write(j(root, b"owned16"), b""), 1000, 65534)
    caps = _write(j(root, b"ping"), b"\x7fELF")
    os.setxattr(caps, "security.capability", CAPABILITY)
    os.setxattr(caps, "user.test", b"hello")
    many = _write(j(root, b"xattrs"), b"x")
    os.setxattr(many, "user.test", b"small value")
    os.setxattr(many, "user.big", BIG_XATTR)
    os.setxattr(many, "trusted.overlay.opaque", b"y")
    os.setxattr(many, "user.empty", b"")
    with contextlib.suppress(OSError):  # the staging filesystem may lack ACL support
        os.setxattr(_write(j(root, b"acl"), b"acl"), "system.posix_acl_access", ACL)

    os.mkdir(j(root, b"hl"))
    os.mkdir(j(root, b"other"))
    _write(j(root, b"hl/a"), b"three names, one inode\n")
    os.link(j(root, b"hl/a"), j(root, b"hl/b"))
    os.link(j(root, b"hl/a"), j(root, b"other/c"))

    os.mkdir(j(root, b"links"))
    os.symlink(b"../small", j(root, b"links/relative"))
    os.symlink(b"/etc/passwd", j(root, b"links/absolute"))
    os.symlink(b"does/not/exist", j(root, b"links/dangling"))
    os.symlink(b"a" * 59, j(root, b"links/fast59"))  # the longest that fits i_block with its NUL
    os.symlink(b"b" * 60, j(root, b"links/slow60"))
    os.symlink(b"/" + b"long/" * 80 + b"target", j(root, b"links/long"))
    os.lchown(j(root, b"links/absolute"), 4242, 4343)
    os.setxattr(j(root, b"links/absolute"), "trusted.on_a_symlink", b"v", follow_symlinks=False)

    os.mkfifo(j(root, b"fifo"), 0o640)
    os.mknod(j(root, b"tty"), stat.S_IFCHR | 0o620, os.makedev(4, 64))  # old 8:8 encoding
    os.mknod(j(root, b"nvme"), stat.S_IFBLK | 0o660, os.makedev(259, 70000))  # new encoding
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(j(root, b"sock").decode())

    _sparse(j(root, b"sparse"), [(10 * MiB, b"data at ten MiB")], 10 * MiB + 15)
    _sparse(j(root, b"hole_at_end"), [(0, b"start")], 5 * MiB)
    _sparse(j(root, b"all_hole"), [], 3 * MiB)
    _sparse(j(root, b"huge"), [(4096, b"low"), (5 * GiB, b"beyond 4 GiB")], 5 * GiB + 4096)
    # 1500 separate one-block extents: an extent tree of depth 2 (depth 1 holds 4 * 340).
    _sparse(j(root, b"fragmented"), [(i * 8192, b"%d" % i) for i in range(1500)], 1500 * 8192)

    os.mkdir(j(root, b"emptydir"))
    os.mkdir(j(root, b"inl"))
    for i in range(5):  # more dirents than the 56 bytes of i_block hold
        _write(j(root, b"inl/entry-name-%d" % i), b"%d" % i)
    os.mkdir(j(root, "ünïcödé-dir".encode()))
    _write(j(root, "ünïcödé-dir/файл".encode()), b"utf-8")
    _write(j(root, b"\xff\xfe"), b"not utf-8")
    _write(j(root, b"name with\nnewline"), b"")
    _write(j(root, b"n" * 255), b"longest name")
    os.mkdir(j(root, b"multiblock"))  # a linear directory of several blocks
    for i in range(300):
        _write(j(root, b"multiblock/file-%03d" % i))

    deep = root
    for level in range(30):
        deep = j(deep, b"d%d" % level)
        os.mkdir(deep)
    _write(j(deep, b"bottom"), b"bottom")

    os.utime(j(root, b"small"), (0, 0))
    os.utime(j(root, b"modes"), (1, 2**32 + 12345))  # past 2038: needs the epoch bits
    os.utime(j(root, b"big"), (1, 1_700_000_000))
    os.chmod(j(root, b"emptydir"), 0o3750)
    os.chown(j(root, b"emptydir"), 3, 70000)
    os.setxattr(j(root, b"emptydir"), "user.dir", b"on a directory")


@pytest.fixture(scope="module")
def staging(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    if not ROOT:
        pytest.skip("building the staging tree needs root (device nodes, ownership, trusted xattrs)")
    root = os.fsencode(tmp_path_factory.mktemp("ext4") / "staging")
    build_staging(root)
    return root


def make_image(path: Path, staging: bytes, *options: str, size: str = "64M") -> Path:
    run("mke2fs", "-q", "-F", *options, "-d", os.fsdecode(staging), path, size)
    return path


def embed(image: Path, offset: int) -> Path:
    """Put a filesystem image at `offset` inside a bigger file, with garbage on both sides."""
    out = image.with_suffix(".disk")
    rng = random.Random(offset)
    with open(out, "wb") as f, open(image, "rb") as src:
        f.write(rng.randbytes(offset))
        shutil.copyfileobj(src, f, 4 * MiB)
        f.write(rng.randbytes(12345))
    return out


# --- the oracle: the kernel's view of a loop mount --------------------------------------------


@contextlib.contextmanager
def mounted(image: Path, offset: int = 0, rw: bool = False) -> Iterator[bytes]:
    if not ROOT:
        pytest.skip("the oracle loop-mounts the image, which needs root")
    mnt = image.with_name(image.name + ".mnt")
    mnt.mkdir(exist_ok=True)
    opts = f"{'rw' if rw else 'ro'},loop,offset={offset}"
    result = subprocess.run(["mount", "-o", opts, str(image), str(mnt)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot loop-mount the image: {result.stderr.strip()}")
    try:
        yield os.fsencode(mnt)
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def _regions_of(path: bytes, size: int) -> tuple[tuple[int, int], ...] | None:
    """The data regions by SEEK_DATA/SEEK_HOLE; None where the kernel cannot tell."""
    fd = os.open(path, os.O_RDONLY)
    try:
        regions, pos = [], 0
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError as e:
                if e.errno == errno.ENXIO:  # no data after pos
                    break
                return None
            try:
                end = os.lseek(fd, start, os.SEEK_HOLE)
            except OSError:
                # ext4 fails SEEK_HOLE on an inline-data file larger than its inline area.
                return None
            regions.append((start, end - start))
            pos = end
        return sparse_map_from_chunks(regions)
    finally:
        os.close(fd)


def _dense_digest(chunks: Iterator[bytes]) -> str:
    h = hashlib.sha256()
    for data in chunks:
        h.update(data)
    return "dense:" + h.hexdigest()


def _read_file(path: bytes) -> Iterator[bytes]:
    with open(path, "rb") as f:
        yield from iter(lambda: f.read(CHUNK), b"")


def _digest_regions(path: bytes, regions: tuple[tuple[int, int], ...]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for offset, length in regions:
            f.seek(offset)
            while length:
                data = f.read(min(length, CHUNK))
                assert data
                h.update(data)
                length -= len(data)
    return h.hexdigest()


_TYPES = {
    stat.S_IFREG: FileType.REG,
    stat.S_IFDIR: FileType.DIR,
    stat.S_IFLNK: FileType.SYMLINK,
    stat.S_IFCHR: FileType.CHAR,
    stat.S_IFBLK: FileType.BLOCK,
    stat.S_IFIFO: FileType.FIFO,
    stat.S_IFSOCK: FileType.SOCKET,
}


def oracle(mnt: bytes) -> list[dict[str, Any]]:
    """What the kernel shows, in the reader's order: depth first, siblings by name bytes."""
    out: list[dict[str, Any]] = []
    first_paths: dict[int, bytes] = {}

    def visit(rel: bytes) -> None:
        full = mnt if rel == b"." else os.path.join(mnt, rel)
        st = os.lstat(full)
        ftype = _TYPES[stat.S_IFMT(st.st_mode)]
        rec: dict[str, Any] = {
            "path": rel,
            "type": ftype,
            "mode": st.st_mode & 0o7777,
            "uid": st.st_uid,
            "gid": st.st_gid,
            "mtime": st.st_mtime_ns // 10**9,
            "size": 0,
            "linkname": b"",
            "dev": (0, 0),
            "xattrs": {},
            "regions": (),
            "digest": None,
        }
        if ftype is FileType.REG and st.st_ino in first_paths:
            rec.update(type=FileType.HARDLINK, linkname=first_paths[st.st_ino])
            out.append(rec)
            return
        rec["xattrs"] = {
            name: os.getxattr(full, name, follow_symlinks=False)
            for name in os.listxattr(full, follow_symlinks=False)
        }
        if ftype is FileType.REG:
            first_paths[st.st_ino] = rel
            regions = _regions_of(full, st.st_size)
            if regions is None:
                rec.update(size=st.st_size, regions=None, digest=_dense_digest(_read_file(full)))
            else:
                rec.update(size=st.st_size, regions=regions, digest=_digest_regions(full, regions))
        elif ftype is FileType.SYMLINK:
            rec["linkname"] = os.readlink(full)
        elif ftype in (FileType.CHAR, FileType.BLOCK):
            rec["dev"] = (os.major(st.st_rdev), os.minor(st.st_rdev))
        out.append(rec)
        if ftype is FileType.DIR:
            for name in sorted(os.listdir(full)):
                visit(name if rel == b"." else rel + b"/" + name)

    visit(b".")
    return out


def record(entry: Entry) -> dict[str, Any]:
    """The reader's view of one entry, in the oracle's terms; also checks the chunk contract."""
    rec: dict[str, Any] = {
        "path": entry.path,
        "type": entry.type,
        "mode": entry.mode,
        "uid": entry.uid,
        "gid": entry.gid,
        "mtime": entry.mtime,
        "size": entry.size,
        "linkname": entry.linkname,
        "dev": (entry.devmajor, entry.devminor),
        "xattrs": entry.xattrs,
        "regions": (),
        "digest": None,
    }
    if entry.type is FileType.REG:
        h = hashlib.sha256()
        pieces, pos = [], 0
        for offset, data in entry.chunks():
            assert offset >= pos and 0 < len(data) <= CHUNK, (entry.path, offset, len(data))
            h.update(data)
            pieces.append((offset, len(data)))
            pos = offset + len(data)
        assert pos <= entry.size
        regions = sparse_map_from_chunks(pieces)
        declared = entry.sparse if entry.sparse is not None else ((0, entry.size),) if entry.size else ()
        assert regions == declared, f"{entry.path!r}: chunks {regions} but sparse map {declared}"
        assert entry.sparse != ((0, entry.size),), "a dense file must have sparse=None"
        rec.update(regions=regions, digest=h.hexdigest())
    else:
        assert entry.reader is None or entry.type is not FileType.HARDLINK
    return rec


def compare(reader: Ext4Reader, mnt: bytes) -> list[dict[str, Any]]:
    entries = list(reader.entries())
    got = [record(e) for e in entries]
    want = oracle(mnt)
    assert [r["path"] for r in got] == [r["path"] for r in want]
    for entry, g, w in zip(entries, got, want, strict=True):
        if w["regions"] is None:  # the kernel could not map the holes: compare the dense content
            g.update(regions=None, digest=_dense_digest(entry.dense_chunks()))
        assert g == w, f"entry {g['path']!r} differs"
    return got


# --- the image variants -----------------------------------------------------------------------

VARIANTS = {
    "ext4": ("-t", "ext4", "-b", "4096"),
    "ext4-inline": ("-t", "ext4", "-O", "inline_data"),
    "ext4-no64bit": ("-t", "ext4", "-O", "^64bit"),
    "ext4-csum64": ("-t", "ext4", "-O", "metadata_csum,64bit"),
    "ext4-1k": ("-t", "ext4", "-b", "1024"),
    # Small groups and few inodes per group, so that inodes live in several meta groups.
    "ext4-metabg": ("-t", "ext4", "-O", "meta_bg,^resize_inode", "-b", "1024", "-g", "1024", "-N", "1024"),
    "ext4-metabg-nosparse": (
        "-t",
        "ext4",
        "-O",
        "meta_bg,^resize_inode,^sparse_super",
        "-b",
        "1024",
        "-g",
        "1024",
        "-N",
        "1024",
    ),
    "ext4-small-inodes": ("-t", "ext4", "-I", "128"),
    "ext4-bigalloc": ("-t", "ext4", "-O", "bigalloc", "-C", "16384", "-b", "4096"),
    "ext4-more-features": ("-t", "ext4", "-O", "large_dir,sparse_super2,quota,project,orphan_file"),
    "ext3": ("-t", "ext3"),
    "ext2": ("-t", "ext2"),
    "ext2-1k": ("-t", "ext2", "-b", "1024"),  # "huge" reaches the triple indirect block
    "ext2-nofiletype": ("-t", "ext2", "-O", "^filetype"),  # dirents without a file type
}


@pytest.fixture(scope="module")
def images(staging: bytes, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("images")
    return {name: make_image(out / f"{name}.img", staging, *opts) for name, opts in VARIANTS.items()}


@pytest.mark.root
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_matches_kernel(images: dict[str, Path], variant: str) -> None:
    image = images[variant]
    with open(image, "rb") as f, mounted(image) as mnt:
        got = compare(Ext4Reader(f, name=image.name), mnt)
    by_path = {r["path"]: r for r in got}
    # The oracle agreeing is not enough: make sure the hard cases were really exercised.
    assert by_path[b"hl/b"]["type"] is FileType.HARDLINK and by_path[b"other/c"]["linkname"] == b"hl/a"
    huge = by_path[b"huge"]["regions"]
    assert any(o <= 4096 < o + n for o, n in huge) and huge[-1][0] == 5 * GiB, huge
    assert by_path[b"nvme"]["dev"] == (259, 70000)
    assert by_path[b"ping"]["xattrs"]["security.capability"] == CAPABILITY
    assert by_path[b"xattrs"]["xattrs"]["user.big"] == BIG_XATTR
    assert len([p for p in by_path if p.startswith(b"multiblock/")]) == 300
    assert b"\xff\xfe" in by_path
    if b"acl" in by_path:
        assert by_path[b"acl"]["xattrs"] == {"system.posix_acl_access": ACL}


@pytest.mark.root
def test_at_offset_inside_a_bigger_file(images: dict[str, Path]) -> None:
    offset = 3 * MiB + 512
    disk = embed(images["ext4"], offset)
    size = images["ext4"].stat().st_size
    with open(disk, "rb") as f, mounted(disk, offset) as mnt:
        f.seek(7)
        assert Ext4Reader(f, offset=offset, name="disk.img").info.size_bytes == size
        reader = Ext4Reader(f, offset=offset, size=size, name="disk.img partition 2")
        compare(reader, mnt)
        assert f.tell() == 7, "the reader must not move the shared file position"


def test_info_matches_dumpe2fs_and_blkid(tmp_path: Path) -> None:
    for options, fs_type in (
        (("-t", "ext4", "-L", "rootfs"), "ext4"),
        (("-t", "ext3", "-L", "boot"), "ext3"),
        (("-t", "ext2",), "ext2"),
        (("-t", "ext4", "-O", "inline_data,^has_journal", "-b", "1024", "-I", "512"), "ext4"),
    ):  # fmt: skip
        image = tmp_path / "info.img"
        run("mke2fs", "-q", "-F", *options, image, "32M")
        with open(image, "rb") as f:
            info = Ext4Reader(f, name="info.img").info
        dump = dict(line.split(":", 1) for line in run("dumpe2fs", "-h", image).splitlines() if ":" in line)
        dump = {k.strip(): v.strip() for k, v in dump.items()}
        label = "" if dump["Filesystem volume name"] == "<none>" else dump["Filesystem volume name"]
        assert info == Ext4Info(
            fs_type=fs_type,
            uuid=dump["Filesystem UUID"],
            label=label,
            block_size=int(dump["Block size"]),
            blocks_count=int(dump["Block count"]),
            inodes_count=int(dump["Inode count"]),
            inode_size=int(dump["Inode size"]),
            features=tuple(sorted(dump["Filesystem features"].split())),
            size_bytes=int(dump["Block count"]) * int(dump["Block size"]),
        )
        if shutil.which("blkid"):
            blkid = run("blkid", "-p", "-o", "export", image)
            assert f"TYPE={fs_type}" in blkid.splitlines()
            assert f"UUID={info.uuid}" in blkid.splitlines()


def test_reads_from_an_in_memory_file(tmp_path: Path) -> None:
    """A file object without a descriptor works too (seek + read)."""
    image = tmp_path / "mem.img"
    tree = tmp_path / "tree"
    (tree / "d").mkdir(parents=True)
    (tree / "d" / "f").write_bytes(b"in memory")
    run("mke2fs", "-q", "-F", "-t", "ext4", "-d", tree, image, "8M")
    reader = Ext4Reader(io.BytesIO(image.read_bytes()), name="mem")
    files = {e.path: e for e in reader.entries()}
    assert files[b"d/f"].read_all() == b"in memory"
    assert list(files) == [b".", b"d", b"d/f", b"lost+found"]


@pytest.mark.root
def test_unwritten_extents_and_preallocation(tmp_path: Path) -> None:
    """Unwritten extents read as holes and blocks preallocated past i_size are ignored."""
    image = tmp_path / "prealloc.img"
    run("mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", image, "32M")
    with mounted(image, rw=True) as mnt:
        j = os.path.join
        with open(j(mnt, b"unwritten"), "wb") as f:
            os.posix_fallocate(f.fileno(), 0, 2 * MiB)
            f.seek(MiB)
            f.write(b"written in the middle")
        with open(j(mnt, b"keep_size"), "wb") as f:
            f.write(b"x" * 5000)
            f.flush()
            subprocess.run(
                ["fallocate", "--keep-size", "-o", "0", "-l", "1M", j(mnt, b"keep_size")], check=True
            )
        with open(j(mnt, b"punched"), "wb") as f:
            f.write(os.urandom(MiB))
        subprocess.run(["fallocate", "-p", "-o", "65536", "-l", "131072", j(mnt, b"punched")], check=True)
    with open(image, "rb") as f, mounted(image) as mnt:
        got = {r["path"]: r for r in compare(Ext4Reader(f, name="prealloc.img"), mnt)}
    assert got[b"unwritten"]["regions"] == ((MiB, 4096),)
    assert got[b"keep_size"]["regions"] == ((0, 5000),)
    assert got[b"punched"]["regions"] == ((0, 65536), (196608, MiB - 196608))


@pytest.mark.root
@pytest.mark.parametrize("options", [("-t", "ext4", "-b", "4096"), ("-t", "ext2", "-b", "1024")])
def test_htree_directory(tmp_path: Path, options: tuple[str, ...]) -> None:
    """A directory of 10,000 entries indexed by the kernel (mke2fs -d writes linear directories)."""
    image = tmp_path / "htree.img"
    run("mke2fs", "-q", "-F", "-N", "12000", *options, image, "32M")
    with mounted(image, rw=True) as mnt:
        os.mkdir(os.path.join(mnt, b"htree"))
        for i in range(10000):
            os.close(os.open(os.path.join(mnt, b"htree/f%05d" % i), os.O_CREAT | os.O_WRONLY, 0o600))
        for i in range(0, 10000, 7):  # deleted entries leave gaps in the leaf blocks
            os.unlink(os.path.join(mnt, b"htree/f%05d" % i))
    flags = re.search(r"Flags: (0x[0-9a-f]+)", run("debugfs", "-R", "stat /htree", image))
    assert flags and int(flags.group(1), 16) & 0x1000, "the directory must be hash-indexed"
    with open(image, "rb") as f, mounted(image) as mnt:
        got = compare(Ext4Reader(f, name="htree.img"), mnt)
    assert len(got) == 3 + 10000 - len(range(0, 10000, 7))  # ., htree, lost+found and the files


@pytest.mark.root
def test_inline_data_written_by_kernel(tmp_path: Path) -> None:
    """The kernel keeps small files and directories inline, spilling into system.data."""
    image = tmp_path / "inline.img"
    run("mke2fs", "-q", "-F", "-t", "ext4", "-O", "inline_data", "-I", "512", image, "16M")
    with mounted(image, rw=True) as mnt:
        j = os.path.join
        os.mkdir(j(mnt, b"dir"))
        for i in range(6):
            _write(j(mnt, b"dir/entry-name-%d" % i), b"%d" % i * 50 * i)
        os.setxattr(j(mnt, b"dir/entry-name-3"), "user.next_to_system_data", b"v")
        os.symlink(b"t" * 120, j(mnt, b"dir/inline-symlink"))
    stat_dir = run("debugfs", "-R", "stat /dir", image)
    assert "Flags: 0x10000000" in stat_dir and re.search(r"Size: (\d+)", stat_dir).group(1) != "60"  # type: ignore[union-attr]
    with open(image, "rb") as f, mounted(image) as mnt:
        got = {r["path"]: r for r in compare(Ext4Reader(f, name="inline.img"), mnt)}
    assert got[b"dir/entry-name-5"]["size"] == 250
    assert "system.data" not in got[b"dir/entry-name-3"]["xattrs"]


@pytest.mark.root
def test_timestamps_beyond_2038(tmp_path: Path) -> None:
    """Large inodes keep two epoch bits in i_mtime_extra (mke2fs -d 1.47.0 drops them, the kernel does not)."""
    image = tmp_path / "y2038.img"
    run("mke2fs", "-q", "-F", "-t", "ext4", image, "8M")
    times = {b"y2038": 2**31 + 5, b"y2106": 2**32 + 12345, b"y2242": 2**33 + 7, b"before1970": -1000}
    with mounted(image, rw=True) as mnt:
        for name, mtime in times.items():
            _write(os.path.join(mnt, name))
            os.utime(os.path.join(mnt, name), (0, mtime))
    with open(image, "rb") as f, mounted(image) as mnt:
        got = {r["path"]: r["mtime"] for r in compare(Ext4Reader(f, name="y2038.img"), mnt)}
    assert {name: got[name] for name in times} == times


@pytest.mark.root
def _revision_0() -> list[str]:
    """mke2fs's option for a revision 0 filesystem: `-r 0` up to e2fsprogs 1.47.0 (Debian 12),
    `-E revision=0` from 1.47.1 (Debian 13), which removed -r."""
    version = subprocess.run(["mke2fs", "-V"], capture_output=True, text=True).stderr.split()[1]
    parts = tuple(int(x) for x in version.split(".")[:3] if x.isdigit())
    return ["-E", "revision=0"] if parts >= (1, 47, 1) else ["-r", "0"]


def test_revision_0_filesystem(tmp_path: Path) -> None:
    """The original ext2 format: no feature fields, 128-byte inodes, first inode 11."""
    tree = tmp_path / "tree"
    (tree / "d").mkdir(parents=True)
    (tree / "d" / "f").write_bytes(b"rev 0" * 1000)
    os.symlink("d/f", tree / "l")
    os.link(tree / "d" / "f", tree / "h")
    image = make_image(tmp_path / "rev0.img", os.fsencode(tree), "-t", "ext2", *_revision_0(), size="8M")
    with open(image, "rb") as f, mounted(image) as mnt:
        reader = Ext4Reader(f, name="rev0.img")
        assert reader.info.features == () and reader.info.inode_size == 128
        compare(reader, mnt)


def _tree_view(path: Path) -> list[tuple[object, ...]]:
    """Everything the reader yields except what depends on the block size (the hole granularity)."""
    with open(path, "rb") as f:
        out: list[tuple[object, ...]] = []
        for e in Ext4Reader(f, name=path.name).entries():
            content = b""
            if e.type is FileType.REG and e.size < 64 * MiB:
                content = hashlib.sha256(e.read_all()).digest()
            elif e.type is FileType.REG:
                content = b"".join(d.strip(b"\0") for _, d in e.chunks())
            mtime = 0 if e.path in (b".", b"lost+found") else e.mtime  # set by mke2fs itself
            out.append((e.path, e.type, e.mode, e.uid, e.gid, mtime, e.size, e.linkname, e.devmajor,
                        e.devminor, e.xattrs, content))  # fmt: skip
        return out


# Variants this kernel cannot mount: they must read exactly like the "ext4" image of the same tree.
UNMOUNTABLE = {
    "64k-blocks": (("-t", "ext4", "-b", "65536", "-O", "^metadata_csum"), "256M"),
    "casefold": (("-t", "ext4", "-O", "casefold"), "64M"),  # needs a kernel with utf8 support
}


@pytest.mark.parametrize("variant", list(UNMOUNTABLE))
def test_unmountable_variant_reads_like_ext4(
    images: dict[str, Path], staging: bytes, tmp_path: Path, variant: str
) -> None:
    options, size = UNMOUNTABLE[variant]
    image = make_image(tmp_path / f"{variant}.img", staging, *options, size=size)
    if variant == "64k-blocks":
        # Without checksum tails, an empty directory block holds one dirent of rec_len 65536,
        # which needs the special 16-bit encoding.
        run("debugfs", "-w", "-R", "expand_dir /multiblock", image)
        assert re.search(r"Size: 131072\b", run("debugfs", "-R", "stat /multiblock", image))
    want, got = _tree_view(images["ext4"]), _tree_view(image)
    assert [r[0] for r in got] == [r[0] for r in want]
    for a, b in zip(got, want, strict=True):
        assert a == b, a[0]


def test_group_has_superblock_rule(tmp_path: Path) -> None:
    """sparse_super: backups only in groups 0, 1 and powers of 3, 5 and 7."""
    image = tmp_path / "g.img"
    run("mke2fs", "-q", "-F", "-t", "ext4", image, "8M")
    with open(image, "rb") as f:
        reader = Ext4Reader(f, name="g.img")
        have = [g for g in range(400) if reader._group_has_superblock(g)]
    assert have == [0, 1, 3, 5, 7, 9, 25, 27, 49, 81, 125, 243, 343]


@pytest.mark.root
def test_extent_tree_depth_two_was_built(images: dict[str, Path]) -> None:
    out = run("debugfs", "-R", "ex /fragmented", images["ext4"])
    assert re.search(r"^\s*2/\s*2\s", out, re.M), out[:500]


def test_reads_fast_on_large_files(staging: bytes, images: dict[str, Path]) -> None:
    """Content is read in few large reads, not block by block."""
    with open(images["ext4"], "rb") as f:
        reader = Ext4Reader(f, name="ext4.img")
        big = next(e for e in reader.entries() if e.path == b"big")
        sizes = [len(data) for _, data in big.chunks()]
    assert sizes[:3] == [CHUNK] * 3 and sum(sizes) == 3 * MiB + 123


def test_inode_layout_is_128_bytes() -> None:
    assert INODE_BASE.size == 128


# --- hostile input ----------------------------------------------------------------------------


def _small_tree(root: Path) -> Path:
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "file").write_bytes(b"f" * 10000)
    (root / "dir").mkdir()
    for i in range(3):
        (root / "dir" / f"entry{i}").write_bytes(b"%d" % i)
    (root / "legacy").write_bytes(b"l" * 5000)
    os.setxattr(root / "legacy", "user.x", b"y" * 300)  # too big for the inode: an xattr block
    os.symlink("x" * 100, root / "slowlink")
    _sparse(os.fsencode(root / "two_extents"), [(0, b"first"), (MiB, b"second")], MiB + 6)
    # More extents than the four that fit in the inode: a tree of depth 1.
    _sparse(os.fsencode(root / "deep_extents"), [(i * 65536, b"x") for i in range(8)], 8 * 65536)
    return root


@pytest.fixture
def small_image(tmp_path: Path) -> Path:
    """Without metadata_csum, so that the byte patches below reach the structural checks
    (test_ext4_checksums.py corrupts checksummed images)."""
    tree = _small_tree(tmp_path / "tree")
    return make_image(
        tmp_path / "small.img",
        os.fsencode(tree),
        "-t",
        "ext4",
        "-b",
        "4096",
        "-O",
        "^metadata_csum",
        size="8M",
    )


def _read_everything(path: Path, offset: int = 0, size: int | None = None) -> None:
    with open(path, "rb") as f:
        for entry in Ext4Reader(f, offset, size, name="card.img partition 2").entries():
            for _ in entry.chunks():
                pass


def _patch(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def _inode_offset(image: Path, fs_path: str) -> int:
    """Byte offset of an inode, from debugfs's imap."""
    out = run("debugfs", "-R", f"imap {fs_path}", image)
    block, offset = re.search(r"located at block (\d+), offset (0x[0-9a-f]+)", out).groups()  # type: ignore[union-attr]
    return int(block) * 4096 + int(offset, 16)


def _first_block(image: Path, fs_path: str) -> int:
    return int(run("debugfs", "-R", f"blocks {fs_path}", image).split()[0])


def _expect_corrupt(image: Path, *patterns: str, offset: int = 0, size: int | None = None) -> str:
    with pytest.raises(CorruptInput) as err:
        _read_everything(image, offset, size)
    message = str(err.value)
    assert message.startswith("card.img partition 2: "), message
    assert "\n" not in message
    for pattern in patterns:
        assert re.search(pattern, message), message
    return message


def test_zero_byte_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.img"
    empty.write_bytes(b"")
    _expect_corrupt(empty, "not an ext2/3/4 filesystem")


def test_bad_magic(small_image: Path) -> None:
    _patch(small_image, 1080, b"\x34\x12")
    _expect_corrupt(small_image, r"not an ext2/3/4 filesystem: bad magic 0x1234 at byte 1080")


def test_not_a_filesystem_at_offset(small_image: Path) -> None:
    _expect_corrupt(small_image, "bad magic", offset=512)


def test_truncated_image(small_image: Path) -> None:
    os.truncate(small_image, 4 * MiB)
    _expect_corrupt(small_image, r"8388608 bytes .* only 4194304 bytes are available \(truncated")


def test_size_smaller_than_filesystem(small_image: Path) -> None:
    _expect_corrupt(small_image, "truncated", size=MiB)


def test_unknown_incompat_feature(small_image: Path) -> None:
    with open(small_image, "rb") as f:
        f.seek(1024 + 0x60)
        (incompat,) = struct.unpack("<I", f.read(4))
    _patch(small_image, 1024 + 0x60, struct.pack("<I", incompat | 1 << 31))
    _expect_corrupt(small_image, r"FEATURE_I31", r"0x80000000", "not supported")


@pytest.mark.parametrize(
    ("offset", "value", "pattern"),
    [
        (0x18, 20, "absurd block size"),  # s_log_block_size
        (0x28, 0, "absurd group geometry"),  # s_inodes_per_group
        (0x00, 0xFFFFFFFF, "absurd inode count"),  # s_inodes_count
    ],
)
def test_absurd_superblock_counts(small_image: Path, offset: int, value: int, pattern: str) -> None:
    _patch(small_image, 1024 + offset, struct.pack("<I", value))
    _expect_corrupt(small_image, pattern)


def test_extent_header_bad_magic(small_image: Path) -> None:
    _patch(small_image, _inode_offset(small_image, "/a/b/file") + 0x28, b"\x00\x00")
    _expect_corrupt(small_image, r"inode \d+ \(/a/b/file\): extent header has bad magic 0x0000")


def test_extent_beyond_end_of_filesystem(small_image: Path) -> None:
    # i_block: 12-byte header, then the first leaf extent; ee_start_lo is at +8 in the extent.
    _patch(small_image, _inode_offset(small_image, "/a/b/file") + 0x28 + 12 + 8, struct.pack("<I", 999999))
    _expect_corrupt(
        small_image,
        r"inode \d+ \(/a/b/file\): block 100000[0-9] is beyond the end of the filesystem \(2048 blocks\)",
    )


def test_extent_header_claims_too_many_entries(small_image: Path) -> None:
    _patch(small_image, _inode_offset(small_image, "/a/b/file") + 0x28 + 2, struct.pack("<H", 9))
    _expect_corrupt(small_image, r"/a/b/file.*extent header claims 9 entries")


def test_block_map_beyond_end_of_filesystem(tmp_path: Path) -> None:
    tree = _small_tree(tmp_path / "tree")
    image = make_image(tmp_path / "ext2.img", os.fsencode(tree), "-t", "ext2", "-b", "4096", size="8M")
    _patch(image, _inode_offset(image, "/legacy") + 0x28 + 4, struct.pack("<I", 262144))
    _expect_corrupt(image, r"inode \d+ \(/legacy\): block 262144 is beyond the end of the filesystem")


def test_block_map_cycle(tmp_path: Path) -> None:
    """A double indirect pointer aimed at the single indirect block must not be followed."""
    tree = _small_tree(tmp_path / "tree")
    (tree / "indirect").write_bytes(os.urandom(15 * 4096))  # 12 direct blocks, then indirect
    image = make_image(tmp_path / "ext2.img", os.fsencode(tree), "-t", "ext2", "-b", "4096", size="8M")
    inode = _inode_offset(image, "/indirect")
    with open(image, "rb") as f:
        f.seek(inode + 0x28 + 12 * 4)
        (single,) = struct.unpack("<I", f.read(4))
    _patch(image, inode + 0x04, struct.pack("<I", 100 * MiB))  # i_size reaches the double indirect range
    _patch(image, inode + 0x28 + 13 * 4, struct.pack("<I", single))
    _expect_corrupt(image, rf"inode \d+ \(/indirect\): block map block {single} is referenced twice")


def test_directory_loop(small_image: Path) -> None:
    run("debugfs", "-w", "-R", "link /a /a/b/loop", small_image)
    _expect_corrupt(small_image, r"\(/a/b/loop\): directory reached twice")


def test_directory_rec_len_overruns_block(small_image: Path) -> None:
    block = _first_block(small_image, "/dir")
    _patch(small_image, block * 4096 + 4, struct.pack("<H", 4096 + 12))  # rec_len of "."
    _expect_corrupt(small_image, r"\(/dir\): directory entry at byte 0 has rec_len 4108 that overruns")


def test_directory_entry_with_inode_out_of_range(small_image: Path) -> None:
    block = _first_block(small_image, "/dir")
    _patch(small_image, block * 4096 + 24, struct.pack("<I", 0x7FFFFFFF))  # after "." and ".."
    _expect_corrupt(small_image, r"inode 2147483647 \(/dir/entry\d\): inode number out of range")


def test_directory_entry_with_slash_in_name(small_image: Path) -> None:
    block = _first_block(small_image, "/dir")
    with open(small_image, "rb") as f:
        f.seek(block * 4096)
        data = f.read(4096)
    _patch(small_image, block * 4096 + data.index(b"entry0"), b"../../")
    _expect_corrupt(small_image, r"\(/dir\): invalid file name b'\.\./\.\./'")


def _dir_block(image: Path, fs_path: str) -> tuple[int, bytes]:
    block = _first_block(image, fs_path)
    with open(image, "rb") as f:
        f.seek(block * 4096)
        return block * 4096, f.read(4096)


def _xattr_block(image: Path, fs_path: str) -> int:
    with open(image, "rb") as f:
        f.seek(_inode_offset(image, fs_path) + 0x68)
        return struct.unpack("<I", f.read(4))[0] * 4096


def test_pristine_small_image_reads(small_image: Path) -> None:
    """The hostile tests below patch this image; unpatched, it reads without error."""
    with open(small_image, "rb") as f:
        entries = {e.path: e for e in Ext4Reader(f, name="small.img").entries()}
    assert entries[b"legacy"].xattrs == {"user.x": b"y" * 300}
    assert entries[b"two_extents"].sparse is not None
    assert entries[b"slowlink"].linkname == b"x" * 100


# Each case: (path of the inode to patch or "" for absolute, byte offset in it, data, expected message).
INODE_PATCHES = {
    "root not a directory": ("<2>", 0x00, struct.pack("<H", 0o100644), r"inode 2 \(/\): the root is not a directory"),
    "unknown file type": ("/legacy", 0x00, struct.pack("<H", 0o644), r"\(/legacy\): unknown file type in mode 0o644"),
    "absurd extra isize": ("/legacy", 0x80, struct.pack("<H", 1000), r"\(/legacy\): absurd i_extra_isize 1000"),
    "absurd symlink length": ("/slowlink", 0x04, struct.pack("<I", 1 << 24), r"\(/slowlink\): absurd symlink length"),
    # The second extent of the root node (header, extent 1, extent 2) moved before the first.
    "extents out of order": ("/two_extents", 0x28 + 24, struct.pack("<I", 0), r"\(/two_extents\): extents overlap"),
    "xattr block out of range": ("/legacy", 0x68, struct.pack("<I", 5000), r"\(/legacy\): block 5000 is beyond"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(INODE_PATCHES))
def test_corrupt_inode(small_image: Path, case: str) -> None:
    fs_path, offset, data, pattern = INODE_PATCHES[case]
    _patch(small_image, _inode_offset(small_image, fs_path) + offset, data)
    _expect_corrupt(small_image, pattern)


def test_extent_node_with_wrong_depth(small_image: Path) -> None:
    inode = _inode_offset(small_image, "/deep_extents")
    with open(small_image, "rb") as f:
        f.seek(inode + 0x28)
        root = f.read(24)
    assert struct.unpack_from("<H", root, 6)[0] == 1, "expected an extent tree of depth 1"
    (leaf,) = struct.unpack_from("<I", root, 12 + 4)  # ei_leaf_lo of the first index entry
    _patch(small_image, leaf * 4096 + 6, struct.pack("<H", 3))
    _expect_corrupt(small_image, r"\(/deep_extents\): extent tree node has depth 3, expected 0")


def test_short_symlink_in_a_data_block(small_image: Path) -> None:
    """A symlink owning a data block is slow whatever its length (the kernel's rule)."""
    _patch(small_image, _inode_offset(small_image, "/slowlink") + 0x04, struct.pack("<I", 30))
    with open(small_image, "rb") as f:
        links = {e.path: e.linkname for e in Ext4Reader(f, name="small.img").entries()}
    assert links[b"slowlink"] == b"x" * 30


def test_corrupt_xattr_block(small_image: Path) -> None:
    block = _xattr_block(small_image, "/legacy")
    _patch(small_image, block, b"\0\0\0\0")
    _expect_corrupt(small_image, r"\(/legacy\): xattr block \d+ has bad magic 0x00000000")


def test_xattr_with_unknown_name_index(small_image: Path) -> None:
    block = _xattr_block(small_image, "/legacy")
    _patch(small_image, block + 32 + 1, b"\x63")  # e_name_index of the first entry
    _expect_corrupt(small_image, r"\(/legacy\): xattr with unknown name index 99")


def test_xattr_value_out_of_its_block(small_image: Path) -> None:
    block = _xattr_block(small_image, "/legacy")
    _patch(small_image, block + 32 + 2, struct.pack("<H", 4000))  # e_value_offs of the first entry
    _expect_corrupt(small_image, r"\(/legacy\): xattr 'user.x' value \(300 bytes at 4000\) overruns")


def test_inode_table_beyond_end_of_filesystem(small_image: Path) -> None:
    _patch(small_image, 4096 + 0x08, struct.pack("<I", 0xFFFFFF))  # bg_inode_table_lo of group 0
    _expect_corrupt(small_image, r"inode 2 \(/\): inode table of group 0 at block 16777215 is beyond the end")


def test_duplicate_name_in_directory(small_image: Path) -> None:
    start, data = _dir_block(small_image, "/dir")
    _patch(small_image, start + data.index(b"entry1"), b"entry0")
    _expect_corrupt(small_image, r"\(/dir\): duplicate file name b'entry0'")


def test_name_longer_than_its_directory_entry(small_image: Path) -> None:
    start, data = _dir_block(small_image, "/dir")
    _patch(small_image, start + data.index(b"entry0") - 2, b"\xff")  # name_len
    _expect_corrupt(small_image, r"\(/dir\): directory entry at byte 24 has a name longer than its rec_len")


class _RecordingFile(io.BytesIO):
    """An in-memory image that remembers which byte ranges were read (no fileno: seek + read)."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.ranges: list[tuple[int, int]] = []

    def read(self, size: int | None = -1, /) -> bytes:
        start = self.tell()
        data = super().read(size)
        self.ranges.append((start, len(data)))
        return data


def _read_all(f: io.BytesIO, name: str) -> None:
    for entry in Ext4Reader(f, name=name).entries():
        if entry.size < 64 * MiB:
            for _ in entry.chunks():
                pass


@pytest.mark.parametrize("options", [("-t", "ext4"), ("-t", "ext2"), ("-t", "ext4", "-O", "inline_data")])
def test_random_corruption_only_raises_corrupt_input(tmp_path: Path, options: tuple[str, ...]) -> None:
    """Change random bytes of the metadata a clean read touches: any failure must be a CorruptInput."""
    tree = _small_tree(tmp_path / "tree")
    pristine = make_image(tmp_path / "fuzz.img", os.fsencode(tree), *options, "-b", "1024", size="2M")
    original = pristine.read_bytes()
    recording = _RecordingFile(original)
    _read_all(recording, "pristine")
    metadata = [(start, n) for start, n in recording.ranges if 0 < n <= 1024]  # not the file data
    rng = random.Random(42)
    failures = 0
    for _ in range(600):
        data = bytearray(original)
        for _ in range(rng.randint(1, 4)):
            start, n = rng.choice(metadata)
            data[start + rng.randrange(n)] ^= 1 << rng.randrange(8)
        try:
            _read_all(io.BytesIO(bytes(data)), "fuzz")
        except CorruptInput as e:
            assert str(e).startswith("fuzz: ") and "\n" not in str(e)
            failures += 1
    assert failures > 10, "the mutations should hit checked fields"
