"""The layer tar writer, judged by GNU tar and Python's tarfile."""

import io
import os
import subprocess
import tarfile

from dockerify.entry import Entry, FileType, bytes_reader
from dockerify.oci.tarwriter import END_OF_ARCHIVE, entry_blocks
from dockerify.sources.tarstream import tar_entries


def _archive(entries: list[Entry], mtime: int = 1_700_000_000) -> bytes:
    return b"".join(b for e in entries for b in entry_blocks(e, mtime=mtime)) + END_OF_ARCHIVE


def _sparse_entry() -> Entry:
    size = 5 * 1024 * 1024 + 3
    data = b"xyz"

    def read():
        yield 4096, b"A" * 4096
        yield size - 3, data

    return Entry(b"var/sparse", FileType.REG, size=size, sparse=((4096, 4096), (size - 3, 3)), reader=read)


SAMPLE = [
    Entry(b".", FileType.DIR, mode=0o755),
    Entry(b"bin", FileType.DIR, mode=0o755),
    Entry(
        b"bin/su",
        FileType.REG,
        mode=0o4755,
        size=5,
        reader=bytes_reader(b"hello"),
        xattrs={"security.capability": b"\x01\x00\x00\x02\x00\x20\x00\x00" + bytes(12), "user.a": b"b"},
    ),
    Entry(b"bin/su2", FileType.HARDLINK, mode=0o4755, linkname=b"bin/su"),
    Entry(b"caf\xc3\xa9", FileType.REG, mode=0o644, uid=100000, gid=3000000, size=0),
    Entry(b"latin1-\xe9", FileType.SYMLINK, mode=0o777, linkname=b"/" + b"x" * 150),
    Entry(b"d" * 120 + b"/long", FileType.FIFO, mode=0o600),
    Entry(b"dev-null", FileType.CHAR, mode=0o666, devmajor=1, devminor=3),
    Entry(b"loop0", FileType.BLOCK, mode=0o660, devmajor=7, devminor=0),
    Entry(b"tmp", FileType.DIR, mode=0o1777),
    _sparse_entry(),
]


def test_python_tarfile_reads_everything_back() -> None:
    # Content is read while streaming: a tar stream cannot go back.
    pairs = [(e, e.read_all()) for e in tar_entries(io.BytesIO(_archive(SAMPLE)), "test", check_links=True)]
    back = [e for e, _ in pairs]
    assert [e.path for e in back] == [e.path for e in SAMPLE]
    for want, (got, content) in zip(SAMPLE, pairs, strict=True):
        assert (
            got.type,
            got.mode,
            got.uid,
            got.gid,
            got.linkname,
            got.devmajor,
            got.devminor,
            got.xattrs,
        ) == (
            want.type,
            want.mode,
            want.uid,
            want.gid,
            want.linkname,
            want.devmajor,
            want.devminor,
            want.xattrs,
        )
        assert got.mtime == 1_700_000_000
        if want.type is FileType.REG:
            assert got.size == want.size
            assert content == want.read_all()
    sparse = back[-1]
    assert sparse.sparse == ((4096, 4096), (5 * 1024 * 1024, 3))


def test_gnu_tar_lists_and_extracts(tmp_path) -> None:
    path = tmp_path / "layer.tar"
    path.write_bytes(_archive(SAMPLE))
    listing = subprocess.run(["tar", "-tvf", str(path)], capture_output=True, check=True).stdout
    assert b"bin/su2 link to bin/su" in listing
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(["tar", "--xattrs", "--xattrs-include=*", "-xpf", str(path), "-C", str(out)], check=True)
    st = os.lstat(out / "bin/su")
    assert st.st_mode & 0o7777 == 0o4755 and st.st_nlink == 2
    assert os.getxattr(out / "bin/su", "user.a") == b"b"
    assert os.readlink(os.fsencode(out) + b"/latin1-\xe9") == b"/" + b"x" * 150
    sparse = out / "var/sparse"
    assert sparse.stat().st_size == 5 * 1024 * 1024 + 3
    assert sparse.stat().st_blocks * 512 < 1024 * 1024  # holes stayed holes
    assert sparse.read_bytes()[4096:8192] == b"A" * 4096


def test_reproducible_bytes() -> None:
    assert _archive(SAMPLE) == _archive(SAMPLE)
    assert tarfile.is_tarfile(io.BytesIO(_archive(SAMPLE)))
