"""partitions.py against tables written by the real sfdisk, with `sfdisk -J` as the oracle."""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from dockerify.errors import CorruptInput
from dockerify.sources.partitions import (
    PartitionTable,
    gpt_attrs_string,
    read_partition_table,
    sfdisk_script,
)
from tests.fixtures import require

MiB = 1 << 20
IMAGE_SIZE = 64 * MiB

DOS_SCRIPT = """\
label: dos
label-id: 0xC0FFEE42
unit: sectors

img1 : start=2048, size=8192, type=c, bootable
img2 : start=10240, size=40960, type=5
img3 : start=51200, size=20480, type=83
img5 : start=12288, size=4096, type=83
img6 : start=18432, size=4096, type=82, bootable
img7 : start=24576, size=8192, type=8e
img8 : start=34816, size=2048, type=83
img9 : start=38912, size=2048, type=83
img10 : start=43008, size=2048, type=b
img11 : start=47104, size=2048, type=83
"""

GPT_SCRIPT = """\
label: gpt
label-id: 5B4A3C2D-1E0F-4A1B-9C8D-7E6F5A4B3C2D
unit: sectors

img2 : start=2048, size=8192, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=0A1B2C3D-4E5F-4061-8273-94A5B6C7D8E9, name="EFI system", attrs="RequiredPartition LegacyBIOSBootable GUID:60,63"
img3 : start=10240, size=40960, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name="root ünïcødé \\x22q\\x22"
img4 : start=51200, size=4096, type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F, attrs="NoBlockIOProtocol"
"""


def sfdisk(*args: str, stdin: str | None = None) -> str:
    require(shutil.which("sfdisk"), "sfdisk (util-linux fdisk) is not installed")
    proc = subprocess.run(["sfdisk", *args], input=stdin, capture_output=True, text=True, check=True)
    return proc.stdout


def make_image(tmp_path: Path, script: str, name: str = "disk.img", size: int = IMAGE_SIZE) -> Path:
    path = tmp_path / name
    with open(path, "wb") as f:
        f.truncate(size)  # sparse: costs no disk space
    sfdisk("--no-reread", "--no-tell-kernel", "-q", str(path), stdin=script)
    return path


def read(path: Path) -> PartitionTable:
    with open(path, "rb") as f:
        return read_partition_table(f, os.path.getsize(path), path.name)


def oracle(path: Path) -> dict:
    return json.loads(sfdisk("-J", str(path)))["partitiontable"]


def number_of(node: str, path: Path) -> int:
    return int(node[len(str(path)) :].lstrip("p"))


# --- real tables --------------------------------------------------------------------------------------


def test_dos_with_logical_partitions(tmp_path: Path) -> None:
    path = make_image(tmp_path, DOS_SCRIPT)
    table, want = read(path), oracle(path)
    assert (
        (table.type, table.disk_id, table.sector_size)
        == ("dos", want["id"], 512)
        == ("dos", "0xc0ffee42", 512)
    )
    assert [p.number for p in table.partitions] == [1, 2, 3, 5, 6, 7, 8, 9, 10, 11]
    assert len(table.partitions) == len(want["partitions"])
    for part, expect in zip(table.partitions, want["partitions"], strict=True):
        assert part.number == number_of(expect["node"], path)
        assert part.start == expect["start"] * 512
        assert part.size == expect["size"] * 512
        assert int(part.type, 16) == int(expect["type"], 16)
        assert len(part.type) == 2 and part.type == part.type.lower()
        assert part.bootable == expect.get("bootable", False)
        assert part.partuuid == f"c0ffee42-{part.number:02x}"
        assert (part.name, part.attrs) == ("", 0)
    assert table.partitions[0].type == "0c"
    assert table.partitions[-2].partuuid == "c0ffee42-0a"


def test_gpt_names_attributes_and_gaps(tmp_path: Path) -> None:
    path = make_image(tmp_path, GPT_SCRIPT)
    table, want = read(path), oracle(path)
    assert table.type == want["label"] == "gpt"
    assert table.disk_id == want["id"].lower() == "5b4a3c2d-1e0f-4a1b-9c8d-7e6f5a4b3c2d"
    assert table.sector_size == want["sectorsize"] == 512
    assert (table.first_lba, table.last_lba) == (want["firstlba"], want["lastlba"])
    assert [p.number for p in table.partitions] == [2, 3, 4]  # slot 1 left empty
    for part, expect in zip(table.partitions, want["partitions"], strict=True):
        assert part.number == number_of(expect["node"], path)
        assert part.start == expect["start"] * 512
        assert part.size == expect["size"] * 512
        assert part.type == expect["type"].lower()
        assert part.partuuid == expect["uuid"].lower()
        assert part.name == expect.get("name", "")
        assert gpt_attrs_string(part.attrs) == expect.get("attrs", "")
    efi, root, _ = table.partitions
    assert efi.partuuid == "0a1b2c3d-4e5f-4061-8273-94a5b6c7d8e9"
    assert efi.bootable and not root.bootable
    assert efi.attrs == (1 << 0) | (1 << 2) | (1 << 60) | (1 << 63)
    assert root.name == 'root ünïcødé "q"'


def test_gpt_partuuid_matches_blkid(tmp_path: Path) -> None:
    require(shutil.which("blkid"), "blkid (util-linux) is not installed")
    path = make_image(tmp_path, GPT_SCRIPT)
    out = subprocess.run(["blkid", "-p", "-o", "export", str(path)], capture_output=True, text=True).stdout
    assert f"PTUUID={read(path).disk_id}" in out.splitlines()


@pytest.mark.parametrize("script", [DOS_SCRIPT, GPT_SCRIPT], ids=["dos", "gpt"])
def test_sfdisk_script_recreates_the_table(tmp_path: Path, script: str) -> None:
    original = make_image(tmp_path, script, "a.img")
    table = read(original)
    copy = make_image(tmp_path, sfdisk_script(table), "b.img")
    assert read(copy) == table
    dump_a = sfdisk("-d", str(original)).replace(str(original), "X").replace("device: X\n", "")
    dump_b = sfdisk("-d", str(copy)).replace(str(copy), "X").replace("device: X\n", "")
    assert dump_a == dump_b


def test_sfdisk_script_text() -> None:
    table = read_bytes_table(mbr([(0x80, 0x0C, 2048, 2048), None, (0, 0x83, 8192, 2048)], disk_id=0xABCDEF01))
    assert sfdisk_script(table, "/dev/loop0") == (
        "label: dos\nlabel-id: 0xabcdef01\nunit: sectors\n\n"
        "/dev/loop0p1 : start=2048, size=2048, type=c, bootable\n"
        "/dev/loop0p3 : start=8192, size=2048, type=83\n"
    )


# --- hostile tables -----------------------------------------------------------------------------------


def mbr(
    entries: list[tuple[int, int, int, int] | None], disk_id: int = 0x11223344, signature: bool = True
) -> bytes:
    """A hand-made MBR: entries are (status, type, start LBA, sector count)."""
    sector = bytearray(512)
    struct.pack_into("<I", sector, 440, disk_id)
    for slot, entry in enumerate(entries):
        if entry is not None:
            status, ptype, lba, count = entry
            struct.pack_into("<B3sB3sII", sector, 446 + 16 * slot, status, b"", ptype, b"", lba, count)
    if signature:
        sector[510:512] = b"\x55\xaa"
    return bytes(sector)


def read_bytes_table(
    head: bytes, size: int = IMAGE_SIZE, extra: dict[int, bytes] | None = None
) -> PartitionTable:
    """Parse an in-memory image: `head` at byte 0, `extra` {offset: bytes}; `size` is the claimed size."""
    image = bytearray(head)
    for offset, data in (extra or {}).items():
        image.extend(bytes(max(0, offset + len(data) - len(image))))
        image[offset : offset + len(data)] = data
    return read_partition_table(io.BytesIO(bytes(image)), size, "card.img")


def test_empty_file() -> None:
    with pytest.raises(CorruptInput, match=r"^card\.img: the image is empty"):
        read_bytes_table(b"", size=0)


def test_shorter_than_a_sector() -> None:
    with pytest.raises(CorruptInput, match=r"^card\.img: no partition table: the image has only 100 bytes"):
        read_bytes_table(b"x" * 100, size=100)


def test_no_signature() -> None:
    with pytest.raises(CorruptInput, match=r"^card\.img: no partition table: no 0x55AA"):
        read_bytes_table(mbr([(0, 0x83, 2048, 2048)], signature=False))


def test_no_partitions() -> None:
    with pytest.raises(CorruptInput, match=r"^card\.img: the dos partition table has no partitions"):
        read_bytes_table(mbr([]))


def test_bad_boot_flag() -> None:
    with pytest.raises(CorruptInput, match="boot flag 0x12"):
        read_bytes_table(mbr([(0x12, 0x83, 2048, 2048)]))


def test_partition_beyond_end_of_image() -> None:
    with pytest.raises(CorruptInput) as err:
        read_bytes_table(mbr([(0, 0x83, 2048, 2048), (0, 0x83, 4096, 4194304)]), size=1 << 30)
    assert str(err.value) == (
        "card.img: partition 2 ends at byte 2149580800 but the image has only 1073741824 bytes (truncated?)"
    )


def test_real_table_on_truncated_image(tmp_path: Path) -> None:
    path = make_image(tmp_path, DOS_SCRIPT)
    os.truncate(path, 20 * MiB)
    with pytest.raises(
        CorruptInput, match=r"^disk\.img: partition 2 ends at byte 26214400 but the image has only 20971520"
    ):
        read(path)


def test_overlapping_primary_partitions() -> None:
    with pytest.raises(CorruptInput, match=r"partitions 1 \(bytes .*\) and 2 \(bytes .*\) overlap"):
        read_bytes_table(mbr([(0, 0x83, 2048, 4096), (0, 0x83, 4096, 4096)]))


def ebr(data: tuple[int, int, int] | None, link: tuple[int, int] | None) -> bytes:
    """An EBR: data = (type, LBA relative to this EBR, count); link = (LBA relative to the extended, count)."""
    entries: list[tuple[int, int, int, int] | None] = [
        None if data is None else (0, data[0], data[1], data[2]),
        None if link is None else (0, 0x05, link[0], link[1]),
    ]
    return mbr(entries, disk_id=0)


def test_extended_partition_loop() -> None:
    head = mbr([(0, 0x0F, 2048, 100000)])
    # The second EBR links back to the first one.
    chain = {
        2048 * 512: ebr((0x83, 2048, 1000), (4096, 3000)),
        (2048 + 4096) * 512: ebr((0x83, 2048, 500), (0, 3000)),
    }
    with pytest.raises(
        CorruptInput, match=r"^card\.img: the extended partition chain loops back to the EBR at byte 1048576"
    ):
        read_bytes_table(head, extra=chain)


def test_logical_partitions_hand_made() -> None:
    head = mbr([(0, 0x85, 2048, 100000), (0, 0x83, 102048, 1000)], disk_id=0xA1B2C3D4)
    chain = {
        2048 * 512: ebr((0x83, 2048, 1000), (4096, 3000)),
        (2048 + 4096) * 512: ebr((0x07, 2048, 500), None),
    }
    table = read_bytes_table(head, extra=chain)
    assert [(p.number, p.start // 512, p.size // 512, p.type, p.partuuid) for p in table.partitions] == [
        (1, 2048, 100000, "85", "a1b2c3d4-01"),
        (2, 102048, 1000, "83", "a1b2c3d4-02"),
        (5, 4096, 1000, "83", "a1b2c3d4-05"),
        (6, 8192, 500, "07", "a1b2c3d4-06"),
    ]


def test_overlapping_logical_partitions() -> None:
    head = mbr([(0, 0x05, 2048, 100000)])
    chain = {
        2048 * 512: ebr((0x83, 2048, 5000), (4096, 3000)),
        (2048 + 4096) * 512: ebr((0x83, 1, 500), None),
    }
    with pytest.raises(CorruptInput, match=r"partitions 5 .* and 6 .* overlap"):
        read_bytes_table(head, extra=chain)


def test_logical_partition_outside_extended() -> None:
    head = mbr([(0, 0x05, 2048, 10000)])
    chain = {2048 * 512: ebr((0x83, 2048, 50000), None)}
    with pytest.raises(
        CorruptInput,
        match=r"logical partition 5 .* lies outside the extended partition 1 \(bytes 1048576\.\.6168576\)",
    ):
        read_bytes_table(head, extra=chain)


def test_ebr_beyond_end_of_image() -> None:
    head = mbr([(0, 0x05, 2048, 100000)])
    with pytest.raises(CorruptInput, match=r"the EBR at byte 1048576 is beyond the end of the image"):
        read_bytes_table(head)


def corrupt(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def test_gpt_bad_header_crc(tmp_path: Path) -> None:
    path = make_image(tmp_path, GPT_SCRIPT)
    corrupt(path, 512 + 56)  # a byte of the disk GUID
    with pytest.raises(CorruptInput, match=r"^disk\.img: GPT header at LBA 1 has a bad CRC32"):
        read(path)


def test_gpt_bad_entries_crc(tmp_path: Path) -> None:
    path = make_image(tmp_path, GPT_SCRIPT)
    corrupt(path, 1024 + 128 + 56)  # a byte of partition 2's name
    with pytest.raises(CorruptInput, match=r"^disk\.img: GPT partition entries at LBA 2 have a bad CRC32"):
        read(path)


def test_gpt_missing_header(tmp_path: Path) -> None:
    path = make_image(tmp_path, GPT_SCRIPT)
    corrupt(path, 512)  # "EFI PART" -> something else
    with pytest.raises(CorruptInput, match=r"protective MBR found but no GPT header"):
        read(path)


def test_gpt_on_truncated_image(tmp_path: Path) -> None:
    path = make_image(tmp_path, GPT_SCRIPT)
    os.truncate(path, 10 * MiB)
    with pytest.raises(
        CorruptInput, match=r"partition 3 ends at byte 26214400 but the image has only 10485760"
    ):
        read(path)
