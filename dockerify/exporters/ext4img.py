"""The ext2/3/4 root filesystem of an SD card, made in userspace without privilege.

1. `Staging` writes the entries into a scratch directory as plain files an ordinary user can make
   (content with its holes, directories, symlinks, hard links, FIFOs; modes kept readable for us)
   and records each entry's true metadata (owner, mode, device numbers, xattrs, mtime).
2. `size_estimate` works out the smallest filesystem that holds it: the data blocks the staged
   tree occupies, plus the metadata mke2fs lays down for those options, measured by making an
   empty filesystem of that geometry (no guessing at journal, bitmap and inode-table sizes).
3. `make_ext4` runs, inside one `fakeroot` session, the helper that gives the staged files their
   recorded metadata (fakeroot_apply.py) and then `mke2fs -d`, which copies owners, devices and
   xattrs from what fakeroot reports, into the card image at the partition's byte offset. Run as
   root, the same helper applies the metadata for real and mke2fs runs without fakeroot (2-3x
   faster); should the scratch filesystem refuse an xattr, the fakeroot route is taken instead.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import pickle
import queue
import re
import stat
import sys
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from dockerify.entry import Entry, FileType
from dockerify.errors import CorruptInput, DockerifyError
from dockerify.exporters.common import Warnings, display, make_parents
from dockerify.exporters.ext4populate import SUPPORTED, OutOfSpace, populate
from dockerify.exporters.fakeroot_apply import NO_ROOM, NoRoomError, apply_plan, run_attempts
from dockerify.run import check_tool, run

log = logging.getLogger("dockerify")

MiB = 1 << 20
_KIND = {
    FileType.REG: "f",
    FileType.DIR: "d",
    FileType.SYMLINK: "l",
    FileType.CHAR: "c",
    FileType.BLOCK: "b",
    FileType.FIFO: "p",
    FileType.SOCKET: "s",
}
_BATCH = 2000


@dataclass(frozen=True)
class Ext4Spec:
    fs_type: str = "ext4"
    features: tuple[str, ...] | None = None  # None: mke2fs's defaults for fs_type
    block_size: int = 4096
    inode_size: int = 256
    label: str = "rootfs"
    uuid: str = ""
    epoch: int = 0  # filesystem timestamps (E2FSPROGS_FAKE_TIME)

    def options(self, inodes: int, extended: tuple[str, ...] = ()) -> list[str]:
        cmd = ["-t", self.fs_type, "-b", str(self.block_size), "-I", str(self.inode_size), "-N", str(inodes)]
        if self.features is not None:
            cmd += ["-O", ",".join(("none", *self.features))]
        cmd += ["-L", self.label, "-U", self.uuid]
        seed = uuid.uuid5(uuid.UUID(self.uuid), "hash_seed") if self.uuid else None
        ext = ["root_owner=0:0", *extended]  # mke2fs keeps only the last -E: one for all
        if seed:
            ext.append(f"hash_seed={seed}")
        cmd += ["-E", ",".join(ext)]
        return cmd


class _Writer:
    """One background thread doing the staging's filesystem work in submission order, so that
    decompressing the layers (the main thread) and writing files overlap; at most `depth` pieces
    (of up to 1 MiB each) wait in between."""

    def __init__(self, depth: int = 32) -> None:
        self._queue: queue.Queue[tuple[Callable[..., None], tuple[Any, ...]] | None] = queue.Queue(depth)
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name="dockerify-staging", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self.error is None:
                fn, args = item
                try:
                    fn(*args)
                except BaseException as e:  # handed to the main thread at its next submit
                    self.error = e

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        if self.error is not None:
            raise self.error
        self._queue.put((fn, args))

    def drain(self) -> None:
        """Wait for everything submitted so far; re-raise the first failure."""
        done = threading.Event()
        self.submit(lambda: done.set())
        while not done.wait(0.5):
            if not self._thread.is_alive():
                break
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def close(self) -> None:
        """Wait for everything submitted and stop; re-raise the first failure."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if self.error is not None:
            error, self.error = self.error, None
            raise error


class _File:
    def __init__(self) -> None:
        self.fd = -1

    def open(self, full: bytes) -> None:
        self.fd = os.open(full, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)

    def write(self, data: bytes, offset: int) -> None:
        os.pwrite(self.fd, data, offset)

    def close(self, size: int) -> None:
        try:
            os.ftruncate(self.fd, size)  # trailing holes
        finally:
            os.close(self.fd)


@dataclass
class Staging:
    """Entries written as an ordinary user's files under `root`; metadata recorded to `plan`.
    Call `close()` when done (also on failure): it waits for the background writes."""

    root: Path
    plan: BinaryIO
    warnings: Warnings
    entries: int = 0
    big_xattrs: list[bytes] = field(default_factory=list)
    _dirs: set[bytes] = field(default_factory=lambda: {b"."})
    _batch: list[tuple[Any, ...]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._base = os.fsencode(self.root)
        self._writer = _Writer()

    def full(self, path: bytes) -> bytes:
        return self._base if path == b"." else os.path.join(self._base, path)

    def sync(self) -> None:
        """Wait until everything added so far is on disk."""
        self._writer.drain()

    def close(self) -> None:
        self._writer.close()

    # -- run on the writer thread

    def _parent(self, path: bytes) -> None:
        # 0700 until the real metadata is applied: the staging tree is never readable by others.
        make_parents(self._base, self._dirs, path, 0o700)

    def _make_dir(self, path: bytes) -> None:
        if path == b".":
            return
        self._parent(path)
        full = self.full(path)
        with contextlib.suppress(FileExistsError):
            os.mkdir(full, 0o700)
        if not stat.S_ISDIR(os.lstat(full).st_mode):
            raise CorruptInput(f"{display(path)}: exists and is not a directory")
        self._dirs.add(path)

    def _clear(self, path: bytes) -> None:
        self._parent(path)
        full = self.full(path)
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISDIR(os.lstat(full).st_mode):
                raise CorruptInput(f"{display(path)}: a directory is replaced by a file")
            os.unlink(full)

    def _link(self, path: bytes, target: bytes) -> None:
        os.link(self.full(target), self.full(path), follow_symlinks=False)

    # -- the main thread

    def add(self, entry: Entry, content: bytes | None = None) -> None:
        """Stage one entry; `content` replaces a regular file's data (rewritten files)."""
        path, t = entry.path, entry.type
        if "\n" in entry.name:
            raise DockerifyError(f"{display(path)}: a name with a newline cannot be put on the card")
        self.entries += 1
        submit = self._writer.submit
        if t is FileType.DIR:
            submit(self._make_dir, path)
            self._record(entry)
            return
        submit(self._clear, path)
        full = self.full(path)
        if t is FileType.REG:
            f = _File()
            submit(f.open, full)
            if content is not None:
                submit(f.write, content, 0)
                submit(f.close, len(content))
            else:
                for offset, data in entry.chunks():
                    submit(f.write, data, offset)
                submit(f.close, entry.size)
        elif t is FileType.HARDLINK:
            submit(self._link, path, entry.linkname)
            return  # same inode: its metadata comes with the first name
        elif t is FileType.SYMLINK:
            submit(os.symlink, entry.linkname, full)
        elif t is FileType.FIFO:
            submit(os.mkfifo, full, 0o600)
        # Devices and sockets are made by the helper under fakeroot.
        self._record(entry)

    def _record(self, entry: Entry) -> None:
        xattrs = tuple(sorted(entry.xattrs.items()))
        if _big_xattrs(entry.xattrs):
            self.big_xattrs.append(entry.path)
        self._batch.append(
            (
                entry.path,
                _KIND[entry.type],
                entry.mode & 0o7777,
                entry.uid,
                entry.gid,
                max(entry.mtime, 0),
                entry.devmajor,
                entry.devminor,
                xattrs,
            )
        )
        if len(self._batch) >= _BATCH:
            self.flush()

    def flush(self) -> None:
        if self._batch:
            pickle.dump(self._batch, self.plan, protocol=pickle.HIGHEST_PROTOCOL)
            self._batch = []


# ---------------------------------------------------------------- sizes


@dataclass
class TreeUsage:
    """What a staged tree needs from a filesystem of a given block size, metadata apart."""

    data_blocks: int = 0
    inodes: int = 0
    bytes: int = 0


def measure_tree(root: Path, block_size: int, inline_data: bool, big_xattrs: int) -> TreeUsage:
    usage = TreeUsage()
    seen: set[int] = set()
    bs = block_size

    def blocks(n: int) -> int:
        return -(-n // bs)

    for dirpath, dirnames, filenames in os.walk(os.fsencode(root)):
        names = dirnames + filenames
        usage.inodes += 1
        dirent_bytes = 24 + sum(8 + -(-len(n) // 4) * 4 for n in names)
        if not (inline_data and dirent_bytes <= 56):
            nb = blocks(dirent_bytes * 5 // 4)  # slack for split directory blocks
            usage.data_blocks += nb + (1 if nb > 1 else 0)  # htree root
        for name in filenames:
            st = os.lstat(os.path.join(dirpath, name))
            if st.st_ino in seen:
                continue
            if st.st_nlink > 1:
                seen.add(st.st_ino)
            usage.inodes += 1
            if stat.S_ISREG(st.st_mode):
                usage.bytes += st.st_size
                if inline_data and st.st_size <= 60:
                    continue
                allocated = min(st.st_blocks * 512, -(-st.st_size // 512) * 512)
                nb = blocks(allocated)
                # Block maps (ext2/3) and deep extent trees need index blocks too.
                usage.data_blocks += nb + (nb // (bs // 4) + 1 if nb > 12 else 0)
            elif stat.S_ISLNK(st.st_mode) and st.st_size >= 60:
                usage.data_blocks += 1
    usage.data_blocks += big_xattrs
    return usage


class RootUsage:
    """`measure_tree`'s figures worked out from the entries alone, without a staged tree: the
    same rules (a directory's entries with 25% slack and an htree root, a file's blocks as the
    staging filesystem would allocate them, hard links once; devices and sockets not counted, as
    the staging path makes those only after measuring) for the entries that end up on the root:
    all but those under the boot partition's prefix. That prefix is known only at the end (the
    image's /etc/fstab may say where the boot partition goes), so entries under `maybe` (where it
    is expected) are held as small records until `usage` is asked for."""

    def __init__(self, block_size: int, inline_data: bool, maybe: bytes, staging_block: int = 4096) -> None:
        self.bs = block_size
        self.inline = inline_data
        self.maybe = maybe
        self.fsb = staging_block
        self.total = TreeUsage()
        self.big = 0
        self.dirents: dict[bytes, int] = {}
        self.held: list[tuple[bytes, FileType, int, int, bool]] = []  # path, type, size, blocks, big

    def add(self, entry: Entry, size: int) -> None:
        t = entry.type
        blocks = 0
        if t is FileType.REG and not (self.inline and size <= 60):
            nb = -(-self._allocated(entry, size) // self.bs)
            blocks = nb + (nb // (self.bs // 4) + 1 if nb > 12 else 0)
        elif t is FileType.SYMLINK and len(entry.linkname) >= 60:
            blocks = 1
        big = t is not FileType.HARDLINK and _big_xattrs(entry.xattrs)
        record = (entry.path, t, size, blocks, big)
        if entry.path.startswith(self.maybe):
            self.held.append(record)
        else:
            self._count(record)

    def _allocated(self, entry: Entry, size: int) -> int:
        dense = -(-size // 512) * 512
        if entry.sparse is None:
            return dense
        fsb, blocks, last = self.fsb, 0, -1
        for off, length in entry.sparse:
            if length <= 0:
                continue
            a, b = max(off // fsb, last), -(-(off + length) // fsb)
            if b > a:
                blocks += b - a
                last = b
        return min(blocks * fsb, dense)

    def _count(self, record: tuple[bytes, FileType, int, int, bool]) -> None:
        path, t, size, blocks, big = record
        self.big += big
        if t is FileType.DIR:
            self.dirents.setdefault(path, 0)
        if path == b"." or t in (FileType.CHAR, FileType.BLOCK, FileType.SOCKET):
            return
        parent, _, name = path.rpartition(b"/")
        key = parent or b"."
        self.dirents[key] = self.dirents.get(key, 0) + 8 + -(-len(name) // 4) * 4
        if t in (FileType.REG, FileType.SYMLINK, FileType.FIFO):
            self.total.inodes += 1
            self.total.data_blocks += blocks
        if t is FileType.REG:
            self.total.bytes += size

    def usage(self, prefix: bytes) -> TreeUsage:
        """The root's figures when everything under `prefix` goes to the boot partition."""
        for record in self.held:
            if not record[0].startswith(prefix):
                self._count(record)
        self.held = []
        out = TreeUsage(self.total.data_blocks + self.big, self.total.inodes, self.total.bytes)
        for n in self.dirents.values():
            out.inodes += 1
            dirent_bytes = 24 + n
            if not (self.inline and dirent_bytes <= 56):
                nb = -(-(dirent_bytes * 5 // 4) // self.bs)
                out.data_blocks += nb + (1 if nb > 1 else 0)
        return out


def _big_xattrs(xattrs: dict[str, bytes]) -> bool:
    """Whether ext4 keeps these xattrs in a block of their own rather than in the inode."""
    if not xattrs:
        return False
    room = 256 - 128 - 32 - 4
    return sum(16 + -(-len(k) // 4) * 4 + -(-len(v) // 4) * 4 for k, v in xattrs.items()) > room


_DUMPE2FS = re.compile(rb"^(Block count|Free blocks|Inode count):\s+(\d+)", re.M)


def fs_metadata_blocks(spec: Ext4Spec, size: int, inodes: int, scratch: Path) -> int:
    """Blocks mke2fs uses before any file is added, for this geometry: made for real, on a sparse
    scratch file, and read back with dumpe2fs."""
    probe = scratch / "probe.ext"
    with open(probe, "wb") as f:
        f.truncate(size)
    try:
        run(["mke2fs", "-q", "-F", *spec.options(inodes), str(probe), f"{size // 1024}k"])
        out = run(["dumpe2fs", "-h", str(probe)]).stdout
    finally:
        probe.unlink(missing_ok=True)
    values = {k.decode(): int(v) for k, v in _DUMPE2FS.findall(out)}
    return values["Block count"] - values["Free blocks"]


def round_mib(n: int) -> int:
    return -(-n // MiB) * MiB


def min_inodes(usage: TreeUsage) -> int:
    return usage.inodes + usage.inodes // 20 + 64


def size_estimate(spec: Ext4Spec, usage: TreeUsage, scratch: Path) -> int:
    """The smallest partition size (whole MiB) that holds the tree with `min_inodes` inodes."""
    bs = spec.block_size
    inodes = min_inodes(usage)
    slack = usage.data_blocks // 100 + 64
    size = round_mib((usage.data_blocks + slack) * bs + inodes * spec.inode_size + 8 * MiB)
    for _ in range(6):
        meta = fs_metadata_blocks(spec, size, inodes, scratch)
        need = round_mib((usage.data_blocks + slack + meta) * bs)
        if need <= size:
            # Metadata grows with size (journal, group tables); try the smaller size once more.
            if (
                need < size
                and fs_metadata_blocks(spec, need, inodes, scratch) + usage.data_blocks + slack <= need // bs
            ):
                return need
            return size
        size = need
    return size


# ---------------------------------------------------------------- making it


@dataclass
class Ext4Result:
    size: int
    inodes: int
    attempts: int


def make_ext4(
    spec: Ext4Spec,
    staging: Path,
    plan_path: Path,
    image: Path,
    offset: int,
    sizes: list[int],
    inodes: int,
    skip: tuple[bytes, ...],
) -> Ext4Result:
    """Apply the plan under fakeroot and `mke2fs -d` the staging tree into `image` at `offset`,
    trying each of `sizes` in turn until the tree fits."""
    check_tool("mke2fs")
    attempts = []
    for size in sizes:
        attempts.append(
            {
                "truncate": (str(image), offset + size),
                "cmd": [
                    "mke2fs",
                    "-q",
                    "-F",
                    *spec.options(max(inodes, 0), (f"offset={offset}",)),
                    "-d",
                    str(staging),
                    str(image),
                    f"{size // 1024}k",
                ],
            }
        )
    # mke2fs's own times (superblock, lost+found, the journal); inode ctimes: see ext4times.py.
    env = {"E2FSPROGS_FAKE_TIME": str(spec.epoch)} if spec.epoch else {}
    if os.geteuid() == 0 and _apply_as_root(staging, plan_path, skip):
        # Root can give the staged files their owners, devices and xattrs for real: mke2fs then
        # runs at full speed, without fakeroot in between.
        try:
            index = run_attempts(attempts, env)
        except NoRoomError:
            raise NoRoom(sizes[-1]) from None
        return Ext4Result(sizes[index], inodes, index + 1)
    check_tool("fakeroot")
    header = {"root": str(staging), "skip": skip, "attempts": attempts, "env": env}
    header_path = plan_path.with_name(plan_path.name + ".header")
    with open(header_path, "wb") as f:
        pickle.dump(header, f, protocol=pickle.HIGHEST_PROTOCOL)
    package_parent = str(Path(__file__).resolve().parents[2])
    proc = run(
        [
            "fakeroot",
            "--",
            sys.executable,
            "-m",
            "dockerify.exporters.fakeroot_apply",
            str(header_path),
            str(plan_path),
        ],
        env={"PYTHONPATH": package_parent},
        check=False,
    )
    if proc.returncode == NO_ROOM:
        raise NoRoom(sizes[-1])
    if proc.returncode != 0:
        tail = (proc.stderr or b"").decode(errors="replace").strip().splitlines()[-3:]
        raise DockerifyError("making the root filesystem failed: " + "; ".join(tail))
    index = json.loads(proc.stdout)["attempt"]
    return Ext4Result(sizes[index], inodes, index + 1)


def direct_unsupported(spec: Ext4Spec) -> str | None:
    """Why the direct writer (ext4populate.py) cannot make this filesystem, or None. Checked
    again on the made filesystem's features; this spares reading the tree for nothing."""
    if spec.fs_type != "ext4":
        return f"{spec.fs_type} (no extents)"
    if spec.features is not None:
        unknown = sorted(set(spec.features) - SUPPORTED)
        if unknown:
            return "features " + ",".join(unknown)
        if "extent" not in spec.features and "extents" not in spec.features:
            return "no extents"
    if spec.inode_size < 256:
        return f"{spec.inode_size}-byte inodes"
    return None


def make_ext4_direct(
    spec: Ext4Spec,
    image: Path,
    offset: int,
    sizes: list[int],
    inodes: int,
    entries: Callable[[], Iterable[tuple[Entry, bytes | None]]],
) -> Ext4Result:
    """mke2fs the empty filesystem into `image` at `offset` with the options `make_ext4` uses,
    minus -d, then write `entries` into it directly; each of `sizes` in turn until the tree fits.
    Raises ext4populate.Unsupported for a layout the writer does not handle."""
    check_tool("mke2fs")
    env = {"E2FSPROGS_FAKE_TIME": str(spec.epoch)} if spec.epoch else {}
    for index, size in enumerate(sizes):
        with open(image, "r+b") as f:
            f.truncate(offset)  # zeros again after a try that did not fit
            f.truncate(offset + size)
        cmd = ["mke2fs", "-q", "-F", *spec.options(max(inodes, 0), (f"offset={offset}",))]
        run([*cmd, str(image), f"{size // 1024}k"], env=env)
        try:
            populate(str(image), offset, entries())
        except OutOfSpace as e:
            log.debug("root filesystem of %d MiB: out of %s; trying the next size", size >> 20, e)
            continue
        return Ext4Result(size, inodes, index + 1)
    raise NoRoom(sizes[-1])


def _apply_as_root(staging: Path, plan_path: Path, skip: tuple[bytes, ...]) -> bool:
    """Apply the plan for real; False when this filesystem refuses some xattr (the caller then
    goes through fakeroot, which re-applies everything over what was done here)."""
    try:
        apply_plan(str(staging), skip, str(plan_path))
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM, errno.EACCES, errno.E2BIG, errno.ENOSPC):
            log.debug("applying metadata for real failed (%s); using fakeroot", e)
            return False
        raise
    return True


class NoRoom(DockerifyError):
    def __init__(self, size: int) -> None:
        super().__init__(f"the root filesystem does not fit in {size >> 20} MiB")
        self.size = size


def iter_plan(plan_path: Path) -> Iterator[tuple[Any, ...]]:
    """The records of a plan (for tests and debugging)."""
    with open(plan_path, "rb") as f:
        while True:
            try:
                batch = pickle.load(f)
            except EOFError:
                return
            if isinstance(batch, list):
                yield from batch
