"""The one limit on decompressed data: every stream dockerify inflates (an input file, an image
layer from any store) passes through `bounded`, so a small hostile file cannot fill the disk or
the memory of whoever reads it."""

from __future__ import annotations

from collections.abc import Generator, Iterator

from dockerify.errors import CorruptInput

#: Decompressed bytes accepted from one stream; a bigger input needs --max-size.
DEFAULT_MAX_SIZE = 64 << 30
BOMB_HINT = "raise it with --max-size"


class DecompressionLimit(CorruptInput):
    """A stream inflated past the limit (a decompression bomb, or an input bigger than allowed)."""


def bounded(chunks: Iterator[bytes], where: str, max_size: int) -> Generator[bytes, None, None]:
    """`chunks` as they come, refused with `DecompressionLimit` (naming `where`) as soon as their
    total exceeds `max_size`, before the chunk that crosses it is given out."""
    produced = 0
    try:
        for chunk in chunks:
            produced += len(chunk)
            if produced > max_size:
                raise DecompressionLimit(
                    f"{where}: decompressed data exceeds the limit of {max_size} bytes (a decompression bomb?)",
                    hint=BOMB_HINT,
                )
            yield chunk
    finally:
        # Abandoned early (an error downstream, the limit): the decoder's files close now.
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
