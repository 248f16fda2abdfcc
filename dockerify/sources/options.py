"""How sources read filesystems: options that `build`, `inspect` and `diff` share."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReadOptions:
    # Replay an ext3/ext4 journal that needs recovery, as the kernel does on mount; False reads
    # the filesystem as it is on disk (--no-journal).
    journal: bool = True
    # Refuse metadata whose metadata_csum checksum is wrong; False reads it with one warning per
    # kind of checksum (--ignore-checksums).
    verify_checksums: bool = True


DEFAULT_READ = ReadOptions()
