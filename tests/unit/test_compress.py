import gzip
import io
import os
import shutil
import subprocess

import pytest
import zstandard

from dockerify.oci.compress import ParallelGzipWriter, ZstdWriter

DATA = os.urandom(1 << 20) + b"dockerify " * 400_000 + bytes(3 << 20)


def _gzip(data: bytes, threads: int, step: int) -> bytes:
    out: list[bytes] = []
    w = ParallelGzipWriter(out.append, threads=threads)
    for i in range(0, len(data), step):
        w.write(data[i : i + step])
    w.close()
    return b"".join(out)


def test_gzip_round_trip_and_independent_of_threads_and_write_sizes() -> None:
    a = _gzip(DATA, 1, 1 << 20)
    b = _gzip(DATA, 4, 77_777)
    assert a == b
    assert gzip.decompress(a) == DATA


@pytest.mark.skipif(not shutil.which("gzip"), reason="gzip not installed")
def test_gzip_tool_accepts_it(tmp_path) -> None:
    path = tmp_path / "x.gz"
    path.write_bytes(_gzip(DATA, 2, 1 << 20))
    assert subprocess.run(["gzip", "-t", str(path)]).returncode == 0


def test_zstd_round_trip() -> None:
    out: list[bytes] = []
    w = ZstdWriter(out.append)
    w.write(DATA)
    w.close()
    assert zstandard.ZstdDecompressor().decompressobj().decompress(b"".join(out)) == DATA


def test_layer_reader_gzip_members_zstd_and_truncation() -> None:
    import io
    import threading

    from dockerify.errors import CorruptInput
    from dockerify.oci.compress import decompressing_reader

    gz = "application/vnd.oci.image.layer.v1.tar+gzip"
    zst = "application/vnd.oci.image.layer.v1.tar+zstd"
    assert decompressing_reader(io.BytesIO(gzip.compress(DATA)), gz).read() == DATA
    two_members = gzip.compress(DATA[:1000]) + gzip.compress(DATA[1000:])
    assert decompressing_reader(io.BytesIO(two_members), "by magic").read() == DATA
    assert decompressing_reader(io.BytesIO(zstandard.ZstdCompressor().compress(DATA)), zst).read() == DATA
    with pytest.raises(CorruptInput, match="ends early"):
        decompressing_reader(io.BytesIO(gzip.compress(DATA)[:-100]), gz).read()
    before = threading.active_count()
    reader = decompressing_reader(io.BytesIO(gzip.compress(DATA)), gz)
    reader.read(10)
    reader.close()  # abandoning a reader leaves no thread behind
    assert threading.active_count() == before


def test_a_layer_that_inflates_past_the_limit_is_refused_naming_it() -> None:
    from dockerify.limits import DecompressionLimit
    from dockerify.oci.compress import decompressing_reader

    blob = io.BytesIO(gzip.compress(bytes(4 << 20)))
    where = "oci:/x:v1: layer sha256:abc"
    with pytest.raises(DecompressionLimit) as err:
        with decompressing_reader(
            blob, "application/vnd.oci.image.layer.v1.tar+gzip", max_size=1 << 20, where=where
        ) as r:
            while r.read(1 << 16):
                pass
    assert err.value.message.startswith(f"{where}: decompressed data exceeds the limit of {1 << 20} bytes")
    blob.seek(0)
    with decompressing_reader(blob, "application/vnd.oci.image.layer.v1.tar+gzip", max_size=4 << 20) as r:
        assert len(r.read()) == 4 << 20  # exactly at the limit is fine
