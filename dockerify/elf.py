"""What an ELF file says about the CPU it needs: machine, class, ARM build attributes, interpreter.

Only the first bytes (`head`) and the last bytes (`tail`) of a file are given: program headers and
the interpreter name sit at the start of ordinary binaries, section headers and the ARM attributes
section at the end. Every read is bounded: a damaged or hostile ELF file gives less information,
never an exception.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from dockerify.platform import Arch, Platform

ET_EXEC, ET_DYN = 2, 3
PT_INTERP = 3
SHT_ARM_ATTRIBUTES = 0x70000003

# Tag_CPU_arch values of the ARM EABI build attributes, mapped to OCI variants.
ARM_CPU_ARCH_VARIANT = {
    1: "v5",
    2: "v5",
    3: "v5",
    4: "v5",
    5: "v5",
    6: "v6",
    7: "v6",
    8: "v6",
    9: "v6",
    10: "v7",
    11: "v6",
    12: "v6",
    13: "v7",
    14: "v8",
}
ARM_VARIANTS = ("v5", "v6", "v7", "v8")


@dataclass(frozen=True)
class ElfFile:
    """The CPU demands of one executable or shared object."""

    arch: Arch
    bits: int
    variant: str = ""  # 32-bit ARM only; "" when the file carries no Tag_CPU_arch
    interp: bytes = b""  # PT_INTERP: the dynamic loader an executable names, b"" if none

    @property
    def platform(self) -> Platform:
        return Platform("linux", self.arch.oci, self.variant)


def parse_elf_head(head: bytes) -> tuple[int, int, bool] | None:
    """(machine, class, little-endian) from the ELF identification, or None if not ELF."""
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    elf_class, data = head[4], head[5]
    if elf_class not in (1, 2) or data not in (1, 2):
        return None
    little = data == 1
    machine = struct.unpack_from("<H" if little else ">H", head, 18)[0]
    return machine, elf_class, little


def read_elf(head: bytes, tail: bytes, size: int) -> ElfFile | None:
    """The ElfFile of an executable or shared object, None for anything else (not ELF, object
    files and kernel modules, machines we have no platform for)."""
    parsed = parse_elf_head(head)
    if parsed is None or len(head) < 52:
        return None
    machine, elf_class, little = parsed
    (e_type,) = struct.unpack_from("<H" if little else ">H", head, 16)
    if e_type not in (ET_EXEC, ET_DYN):
        return None
    arch = Arch.from_elf(machine, elf_class)
    if arch is None:
        return None
    variant = ""
    if arch is Arch.ARM and little and elf_class == 1:
        variant = ARM_CPU_ARCH_VARIANT.get(arm_cpu_arch(head, tail, size) or 0, "")
    interp = _interp(head, _reader(head, tail, size), elf_class, little)
    return ElfFile(arch, 32 if elf_class == 1 else 64, variant, interp)


def _reader(head: bytes, tail: bytes, size: int) -> Callable[[int, int], bytes | None]:
    """Bytes [off, off+n) of the file if the head or the tail holds them, else None."""

    def at(off: int, n: int) -> bytes | None:
        if off + n <= len(head):
            return head[off : off + n]
        tail_start = size - len(tail)
        if off >= tail_start and off + n <= size:
            return tail[off - tail_start : off - tail_start + n]
        return None

    return at


def _interp(head: bytes, at: Callable[[int, int], bytes | None], elf_class: int, little: bool) -> bytes:
    e = "<" if little else ">"
    try:
        if elf_class == 1:
            (phoff,) = struct.unpack_from(e + "I", head, 28)
            phentsize, phnum = struct.unpack_from(e + "HH", head, 42)
            layout, at_offset, at_size = e + "IIIIII", 1, 4
        else:
            (phoff,) = struct.unpack_from(e + "Q", head, 32)
            phentsize, phnum = struct.unpack_from(e + "HH", head, 54)
            layout, at_offset, at_size = e + "IIQQQQ", 2, 5
        min_entsize = struct.calcsize(layout)
        if phentsize < min_entsize:
            return b""
        phnum = min(phnum, 256)
        table = at(phoff, phnum * phentsize)
        if table is None:
            return b""
        for i in range(phnum):
            fields = struct.unpack_from(layout, table, i * phentsize)
            if fields[0] != PT_INTERP:
                continue
            offset, filesz = fields[at_offset], fields[at_size]
            name = at(offset, filesz) if filesz <= 4096 else None
            return name.split(b"\0", 1)[0] if name else b""
    except struct.error:  # program headers beyond the head we were given
        return b""
    return b""


def arm_cpu_arch(head: bytes, tail: bytes, size: int) -> int | None:
    """Tag_CPU_arch from the .ARM.attributes section of a 32-bit little-endian ARM ELF file."""
    at = _reader(head, tail, size)
    if len(head) < 52:
        return None
    (e_shoff,) = struct.unpack_from("<I", head, 32)
    e_shentsize, e_shnum = struct.unpack_from("<HH", head, 46)
    if e_shentsize != 40 or e_shnum == 0 or e_shnum > 4096:
        return None
    table = at(e_shoff, e_shnum * 40)
    if table is None:
        return None
    for i in range(e_shnum):
        (sh_type,) = struct.unpack_from("<I", table, i * 40 + 4)
        if sh_type != SHT_ARM_ATTRIBUTES:
            continue
        sh_offset, sh_size = struct.unpack_from("<II", table, i * 40 + 16)
        section = at(sh_offset, sh_size)
        if not section:
            return None
        try:
            return _tag_cpu_arch(section)
        except (ValueError, IndexError, struct.error):  # a damaged attributes section
            return None
    return None


def _uleb(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while pos < len(buf):
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    return value, pos


def _tag_cpu_arch(section: bytes) -> int | None:
    # Format: 'A', then vendor subsections (u32 len, NUL-terminated vendor, then sub-subsections).
    if section[0:1] != b"A":
        return None
    pos = 1
    while pos + 4 < len(section):
        (sub_len,) = struct.unpack_from("<I", section, pos)
        end = min(pos + sub_len, len(section))
        nul = section.index(b"\0", pos + 4)
        vendor = section[pos + 4 : nul]
        p = nul + 1
        if vendor == b"aeabi":
            while p + 5 <= end:
                tag = section[p]
                (size,) = struct.unpack_from("<I", section, p + 1)
                if tag == 1:  # Tag_File: attributes apply to the whole file
                    q = p + 5
                    stop = min(p + size, end)
                    while q < stop:
                        attr, q = _uleb(section, q)
                        if attr == 6:  # Tag_CPU_arch
                            return _uleb(section, q)[0]
                        if attr in (4, 5, 67):  # NTBS-valued tags
                            q = section.index(b"\0", q) + 1
                        elif attr == 32:  # Tag_compatibility: uleb + NTBS
                            _, q = _uleb(section, q)
                            q = section.index(b"\0", q) + 1
                        else:
                            _, q = _uleb(section, q)
                    return None
                p += max(size, 1)
        if sub_len == 0:
            break
        pos = end
    return None
