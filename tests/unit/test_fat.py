"""fat.py against images made by mkfs.vfat and populated by mtools, with mtools and blkid as oracles."""

from __future__ import annotations

import io
import os
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from dockerify.entry import CHUNK, Entry, FileType, path_key
from dockerify.errors import CorruptInput
from dockerify.sources.fat import FatReader
from tests.fixtures import require

SIZES_KIB = {12: 3072, 16: 20480, 32: 40960}
VOLUME_ID = "5A2B3C4D"
MTIME_BASE = 1_600_000_000  # 2020-09-13, an even second: FAT keeps 2-second resolution

# (path, content); directories end with "/".
TREE: list[tuple[str, bytes]] = [
    ("readme.txt", b"hello\n"),
    ("big.bin", os.urandom(1_500_000)),  # > CHUNK: more than one piece, several cluster runs
    ("empty", b""),
    ("lower.txt", b"an 8.3 name stored upper case with the NT lower-case flags\n"),
    ("UPPER.TXT", b"plain 8.3\n"),
    ("MixedCase.Txt", b"needs a long name\n"),
    ("a.b.c.d", b"dots\n"),
    ("emptydir/", b""),
    ("sub/", b""),
    ("sub/Long File Name with spaces.txt", b"long\n"),
    ("sub/ünïcødé ☃.txt", b"unicode\n"),
    ("sub/zeta long name.txt", b"z\n"),
    ("sub/Alpha long.txt", b"a\n"),
    ("sub/deeper/", b""),
    ("sub/deeper/deepest/", b""),
    ("sub/deeper/deepest/f.txt", b"deep\n"),
    ("many/", b""),
    # Enough long names to need a directory of several clusters.
    *((f"many/a file with a rather long name number {i:03d}.dat", b"%d\n" % i) for i in range(120)),
]


def mtools_env() -> dict[str, str]:
    # UTC so that the FAT local times mtools writes equal the UTC times fat.py reads;
    # a UTF-8 locale so that mtools converts non-ASCII names.
    return {**os.environ, "TZ": "UTC", "LC_ALL": "C.UTF-8", "MTOOLS_SKIP_CHECK": "1"}


def run(*args: str) -> str:
    require(shutil.which(args[0]), f"{args[0]} is not installed (dosfstools / mtools)")
    proc = subprocess.run(args, capture_output=True, text=True, env=mtools_env())
    assert proc.returncode == 0, f"{' '.join(args)}: {proc.stderr}"
    return proc.stdout


def make_source(root: Path) -> None:
    root.mkdir()
    for i, (rel, content) in enumerate(TREE):
        path = root / rel
        if rel.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.write_bytes(content)
            os.utime(path, (MTIME_BASE + 10 * i, MTIME_BASE + 10 * i))


def make_fat(tmp: Path, fat_type: int, label: str | None = "MYLABEL", name: str | None = None) -> Path:
    img = tmp / (name or f"fat{fat_type}.img")
    src = tmp / "src"
    if not src.exists():
        make_source(src)
    label_args = ["-n", label] if label else []
    extra = ["-s", "1"] if fat_type == 32 else []
    run(
        "mkfs.vfat",
        "-C",
        "-F",
        str(fat_type),
        "-i",
        VOLUME_ID,
        *label_args,
        *extra,
        str(img),
        str(SIZES_KIB[fat_type]),
    )
    run("mcopy", "-s", "-m", "-i", str(img), *sorted(str(p) for p in src.iterdir()), "::")
    return img


@pytest.fixture(scope="module", params=[12, 16, 32], ids=["fat12", "fat16", "fat32"])
def fat_image(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[int, Path]:
    tmp = tmp_path_factory.mktemp(f"fat{request.param}")
    return request.param, make_fat(tmp, request.param)


@pytest.fixture(scope="module")
def fat16(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return make_fat(tmp_path_factory.mktemp("fat16base"), 16).read_bytes()


def entries_of(image: bytes | Path) -> list[Entry]:
    data = image.read_bytes() if isinstance(image, Path) else image
    return list(FatReader(io.BytesIO(data), name="boot.img").entries())


def tree_of(entries: list[Entry]) -> dict[str, bytes | None]:
    return {e.name: (e.read_all() if e.type is FileType.REG else None) for e in entries}


def walk_dir(root: Path) -> dict[str, bytes | None]:
    out: dict[str, bytes | None] = {".": None}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for d in dirnames:
            out[os.path.normpath(os.path.join(rel, d))] = None
        for f in filenames:
            out[os.path.normpath(os.path.join(rel, f))] = (Path(dirpath) / f).read_bytes()
    return out


# --- real images --------------------------------------------------------------------------------------


def test_tree_matches_mtools_and_source(fat_image: tuple[int, Path], tmp_path: Path) -> None:
    fat_type, img = fat_image
    assert "0 files" not in run("fsck.vfat", "-n", str(img))
    entries = entries_of(img)
    extracted = tmp_path / "out"
    extracted.mkdir()
    run("mcopy", "-s", "-n", "-i", str(img), "::*", str(extracted))
    assert tree_of(entries) == walk_dir(extracted) == walk_dir(img.parent / "src")
    # Root first, then depth-first with siblings in byte order.
    assert [e.path for e in entries] == sorted((e.path for e in entries), key=path_key)
    assert entries[0].path == b"."


def test_names_as_linux_shows_them(fat_image: tuple[int, Path]) -> None:
    _, img = fat_image
    names = {e.path for e in entries_of(img)}
    assert b"lower.txt" in names  # 8.3 with NT lower-case flags
    assert b"UPPER.TXT" in names
    assert b"MixedCase.Txt" in names
    assert "sub/ünïcødé ☃.txt".encode() in names
    assert b"sub/Alpha long.txt" in names


def test_metadata(fat_image: tuple[int, Path]) -> None:
    _, img = fat_image
    by_path = {e.name: e for e in entries_of(img)}
    for i, (rel, content) in enumerate(TREE):
        entry = by_path[rel.rstrip("/")]
        assert (entry.uid, entry.gid, entry.mode) == (0, 0, 0o755)
        if rel.endswith("/"):
            assert (entry.type, entry.size) == (FileType.DIR, 0)
        else:
            assert (entry.type, entry.size) == (FileType.REG, len(content))
            assert entry.mtime == MTIME_BASE + 10 * i, rel
    assert (by_path["."].type, by_path["."].mode, by_path["."].mtime) == (FileType.DIR, 0o755, 0)


def test_info_matches_blkid(fat_image: tuple[int, Path]) -> None:
    fat_type, img = fat_image
    with open(img, "rb") as f:
        info = FatReader(f, name=img.name).info
    assert (info.fat_type, info.volume_id, info.label) == (fat_type, VOLUME_ID, "MYLABEL")
    assert info.size_bytes == img.stat().st_size
    assert info.oem_name == "mkfs.fat"
    assert info.cluster_size in (512, 1024, 2048, 4096)
    require(shutil.which("blkid"), "blkid (util-linux) is not installed")
    found = dict(line.split("=", 1) for line in run("blkid", "-p", "-o", "export", str(img)).split())
    assert found["UUID"] == f"{VOLUME_ID[:4]}-{VOLUME_ID[4:]}"
    assert found["LABEL"] == info.label
    assert found["VERSION"] == f"FAT{fat_type}"


def test_big_file_streams_in_bounded_chunks(fat_image: tuple[int, Path]) -> None:
    _, img = fat_image
    big = next(e for e in entries_of(img) if e.path == b"big.bin")
    pieces = list(big.chunks())
    assert all(len(data) <= CHUNK for _, data in pieces)
    assert [off for off, _ in pieces] == [sum(len(d) for _, d in pieces[:i]) for i in range(len(pieces))]
    assert b"".join(d for _, d in pieces) == dict(TREE)["big.bin"]


def test_no_label_is_empty(tmp_path: Path) -> None:
    with open(make_fat(tmp_path, 16, label=None), "rb") as f:
        assert FatReader(f).info.label == ""


def test_root_label_entry_wins(tmp_path: Path) -> None:
    img = make_fat(tmp_path, 16)
    run("mlabel", "-i", str(img), "::NEWLABEL")
    with open(img, "rb") as f:
        assert FatReader(f).info.label == "NEWLABEL"
    found = dict(line.split("=", 1) for line in run("blkid", "-p", "-o", "export", str(img)).split())
    assert found["LABEL"] == "NEWLABEL"


def test_label_from_boot_sector_when_the_root_has_none(fat16: bytes) -> None:
    data = bytearray(fat16)
    data[43:54] = b"BPB LABEL  "  # the BPB label differs; the root directory's label entry wins
    assert FatReader(io.BytesIO(bytes(data))).info.label == "MYLABEL"
    img = Fat16Image(bytes(data))
    img.data[img.dirent(b"MYLABEL    ")] = 0xE5  # delete the label entry
    assert FatReader(io.BytesIO(bytes(img.data))).info.label == "BPB LABEL"


def test_inside_a_larger_file(fat16: bytes) -> None:
    offset = 1 << 20
    disk = bytes(offset) + fat16 + b"\xff" * 4096
    reader = FatReader(io.BytesIO(disk), offset=offset, size=len(fat16), name="disk.img")
    assert tree_of(list(reader.entries())) == tree_of(entries_of(fat16))


def test_read_only_hidden_and_deleted_files(tmp_path: Path) -> None:
    img = make_fat(tmp_path, 16)
    run("mattrib", "-i", str(img), "+r", "::readme.txt")
    run("mattrib", "-i", str(img), "+h", "+s", "::UPPER.TXT")
    run("mdel", "-i", str(img), "::a.b.c.d")
    by_path = {e.name: e for e in entries_of(img)}
    assert by_path["readme.txt"].mode == 0o555  # Linux drops write bits of read-only files
    assert by_path["UPPER.TXT"].mode == 0o755  # hidden and system files are listed like others
    assert "a.b.c.d" not in by_path


def test_fragmented_file(tmp_path: Path) -> None:
    img = make_fat(tmp_path, 16)
    (tmp_path / "gap1").write_bytes(os.urandom(70_000))
    (tmp_path / "keep").write_bytes(os.urandom(5_000))
    (tmp_path / "gap2").write_bytes(os.urandom(30_000))
    frag = os.urandom(400_000)
    (tmp_path / "frag.bin").write_bytes(frag)
    for name in ("gap1", "keep", "gap2"):
        run("mcopy", "-i", str(img), str(tmp_path / name), "::")
    run("mdel", "-i", str(img), "::gap1", "::gap2")
    run("mcopy", "-i", str(img), str(tmp_path / "frag.bin"), "::")  # fills the freed holes first
    run("fsck.vfat", "-n", str(img))
    by_path = {e.name: e for e in entries_of(img)}
    assert by_path["frag.bin"].read_all() == frag
    assert by_path["keep"].size == 5_000


# --- hostile images -----------------------------------------------------------------------------------


class Fat16Image:
    """Byte-level surgery on a FAT16 image, located with the BPB fields of the Microsoft spec."""

    def __init__(self, data: bytes) -> None:
        self.data = bytearray(data)
        bps, spc, reserved, fats, root_entries = struct.unpack_from("<HBHBH", self.data, 11)
        (fat_sectors,) = struct.unpack_from("<H", self.data, 22)
        self.fat_offsets = [(reserved + i * fat_sectors) * bps for i in range(fats)]
        self.cluster_size = bps * spc

    def dirent(self, short_name: bytes) -> int:
        assert len(short_name) == 11
        pos = self.data.find(short_name)
        assert pos > 0 and pos % 32 == 0 and self.data.find(short_name, pos + 1) == -1
        return pos

    def first_cluster(self, short_name: bytes) -> int:
        return struct.unpack_from("<H", self.data, self.dirent(short_name) + 26)[0]

    def set_first_cluster(self, short_name: bytes, cluster: int) -> None:
        struct.pack_into("<H", self.data, self.dirent(short_name) + 26, cluster)

    def set_fat(self, cluster: int, value: int) -> None:
        for fat in self.fat_offsets:
            struct.pack_into("<H", self.data, fat + 2 * cluster, value)

    def entries(self) -> list[Entry]:
        return entries_of(bytes(self.data))


def fails(image: Fat16Image | bytes, pattern: str) -> None:
    with pytest.raises(CorruptInput, match=pattern):
        entries_of(bytes(image.data) if isinstance(image, Fat16Image) else image)


def test_reordered_cluster_chain(fat16: bytes) -> None:
    # big.bin is contiguous; make its chain visit clusters c, c+2, c+1, c+3, ...: three runs,
    # two of them one cluster long, with a one-cluster gap between the first two.
    img = Fat16Image(fat16)
    first = img.first_cluster(b"BIG     BIN")
    img.set_fat(first, first + 2)
    img.set_fat(first + 2, first + 1)
    img.set_fat(first + 1, first + 3)
    size, content = img.cluster_size, dict(TREE)["big.bin"]
    blocks = [content[i : i + size] for i in range(0, len(content), size)]
    blocks[1], blocks[2] = blocks[2], blocks[1]
    big = next(e for e in img.entries() if e.path == b"big.bin")
    assert big.read_all() == b"".join(blocks)


def test_cluster_chain_loop(fat16: bytes) -> None:
    img = Fat16Image(fat16)
    first = img.first_cluster(b"BIG     BIN")
    img.set_fat(first + 1, first)
    fails(img, r"^boot\.img: /big\.bin: cluster \d+ is used twice \(the cluster chain loops\)")


@pytest.mark.parametrize("aligned", [True, False])
def test_cluster_chain_loop_far_back(fat16: bytes, aligned: bool) -> None:
    # The chain runs 101 clusters, then jumps back 80: the second span collides with the first
    # at its first cluster, whether that cluster opens a whole byte of the used-cluster bitmap
    # (marked a byte at a time) or sits on its edge (marked one by one).
    img = Fat16Image(fat16)
    first = img.first_cluster(b"BIG     BIN")
    back = 16 + (-(first + 16)) % 8 + (0 if aligned else 3)
    assert ((first + back) % 8 == 0) == aligned
    img.set_fat(first + 100, first + back)
    fails(img, rf"^boot\.img: /big\.bin: cluster {first + back} is used twice \(the cluster chain loops\)")


def test_cluster_chain_too_short(fat16: bytes) -> None:
    img = Fat16Image(fat16)
    first = img.first_cluster(b"BIG     BIN")
    img.set_fat(first, 0xFFFF)
    need = -(-1_500_000 // img.cluster_size)
    fails(img, rf"^boot\.img: /big\.bin: cluster chain ends after 1 clusters, but the file needs {need}")


@pytest.mark.parametrize(
    ("value", "what"), [(0xFFF0, "cluster 65520"), (0, "a free cluster"), (1, "cluster 1")]
)
def test_cluster_out_of_range(fat16: bytes, value: int, what: str) -> None:
    img = Fat16Image(fat16)
    img.set_fat(img.first_cluster(b"BIG     BIN"), value)
    fails(img, rf"^boot\.img: /big\.bin: cluster chain entry 1 points to {what}, outside the data clusters")


def test_cross_linked_files(fat16: bytes) -> None:
    img = Fat16Image(fat16)
    img.set_first_cluster(b"README  TXT", img.first_cluster(b"BIG     BIN"))
    fails(img, r"^boot\.img: /readme\.txt: cluster \d+ is used twice \(it is cross-linked")


def test_file_without_clusters(fat16: bytes) -> None:
    img = Fat16Image(fat16)
    img.set_first_cluster(b"README  TXT", 0)
    fails(img, r"^boot\.img: /readme\.txt: cluster chain entry 0 points to a free cluster")


def test_directory_loop(fat16: bytes) -> None:
    img = Fat16Image(fat16)
    img.set_first_cluster(b"DEEPER     ", img.first_cluster(b"SUB        "))
    fails(img, r"^boot\.img: /sub/deeper: directory loop")


def test_subdirectory_pointing_at_root(fat16: bytes) -> None:
    img = Fat16Image(fat16)
    img.set_first_cluster(b"DEEPER     ", 0)
    fails(img, r"^boot\.img: /sub/deeper: directory loop")


def test_lfn_checksum_mismatch_falls_back_to_short_name(fat16: bytes) -> None:
    img = Fat16Image(fat16)
    pos = img.dirent(b"LONGFI~1TXT")
    img.data[pos : pos + 11] = b"LONGFX~1TXT"  # what a DOS tool renaming the file would leave
    names = {e.path for e in img.entries()}
    assert b"sub/LONGFX~1.TXT" in names
    assert b"sub/Long File Name with spaces.txt" not in names


def test_lfn_broken_sequence_falls_back_to_short_name(fat16: bytes) -> None:
    img = Fat16Image(fat16)
    pos = img.dirent(b"LONGFI~1TXT")
    img.data[pos - 32] = 0x07  # ordinal 1 -> 7: the sequence no longer counts down to 1
    assert b"sub/LONGFI~1.TXT" in {e.path for e in img.entries()}


def test_slash_in_long_name(fat16: bytes) -> None:
    img = Fat16Image(fat16)
    pos = img.dirent(b"LONGFI~1TXT") - 32  # the LFN slot with ordinal 1: the first 13 characters
    img.data[pos + 1 : pos + 5] = "..".encode("utf-16-le")
    img.data[pos + 5 : pos + 7] = "/".encode("utf-16-le")
    fails(img, r"^boot\.img: /sub: invalid file name '\.\./g File Name with spaces\.txt'")


@pytest.mark.parametrize(
    ("offset", "fmt", "value", "pattern"),
    [
        (11, "<H", 300, r"bytes per sector 300"),
        (11, "<H", 8192, r"bytes per sector 8192"),
        (13, "<B", 3, r"sectors per cluster 3"),
        (13, "<B", 0, r"sectors per cluster 0"),
        (16, "<B", 0, r"0 FATs"),
        (22, "<H", 1, r"the FAT has room for 256 entries"),
    ],
)
def test_bad_boot_sector(fat16: bytes, offset: int, fmt: str, value: int, pattern: str) -> None:
    data = bytearray(fat16)
    struct.pack_into(fmt, data, offset, value)
    with pytest.raises(CorruptInput, match=rf"^boot\.img: boot sector: .*{pattern}"):
        FatReader(io.BytesIO(bytes(data)), name="boot.img")


def test_truncated_image(fat16: bytes) -> None:
    with pytest.raises(
        CorruptInput, match=r"^boot\.img: the FAT filesystem is 20971520 bytes but only 10485760"
    ):
        FatReader(io.BytesIO(fat16[: 10 << 20]), name="boot.img")
    # With a size that claims more than the file holds, reads run into the end of the file instead.
    reader = FatReader(io.BytesIO(fat16[: 1 << 20]), size=len(fat16), name="boot.img")
    with pytest.raises(CorruptInput, match=r"hit the end of the image \(truncated\?\)"):
        for entry in reader.entries():
            entry.read_all()


def test_duplicate_names(fat16: bytes) -> None:
    img = Fat16Image(fat16)
    lower = img.dirent(b"LOWER   TXT")
    readme = img.dirent(b"README  TXT")
    img.data[readme : readme + 13] = img.data[lower : lower + 13]  # the 8.3 name and its case flags
    fails(img, r"^boot\.img: /: two directory entries are named 'lower\.txt'")


def test_used_bytes_matches_mtools_free_space(fat_image: tuple[int, Path]) -> None:
    """The progress estimate's count of used clusters (done per value, not per entry) against
    mtools' free space, and against next() entry by entry, with reserved FAT32 bits set."""
    fat_type, img = fat_image
    data = bytearray(img.read_bytes())
    reader = FatReader(io.BytesIO(bytes(data)), name="boot.img")
    geo = reader._geo
    found = re.search(r"([\d ]+) bytes free", run("mdir", "-i", str(img), "::"))
    assert found is not None
    free = int(found.group(1).replace(" ", ""))
    assert reader.used_bytes() == (geo.max_cluster - 1) * geo.cluster_size - free
    if fat_type == 32:
        # The top 4 bits of a FAT32 entry are reserved: a free entry stays free with them set.
        first_free = next(c for c in range(2, geo.max_cluster + 1) if reader._fat.next(c) == 0)
        struct.pack_into("<I", data, geo.fat_offset + 4 * first_free, 0xA0000000)
        marked = FatReader(io.BytesIO(bytes(data)), name="boot.img")
        assert marked.used_bytes() == reader.used_bytes()
    by_entry = sum(1 for c in range(2, geo.max_cluster + 1) if reader._fat.next(c))
    assert reader.used_bytes() == by_entry * geo.cluster_size
