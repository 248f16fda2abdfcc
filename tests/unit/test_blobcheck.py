"""oci/blobcheck.py, the one read path of a blob against its descriptor: bounded, counted and
hashed the same way for a layout's file and a registry's response."""

from __future__ import annotations

import hashlib
import io

import pytest

from dockerify.errors import CorruptInput
from dockerify.oci.blobcheck import BlobCheck, copy_checked, read_checked

DATA = bytes(range(256)) * 4096 * 3  # 3 MiB: several blocks
DIGEST = "sha256:" + hashlib.sha256(DATA).hexdigest()


class Endless:
    """A source that never ends, recording how much each read asked for."""

    def __init__(self) -> None:
        self.asked: list[int] = []

    def read(self, n: int) -> bytes:
        self.asked.append(n)
        return b"x" * n


def test_a_whole_blob_reads_and_copies() -> None:
    assert read_checked(io.BytesIO(DATA).read, BlobCheck("blob", DIGEST, len(DATA))) == DATA
    out = io.BytesIO()
    told: list[int] = []
    copy_checked(io.BytesIO(DATA).read, out.write, BlobCheck("blob", DIGEST, len(DATA)), told.append)
    assert out.getvalue() == DATA and sum(told) == len(DATA)


def test_a_read_into_memory_asks_for_one_byte_past_the_size_at_most() -> None:
    src = Endless()
    with pytest.raises(CorruptInput, match="more than the 100 bytes"):
        read_checked(src.read, BlobCheck("where: blob", DIGEST, 100))
    assert sum(src.asked) == 101


def test_a_stream_writes_nothing_past_the_size() -> None:
    out = io.BytesIO()
    with pytest.raises(CorruptInput, match="more than"):
        copy_checked(io.BytesIO(DATA + b"!").read, out.write, BlobCheck("blob", DIGEST, len(DATA)))
    assert len(out.getvalue()) <= len(DATA)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (DATA[:-1], rf"{len(DATA) - 1} bytes, its descriptor gives {len(DATA)}"),
        (b"y" + DATA[1:], "digest mismatch"),
    ],
    ids=["short", "altered"],
)
def test_a_short_or_altered_blob_is_refused_with_its_name(data: bytes, message: str) -> None:
    with pytest.raises(CorruptInput, match=message) as e:
        read_checked(io.BytesIO(data).read, BlobCheck(f"oci:/x: blob {DIGEST}", DIGEST, len(DATA), "a hint"))
    assert str(e.value).startswith(f"oci:/x: blob {DIGEST}: ") and e.value.hint == "a hint"


def test_a_blob_past_the_limit_is_refused_before_any_read() -> None:
    with pytest.raises(CorruptInput, match="too large for a metadata blob"):
        BlobCheck("blob", DIGEST, 5 << 20, limit=4 << 20)
    with pytest.raises(CorruptInput, match="invalid digest"):
        BlobCheck("blob", "sha256:../../etc/passwd", 1)


def test_restart_forgets_what_was_read() -> None:
    check = BlobCheck("blob", DIGEST, len(DATA))
    check.update(b"junk")
    check.restart()
    check.update(DATA)
    check.finish()
