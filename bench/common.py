"""Shared by the benchmarks: the large test card, timing and peak memory of child processes."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

CACHE = Path(
    os.environ.get("DOCKERIFY_BENCH_CACHE", Path(__file__).resolve().parent.parent / ".cache" / "bench")
)
# Real files give real compression ratios; these trees are on every Debian machine with Python.
CONTENT_DIRS = ("/usr/lib", "/usr/share", "/usr/bin", "/usr/sbin", "/etc")
TARGET_BYTES = 1100 << 20


def sh(cmd: str, **kw) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["bash", "-o", "pipefail", "-c", cmd], check=True, **kw)


def measure(cmd: Sequence[str] | str) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one command and its children, via GNU time."""
    argv = ["bash", "-o", "pipefail", "-c", cmd] if isinstance(cmd, str) else list(cmd)
    # The previous step's dirty pages (gigabytes of layers, a card) are written back first, so no
    # step pays for the one before it (the daemon steps are bound by the disk).
    os.sync()
    with tempfile.NamedTemporaryFile("r") as out:
        start = time.perf_counter()
        subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", out.name, *argv], check=True, stdout=subprocess.DEVNULL
        )
        wall = time.perf_counter() - start
        peak = int(out.read().strip().splitlines()[-1])
    return wall, peak


def _fill(root: Path) -> int:
    """Copy real files until the tree holds TARGET_BYTES, keeping directory structure."""
    total = 0
    for top in CONTENT_DIRS:
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            rel = Path(dirpath).relative_to("/")
            (root / rel).mkdir(parents=True, exist_ok=True)
            for name in sorted(filenames):
                src = Path(dirpath) / name
                if src.is_symlink() or not src.is_file():
                    continue
                size = src.stat().st_size
                if size > 64 << 20:
                    continue
                try:
                    shutil.copy2(src, root / rel / name)
                except OSError:
                    continue
                total += size
                if total >= TARGET_BYTES:
                    return total
    return total


def large_card() -> Path:
    """A Pi-style card: MBR, 256 MiB FAT32 boot, ext4 root with >= 1.1 GiB in many files."""
    card = CACHE / "large-card.img"
    if card.exists():
        return card
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        stage = Path(tmp) / "root"
        total = _fill(stage)
        (stage / "boot/firmware").mkdir(parents=True, exist_ok=True)
        (stage / "etc").mkdir(exist_ok=True)
        (stage / "etc/fstab").write_text(
            "PARTUUID=0badcafe-01 /boot/firmware vfat defaults 0 2\n"
            "PARTUUID=0badcafe-02 / ext4 defaults,noatime 0 1\n"
        )
        root_mib = total * 13 // 10 // (1 << 20) + 256
        boot = Path(tmp) / "boot.img"
        root = Path(tmp) / "root.img"
        sh(f"mkfs.vfat -F 32 -n BOOTFS -i 1234ABCD -C {boot} {256 * 1024} >/dev/null")
        sh(
            f"head -c 32M /dev/urandom > {tmp}/kernel8.img && MTOOLS_SKIP_CHECK=1 mcopy -i {boot} {tmp}/kernel8.img ::/"
        )
        sh(f"mke2fs -q -F -t ext4 -L rootfs -d {stage} {root} {root_mib}M")
        img = Path(tmp) / "card.img"
        sh(f"truncate -s {(4 + 256 + root_mib) << 20} {img}")
        sh(
            f"printf 'label: dos\\nlabel-id: 0x0badcafe\\nstart=8192, size={256 * 2048}, type=c\\n"
            f"start={8192 + 256 * 2048}, type=83\\n' | sfdisk -q {img}"
        )
        sh(f"dd if={boot} of={img} bs=1M seek=4 conv=notrunc,sparse status=none")
        sh(f"dd if={root} of={img} bs=1M seek={4 + 256} conv=notrunc,sparse status=none")
        img.rename(card)
    return card


@contextmanager
def mounted_card(card: Path) -> Iterator[Path]:
    """The naive pipelines' view, as a user would set it up (root only): the card's root
    loop-mounted, and its boot partition (copied out with mtools: this kernel has no vfat) bound
    at /boot/firmware inside it, so a tar of the mount holds what dockerify's layer holds."""
    mnt = Path(tempfile.mkdtemp(prefix="bench-mnt-"))
    boot_start, root_start = 4 << 20, 260 << 20
    sh(f"mount -o ro,loop,offset={root_start} {card} {mnt}")
    boot_dir = Path(tempfile.mkdtemp(prefix="bench-boot-"))
    try:
        sh(f"MTOOLS_SKIP_CHECK=1 mcopy -s -n -m -i {card}@@{boot_start} ::/ {boot_dir}/")
        sh(f"mount --bind {boot_dir} {mnt}/boot/firmware")
        try:
            yield mnt
        finally:
            sh(f"umount {mnt}/boot/firmware")
    finally:
        sh(f"umount {mnt}")
        mnt.rmdir()
        shutil.rmtree(boot_dir)


def settle(*keep_cached: Path) -> None:
    """Start the next step from the same state as every other: dirty pages written back, clean
    caches dropped, then `keep_cached` read back into the page cache (root only).

    Why the drop: ext4 will not reuse an inode freed in the last minute while its inode-table
    block is still cached (ialloc.c, recently_deleted), so after the bench removes a 13,000-file
    image the next step's every file creation scans past the freed inodes; perf showed the
    daemon's untar spending 11-16 s of system time there against 2.5 s otherwise, which made
    whichever step came next up to 2x slower."""
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("1\n")
    for path in keep_cached:
        with path.open("rb") as f:
            while f.read(8 << 20):
                pass


def compile_package() -> None:
    """Byte-compile dockerify as `pip install` does, so each timed run starts as an installed
    tool starts: an editable install under PYTHONDONTWRITEBYTECODE=1 (these machines set it)
    compiles every module from source on every run, 0.2-0.3 s before the build's first byte."""
    spec = importlib.util.find_spec("dockerify")
    assert spec is not None and spec.submodule_search_locations is not None
    for where in spec.submodule_search_locations:
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", where], check=True, stdout=subprocess.DEVNULL
        )


def dockerify_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "dockerify", *args]


def meets(value: float, target: str) -> bool:
    """Whether `value` meets a target written as "> 1", ">= 2", "<= 1.5" or "< 300"."""
    op, _, number = target.partition(" ")
    limit = float(number)
    return {">": value > limit, ">=": value >= limit, "<": value < limit, "<=": value <= limit}[op]


def report(rows: list[tuple[str, float, int]], ratios: list[tuple[str, float, str]]) -> bool:
    """Print every step, then each target with PASS or FAIL; True when all pass."""
    print(f"{'step':58} {'seconds':>8} {'peak MiB':>9}")
    for name, wall, peak in rows:
        print(f"{name:58} {wall:8.2f} {peak / 1024:9.1f}")
    print()
    ok = True
    for name, ratio, target in ratios:
        good = meets(ratio, target)
        ok = ok and good
        print(f"{name:58} {ratio:8.2f}   target {target:7} {'PASS' if good else 'FAIL'}")
    return ok
