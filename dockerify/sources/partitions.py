"""Read MBR ("dos") and GPT partition tables from a disk image, and render them as sfdisk scripts.

Everything works on a plain file at byte offsets. Partition numbers, PARTUUIDs and type codes
follow what Linux, blkid and sfdisk show, so that a table read here can be recreated with
`sfdisk` and boot configuration referring to `root=PARTUUID=...` keeps working.
"""

from __future__ import annotations

import struct
import uuid
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

from dockerify.errors import CorruptInput

MBR_SIZE = 512
MBR_SIGNATURE = b"\x55\xaa"
MBR_DISK_ID_OFFSET = 440
MBR_ENTRIES_OFFSET = 446
MBR_ENTRY = struct.Struct("<B3sB3sII")  # status, CHS first, type, CHS last, LBA start, sector count
MBR_EXTENDED_TYPES = frozenset({0x05, 0x0F, 0x85})
MBR_PROTECTIVE_TYPE = 0xEE
#: The MBR and EBRs always count in 512-byte sectors here (4Kn disks are used with GPT).
MBR_SECTOR = 512
#: Linux stops following an EBR chain after this many logical partitions; so do we.
MAX_LOGICAL = 256

GPT_SIGNATURE = b"EFI PART"
GPT_HEADER = struct.Struct("<8sIII4xQQQQ16sQIII")
GPT_ENTRY = struct.Struct("<16s16sQQQ72s")
GPT_MIN_HEADER_SIZE = 92
GPT_MIN_ENTRY_SIZE = 128
#: An entries array larger than this is hostile: the usual one is 16 KiB.
GPT_MAX_ENTRIES_BYTES = 4 << 20
GPT_ATTR_REQUIRED = 1 << 0
GPT_ATTR_NO_BLOCK_IO = 1 << 1
GPT_ATTR_LEGACY_BOOTABLE = 1 << 2
GPT_ZERO_GUID = bytes(16)

#: One MBR/EBR partition entry: (status, type, start LBA, sector count).
MbrEntry = tuple[int, int, int, int]


@dataclass(frozen=True)
class Partition:
    number: int  # 1-based as Linux numbers them (MBR logical partitions start at 5)
    start: int  # byte offset
    size: int  # bytes
    type: str  # MBR: two lowercase hex digits like "0c"; GPT: lowercase type GUID
    partuuid: str  # MBR: f"{disk_id:08x}-{number:02x}"; GPT: lowercase unique GUID
    name: str = ""  # GPT partition name, "" for MBR
    bootable: bool = False  # MBR active flag; GPT legacy BIOS bootable attribute (bit 2)
    attrs: int = 0  # GPT attribute bits

    @property
    def end(self) -> int:
        return self.start + self.size

    @property
    def is_extended(self) -> bool:
        return len(self.type) == 2 and int(self.type, 16) in MBR_EXTENDED_TYPES


@dataclass(frozen=True)
class PartitionTable:
    type: str  # "dos" | "gpt" (sfdisk's words)
    disk_id: str  # dos: "0x%08x"; gpt: lowercase GUID
    sector_size: int
    partitions: tuple[Partition, ...]
    first_lba: int | None = None  # gpt: first usable LBA
    last_lba: int | None = None  # gpt: last usable LBA


def read_partition_table(f: BinaryIO, size: int, name: str) -> PartitionTable:
    """Parse the partition table of the image `f` of `size` bytes; `name` is used in errors."""
    if size == 0:
        raise CorruptInput(f"{name}: the image is empty (0 bytes)")
    mbr = _read_at(f, 0, MBR_SIZE)
    if len(mbr) < MBR_SIZE:
        raise CorruptInput(f"{name}: no partition table: the image has only {size} bytes (truncated?)")
    if mbr[510:512] != MBR_SIGNATURE:
        raise CorruptInput(f"{name}: no partition table: no 0x55AA boot signature in the MBR (sector 0)")
    entries = _mbr_entries(mbr, name)
    if any(ptype == MBR_PROTECTIVE_TYPE for _, ptype, _, _ in entries):
        # A protective (or hybrid) MBR: the GPT is authoritative, as for Linux.
        table = _read_gpt(f, size, name)
    else:
        table = _read_dos(f, size, name, mbr, entries)
    if not table.partitions:
        raise CorruptInput(f"{name}: the {table.type} partition table has no partitions")
    _check_bounds(table.partitions, size, name)
    return table


# --- MBR ------------------------------------------------------------------------------------------


def _mbr_entries(sector: bytes, name: str, where: str = "no partition table: MBR") -> list[MbrEntry]:
    """The four entries of an MBR or EBR."""
    out = []
    for slot in range(4):
        status, _, ptype, _, lba, count = MBR_ENTRY.unpack_from(sector, MBR_ENTRIES_OFFSET + 16 * slot)
        if status not in (0x00, 0x80):
            # Linux rejects such a table too: it is boot code or a filesystem, not an MBR.
            raise CorruptInput(
                f"{name}: {where} entry {slot + 1} has boot flag 0x{status:02x} (neither 0x00 nor 0x80)"
            )
        out.append((status, ptype, lba, count))
    return out


def _read_dos(f: BinaryIO, size: int, name: str, mbr: bytes, entries: list[MbrEntry]) -> PartitionTable:
    (disk_id,) = struct.unpack_from("<I", mbr, MBR_DISK_ID_OFFSET)
    parts: list[Partition] = []
    extended: Partition | None = None
    for slot, (status, ptype, lba, count) in enumerate(entries):
        if ptype == 0 or count == 0:
            continue  # unused slot; its number stays reserved, as in Linux
        part = _dos_partition(disk_id, slot + 1, status, ptype, lba * MBR_SECTOR, count * MBR_SECTOR)
        parts.append(part)
        if part.is_extended and extended is None:
            extended = part
    _check_overlaps(parts, name)
    # Checked before the EBR chain is followed: on a truncated image "partition 2 ends beyond
    # the image" says more than "the EBR at byte N is missing".
    _check_bounds(parts, size, name)
    if extended is not None:
        logical = _read_logical(f, size, name, disk_id, extended)
        _check_overlaps([p for p in parts if not p.is_extended] + logical, name)
        parts.extend(logical)
    return PartitionTable("dos", f"0x{disk_id:08x}", MBR_SECTOR, tuple(parts))


def _dos_partition(disk_id: int, number: int, status: int, ptype: int, start: int, size: int) -> Partition:
    return Partition(
        number=number,
        start=start,
        size=size,
        type=f"{ptype:02x}",
        partuuid=f"{disk_id:08x}-{number:02x}",
        bootable=status == 0x80,
    )


def _read_logical(f: BinaryIO, size: int, name: str, disk_id: int, extended: Partition) -> list[Partition]:
    """Follow the EBR chain inside the extended partition.

    Each EBR holds one logical partition (relative to the EBR itself) and a link to the next EBR
    (relative to the start of the extended partition).
    """
    logical: list[Partition] = []
    seen: set[int] = set()
    ebr_pos: int | None = extended.start
    while ebr_pos is not None and len(logical) < MAX_LOGICAL:
        if ebr_pos in seen:
            raise CorruptInput(
                f"{name}: the extended partition chain loops back to the EBR at byte {ebr_pos}"
            )
        seen.add(ebr_pos)
        ebr = _read_at(f, ebr_pos, MBR_SIZE)
        if len(ebr) < MBR_SIZE:
            raise CorruptInput(
                f"{name}: the EBR at byte {ebr_pos} is beyond the end of the image ({size} bytes, truncated?)"
            )
        if ebr[510:512] != MBR_SIGNATURE:
            break  # Linux stops at an EBR without signature; an empty extended partition looks like this
        data, link = _ebr_entries(ebr, name, ebr_pos)
        if data is not None:
            status, ptype, lba, count = data
            number = 5 + len(logical)
            part = _dos_partition(
                disk_id, number, status, ptype, ebr_pos + lba * MBR_SECTOR, count * MBR_SECTOR
            )
            _check_inside_extended(part, extended, name)
            logical.append(part)
        ebr_pos = None if link is None else extended.start + link[2] * MBR_SECTOR
    return logical


def _ebr_entries(ebr: bytes, name: str, ebr_pos: int) -> tuple[MbrEntry | None, MbrEntry | None]:
    """The first logical-partition entry and the first link entry of an EBR."""
    data: MbrEntry | None = None
    link: MbrEntry | None = None
    for entry in _mbr_entries(ebr, name, f"the EBR at byte {ebr_pos}"):
        _, ptype, _, count = entry
        if ptype == 0 or count == 0:
            continue
        if ptype in MBR_EXTENDED_TYPES:
            link = link or entry
        else:
            data = data or entry
    return data, link


def _check_inside_extended(part: Partition, extended: Partition, name: str) -> None:
    if part.start < extended.start or part.end > extended.end:
        raise CorruptInput(
            f"{name}: logical partition {part.number} (bytes {part.start}..{part.end}) lies outside"
            f" the extended partition {extended.number} (bytes {extended.start}..{extended.end})"
        )


# --- GPT ------------------------------------------------------------------------------------------


def _read_gpt(f: BinaryIO, size: int, name: str) -> PartitionTable:
    sector_size = _gpt_sector_size(f)
    if sector_size is None:
        raise CorruptInput(f'{name}: protective MBR found but no GPT header ("EFI PART") at LBA 1')
    header = _read_at(f, sector_size, sector_size)
    (
        _sig,
        _revision,
        header_size,
        header_crc,
        _current_lba,
        _backup_lba,
        first_lba,
        last_lba,
        disk_guid,
        entries_lba,
        entry_count,
        entry_size,
        entries_crc,
    ) = GPT_HEADER.unpack_from(header)
    if not GPT_MIN_HEADER_SIZE <= header_size <= sector_size:
        raise CorruptInput(f"{name}: GPT header at LBA 1 has an invalid size {header_size}")
    check = bytearray(header[:header_size])
    check[16:20] = bytes(4)  # the CRC covers the header with its own CRC field zeroed
    if zlib.crc32(check) != header_crc:
        raise CorruptInput(f"{name}: GPT header at LBA 1 has a bad CRC32 (corrupt or truncated image)")
    if entry_size < GPT_MIN_ENTRY_SIZE or entry_size % 8 or entry_count * entry_size > GPT_MAX_ENTRIES_BYTES:
        raise CorruptInput(
            f"{name}: GPT header at LBA 1 describes an invalid entries array"
            f" ({entry_count} entries of {entry_size} bytes)"
        )
    array_pos = entries_lba * sector_size
    array = _read_at(f, array_pos, entry_count * entry_size)
    if len(array) < entry_count * entry_size:
        raise CorruptInput(
            f"{name}: GPT partition entries at byte {array_pos} extend beyond the end of the image"
            f" ({size} bytes, truncated?)"
        )
    if zlib.crc32(array) != entries_crc:
        raise CorruptInput(f"{name}: GPT partition entries at LBA {entries_lba} have a bad CRC32")
    parts = [
        p
        for i in range(entry_count)
        if (p := _gpt_partition(array[i * entry_size : (i + 1) * entry_size], i + 1, sector_size, name))
    ]
    _check_overlaps(parts, name)
    return PartitionTable(
        "gpt", _guid(disk_guid), sector_size, tuple(parts), first_lba=first_lba, last_lba=last_lba
    )


def _gpt_sector_size(f: BinaryIO) -> int | None:
    """The logical sector size: the GPT header sits at LBA 1, i.e. byte 512 or byte 4096 on 4Kn disks."""
    for sector_size in (512, 4096):
        if _read_at(f, sector_size, len(GPT_SIGNATURE)) == GPT_SIGNATURE:
            return sector_size
    return None


def _gpt_partition(raw: bytes, number: int, sector_size: int, name: str) -> Partition | None:
    type_guid, unique_guid, first, last, attrs, raw_name = GPT_ENTRY.unpack_from(raw)
    if type_guid == GPT_ZERO_GUID:
        return None  # unused entry; Linux keeps its number free
    if last < first:
        raise CorruptInput(f"{name}: GPT partition {number} ends at LBA {last}, before its start LBA {first}")
    return Partition(
        number=number,
        start=first * sector_size,
        size=(last - first + 1) * sector_size,
        type=_guid(type_guid),
        partuuid=_guid(unique_guid),
        name=_utf16_name(raw_name),
        bootable=bool(attrs & GPT_ATTR_LEGACY_BOOTABLE),
        attrs=attrs,
    )


def _guid(raw: bytes) -> str:
    # GUIDs on disk are mixed-endian: the first three fields little-endian, the rest big-endian.
    return str(uuid.UUID(bytes_le=raw))


def _utf16_name(raw: bytes) -> str:
    text = raw.decode("utf-16-le", "replace")
    return text.split("\0", 1)[0]


# --- checks ---------------------------------------------------------------------------------------


def _check_overlaps(parts: Iterable[Partition], name: str) -> None:
    ordered = sorted(parts, key=lambda p: (p.start, p.number))
    for prev, cur in zip(ordered, ordered[1:], strict=False):
        if cur.start < prev.end:
            raise CorruptInput(
                f"{name}: partitions {prev.number} (bytes {prev.start}..{prev.end}) and"
                f" {cur.number} (bytes {cur.start}..{cur.end}) overlap"
            )


def _check_bounds(parts: Iterable[Partition], size: int, name: str) -> None:
    for part in parts:
        if part.end > size:
            raise CorruptInput(
                f"{name}: partition {part.number} ends at byte {part.end} but the image has only"
                f" {size} bytes (truncated?)"
            )


def _read_at(f: BinaryIO, offset: int, length: int) -> bytes:
    f.seek(offset)
    out = bytearray()
    while len(out) < length:
        data = f.read(length - len(out))
        if not data:
            break
        out += data
    return bytes(out)


# --- sfdisk scripts -------------------------------------------------------------------------------


def sfdisk_script(table: PartitionTable, device: str = "disk") -> str:
    """Render `table` as input for `sfdisk DEVICE < script`.

    Each line carries a device-name prefix ("disk1 : ...") because sfdisk takes the partition
    number from it; without it, gaps in the numbering (an unused first slot) would be lost.
    """
    lines = [f"label: {table.type}", f"label-id: {table.disk_id}", "unit: sectors"]
    if table.first_lba is not None:
        lines.append(f"first-lba: {table.first_lba}")
    if table.last_lba is not None:
        lines.append(f"last-lba: {table.last_lba}")
    if table.sector_size != MBR_SECTOR:
        lines.append(f"sector-size: {table.sector_size}")
    lines.append("")
    separator = "p" if device[-1:].isdigit() else ""
    for part in table.partitions:
        lines.append(f"{device}{separator}{part.number} : {_sfdisk_fields(table, part)}")
    return "\n".join(lines) + "\n"


def _sfdisk_fields(table: PartitionTable, part: Partition) -> str:
    sector = table.sector_size
    fields = [f"start={part.start // sector}", f"size={part.size // sector}"]
    if table.type == "dos":
        fields.append(f"type={int(part.type, 16):x}")
        if part.bootable:
            fields.append("bootable")
        return ", ".join(fields)
    fields.append(f"type={part.type.upper()}")
    fields.append(f"uuid={part.partuuid.upper()}")
    if part.name:
        fields.append(f"name={_sfdisk_quote(part.name)}")
    if part.attrs:
        fields.append(f'attrs="{gpt_attrs_string(part.attrs)}"')
    return ", ".join(fields)


def gpt_attrs_string(attrs: int) -> str:
    """GPT attribute bits in sfdisk's words, e.g. "RequiredPartition LegacyBIOSBootable GUID:60,63"."""
    words = []
    if attrs & GPT_ATTR_REQUIRED:
        words.append("RequiredPartition")
    if attrs & GPT_ATTR_NO_BLOCK_IO:
        words.append("NoBlockIOProtocol")
    if attrs & GPT_ATTR_LEGACY_BOOTABLE:
        words.append("LegacyBIOSBootable")
    # Bits 3..47 are reserved; sfdisk cannot set them, so they are dropped. 48..63 are type-specific.
    guid_bits = [str(bit) for bit in range(48, 64) if attrs & (1 << bit)]
    if guid_bits:
        words.append("GUID:" + ",".join(guid_bits))
    return " ".join(words)


def _sfdisk_quote(text: str) -> str:
    """Quote a name for an sfdisk script: sfdisk decodes \\xNN escapes inside the quotes."""
    out = []
    for byte in text.encode("utf-8"):
        char = chr(byte)
        if byte < 0x20 or byte >= 0x7F or char in '"\\`$':
            out.append(f"\\x{byte:02x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'
