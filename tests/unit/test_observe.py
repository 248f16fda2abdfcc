"""The edges of a streamed file (ELF headers at the head, ARM attributes at the tail) match the
file's whole content, holes read as zeros, for any cut into pieces."""

from __future__ import annotations

import random

import pytest

from dockerify.observe import _HEAD, _TAIL, _Edges


def _stream(rng: random.Random, size: int) -> tuple[bytes, list[tuple[int, bytes]]]:
    content = bytearray(size)
    pieces = []
    pos = 0
    while pos < size:
        if rng.random() < 0.3:  # a hole: no piece, zeros in the content
            pos += rng.randrange(1, 3 << 20)
            continue
        n = min(size - pos, rng.choice([1, 511, 4096, 65536, 1 << 20, 3 << 20]))
        data = rng.randbytes(n)
        content[pos : pos + n] = data
        pieces.append((pos, data))
        pos += n
    return bytes(content), pieces


@pytest.mark.parametrize("seed", range(12))
def test_edges_are_the_head_and_tail_of_the_content(seed: int) -> None:
    rng = random.Random(seed)
    size = rng.choice([1, 100, _HEAD - 1, _HEAD + 1, _TAIL, _TAIL + 7, 5 << 20, 9 << 20])
    content, pieces = _stream(rng, size)
    edges = _Edges()
    for offset, data in pieces:
        edges.add(offset, data if rng.random() < 0.5 else memoryview(bytearray(data)))  # type: ignore[arg-type]
    edges.add(size, b"")  # as TreeFacts does: a trailing hole reads as zeros
    assert bytes(edges.head) == content[:_HEAD]
    assert edges.tail == content[-_TAIL:]


def test_a_reused_buffer_does_not_change_the_tail() -> None:
    buffer = bytearray(b"a" * 1000)
    edges = _Edges()
    edges.add(0, memoryview(buffer))  # type: ignore[arg-type]
    buffer[:] = b"b" * 1000
    edges.add(1000, b"")
    assert edges.tail == b"a" * 1000
