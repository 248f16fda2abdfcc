"""How much a push or pull moved: blobs sent or fetched, skipped because the other side had
them, or mounted from another repository of the same registry."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from dockerify.counts import TransferCounts

log = logging.getLogger("dockerify")


@dataclass
class TransferStats:
    """The counts while a transfer runs (its threads add to them)."""

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

    def counts(self) -> TransferCounts:
        """The counts as they stand, frozen (what push and pull return)."""
        with self._lock:
            return TransferCounts(
                self.bytes_moved, self.blobs_moved, self.blobs_skipped, self.bytes_skipped, self.blobs_mounted
            )

    def to_json(self) -> dict[str, Any]:
        return self.counts().to_json()

    def line(self, verb: str) -> str:
        return self.counts().line(verb)
