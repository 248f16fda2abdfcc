"""Platforms, and their detection from the content of a tree (ELF headers, ARM build attributes)."""

from __future__ import annotations

import enum
import struct
from collections import Counter
from dataclasses import dataclass, field

from dockerify.errors import DockerifyError


class Arch(enum.Enum):
    """An architecture as OCI, ELF and QEMU each name it."""

    AMD64 = ("amd64", 62, "x86_64")
    I386 = ("386", 3, "i386")
    ARM64 = ("arm64", 183, "aarch64")
    ARM = ("arm", 40, "arm")
    RISCV64 = ("riscv64", 243, "riscv64")
    PPC64LE = ("ppc64le", 21, "ppc64le")
    S390X = ("s390x", 22, "s390x")

    def __init__(self, oci: str, elf_machine: int, qemu: str) -> None:
        self.oci = oci
        self.elf_machine = elf_machine
        self.qemu = qemu

    @classmethod
    def from_oci(cls, name: str) -> Arch:
        aliases = {"x86_64": "amd64", "aarch64": "arm64", "armhf": "arm", "armel": "arm", "i386": "386"}
        name = aliases.get(name, name)
        for arch in cls:
            if arch.oci == name:
                return arch
        raise DockerifyError(
            f"unknown architecture {name!r}", hint="use one of " + ", ".join(a.oci for a in cls)
        )

    @classmethod
    def from_elf(cls, machine: int, elf_class: int) -> Arch | None:
        for arch in cls:
            if arch.elf_machine == machine:
                return arch
        return None

    @property
    def uname(self) -> str:
        return {"amd64": "x86_64", "arm64": "aarch64", "arm": "armv7l", "386": "i686"}.get(self.oci, self.oci)


@dataclass(frozen=True, order=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    @classmethod
    def parse(cls, text: str) -> Platform:
        parts = text.strip().split("/")
        if len(parts) == 1:
            parts = ["linux", *parts]
        if len(parts) not in (2, 3) or not all(parts):
            raise DockerifyError(
                f"invalid platform {text!r}", hint="write it as os/arch[/variant], e.g. linux/arm/v7"
            )
        arch = Arch.from_oci(parts[1])
        variant = parts[2] if len(parts) == 3 else ""
        if arch is Arch.ARM64 and variant == "v8":
            variant = ""  # linux/arm64/v8 is the same platform as linux/arm64
        if arch is Arch.ARM and not variant:
            variant = "v7"
        return cls(parts[0], arch.oci, variant)

    @property
    def arch(self) -> Arch:
        return Arch.from_oci(self.architecture)

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    def to_oci(self) -> dict[str, str]:
        d = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            d["variant"] = self.variant
        return d

    @classmethod
    def from_oci(cls, d: dict[str, str]) -> Platform:
        return cls(d.get("os", "linux"), d.get("architecture", ""), d.get("variant", ""))


# Tag_CPU_arch values of the ARM EABI build attributes, mapped to OCI variants.
_ARM_CPU_ARCH_VARIANT = {
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


@dataclass(frozen=True)
class ElfInfo:
    arch: Arch
    bits: int
    arm_variant: str = ""


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


def arm_cpu_arch(head: bytes, tail: bytes, size: int) -> int | None:
    """Tag_CPU_arch from the .ARM.attributes section of a 32-bit little-endian ARM ELF file.

    `head` is the start of the file and `tail` its last bytes; section headers and the attributes
    section sit at the end of ordinary binaries, so a whole-file read is not needed."""

    def at(off: int, n: int) -> bytes | None:
        if off + n <= len(head):
            return head[off : off + n]
        tail_start = size - len(tail)
        if off >= tail_start and off + n <= size:
            return tail[off - tail_start : off - tail_start + n]
        return None

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
        if sh_type != 0x70000003:  # SHT_ARM_ATTRIBUTES
            continue
        sh_offset, sh_size = struct.unpack_from("<II", table, i * 40 + 16)
        section = at(sh_offset, sh_size)
        return _tag_cpu_arch(section) if section else None
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
    if not section or section[0:1] != b"A":
        return None
    pos = 1
    while pos + 4 < len(section):
        (sub_len,) = struct.unpack_from("<I", section, pos)
        end = pos + sub_len
        nul = section.index(b"\0", pos + 4)
        vendor = section[pos + 4 : nul]
        p = nul + 1
        if vendor == b"aeabi":
            while p + 5 <= end:
                tag = section[p]
                (size,) = struct.unpack_from("<I", section, p + 1)
                if tag == 1:  # Tag_File: attributes apply to the whole file
                    q = p + 5
                    while q < p + size:
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


@dataclass
class PlatformDetector:
    """Collects evidence while entries stream past; `result()` decides."""

    machines: Counter[tuple[Arch, int]] = field(default_factory=Counter)
    arm_variants: Counter[str] = field(default_factory=Counter)
    hint: Platform | None = None

    def add_elf(self, head: bytes, tail: bytes, size: int) -> None:
        parsed = parse_elf_head(head)
        if parsed is None:
            return
        machine, elf_class, little = parsed
        arch = Arch.from_elf(machine, elf_class)
        if arch is None:
            return
        self.machines[(arch, elf_class)] += 1
        if arch is Arch.ARM and little and elf_class == 1:
            tag = arm_cpu_arch(head, tail, size)
            if tag is not None and tag in _ARM_CPU_ARCH_VARIANT:
                self.arm_variants[_ARM_CPU_ARCH_VARIANT[tag]] += 1

    def add_boot_config(self, config_txt: bytes) -> None:
        """Raspberry Pi config.txt: arm_64bit=1 means a 64-bit kernel, a hint for arm64."""
        for line in config_txt.decode(errors="replace").splitlines():
            key, _, value = line.split("#", 1)[0].strip().partition("=")
            if key.strip() == "arm_64bit" and value.strip() == "1":
                self.hint = Platform("linux", "arm64")

    def result(self) -> Platform | None:
        if not self.machines:
            return self.hint
        (arch, _), _count = max(self.machines.items(), key=lambda kv: (kv[1], kv[0][0].oci))
        if arch is Arch.ARM:
            # A tree is as demanding as its most demanding binary: one v7 binary will not run on v6.
            order = ["v5", "v6", "v7", "v8"]
            variant = max(self.arm_variants, key=order.index) if self.arm_variants else "v7"
            return Platform("linux", "arm", variant)
        return Platform("linux", arch.oci)


def reconcile(detected: Platform | None, requested: Platform | None, *, force: bool, source: str) -> Platform:
    if requested is not None:
        if detected is not None and detected != requested and not force:
            raise DockerifyError(
                f"{source}: --platform {requested} contradicts the content, which is {detected}",
                hint="drop --platform, or add --force to label the image as asked",
            )
        return requested
    if detected is None:
        raise DockerifyError(
            f"{source}: cannot tell the platform: no ELF binaries found",
            hint="give it with --platform, e.g. --platform linux/arm64",
        )
    return detected
