"""Progress bars on stderr when it is a terminal; nothing otherwise or with -q."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator


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
            yield bar.update
