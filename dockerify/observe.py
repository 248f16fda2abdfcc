"""What a build learns from the tree while it streams past: platform evidence, os-release,
the shells present and the newest mtime. Content is only tapped, never read twice."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from dockerify.entry import Entry, FileType
from dockerify.platform import PlatformDetector

_TAIL = 1 << 20
_SMALL = {b"etc/os-release", b"usr/lib/os-release", b"boot/config.txt", b"boot/firmware/config.txt"}
_SHELLS = (b"bin/bash", b"usr/bin/bash", b"bin/sh", b"usr/bin/sh")


def parse_os_release(text: bytes) -> dict[str, str]:
    out = {}
    for line in text.decode(errors="replace").splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            out[key] = value.strip().strip("\"'")
    return out


@dataclass
class TreeFacts:
    detector: PlatformDetector = field(default_factory=PlatformDetector)
    small_files: dict[bytes, bytes] = field(default_factory=dict)
    paths: set[bytes] = field(default_factory=set)
    newest_mtime: int = 0
    entries: int = 0

    def os_release(self) -> dict[str, str]:
        data = self.small_files.get(b"etc/os-release") or self.small_files.get(b"usr/lib/os-release")
        return parse_os_release(data) if data else {}

    def default_shell(self) -> str | None:
        for shell in _SHELLS:
            if shell in self.paths:
                return "/" + shell.decode()
        return None

    def tap(self, entries: Iterator[Entry]) -> Iterator[Entry]:
        for entry in entries:
            self.entries += 1
            self.newest_mtime = max(self.newest_mtime, entry.mtime)
            if entry.path in _SHELLS:
                self.paths.add(entry.path)
            if entry.type is FileType.REG and entry.reader is not None and entry.size > 0:
                entry = entry.with_(reader=self._tapped(entry))
            yield entry

    def _tapped(self, entry: Entry):  # noqa: ANN202 - returns a ChunkReader
        inner = entry.reader
        assert inner is not None
        keep_small = entry.path in _SMALL and entry.size <= 65536

        def read() -> Iterator[tuple[int, bytes]]:
            head = b""
            tail: list[tuple[int, bytes]] = []
            tail_len = 0
            small: list[bytes] = []
            elf = False
            for offset, data in inner():
                if offset == 0 and not head:
                    head = data[:65536]
                    elf = head[:4] == b"\x7fELF"
                if elf:
                    tail.append((offset, data))
                    tail_len += len(data)
                    while tail_len - len(tail[0][1]) >= _TAIL:
                        tail_len -= len(tail.pop(0)[1])
                if keep_small:
                    small.append(data)
                yield offset, data
            if keep_small:
                self.small_files[entry.path] = b"".join(small)
            if elf and tail and tail[-1][0] + len(tail[-1][1]) == entry.size:
                start = tail[0][0]
                joined = b"".join(d for _, d in tail)
                if start + len(joined) == entry.size:
                    self.detector.add_elf(head, joined[-_TAIL:], entry.size)

        return read
