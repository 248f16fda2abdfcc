"""What a push or pull moved, frozen: the result push and pull return. Its own module, outside
dockerify/registry (which needs oras and requests), so the results can name it anywhere."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from dockerify.jsonable import Result


@dataclass(frozen=True)
class TransferCounts(Result):
    """What crossed the network and what the other side already had."""

    bytes_moved: int
    blobs_moved: int
    blobs_skipped: int
    bytes_skipped: int
    blobs_mounted: int

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def line(self, verb: str) -> str:
        """The summary push and pull show on stderr."""
        mounted = f", {self.blobs_mounted} mounted" if self.blobs_mounted else ""
        return (
            f"{verb} {self.bytes_moved} bytes in {self.blobs_moved} blob(s); "
            f"{self.blobs_skipped} blob(s) ({self.bytes_skipped} bytes) already there{mounted}"
        )
