"""Issue 10, point 2: the initramfs inits are committed package data, checked against the digests
recorded when scripts/build-init.sh built them (and rebuilt and compared where the recorded
toolchain is installed)."""

from __future__ import annotations

import hashlib
import shutil
import struct
import subprocess

from dockerify.exporters.initramfs import ELF_MACHINE, INIT_DIR
from tests.conftest import REPO

ARCHES = {"amd64": "amd64", "arm64": "arm64", "arm": "arm"}
PT_INTERP = 3


def _recorded() -> dict[str, str]:
    sums = {}
    for line in (INIT_DIR / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        sums[name] = digest
    return sums


def test_every_init_matches_its_recorded_digest() -> None:
    sums = _recorded()
    assert set(sums) == {f"init-{a}" for a in ARCHES}
    for name, digest in sums.items():
        data = (INIT_DIR / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest, name
        assert len(data) < 4 << 20  # the tracked-file guidance


def test_every_init_is_a_static_elf_for_its_architecture() -> None:
    for arch in ARCHES:
        data = (INIT_DIR / f"init-{arch}").read_bytes()
        assert data[:4] == b"\x7fELF"
        wide, little = data[4] == 2, data[5] == 1
        end = "<" if little else ">"
        (machine,) = struct.unpack_from(end + "H", data, 18)
        assert machine == ELF_MACHINE[arch], arch
        if wide:
            (phoff,) = struct.unpack_from(end + "Q", data, 32)
            phentsize, phnum = struct.unpack_from(end + "HH", data, 54)
        else:
            (phoff,) = struct.unpack_from(end + "I", data, 28)
            phentsize, phnum = struct.unpack_from(end + "HH", data, 42)
        types = [struct.unpack_from(end + "I", data, phoff + i * phentsize)[0] for i in range(phnum)]
        assert PT_INTERP not in types, f"init-{arch} is not static"


def test_rebuild_gives_the_recorded_bytes() -> None:
    """Where the recorded toolchain is installed the rebuild must match bit for bit; elsewhere
    (another gcc or C library) the script says the bytes cannot be compared (exit 2)."""
    if not shutil.which("gcc"):
        return
    proc = subprocess.run(
        ["sh", str(REPO / "scripts" / "build-init.sh"), "--check"], capture_output=True, text=True
    )
    if proc.returncode == 2:
        assert "toolchain differs" in proc.stderr
        return
    assert proc.returncode == 0, proc.stderr
    assert "match SHA256SUMS" in proc.stdout
