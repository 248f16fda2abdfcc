"""Benchmark: the userspace ext4 reader alone, walking a card's tree and reading every file.

    python3 bench/bench_ext4_read.py [CARD]      (default: .fixtures/pi-arm64.img)

Prints the best CPU time of several walks, as the checksums run (metadata_csum cards verify
every inode, extent block, directory block and xattr block) and with the checksum seed
dropped, which is what the reader cost before it verified anything."""

from __future__ import annotations

import dataclasses
import resource
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dockerify.sources import ext4, open_source  # noqa: E402

RUNS = 7


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def walk(card: str) -> tuple[float, int, int]:
    """Best CPU seconds of RUNS walks, entries and bytes read."""
    best, entries, size = float("inf"), 0, 0
    for _ in range(RUNS):
        start, entries, size = _cpu(), 0, 0
        with open_source(card) as source:
            for entry in source.entries():
                entries += 1
                for _, data in entry.chunks():
                    size += len(data)
        best = min(best, _cpu() - start)
    return best, entries, size


def main() -> int:
    card = (
        sys.argv[1]
        if len(sys.argv) > 1
        else str(Path(__file__).resolve().parent.parent / ".fixtures/pi-arm64.img")
    )
    verified, entries, size = walk(card)
    read_superblock = ext4.Ext4Reader._read_superblock

    def without_checksums(self: ext4.Ext4Reader) -> ext4._Superblock:
        return dataclasses.replace(read_superblock(self), csum_seed=None)

    ext4.Ext4Reader._read_superblock = without_checksums  # type: ignore[method-assign]
    unverified, _, _ = walk(card)
    print(f"card: {card}: {entries} entries, {size >> 20} MiB of content")
    print(f"  checksums verified:  {verified:.3f} s CPU ({entries / verified:,.0f} entries/s)")
    print(f"  no checksums:        {unverified:.3f} s CPU")
    print(f"  ratio verified / not: {verified / unverified:.2f} (target <= 1.2)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
