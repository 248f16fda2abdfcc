"""Issue 7 acceptance 1: real trees get the platform of their core userland, and `inspect --json`
shows the evidence. The trees (scripts/make_fixtures.py) hold whole Debian packages: armhf libc6,
dash, busybox and libgcrypt20 (tagged ARMv8); arm64 libc6 and busybox plus armhf libc6 for
multiarch; and a Raspberry-Pi-OS-style ARMv6 card with libarmmem-v7l.so and a neon/vfp library.
readelf (binutils) is the judge of what each file is tagged."""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import dockerify, require_tool
from tests.fixtures import FIXTURES_DIR, entry

TREES = [
    ("trees/debian-armhf", "linux/arm/v7"),
    ("trees/arm64-multiarch", "linux/arm64"),
    ("pi-armv6.img", "linux/arm/v6"),
]
ARCH_NAMES = {"ARM": "arm", "AArch64": "arm64"}


def _inspect(name: str) -> dict:
    entry(name)
    proc = dockerify("inspect", "--json", str(FIXTURES_DIR / name))
    return json.loads(proc.stdout)


def _readelf_platform(path: Path) -> str | None:
    """linux/<arch>[/<variant>] of an executable or shared object as readelf sees it."""
    header = subprocess.run(["readelf", "-h", str(path)], capture_output=True, text=True)
    if header.returncode != 0:
        return None
    fields = dict(line.strip().split(":", 1) for line in header.stdout.splitlines() if ":" in line)
    if not fields.get("Type", "").strip().startswith(("EXEC", "DYN")):
        return None
    arch = ARCH_NAMES[fields["Machine"].strip()]
    if arch != "arm":
        return f"linux/{arch}"
    attrs = subprocess.run(["readelf", "-A", str(path)], capture_output=True, text=True).stdout
    tag = next(line.split(":", 1)[1].strip() for line in attrs.splitlines() if "Tag_CPU_arch:" in line)
    return f"linux/arm/{tag[:2]}"  # v5TE -> v5, v7 -> v7 ...


def _readelf_counts(root: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file():
                continue
            with open(path, "rb") as f:
                if f.read(4) != b"\x7fELF":
                    continue
            platform = _readelf_platform(path)
            if platform:
                counts[platform] += 1
    return counts


@pytest.mark.parametrize(("name", "platform"), TREES)
def test_inspect_platform_and_evidence(name, platform) -> None:
    require_tool("readelf")
    info = _inspect(name)
    ev = info["platform_evidence"]
    assert info["platform"] == platform == ev["platform"]
    assert ev["decided_by"] == "core"
    roles = {c["role"]: c for c in ev["core"]}
    assert {"sh", "busybox", "init", "interpreter", "libc"} <= set(roles)
    assert all(c["platform"] == platform for c in ev["core"]), ev["core"]
    # The counts are readelf's, file by file.
    root = FIXTURES_DIR / entry(name)["staging"]["root"]
    assert ev["elf_files"] == dict(_readelf_counts(root))


def test_debian_armhf_names_libgcrypt_as_disagreeing() -> None:
    ev = _inspect("trees/debian-armhf")["platform_evidence"]
    assert ev["elf_files"]["linux/arm/v8"] == 1 and ev["elf_files"]["linux/arm/v7"] > 250
    assert ev["disagree"] == {
        "count": 1,
        "files": [{"path": "/usr/lib/arm-linux-gnueabihf/libgcrypt.so.20.4.1", "platform": "linux/arm/v8"}],
    }
    roles = {c["role"]: c for c in ev["core"]}
    assert roles["sh"]["via"] == "/bin/sh" and roles["sh"]["path"] == "/bin/dash"
    assert roles["interpreter"]["path"] == "/lib/arm-linux-gnueabihf/ld-linux-armhf.so.3"


def test_armv6_card_counts_hwcap_libraries_as_dispatched() -> None:
    ev = _inspect("pi-armv6.img")["platform_evidence"]
    dispatched = {f["path"]: f["platform"] for f in ev["dispatched"]["files"]}
    lib = "/usr/lib/arm-linux-gnueabihf/"
    assert dispatched[lib + "libarmmem-v7l.so"] == "linux/arm/v7"
    assert dispatched[lib + "libarmmem-v8l.so"] == "linux/arm/v8"
    assert dispatched[lib + "neon/vfp/libstub.so.1"] == "linux/arm/v7"
    assert ev["disagree"]["count"] == 0
    assert {c["role"]: c["path"] for c in ev["core"]}["init"] == "/lib/systemd/systemd"


def test_arm64_multiarch_lists_the_32bit_files_bounded() -> None:
    ev = _inspect("trees/arm64-multiarch")["platform_evidence"]
    assert ev["elf_files"]["linux/arm/v7"] == ev["disagree"]["count"] > 20
    assert len(ev["disagree"]["files"]) == 20
    assert all("/arm-linux-gnueabihf/" in f["path"] for f in ev["disagree"]["files"])
    assert {c["role"]: c["path"] for c in ev["core"]}["libc"] == "/lib/aarch64-linux-gnu/libc.so.6"


@pytest.mark.parametrize(("name", "platform"), TREES)
def test_build_labels_the_image(name, platform, tmp_path) -> None:
    require_tool("skopeo")
    entry(name)
    layout = tmp_path / "layout"
    dockerify("build", "-q", str(FIXTURES_DIR / name), "--output", f"oci:{layout}:t")
    raw = subprocess.run(
        ["skopeo", "inspect", "--config", f"oci:{layout}:t"], capture_output=True, check=True
    ).stdout
    cfg = json.loads(raw)
    got = "/".join([cfg["os"], cfg["architecture"], *([cfg["variant"]] if cfg.get("variant") else [])])
    assert got == platform


def test_platform_contradicting_the_core_needs_force(tmp_path) -> None:
    require_tool("skopeo")
    entry("trees/debian-armhf")
    src = str(FIXTURES_DIR / "trees/debian-armhf")
    bad = dockerify(
        "build", "-q", src, "--platform", "linux/arm/v8", "--output", f"oci:{tmp_path / 'x'}", check=False
    )
    assert bad.returncode != 0 and "contradicts" in bad.stderr and "linux/arm/v7" in bad.stderr
    assert not (tmp_path / "x").exists()
    forced = tmp_path / "y"
    dockerify("build", "-q", src, "--platform", "linux/arm/v8", "--force", "--output", f"oci:{forced}:t")
    raw = subprocess.run(
        ["skopeo", "inspect", "--config", f"oci:{forced}:t"], capture_output=True, check=True
    )
    assert json.loads(raw.stdout)["variant"] == "v8"
