"""What a build learns from the tree while it streams past: platform evidence, os-release,
the shells present and the newest mtime. Content is only tapped, never read twice."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from dockerify.detect import PlatformDetector
from dockerify.entry import ChunkReader, Entry, FileType

_HEAD = 64 << 10
_TAIL = 1 << 20
#: Where a Raspberry Pi's config.txt sits: the boot partition mounted at /boot/firmware (Bookworm)
#: or /boot, or the root of a bare FAT boot-partition image.
_CONFIG_TXT = (b"boot/firmware/config.txt", b"boot/config.txt", b"config.txt")
_SMALL = {b"etc/os-release", b"usr/lib/os-release", *_CONFIG_TXT}
_SHELLS = (b"bin/bash", b"usr/bin/bash", b"bin/sh", b"usr/bin/sh")


def parse_os_release(text: bytes) -> dict[str, str]:
    out = {}
    for line in text.decode(errors="replace").splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            out[key] = value.strip().strip("\"'")
    return out


class _Edges:
    """The first _HEAD and last _TAIL bytes of a file's content as it streams past, holes read
    as zeros (ELF files in ext4 images often have them): ELF headers sit at one end, ARM
    attributes and section headers at the other.

    The tail keeps references to the last pieces rather than a rolling copy: appending each
    MiB-sized piece to a 1 MiB buffer and trimming its front cost a fifth of a build's CPU."""

    def __init__(self) -> None:
        self.head = bytearray()
        self._pieces: deque[bytes] = deque()
        self._kept = 0
        self.end = 0

    def add(self, offset: int, data: bytes) -> None:
        gap = max(0, offset - self.end)
        if len(self.head) < _HEAD:
            self.head += bytes(min(gap, _HEAD - len(self.head)))
            self.head += data[: _HEAD - len(self.head)]
        if gap:
            self._keep(bytes(min(gap, _TAIL)))
        if data:
            # A source may hand out views of a buffer it reuses: only bytes are kept as they are.
            self._keep(data if type(data) is bytes else bytes(data))
        self.end = max(self.end, offset + len(data))

    def _keep(self, piece: bytes) -> None:
        self._pieces.append(piece)
        self._kept += len(piece)
        while self._kept - len(self._pieces[0]) >= _TAIL:
            self._kept -= len(self._pieces.popleft())

    @property
    def tail(self) -> bytes:
        return b"".join(self._pieces)[-_TAIL:]


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

    def apply_boot_config(self) -> None:
        """Give the detector the Pi boot config's hint (used only when there are no ELF files)."""
        for name in _CONFIG_TXT:
            if name in self.small_files:
                self.detector.add_boot_config(self.small_files[name])

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
            if entry.type is FileType.SYMLINK:
                self.detector.add_symlink(entry.path, entry.linkname)
            elif entry.type is FileType.HARDLINK:
                self.detector.add_hardlink(entry.path, entry.linkname)
            if entry.type is FileType.REG and entry.reader is not None and entry.size > 0:
                entry = entry.with_(reader=self._tapped(entry))
            yield entry

    def _tapped(self, entry: Entry) -> ChunkReader:
        inner = entry.reader
        assert inner is not None
        keep_small = entry.path in _SMALL and entry.size <= 65536

        def read() -> Iterator[tuple[int, bytes]]:
            edges: _Edges | None = None
            small: list[bytes] = []
            first = True
            for offset, data in inner():
                if first:
                    first = False
                    if offset == 0 and data[:4] == b"\x7fELF":
                        edges = _Edges()
                if edges is not None:
                    edges.add(offset, data)
                if keep_small:
                    small.append(data)
                yield offset, data
            if keep_small:
                self.small_files[entry.path] = b"".join(small)
            if edges is not None:
                edges.add(entry.size, b"")  # a trailing hole reads as zeros
                self.detector.add_elf(entry.path, bytes(edges.head), edges.tail, entry.size)

        return read
