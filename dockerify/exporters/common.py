"""What every exporter shares: outputs written under a temporary name and moved into place at the
end, compression chosen by name, the image's own settings, and warnings gathered so that nothing
is dropped silently yet the log is not flooded."""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import logging
import lzma
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockerify import umask
from dockerify.entry import Entry, FileType
from dockerify.errors import CorruptInput, DockerifyError
from dockerify.oci.compress import make_compressor
from dockerify.oci.select import Image
from dockerify.run import check_tool, run

log = logging.getLogger("dockerify")

CHUNK = 1 << 20
_ZEROS = bytes(CHUNK)

#: Output compressions, by the name's suffix.
SUFFIXES = {".gz": "gzip", ".tgz": "gzip", ".xz": "xz", ".txz": "xz", ".zst": "zstd", ".tzst": "zstd"}
COMPRESSIONS = ("gzip", "xz", "zstd", "none")


def compression_for(path: str, requested: str | None) -> str:
    """`requested` if given (`--compress`), else what the output name's suffix says."""
    if requested:
        return requested
    lower = path.lower()
    for suffix, kind in SUFFIXES.items():
        if lower.endswith(suffix):
            return kind
    return "none"


@dataclass
class Warnings:
    """Collects what could not be represented, reported once per kind with a count and examples."""

    where: str
    _kinds: dict[str, list[str]] = field(default_factory=dict)
    _counts: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, example: str) -> None:
        self._counts[kind] = self._counts.get(kind, 0) + 1
        examples = self._kinds.setdefault(kind, [])
        if len(examples) < 3:
            examples.append(example)

    def report(self) -> list[str]:
        lines = []
        for kind, examples in self._kinds.items():
            n = self._counts[kind]
            more = f" and {n - len(examples)} more" if n > len(examples) else ""
            lines.append(f"{self.where}: {kind}: {', '.join(examples)}{more}")
        for line in lines:
            log.warning("warning: %s", line)
        return lines

    def __len__(self) -> int:
        return sum(self._counts.values())


def display(path: bytes) -> str:
    return "/" if path == b"." else "/" + path.decode("utf-8", "replace")


# ---------------------------------------------------------------- outputs


def _temp_name(target: Path, kind: str) -> Path:
    parent = target.parent
    if not parent.is_dir():
        raise DockerifyError(f"{target}: directory {parent} does not exist")
    fd, name = umask.mkstemp(prefix=f".{target.name}.", suffix=f".{kind}", dir=parent)
    os.close(fd)
    return Path(name)


@contextlib.contextmanager
def atomic_file(target: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary file next to `target`, renamed onto it on success and removed on any error."""
    out = Path(target)
    if out.is_dir():
        raise DockerifyError(f"{out}: is a directory", hint="name the output file, e.g. -o card.img")
    tmp = _temp_name(out, "part")
    try:
        yield tmp
        os.chmod(tmp, 0o644 & ~_umask())
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary directory next to `target`, moved onto it on success (`target` must not exist or
    be empty) and removed on any error."""
    out = Path(target)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DockerifyError(
            f"{out}: already exists and is not an empty directory",
            hint="remove it or name a new directory",
        )
    if not out.parent.is_dir():
        raise DockerifyError(f"{out}: directory {out.parent} does not exist")
    tmp = Path(umask.mkdtemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            out.rmdir()
        os.rename(tmp, out)
    except BaseException:
        remove_tree(tmp)
        raise


def remove_tree(path: Path) -> None:
    """Remove a tree we wrote, even where its modes deny writing (read-only directories)."""
    if not os.path.lexists(path):
        return

    def fix(func: Callable[..., Any], name: str, _exc: object) -> None:
        parent = os.path.dirname(name)
        with contextlib.suppress(OSError):
            os.chmod(parent, 0o700)
        with contextlib.suppress(OSError):
            if os.path.isdir(name) and not os.path.islink(name):
                os.chmod(name, 0o700)
        func(name)

    if path.is_dir() and not path.is_symlink():
        for root, dirs, _files in os.walk(path):
            for d in dirs:
                full = os.path.join(root, d)
                if not os.path.islink(full):
                    with contextlib.suppress(OSError):
                        os.chmod(full, 0o700)
        with contextlib.suppress(OSError):
            os.chmod(path, 0o700)
        shutil.rmtree(path, onerror=fix)
    else:
        path.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def scratch_dir(prefix: str = "dockerify-") -> Iterator[Path]:
    """A temporary work directory in $TMPDIR (on a filesystem with symlinks and FIFOs, unlike the
    FAT stick an SD-card image may be written to), removed whatever happens."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield tmp
    finally:
        remove_tree(tmp)


# ---------------------------------------------------------------- compression


def data_regions(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """(offset, length) of the data of a possibly sparse file, by SEEK_DATA/SEEK_HOLE."""
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:
                return
            raise
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        yield start, end - start
        pos = end


def read_dense(path: Path) -> Iterator[bytes]:
    """A file's whole content in chunks, holes given as zeros without reading them."""
    with open(path, "rb", buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        pos = 0
        for start, length in data_regions(f.fileno(), size):
            while pos < start:
                n = min(CHUNK, start - pos)
                yield _ZEROS[:n]
                pos += n
            end = start + length
            while pos < end:
                data = os.pread(f.fileno(), min(CHUNK, end - pos), pos)
                if not data:
                    raise DockerifyError(f"{path}: shrank while reading")
                yield data
                pos += len(data)
        while pos < size:
            n = min(CHUNK, size - pos)
            yield _ZEROS[:n]
            pos += n


def compress_file(src: Path, dst: Path, kind: str, *, xz_check: str = "crc64", fast: bool = False) -> None:
    """Compress `src` into `dst` reproducibly. gzip and zstd run on all cores in-process (gzip with
    ISA-L's deflate when `fast`); xz uses `xz -T0` when it is installed (much faster), else
    Python's lzma."""
    if kind == "none":
        os.replace(src, dst)
        return
    if kind == "xz" and shutil.which("xz"):
        check_tool("xz")
        with open(dst, "wb") as out:
            out.truncate(0)
        tmp_out = Path(str(src) + ".xz")
        run(["xz", "-T0", "-6", f"--check={xz_check}", "-k", "-f", "-q", str(src)])
        os.replace(tmp_out, dst)
        return
    with open(dst, "wb") as out:
        if kind == "xz":
            check = {"crc32": lzma.CHECK_CRC32, "crc64": lzma.CHECK_CRC64}[xz_check]
            comp = lzma.LZMACompressor(format=lzma.FORMAT_XZ, check=check, preset=6)
            for data in read_dense(src):
                out.write(comp.compress(data))
            out.write(comp.flush())
            return
        writer = make_compressor(kind, out.write, fast=fast)
        for data in read_dense(src):
            writer.write(data)
        writer.close()


class StreamCompressor:
    """A compressing sink for a stream written once, front to back (rootfs tarballs)."""

    def __init__(self, kind: str, write: Callable[[bytes], object]) -> None:
        self.kind = kind
        if kind == "xz":
            self._lzma: lzma.LZMACompressor | None = lzma.LZMACompressor(
                format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, preset=6
            )
            self._write = write
        else:
            self._lzma = None
            self._inner = make_compressor(kind, write)

    def write(self, data: bytes) -> None:
        if self._lzma is not None:
            out = self._lzma.compress(data)
            if out:
                self._write(out)
        else:
            self._inner.write(data)

    def close(self) -> None:
        if self._lzma is not None:
            self._write(self._lzma.flush())
        else:
            self._inner.close()


# ---------------------------------------------------------------- image settings


@dataclass(frozen=True)
class RunConfig:
    """The parts of an image config that say how to run it."""

    env: tuple[str, ...]
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    workdir: str
    user: str
    exposed: tuple[str, ...]
    created: int


def run_config(image: Image) -> RunConfig:
    cfg: dict[str, Any] = image.config.get("config") or {}
    created = 0
    text = image.config.get("created")
    if isinstance(text, str):
        with contextlib.suppress(ValueError):
            created = int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())
    return RunConfig(
        env=tuple(cfg.get("Env") or ()),
        entrypoint=tuple(cfg.get("Entrypoint") or ()),
        cmd=tuple(cfg.get("Cmd") or ()),
        workdir=cfg.get("WorkingDir") or "",
        user=cfg.get("User") or "",
        exposed=tuple(sorted((cfg.get("ExposedPorts") or {}).keys())),
        created=max(created, 0),
    )


def command_line(
    config: RunConfig, entrypoint: tuple[str, ...] | None, cmd: tuple[str, ...] | None
) -> list[str]:
    """Entrypoint + Cmd combined as OCI runtimes do; `--entrypoint` alone clears the image's Cmd
    (as `docker run --entrypoint` does), `--cmd` replaces it."""
    ep = list(config.entrypoint)
    args = list(config.cmd)
    if entrypoint is not None:
        ep = list(entrypoint)
        if cmd is None:
            args = []
    if cmd is not None:
        args = list(cmd)
    return ep + args


def is_file(entry: Entry) -> bool:
    return entry.type is FileType.REG


def make_parents(root: bytes, known: set[bytes], path: bytes, mode: int) -> None:
    """Create the missing parent directories of `path` under the staging root `root`.

    Layers may name a file before (or without) its directory; a parent that exists as something
    other than a directory means the layers would write through it, which is refused."""
    parent = path.rpartition(b"/")[0] or b"."
    if parent in known:
        return
    make_parents(root, known, parent, mode)
    full = root if parent == b"." else os.path.join(root, parent)
    try:
        st = os.lstat(full)
    except FileNotFoundError:
        os.mkdir(full, mode)
    else:
        if not stat.S_ISDIR(st.st_mode):
            raise CorruptInput(
                f"{display(path)} would be written through {display(parent)}, which is not a directory",
                hint="the image's layers are inconsistent (a file replaced by a symlink?)",
            )
    known.add(parent)
