"""How much a push or pull moved: blobs sent or fetched, skipped because the other side had
them, or mounted from another repository of the same registry."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("dockerify")


@dataclass
class TransferStats:
    bytes_moved: int = 0  # blob bytes that crossed the network
    blobs_moved: int = 0
    blobs_skipped: int = 0  # the other side had them
    bytes_skipped: int = 0
    blobs_mounted: int = 0  # cross-repository mounts (no bytes moved)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def moved(self, size: int) -> None:
        with self._lock:
            self.bytes_moved += size
            self.blobs_moved += 1

    def skipped(self, size: int, mounted: bool = False) -> None:
        with self._lock:
            self.blobs_skipped += 1
            self.bytes_skipped += size
            if mounted:
                self.blobs_mounted += 1

    def to_json(self) -> dict[str, Any]:
        return {
            "bytes_moved": self.bytes_moved,
            "blobs_moved": self.blobs_moved,
            "blobs_skipped": self.blobs_skipped,
            "bytes_skipped": self.bytes_skipped,
            "blobs_mounted": self.blobs_mounted,
        }

    def line(self, verb: str) -> str:
        mounted = f", {self.blobs_mounted} mounted" if self.blobs_mounted else ""
        return (
            f"{verb} {self.bytes_moved} bytes in {self.blobs_moved} blob(s); "
            f"{self.blobs_skipped} blob(s) ({self.bytes_skipped} bytes) already there{mounted}"
        )
