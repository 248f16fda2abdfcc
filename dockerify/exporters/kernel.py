"""Linux kernel files: what kind a file is, the uncompressed ELF vmlinux inside an x86 bzImage (what
the legacy stage0 contract loads), and the checks stage0 needs.

A bzImage (x86 boot protocol, "HdrS" at 0x202) says where its compressed kernel is: payload_offset
and payload_length, relative to the protected-mode code after the setup sectors (protocol 2.08 and
later). Older or odd files are searched for a compression magic instead. The payload is a gzip, xz,
zstd, lzma, bzip2, lz4 or lzo stream of the ELF vmlinux."""

from __future__ import annotations

import bz2
import lzma
import shutil
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import zstandard

from dockerify.errors import DockerifyError
from dockerify.limits import DecompressionLimit
from dockerify.paths import require_file
from dockerify.run import run

MiB = 1 << 20
GiB = 1 << 30
#: What a compressed kernel may inflate to in memory: real ones are tens of MiB; more is a bomb.
KERNEL_LIMIT = 1 * GiB
MAX_KERNEL = 512 * MiB

#: Compression magics as the kernel's decompressors expect them, in the order they are tried.
MAGICS: tuple[tuple[str, bytes], ...] = (
    ("gzip", b"\x1f\x8b\x08"),
    ("xz", b"\xfd7zXZ\x00"),
    ("zstd", b"\x28\xb5\x2f\xfd"),
    ("bzip2", b"BZh"),
    ("lzma", b"\x5d\x00\x00"),
    ("lz4", b"\x02\x21\x4c\x18"),
    ("lzo", b"\x89\x4c\x5a\x4f"),
)


@dataclass(frozen=True)
class KernelInfo:
    kind: str  # "bzImage", "arm64-image", "elf", "gzip"
    arch: str  # "amd64", "arm64", "" unknown
    size: int
    version: str = ""
    load_end: int = 0  # highest physical address the kernel occupies once loaded (0: unknown)


@dataclass(frozen=True)
class ElfCheck:
    machine: int
    entry: int
    segments: list[tuple[int, int]]  # (paddr, memsz) of PT_LOAD

    @property
    def end(self) -> int:
        return max(p + m for p, m in self.segments)


def _bzimage_version(data: bytes) -> str:
    (offset,) = struct.unpack_from("<H", data, 0x20E)
    if not offset:
        return ""
    start = offset + 0x200
    return data[start : data.find(b"\0", start, start + 256)].decode("ascii", "replace")


def identify(data: bytes, where: str) -> KernelInfo:
    if len(data) < 0x300:
        raise DockerifyError(f"{where}: too small to be a kernel ({len(data)} bytes)")
    if data[0x202:0x206] == b"HdrS":
        (protocol,) = struct.unpack_from("<H", data, 0x206)
        load_end = 0
        if protocol >= 0x20A:
            pref, init_size = struct.unpack_from("<QI", data, 0x258)
            load_end = pref + init_size
        return KernelInfo("bzImage", "amd64", len(data), _bzimage_version(data), load_end)
    if data[0x38:0x3C] == b"ARM\x64":
        text_offset, image_size = struct.unpack_from("<QQ", data, 8)
        return KernelInfo("arm64-image", "arm64", len(data), "", text_offset + image_size)
    if data[:4] == b"\x7fELF":
        if b"Linux version " not in data:
            raise DockerifyError(
                f"{where}: an ELF file, but not a Linux kernel (no 'Linux version' banner)",
                hint="give a kernel with --kernel: bzImage/vmlinuz, Image(.gz) or vmlinux",
            )
        check = check_elf(data, where, strict=False)
        arch = {62: "amd64", 183: "arm64"}.get(check.machine, "")
        return KernelInfo("elf", arch, len(data), "", check.end)
    if data[:2] == b"\x1f\x8b":
        inner = _decompress("gzip", data, where)
        info = identify(inner, where)
        return KernelInfo("gzip", info.arch, len(data), info.version, info.load_end)
    if data[4:8] == b"zimg":
        raise DockerifyError(
            f"{where}: an EFI zboot kernel (vmlinuz.efi); QEMU's -kernel wants the Image inside",
            hint="give the plain Image or Image.gz with --kernel",
        )
    raise DockerifyError(
        f"{where}: not a kernel dockerify knows (bzImage, arm64 Image(.gz) or ELF vmlinux)",
        hint="give one with --kernel FILE",
    )


def _decompress(kind: str, data: bytes, where: str, limit: int = KERNEL_LIMIT) -> bytes:
    out = _inflate(kind, data, where, limit + 1)
    if len(out) > limit:
        raise DecompressionLimit(
            f"{where}: the {kind}-compressed kernel inflates past {limit} bytes (a bomb?)"
        )
    return out


def _inflate(kind: str, data: bytes, where: str, most: int) -> bytes:
    """At most `most` bytes of `data` decompressed (the in-process decoders stop there)."""
    try:
        if kind == "gzip":
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            return d.decompress(data, most)
        if kind == "xz":
            return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data, most)
        if kind == "lzma":
            return lzma.LZMADecompressor(format=lzma.FORMAT_ALONE).decompress(data, most)
        if kind == "zstd":
            # One frame, whatever follows it (a bzImage's payload ends in its 4-byte size):
            # decompressobj stops at the frame's end, where stream_reader().read() of
            # zstandard 0.25 goes on and fails ("Unknown frame descriptor"; Debian 13's kernels
            # are zstd-compressed). Fed in small pieces so the cap holds as it inflates.
            z = zstandard.ZstdDecompressor().decompressobj()
            parts: list[bytes] = []
            size = 0
            for at in range(0, len(data), 1024):
                part = z.decompress(data[at : at + 1024])
                parts.append(part)
                size += len(part)
                if size >= most or z.eof:
                    break
            return b"".join(parts)[:most]
        if kind == "bzip2":
            return bz2.BZ2Decompressor().decompress(data, most)
        if kind in ("lz4", "lzo"):
            tool = "lz4" if kind == "lz4" else "lzop"
            if not shutil.which(tool):
                raise DockerifyError(
                    f"{where}: the kernel is {kind}-compressed and {tool} is not installed",
                    hint=f"apt-get install {'lz4' if kind == 'lz4' else 'lzop'}",
                )
            return run([tool, "-dc"], input=data).stdout
    except (OSError, EOFError, lzma.LZMAError, zlib.error, zstandard.ZstdError) as e:
        raise DockerifyError(f"{where}: the compressed kernel does not decompress ({kind}): {e}") from None
    raise DockerifyError(f"{where}: unknown compression {kind}")


def extract_vmlinux(data: bytes, where: str) -> bytes:
    """The ELF vmlinux of a bzImage (or of an already uncompressed one: returned as is)."""
    if data[:4] == b"\x7fELF":
        return data
    if data[:2] == b"\x1f\x8b":
        return extract_vmlinux(_decompress("gzip", data, where), where)
    candidates: list[tuple[str, int]] = []
    if data[0x202:0x206] == b"HdrS":
        (protocol,) = struct.unpack_from("<H", data, 0x206)
        setup = data[0x1F1] or 4
        if protocol >= 0x208:
            offset, length = struct.unpack_from("<II", data, 0x248)
            start = (setup + 1) * 512 + offset
            payload = data[start : start + length]
            for kind, magic in MAGICS:
                if payload.startswith(magic):
                    candidates.append((kind, start))
    for kind, magic in MAGICS:
        pos = data.find(magic)
        while pos >= 0 and len(candidates) < 32:
            candidates.append((kind, pos))
            pos = data.find(magic, pos + 1)
    for kind, pos in candidates:
        try:
            inner = _decompress(kind, data[pos:], where)
        except DockerifyError:
            continue
        if inner[:4] == b"\x7fELF":
            return inner
    raise DockerifyError(
        f"{where}: no compressed ELF vmlinux found inside (tried {', '.join(sorted({k for k, _ in candidates})) or 'no magic'})",
        hint="give the uncompressed vmlinux with --kernel",
    )


def check_elf(data: bytes, where: str, *, strict: bool = True) -> ElfCheck:
    """An ELF64 with loadable segments; strict: all of them between 2 MiB and 1 GiB physical, as
    stage0 loads them."""
    if data[:4] != b"\x7fELF":
        raise DockerifyError(f"{where}: not an ELF file")
    if data[4] != 2:
        raise DockerifyError(f"{where}: not ELF64 (class {data[4]}); stage0 loads a 64-bit vmlinux")
    if data[5] != 1:
        raise DockerifyError(f"{where}: big-endian ELF; stage0 loads a little-endian x86-64 vmlinux")
    (e_type, machine, _version, entry, phoff, _shoff, _flags, _ehsize, phentsize, phnum) = struct.unpack_from(
        "<HHIQQQIHHH", data, 16
    )
    segments = []
    for i in range(phnum):
        off = phoff + i * phentsize
        if off + 56 > len(data):
            raise DockerifyError(f"{where}: program header {i} lies beyond the end of the file")
        p_type, _flags, _offset, _vaddr, paddr, filesz, memsz, _align = struct.unpack_from(
            "<IIQQQQQQ", data, off
        )
        if p_type == 1 and memsz:  # PT_LOAD
            segments.append((paddr, memsz))
            del filesz
    if not segments:
        raise DockerifyError(f"{where}: the ELF has no loadable (PT_LOAD) segments")
    check = ElfCheck(machine, entry, segments)
    if strict:
        if machine != 62:
            raise DockerifyError(f"{where}: ELF machine {machine}, not x86-64 (62), which stage0 boots")
        for paddr, memsz in segments:
            if paddr < 2 * MiB or paddr + memsz > GiB:
                raise DockerifyError(
                    f"{where}: a loadable segment lies at {paddr:#x}..{paddr + memsz:#x}, outside 2 MiB..1 GiB",
                    hint="stage0 loads the kernel between 2 MiB and 1 GiB; use a kernel built for that",
                )
    return check


def read_kernel(path: str | Path) -> bytes:
    p = Path(path)
    require_file(p, f"--kernel {path}", hint="give the kernel to boot with --kernel FILE")
    if p.stat().st_size > MAX_KERNEL:
        raise DockerifyError(f"--kernel {path}: {p.stat().st_size >> 20} MiB is too large for a kernel")
    return p.read_bytes()
