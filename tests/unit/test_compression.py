"""compression.py against files made by the real gzip, xz, zstd and bzip2 tools."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import tempfile
import time
import zipfile
from pathlib import Path

import pytest

from dockerify.entry import CHUNK
from dockerify.errors import CorruptInput
from dockerify.sources import compression
from dockerify.sources.compression import detect, open_disk_image, open_stream
from tests.fixtures import require

TOOLS = {
    "gzip": ["gzip", "-c"],
    "xz": ["xz", "-c", "-T1"],
    "zstd": ["zstd", "-q", "-c"],
    "bzip2": ["bzip2", "-c"],
}
FORMATS = list(TOOLS)
BIG = 1 << 40


def compress(fmt: str, data: bytes, *extra: str) -> bytes:
    require(shutil.which(TOOLS[fmt][0]), f"{TOOLS[fmt][0]} is not installed")
    return subprocess.run([*TOOLS[fmt], *extra], input=data, capture_output=True, check=True).stdout


def sample(n: int = 3 << 20) -> bytes:
    """Half random (incompressible) and half repetitive: exercises many decoder paths."""
    rnd = os.urandom(n // 2)
    return rnd + (b"dockerify " * (n // 20 + 1))[: n - len(rnd)]


def write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def read_stream(path: str, max_size: int = BIG, size: int = CHUNK) -> bytes:
    out = bytearray()
    with open_stream(path, max_size) as stream:
        while data := stream.read(size):
            out += data
    return bytes(out)


# --- detect -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_detect_real_tool_output(fmt: str) -> None:
    assert detect(compress(fmt, b"hello")[:8]) == fmt


def test_detect_zip_plain_and_skippable_zstd(tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as zf:
        zf.writestr("x", b"x")
    assert detect((tmp_path / "a.zip").read_bytes()[:8]) == "zip"
    assert detect(b"\x5f\x2a\x4d\x18\x00\x00\x00\x00") == "zstd"  # a skippable frame
    assert detect(b"\0" * 8) == "none"
    assert detect(b"BZh0xxxx") == "none"  # block size 0 is not bzip2
    assert detect(b"") == "none"


# --- streams ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_stream_roundtrip(tmp_path: Path, fmt: str) -> None:
    data = sample()
    path = write(tmp_path, "d", compress(fmt, data))
    assert read_stream(path) == data
    assert read_stream(path, size=4097) == data  # odd read sizes go through the buffer


@pytest.mark.parametrize("fmt", FORMATS)
def test_stream_concatenated_members(tmp_path: Path, fmt: str) -> None:
    a, b = sample(1 << 20), b"second member " * 1000
    path = write(tmp_path, "d", compress(fmt, a) + compress(fmt, b))
    assert read_stream(path) == a + b


@pytest.mark.parametrize("fmt", FORMATS)
def test_stream_zero_padding_is_accepted(tmp_path: Path, fmt: str) -> None:
    data = sample(100000)
    path = write(tmp_path, "d", compress(fmt, data) + bytes(4096))
    assert read_stream(path) == data


@pytest.mark.parametrize("fmt", FORMATS)
def test_stream_trailing_garbage(tmp_path: Path, fmt: str) -> None:
    packed = compress(fmt, sample(100000))
    path = write(tmp_path, "d", packed + b"\0\0garbage")
    with pytest.raises(CorruptInput) as err:
        read_stream(path)
    assert str(err.value) == f"{path}: trailing garbage after {fmt} data at byte {len(packed) + 2}"


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("keep", [0.5, 0.99])
def test_stream_truncated(tmp_path: Path, fmt: str, keep: float) -> None:
    packed = compress(fmt, sample())
    path = write(tmp_path, "d", packed[: int(len(packed) * keep)])
    with pytest.raises(CorruptInput) as err:
        read_stream(path)
    assert str(err.value).startswith(f"{path}: truncated {fmt} data")


@pytest.mark.parametrize("fmt", FORMATS)
def test_stream_corrupt_names_the_file(tmp_path: Path, fmt: str) -> None:
    packed = bytearray(compress(fmt, b"abcdefgh" * 100000))
    for i in range(len(packed) // 2, len(packed) // 2 + 16):
        packed[i] ^= 0x55
    path = write(tmp_path, "d", bytes(packed))
    with pytest.raises(CorruptInput) as err:
        read_stream(path)
    assert str(err.value).startswith(f"{path}: ")


def test_stream_gzip_header_only_is_truncated(tmp_path: Path) -> None:
    path = write(tmp_path, "d", gzip.compress(b"x" * 1000)[:10])
    with pytest.raises(CorruptInput, match="truncated gzip data"):
        read_stream(path)


@pytest.mark.parametrize("fmt", FORMATS)
def test_stream_bomb(tmp_path: Path, fmt: str) -> None:
    path = write(tmp_path, "d", compress(fmt, bytes(8 << 20)))
    with pytest.raises(CorruptInput) as err:
        read_stream(path, max_size=1 << 20)
    assert str(err.value) == (
        f"{path}: decompressed data exceeds the limit of {1 << 20} bytes (a decompression bomb?)"
    )
    assert err.value.hint == "raise it with --max-size"
    assert read_stream(path, max_size=8 << 20) == bytes(8 << 20)  # exactly at the limit is fine


@pytest.mark.parametrize("fmt", FORMATS)
def test_decoders_produce_bounded_chunks(tmp_path: Path, fmt: str) -> None:
    # 16 MiB of zeros packs into a few KiB; no single piece of output may exceed CHUNK.
    path = write(tmp_path, "d", compress(fmt, bytes(16 << 20)))
    with open(path, "rb") as src:
        sizes = [len(c) for c in compression._decompress_chunks(fmt, src, path)]
    assert sum(sizes) == 16 << 20
    assert max(sizes) <= CHUNK


def test_stream_zstd_skippable_frames(tmp_path: Path) -> None:
    skippable = b"\x50\x2a\x4d\x18" + (5).to_bytes(4, "little") + b"12345"
    data = sample(200000)
    path = write(tmp_path, "d", skippable + compress("zstd", data) + skippable)
    assert read_stream(path) == data


def test_stream_zstd_with_checksum_and_content_size_flags(tmp_path: Path) -> None:
    data = sample(500000)
    for flags in (["--check"], ["--no-check"], ["--no-content-size"], ["-19", "--long=24"]):
        path = write(tmp_path, "d", compress("zstd", data, *flags))
        assert read_stream(path) == data, flags


def test_stream_zstd_bad_checksum(tmp_path: Path) -> None:
    packed = bytearray(compress("zstd", b"abc" * 1000, "--check"))
    packed[-1] ^= 0xFF  # the last 4 bytes are the content checksum
    path = write(tmp_path, "d", bytes(packed))
    with pytest.raises(CorruptInput, match=f"^{path}: corrupt zstd data"):
        read_stream(path)


def test_stream_plain_file(tmp_path: Path) -> None:
    path = write(tmp_path, "d", b"plain data")
    assert read_stream(path, max_size=1) == b"plain data"  # no decompression, no limit


def test_stream_zip_member(tmp_path: Path) -> None:
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("README.txt", b"read me")
        zf.writestr("disk.IMG", b"image" * 1000)
    assert read_stream(str(path)) == b"image" * 1000


def test_zstd_throughput(tmp_path: Path) -> None:
    block = os.urandom(1 << 16)
    data = b"".join(block[i:] + block[:i] for i in range(0, 32768, 16))  # 128 MiB with long matches
    path = write(tmp_path, "d", compress("zstd", data, "-1", "-T0"))
    del data
    best = 0.0
    for _ in range(2):
        start = time.perf_counter()
        total = 0
        with open_stream(path, BIG) as stream:
            while chunk := stream.read(CHUNK):
                total += len(chunk)
        best = max(best, total / (time.perf_counter() - start))
    assert total == 128 << 20
    assert best >= 200e6, f"{best / 1e6:.0f} MB/s"


# --- disk images -------------------------------------------------------------------------------------


def image_data() -> bytes:
    """32 MiB, mostly zeros, with data at both ends and in the middle (an odd-sized tail)."""
    return b"MBR!" + bytes(16 << 20) + os.urandom(70000) + bytes(16 << 20) + b"end"


@pytest.fixture
def private_tmpdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    return tmp


def test_disk_image_raw_is_the_file_itself(tmp_path: Path, private_tmpdir: Path) -> None:
    path = write(tmp_path, "disk.img", b"raw image" * 100)
    with open_disk_image(path, 1) as (f, size):
        assert size == 900
        assert os.fstat(f.fileno()).st_ino == os.stat(path).st_ino
        assert f.read() == b"raw image" * 100
    assert list(private_tmpdir.iterdir()) == []


@pytest.mark.parametrize("fmt", FORMATS)
def test_disk_image_sparse_copy(tmp_path: Path, private_tmpdir: Path, fmt: str) -> None:
    data = image_data()
    path = write(tmp_path, "disk.img.x", compress(fmt, data))
    with open_disk_image(path, BIG) as (f, size):
        assert size == len(data)
        assert list(private_tmpdir.iterdir()) == []  # anonymous: unlinked from the start
        f.seek(0)
        assert f.read() == data
        f.seek(size - 3)
        assert f.read(3) == b"end"
        allocated = os.fstat(f.fileno()).st_blocks * 512
        assert allocated < size // 8, f"{allocated} bytes allocated for {size}"
    assert list(private_tmpdir.iterdir()) == []


def test_disk_image_trailing_hole(tmp_path: Path, private_tmpdir: Path) -> None:
    data = b"x" * 1000 + bytes(3 << 20)
    path = write(tmp_path, "disk.img.gz", gzip.compress(data))
    with open_disk_image(path, BIG) as (f, size):
        assert size == len(data) == os.fstat(f.fileno()).st_size
        assert f.read() == data


def test_disk_image_bomb(tmp_path: Path, private_tmpdir: Path) -> None:
    path = write(tmp_path, "disk.img.gz", gzip.compress(bytes(4 << 20)))
    with pytest.raises(CorruptInput, match="exceeds the limit of 1048576 bytes"):
        with open_disk_image(path, 1 << 20):
            pass
    assert list(private_tmpdir.iterdir()) == []


def test_disk_image_zip_prefers_img_member(tmp_path: Path, private_tmpdir: Path) -> None:
    data = image_data()
    path = tmp_path / "image.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("sha256sum.txt", b"abc  disk.img\n")
        zf.writestr("raspios.img", data)
    with open_disk_image(str(path), BIG) as (f, size):
        assert size == len(data)
        assert f.read() == data


def test_disk_image_zip_first_member_without_img(tmp_path: Path, private_tmpdir: Path) -> None:
    path = tmp_path / "image.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("dir/", b"")
        zf.writestr("card.bin", b"first")
        zf.writestr("other.bin", b"second")
    with open_disk_image(str(path), BIG) as (f, size):
        assert (f.read(), size) == (b"first", 5)


def test_disk_image_empty_zip(tmp_path: Path, private_tmpdir: Path) -> None:
    path = tmp_path / "empty.zip"
    with zipfile.ZipFile(path, "w"):
        pass
    with pytest.raises(CorruptInput, match=f"^{path}: the zip archive has no members"):
        with open_disk_image(str(path), BIG):
            pass


def test_disk_image_zip_bomb_and_crc(tmp_path: Path, private_tmpdir: Path) -> None:
    path = tmp_path / "bomb.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.img", bytes(4 << 20))
    with pytest.raises(CorruptInput, match="exceeds the limit"):
        with open_disk_image(str(path), 1 << 20):
            pass
    stored = tmp_path / "stored.zip"
    with zipfile.ZipFile(stored, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("a.img", b"A" * 10000)
    raw = bytearray(stored.read_bytes())
    raw[raw.index(b"A" * 100) + 50] = ord("B")  # damages the content, not the structure
    stored.write_bytes(bytes(raw))
    with pytest.raises(CorruptInput, match=f"^{stored}: corrupt zip data"):
        with open_disk_image(str(stored), BIG):
            pass


@pytest.mark.parametrize(
    ("head", "fmt"),
    [
        (b"\x1f\x9d\x90", "compress"),
        (b"LZIP\x01\x0c", "lzip"),
        (b"\x04\x22\x4d\x18\x64\x40", "lz4"),
        (b"\x02\x21\x4c\x18", "lz4"),
        (b"\x89LZO\x00\r\n\x1a\n\x10", "lzop"),
        (b"\x1f\x8b\x08", "gzip"),
    ],
)
def test_detect_more_magics(head: bytes, fmt: str) -> None:
    assert detect(head) == fmt


@pytest.mark.parametrize(("after", "fmt"), [(b"\x04\x22\x4d\x18", "lz4"), (b"\x28\xb5\x2f\xfd", "zstd")])
def test_skippable_frames_shared_by_lz4_and_zstd(after: bytes, fmt: str) -> None:
    """0x184D2A50..5F start skippable frames in both formats: the frame after them decides."""
    import io

    frames = b"".join(
        bytes([0x50 + i]) + b"\x2a\x4d\x18" + (100).to_bytes(4, "little") + bytes(100) for i in range(3)
    )
    data = frames + after + bytes(20)
    assert compression.sniff(io.BytesIO(data)) == fmt  # past a 16-byte head: read from the file
    assert detect(data) == fmt
