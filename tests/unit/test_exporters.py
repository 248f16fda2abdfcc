"""Unit checks of the exporters' pure parts: kernel files, id rewrites, size arithmetic, the run
script's syntax."""

from __future__ import annotations

import bz2
import gzip
import lzma
import struct
import subprocess
import types

import pytest
import zstandard

from dockerify.errors import DockerifyError
from dockerify.exporters import kernel as k
from dockerify.exporters.fatimg import FAT32_MIN_CLUSTERS, cluster_for, size_for
from dockerify.exporters.sdcard import Plan, fat_uuid, parse_disk_id, rewrite_refs
from dockerify.exporters.stage0 import _hostfwd, run_script
from dockerify.limits import DecompressionLimit
from dockerify.sources.disk import PartitionRecord
from tests.conftest import REPO

MiB = 1 << 20


def elf64(segments: list[tuple[int, int]], machine: int = 62, banner: bool = True) -> bytes:
    """A minimal little-endian ELF64 with the given PT_LOAD (paddr, memsz) segments."""
    phoff = 64
    header = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
    header += struct.pack(
        "<HHIQQQIHHHHHH", 2, machine, 1, 0x1000000, phoff, 0, 0, 64, 56, len(segments), 0, 0, 0
    )
    phdrs = b"".join(
        struct.pack("<IIQQQQQQ", 1, 5, 0, p | 0xFFFFFFFF80000000, p, m, m, 4096) for p, m in segments
    )
    body = header + phdrs
    return body + (b"Linux version 6.1.0-test" if banner else b"") + bytes(64)


def bzimage(payload: bytes) -> bytes:
    """A bzImage-shaped file: setup sectors with the HdrS header pointing at the payload."""
    setup_sects = 4
    data = bytearray((setup_sects + 1) * 512)
    data[0x1F1] = setup_sects
    data[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", data, 0x206, 0x20F)
    struct.pack_into("<II", data, 0x248, 16, len(payload))
    struct.pack_into("<QI", data, 0x258, 0x1000000, 64 * MiB)
    return bytes(data) + bytes(16) + payload + b"\0\0\0\0"


def test_check_elf_accepts_segments_between_2mib_and_1gib() -> None:
    ok = k.check_elf(elf64([(0x1000000, 0x800000), (0x2000000, 0x100000)]), "v")
    assert ok.end == 0x2100000
    with pytest.raises(DockerifyError, match="outside 2 MiB..1 GiB"):
        k.check_elf(elf64([(0x100000, 0x1000)]), "v")
    with pytest.raises(DockerifyError, match="outside 2 MiB..1 GiB"):
        k.check_elf(elf64([(0x3FF00000, 0x200000)]), "v")
    with pytest.raises(DockerifyError, match="not x86-64"):
        k.check_elf(elf64([(0x1000000, 0x1000)], machine=183), "v")
    with pytest.raises(DockerifyError, match="no loadable"):
        k.check_elf(elf64([]), "v")
    with pytest.raises(DockerifyError, match="not ELF64"):
        k.check_elf(b"\x7fELF\x01" + bytes(100), "v")


@pytest.mark.parametrize("compress", [gzip.compress, lambda d: lzma.compress(d, format=lzma.FORMAT_XZ)])
def test_vmlinux_extracted_from_a_bzimage(compress) -> None:
    vmlinux = elf64([(0x1000000, 0x10000)])
    image = bzimage(compress(vmlinux))
    info = k.identify(image, "bz")
    assert (info.kind, info.arch, info.load_end) == ("bzImage", "amd64", 0x1000000 + 64 * MiB)
    assert k.extract_vmlinux(image, "bz") == vmlinux


def test_identify_refuses_what_is_not_a_kernel() -> None:
    with pytest.raises(DockerifyError, match="not a Linux kernel"):
        k.identify(elf64([(0x400000, 0x1000)], banner=False) + bytes(4096), "busybox")
    with pytest.raises(DockerifyError, match="not a kernel dockerify knows"):
        k.identify(bytes(4096), "zeros")
    with pytest.raises(DockerifyError, match="no compressed ELF vmlinux"):
        k.extract_vmlinux(bzimage(b"garbage" * 100), "bz")


def test_debian_kernels_when_present() -> None:
    amd64 = REPO / ".cache" / "kernels" / "vmlinuz-amd64"
    if not amd64.is_file():
        pytest.skip("Debian kernels not fetched (scripts/get-kernels.sh); the integration tests need them")
    data = amd64.read_bytes()
    assert k.identify(data, "vmlinuz").kind == "bzImage"
    vmlinux = k.extract_vmlinux(data, "vmlinuz")
    check = k.check_elf(vmlinux, "vmlinux")
    assert check.machine == 62 and check.end < 1 << 30


def _plan(**new: str) -> Plan:
    old = {
        "disk_id": "0x6c1f2a10",
        "boot_partuuid": "6c1f2a10-01",
        "root_partuuid": "6c1f2a10-02",
        "boot_uuid": "5DF2-A7C1",
        "root_uuid": "8346b092-46af-58b7-b1e7-b0b53158588b",
        "boot_label": "bootfs",
        "root_label": "rootfs",
    }
    part = PartitionRecord(1, 0, 0, "0c", "", "", False)
    return Plan("dos", "0x6c1f2a10", part, part, "/boot/firmware", {}, {}, True, old, {**old, **new}, [])


def test_rewrite_refs_changes_only_the_ids() -> None:
    fstab = (
        b"proc /proc proc defaults 0 0\n"
        b"PARTUUID=6c1f2a10-01  /boot/firmware vfat defaults 0 2\n"
        b"PARTUUID=6C1F2A10-02  /  ext4 defaults,noatime 0 1\n"
        b"UUID=5df2-a7c1 /mnt/other vfat defaults 0 0\n"
        b"# PARTUUID=6c1f2a10-03 stays: nobody changed it\n"
        b"LABEL=rootfs /srv ext4 defaults 0 0\n"
    )
    plan = _plan(
        boot_partuuid="1234abcd-01", root_partuuid="1234abcd-02", boot_uuid="A1B2-C3D4", root_label="new"
    )
    out = rewrite_refs(fstab, plan)
    assert out == (
        b"proc /proc proc defaults 0 0\n"
        b"PARTUUID=1234abcd-01  /boot/firmware vfat defaults 0 2\n"
        b"PARTUUID=1234abcd-02  /  ext4 defaults,noatime 0 1\n"
        b"UUID=A1B2-C3D4 /mnt/other vfat defaults 0 0\n"
        b"# PARTUUID=6c1f2a10-03 stays: nobody changed it\n"
        b"LABEL=new /srv ext4 defaults 0 0\n"
    )
    cmdline = b"console=serial0,115200 root=PARTUUID=6c1f2a10-02 rootfstype=ext4 fsck.repair=yes rootwait\n"
    assert rewrite_refs(cmdline, plan) == cmdline.replace(b"6c1f2a10-02", b"1234abcd-02")
    assert rewrite_refs(fstab, _plan()) == fstab  # nothing changed, nothing rewritten


def test_id_parsing() -> None:
    assert parse_disk_id("1234ABCD", "dos") == "0x1234abcd"
    assert parse_disk_id("0x0badcafe", "dos") == "0x0badcafe"
    with pytest.raises(DockerifyError, match="8 hex digits"):
        parse_disk_id("0x123", "dos")
    with pytest.raises(DockerifyError, match="GUID"):
        parse_disk_id("0x1234abcd", "gpt")
    assert fat_uuid("5df2a7c1") == "5DF2-A7C1"


def test_fat_sizes() -> None:
    assert cluster_for(64 * MiB) == 512 and cluster_for(512 * MiB) == 4096
    # FAT32 needs at least 65525 clusters: with 512-byte clusters that is just over 32 MiB.
    assert 32 * MiB < size_for(10, 512) < 34 * MiB
    assert size_for(FAT32_MIN_CLUSTERS + 16, 512) == size_for(1, 512)


def test_run_script_is_valid_sh(tmp_path) -> None:
    for arch in ("amd64", "arm64"):
        script = run_script(
            arch, "bzImage", "initramfs.cpio.gz", 512, _hostfwd(("8080/tcp", "53/udp")), "auto"
        )
        path = tmp_path / f"run-{arch}"
        path.write_text(script)
        subprocess.run(["sh", "-n", str(path)], check=True)
        assert "hostfwd=tcp::8080-:8080,hostfwd=udp::53-:53" in script
    assert _hostfwd(("bad/sctp",)) == ""


def test_image_without_command_config() -> None:
    from dockerify.exporters.common import run_config

    rc = run_config(types.SimpleNamespace(config={"config": None}))  # type: ignore[arg-type]
    assert rc.cmd == () and rc.created == 0


@pytest.mark.parametrize("kind", ["gzip", "xz", "bzip2", "zstd"])
def test_a_compressed_kernel_that_inflates_past_the_limit_is_refused(kind: str) -> None:
    data = bytes(2 << 20)
    packed = {
        "gzip": lambda: gzip.compress(data),
        "xz": lambda: lzma.compress(data, format=lzma.FORMAT_XZ),
        "bzip2": lambda: bz2.compress(data),
        "zstd": lambda: zstandard.ZstdCompressor().compress(data),
    }[kind]()
    with pytest.raises(
        DecompressionLimit, match=f"vmlinuz: the {kind}-compressed kernel inflates past 1048576 bytes"
    ):
        k._decompress(kind, packed, "vmlinuz", limit=1 << 20)
    assert k._decompress(kind, packed, "vmlinuz", limit=2 << 20) == data
