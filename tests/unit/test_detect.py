"""The tree-level platform decision (dockerify.detect), on hand-made trees of ELF descriptions.
The ELF parsing itself is tested on real compiler output in test_platform.py."""

from __future__ import annotations

from dockerify.detect import PlatformDetector, is_dispatched
from dockerify.elf import ElfFile
from dockerify.platform import Arch, Platform

ARMHF_LOADER = b"/lib/ld-linux-armhf.so.3"


def _arm(variant: str, interp: bytes = b"") -> ElfFile:
    return ElfFile(Arch.ARM, 32, variant, interp)


def _tree(files: dict[bytes, ElfFile], links: dict[bytes, bytes]) -> PlatformDetector:
    d = PlatformDetector()
    d.files.update(files)
    d.links.update(links)
    return d


def _debian_armhf(extra: dict[bytes, ElfFile]) -> PlatformDetector:
    multiarch = b"usr/lib/arm-linux-gnueabihf/"
    files = {
        b"usr/bin/dash": _arm("v7", ARMHF_LOADER),
        multiarch + b"ld-linux-armhf.so.3": _arm("v7"),
        multiarch + b"libc.so.6": _arm("v7"),
        **{multiarch + b"gconv/LIB%d.so" % i: _arm("v7") for i in range(300)},
        **extra,
    }
    links = {
        b"bin": b"usr/bin",
        b"lib": b"usr/lib",
        b"usr/bin/sh": b"dash",
        b"usr/lib/ld-linux-armhf.so.3": b"arm-linux-gnueabihf/ld-linux-armhf.so.3",
    }
    return _tree(files, links)


def test_debian_armhf_with_an_armv8_library_is_v7() -> None:
    gcrypt = b"usr/lib/arm-linux-gnueabihf/libgcrypt.so.20.4.1"
    ev = _debian_armhf({gcrypt: _arm("v8")}).evidence()
    assert ev.platform == Platform("linux", "arm", "v7")
    assert ev.decided_by == "core"
    roles = {c.role: (c.via, c.path) for c in ev.core}
    assert roles["sh"] == (b"bin/sh", b"usr/bin/dash")
    assert roles["interpreter"][1] == b"usr/lib/arm-linux-gnueabihf/ld-linux-armhf.so.3"
    assert roles["libc"][1] == b"usr/lib/arm-linux-gnueabihf/libc.so.6"
    assert dict(ev.counts) == {"linux/arm/v7": 303, "linux/arm/v8": 1}
    assert ev.disagree_count == 1 and ev.disagree[0][0] == gcrypt
    js = ev.to_json()
    assert js["disagree"]["files"] == [{"path": "/" + gcrypt.decode(), "platform": "linux/arm/v8"}]


def test_raspberry_pi_os_style_armv6_with_hwcap_libraries_is_v6() -> None:
    lib = b"usr/lib/arm-linux-gnueabihf/"
    files = {
        b"bin/busybox": _arm("v6", ARMHF_LOADER),
        b"lib/arm-linux-gnueabihf/ld-linux-armhf.so.3": _arm("v6"),
        b"lib/arm-linux-gnueabihf/libc.so.6": _arm("v6"),
        b"sbin/init-real": _arm("v6", ARMHF_LOADER),
        lib + b"libarmmem-v6l.so": _arm("v6"),
        lib + b"libarmmem-v7l.so": _arm("v7"),
        lib + b"libarmmem-v8l.so": _arm("v8"),
        lib + b"neon/vfp/libfast.so.1": _arm("v7"),
        lib + b"libfast.so.1": _arm("v6"),
    }
    links = {
        b"bin/sh": b"busybox",
        b"sbin/init": b"init-real",
        b"lib/ld-linux-armhf.so.3": b"arm-linux-gnueabihf/ld-linux-armhf.so.3",
    }
    ev = _tree(files, links).evidence()
    assert ev.platform == Platform("linux", "arm", "v6")
    assert [c.role for c in ev.core] == ["sh", "init", "busybox", "interpreter", "libc"]
    assert ev.dispatched_count == 4 and ev.disagree_count == 0


def test_arm64_with_some_32bit_files_stays_arm64() -> None:
    files = {
        b"usr/bin/dash": ElfFile(Arch.ARM64, 64, "", b"/lib/ld-linux-aarch64.so.1"),
        b"usr/lib/aarch64-linux-gnu/ld-linux-aarch64.so.1": ElfFile(Arch.ARM64, 64),
        b"usr/lib/aarch64-linux-gnu/libc.so.6": ElfFile(Arch.ARM64, 64),
        b"usr/lib/arm-linux-gnueabihf/ld-linux-armhf.so.3": _arm("v7"),
        b"usr/lib/arm-linux-gnueabihf/libc.so.6": _arm("v7"),
        **{b"usr/lib/arm-linux-gnueabihf/lib%d.so" % i: _arm("v7") for i in range(10)},
    }
    links = {
        b"bin": b"usr/bin",
        b"lib": b"usr/lib",
        b"usr/bin/sh": b"/bin/dash",  # through the bin -> usr/bin link
        b"usr/lib/ld-linux-aarch64.so.1": b"aarch64-linux-gnu/ld-linux-aarch64.so.1",
    }
    ev = _tree(files, links).evidence()
    assert ev.platform == Platform("linux", "arm64")
    assert {c.role: c.path for c in ev.core}["libc"] == b"usr/lib/aarch64-linux-gnu/libc.so.6"
    assert ev.disagree_count == 12


def test_no_core_userland_uses_the_spread() -> None:
    files = {b"opt/app/a%d" % i: _arm("v6") for i in range(5)} | {b"opt/app/b": _arm("v7")}
    ev = _tree(files, {}).evidence()
    assert ev.platform == Platform("linux", "arm", "v6") and ev.decided_by == "distribution"
    amd = _tree({b"x": ElfFile(Arch.AMD64, 64), b"y": ElfFile(Arch.AMD64, 64), b"z": _arm("v7")}, {})
    assert amd.result() == Platform("linux", "amd64")


def test_hard_links_loops_and_hints() -> None:
    d = _tree({b"bin/busybox": _arm("v6")}, {})
    d.add_hardlink(b"bin/sh", b"bin/busybox")
    d.add_symlink(b"sbin/init", b"/sbin/init")  # a loop: ignored, not followed forever
    assert d.resolve(b"sbin/init") is None
    assert [c.role for c in d.evidence().core] == ["sh", "busybox"]
    hint = PlatformDetector()
    hint.add_boot_config(b"arm_64bit=1\n")
    assert hint.evidence().decided_by == "boot-config" and hint.result() == Platform("linux", "arm64")
    assert PlatformDetector().result() is None


def test_dispatched_names() -> None:
    assert is_dispatched(b"usr/lib/arm-linux-gnueabihf/libarmmem-v7l.so")
    assert is_dispatched(b"usr/lib/libfoo-v8.so.1")
    assert is_dispatched(b"lib/arm-linux-gnueabihf/neon/vfp/libz.so.1")
    assert is_dispatched(b"usr/lib/x86_64-linux-gnu/glibc-hwcaps/x86-64-v3/libz.so.1")
    assert not is_dispatched(b"usr/bin/hello-v6")
    assert not is_dispatched(b"usr/lib/arm-linux-gnueabihf/libgcrypt.so.20")


def test_hostile_elf_headers_give_less_not_an_exception() -> None:
    from dockerify.elf import read_elf

    header = bytearray(b"\x7fELF\x02\x01\x01" + bytes(57))
    header[16:20] = (3).to_bytes(2, "little") + (183).to_bytes(2, "little")  # ET_DYN, aarch64
    header[32:40] = (1 << 63).to_bytes(8, "little")  # e_phoff far beyond the file
    header[54:58] = (56).to_bytes(2, "little") + (0xFFFF).to_bytes(2, "little")
    elf = read_elf(bytes(header), bytes(header), len(header))
    assert elf == ElfFile(Arch.ARM64, 64)
    arm = bytearray(b"\x7fELF\x01\x01\x01" + bytes(45))
    arm[16:20] = (2).to_bytes(2, "little") + (40).to_bytes(2, "little")
    arm[32:36] = (0xFFFFFFF0).to_bytes(4, "little")  # e_shoff beyond the file
    arm[46:50] = (40).to_bytes(2, "little") + (3).to_bytes(2, "little")
    assert read_elf(bytes(arm), b"", len(arm)) == ElfFile(Arch.ARM, 32)
