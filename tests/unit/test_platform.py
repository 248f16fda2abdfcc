"""Platform detection from real ELF binaries built by Debian's cross compilers."""

import shutil
import subprocess
from pathlib import Path

import pytest

from dockerify.detect import PlatformDetector
from dockerify.elf import arm_cpu_arch
from dockerify.errors import DockerifyError
from dockerify.platform import Platform, reconcile
from tests.fixtures import require

SRC = "void _start(void) { for (;;) ; }\n"


def _compile(tmp: Path, cc: str, *flags: str) -> bytes:
    require(shutil.which(cc), f"{cc} is not installed (scripts/setup.sh installs it)")
    c = tmp / "t.c"
    c.write_text(SRC)
    out = tmp / f"t-{cc}-{'-'.join(f.strip('-') for f in flags)}"
    subprocess.run([cc, "-nostdlib", "-static", "-O2", *flags, "-o", str(out), str(c)], check=True)
    return out.read_bytes()


def _detect(*binaries: bytes) -> Platform | None:
    d = PlatformDetector()
    for i, data in enumerate(binaries):
        d.add_elf(b"usr/bin/t%d" % i, data[:65536], data[-(1 << 20) :], len(data))
    return d.result()


def test_amd64(tmp_path) -> None:
    assert _detect(_compile(tmp_path, "gcc")) == Platform("linux", "amd64")


def test_arm64(tmp_path) -> None:
    assert _detect(_compile(tmp_path, "aarch64-linux-gnu-gcc")) == Platform("linux", "arm64")


def test_armv7_and_armv6(tmp_path) -> None:
    v7 = _compile(tmp_path, "arm-linux-gnueabihf-gcc", "-march=armv7-a", "-mfpu=vfpv3-d16")
    v6 = _compile(tmp_path, "arm-linux-gnueabihf-gcc", "-march=armv6", "-marm", "-mfpu=vfp")
    assert arm_cpu_arch(v6[:65536], v6[-(1 << 20) :], len(v6)) == 6
    assert _detect(v7) == Platform("linux", "arm", "v7")
    assert _detect(v6) == Platform("linux", "arm", "v6")
    # Without a core userland the spread decides: most files are v6.
    assert _detect(v6, v6, v7) == Platform("linux", "arm", "v6")


def test_parse_and_aliases() -> None:
    assert Platform.parse("linux/arm64/v8") == Platform("linux", "arm64")
    assert Platform.parse("linux/arm") == Platform("linux", "arm", "v7")
    assert Platform.parse("aarch64") == Platform("linux", "arm64")
    assert str(Platform.parse("linux/arm/v6")) == "linux/arm/v6"
    with pytest.raises(DockerifyError):
        Platform.parse("linux/sparc")


def test_pi_config_hint_without_binaries() -> None:
    d = PlatformDetector()
    d.add_boot_config(b"# comment\narm_64bit=1\n")
    assert d.result() == Platform("linux", "arm64")


def test_contradiction_needs_force() -> None:
    arm64, amd64 = Platform("linux", "arm64"), Platform("linux", "amd64")
    with pytest.raises(DockerifyError, match="contradicts"):
        reconcile(arm64, amd64, force=False, source="x.img")
    assert reconcile(arm64, amd64, force=True, source="x.img") == amd64
    with pytest.raises(DockerifyError, match="cannot tell"):
        reconcile(None, None, force=False, source="x.img")
