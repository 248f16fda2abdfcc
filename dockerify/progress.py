"""Progress bars on stderr when it is a terminal; nothing otherwise or with -q.

A bar with a known total (a blob's size, a file's, a source's estimate) shows the percentage,
the rate and the time left, and never passes its total: when an estimate falls short the bar
goes on counting without one. Log lines printed while a bar is drawn go above it (`write_line`), not into it."""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

_lock = threading.Lock()
_bars: list[Any] = []  # the tqdm bars on screen


def write_line(text: str) -> None:
    """One line on stderr; with bars on screen, above them (tqdm clears and redraws them)."""
    with _lock:
        if _bars:
            _bars[0].write(text, file=sys.stderr)
            return
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


class Progress:
    def __init__(self, quiet: bool = False) -> None:
        self.enabled = not quiet and sys.stderr.isatty()

    @contextlib.contextmanager
    def task(
        self, description: str, total: int | None = None, unit: str = "B"
    ) -> Iterator[Callable[[int], object]]:
        if not self.enabled:
            yield lambda n: None
            return
        from tqdm import tqdm

        with tqdm(
            total=total,
            desc=description,
            unit=unit,
            unit_scale=True,
            unit_divisor=1024,
            file=sys.stderr,
            leave=False,
            dynamic_ncols=True,
        ) as bar:
            with _lock:
                _bars.append(bar)

            def advance(n: int) -> None:
                if bar.total is not None and bar.n + n > bar.total:
                    bar.total = None  # an estimated total fell short: count on, with no percentage
                bar.update(n)

            try:
                yield advance
            finally:
                with _lock:
                    _bars.remove(bar)
